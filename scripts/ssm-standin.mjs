// SSM stand-in for the end-to-end tests: test infrastructure, not product (see scripts/EMULATOR.md).
//
// moto records SSM Run Command but executes nothing (always Success, empty output) and lacks
// DescribeInstanceInformation, ListCommandInvocations and CancelCommand. Point AWS_ENDPOINT_URL_SSM
// here: this server answers those calls and AWS-RunShellScript by really running the commands
// with bash on this machine, and forwards every other SSM request to moto unchanged.
//
//   node scripts/ssm-standin.mjs            (I2E_MOTO_URL names moto; prints AWS_ENDPOINT_URL_SSM=…)
//
// A command for an instance sees that instance's attached moto volumes as block devices, as on
// EC2: each volume is a sparse file (its moto size), attached to a loop device for the command's
// lifetime, and the command runs in its own mount namespace whose /dev is an overlay holding
// /dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol<hex>, /dev/sdX and /dev/xvdX links to it.
// Needs root (unshare, mount, losetup); otherwise it falls back to I2E_FAKE_DEV_DIR (see EMULATOR.md).
//
// GET /_standin/volumes answers {"vol-…": "/path/to/file"}, for tests to check what was written.
import { execFileSync, spawn } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import { chmodSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { request as httpRequest, createServer } from 'node:http'
import { constants, tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { DescribeInstancesCommand, DescribeVolumesCommand, EC2Client } from '@aws-sdk/client-ec2'

const STDOUT_LIMIT = 24000 // characters SSM keeps of a command's output
const STDERR_LIMIT = 8000
const PLUGIN_OUTPUT_LIMIT = 2500 // ListCommandInvocations' CommandPlugins[].Output
const env = process.env
const motoUrl = (env.I2E_MOTO_URL ?? '').replace(/\/$/, '')
if (!motoUrl) {
  process.stderr.write(
    'ssm-standin: set I2E_MOTO_URL to the moto server (scripts/emulator.sh start prints it)\n'
  )
  process.exit(2)
}
const region = env.AWS_REGION ?? env.AWS_DEFAULT_REGION ?? 'us-east-1'
const credentials = {
  accessKeyId: env.AWS_ACCESS_KEY_ID ?? 'testing',
  secretAccessKey: env.AWS_SECRET_ACCESS_KEY ?? 'testing'
}
const ec2 = new EC2Client({ endpoint: motoUrl, region, credentials })
// Eventual consistency, as on AWS: an invocation is unknown for a moment, then Pending for a moment.
const visibleAfterMs = Number(env.I2E_STANDIN_VISIBLE_AFTER_MS ?? 500)
const startAfterMs = Number(env.I2E_STANDIN_START_AFTER_MS ?? 1000)
const log = (msg) => process.stderr.write(`ssm-standin: ${msg}\n`)

const ownDir = !env.I2E_STANDIN_DIR
const dir = env.I2E_STANDIN_DIR ?? mkdtempSync(join(tmpdir(), 'i2e-ssm-standin-'))
const binDir = join(dir, 'bin')
const volumeDir = join(dir, 'volumes')
mkdirSync(binDir, { recursive: true })
mkdirSync(volumeDir, { recursive: true })
const shim = fileURLToPath(new URL('./aws-shim.mjs', import.meta.url))
writeFileSync(join(binDir, 'aws'), `#!/bin/sh\nexec '${process.execPath}' '${shim}' "$@"\n`)
chmodSync(join(binDir, 'aws'), 0o755)

const works = (cmd, args) => {
  try {
    execFileSync(cmd, args, { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
}
let namespaces = false // set by probeNamespaces() before the server listens

/** commandId → { command, invocations: Map(instanceId → invocation) } */
const commands = new Map()
const volumeFiles = {}
const running = new Set() // promises of the commands under way, awaited on shutdown

class ApiError extends Error {
  constructor(code, message) {
    super(message)
    this.code = code
  }
}

const epoch = (ms) => (ms ? ms / 1000 : undefined) // the JSON protocol's timestamps
const iso = (ms) => (ms ? new Date(ms).toISOString() : '')
const quote = (s) => `'${String(s).replace(/'/g, `'\\''`)}'`

async function ec2Instances() {
  const out = await ec2.send(new DescribeInstancesCommand({}))
  return (out.Reservations ?? []).flatMap((r) => r.Instances ?? [])
}

// Online when running in moto's EC2; a stopped instance has lost its agent's connection.
async function describeInstanceInformation(req) {
  const filters = [
    ...(req.Filters ?? []).map((f) => [f.Key, f.Values]),
    ...(req.InstanceInformationFilterList ?? []).map((f) => [f.key, f.valueSet])
  ]
  const list = []
  for (const i of await ec2Instances()) {
    const state = i.State?.Name
    if (state !== 'running' && state !== 'stopped' && state !== 'stopping') continue
    const info = {
      InstanceId: i.InstanceId,
      PingStatus: state === 'running' ? 'Online' : 'ConnectionLost',
      LastPingDateTime: epoch(Date.now()),
      AgentVersion: '3.3.0.0',
      IsLatestVersion: true,
      PlatformType: 'Linux',
      PlatformName: 'Amazon Linux',
      PlatformVersion: '2023',
      ResourceType: 'EC2Instance',
      IPAddress: i.PrivateIpAddress,
      ComputerName: i.PrivateDnsName
    }
    const keep = filters.every(([key, values]) => {
      if (key === 'InstanceIds') return values.includes(info.InstanceId)
      if (key === 'PingStatus') return values.includes(info.PingStatus)
      throw new ApiError(
        'InvalidInstanceInformationFilterValue',
        `the SSM stand-in does not filter on ${key}`
      )
    })
    if (keep) list.push(info)
  }
  return { InstanceInformationList: list }
}

async function sendCommand(req) {
  const ids = req.InstanceIds
  const online = new Set(
    (
      await describeInstanceInformation({ Filters: [{ Key: 'PingStatus', Values: ['Online'] }] })
    ).InstanceInformationList.map((i) => i.InstanceId)
  )
  const bad = ids.filter((id) => !online.has(id))
  if (bad.length)
    throw new ApiError(
      'InvalidInstanceId',
      `Instances [[${bad.join(', ')}]] not in a valid state for account`
    )
  const now = Date.now()
  const command = {
    CommandId: randomUUID(),
    DocumentName: req.DocumentName,
    DocumentVersion: req.DocumentVersion ?? '$DEFAULT',
    Comment: req.Comment ?? '',
    Parameters: req.Parameters ?? {},
    InstanceIds: ids,
    Targets: [],
    RequestedDateTime: epoch(now),
    ExpiresAfter: epoch(now + (req.TimeoutSeconds ?? 3600) * 1000),
    Status: 'Pending',
    StatusDetails: 'Pending',
    TargetCount: ids.length,
    CompletedCount: 0,
    ErrorCount: 0,
    DeliveryTimedOutCount: 0,
    TimeoutSeconds: req.TimeoutSeconds ?? 3600,
    CloudWatchOutputConfig: req.CloudWatchOutputConfig ?? { CloudWatchOutputEnabled: false }
  }
  const invocations = new Map()
  for (const instanceId of ids) {
    const inv = {
      instanceId,
      requested: now,
      status: 'Pending',
      details: 'Pending',
      code: -1,
      stdout: '',
      stderr: ''
    }
    invocations.set(instanceId, inv)
    inv.timer = setTimeout(() => {
      const done = run(command, inv).catch((err) => finish(inv, 'Failed', 'Failed', -1, String(err)))
      running.add(done)
      done.finally(() => running.delete(done))
    }, startAfterMs)
  }
  commands.set(command.CommandId, { command, invocations })
  return { Command: command }
}

function finish(inv, status, details, code, extraStderr = '') {
  Object.assign(inv, { status, details, code, ended: Date.now(), child: undefined })
  if (extraStderr) inv.stderr = (inv.stderr + extraStderr).slice(0, STDERR_LIMIT)
}

// The volumes attached to an instance, except its root, as sparse files of their moto size.
async function attachedVolumes(instanceId) {
  const out = await ec2.send(
    new DescribeVolumesCommand({ Filters: [{ Name: 'attachment.instance-id', Values: [instanceId] }] })
  )
  const [instance] = (await ec2Instances()).filter((i) => i.InstanceId === instanceId)
  const volumes = []
  for (const v of out.Volumes ?? []) {
    const a = (v.Attachments ?? []).find((x) => x.InstanceId === instanceId && x.State === 'attached')
    if (!a || a.Device === instance?.RootDeviceName) continue
    const file = join(volumeDir, `${v.VolumeId}.img`)
    if (!volumeFiles[v.VolumeId]) execFileSync('truncate', ['-s', `${v.Size}G`, file])
    volumeFiles[v.VolumeId] = file
    volumes.push({ id: v.VolumeId, device: a.Device, file })
  }
  return volumes
}

// The links a volume has on EC2: by volume id (Nitro NVMe) and by the attachment's device name.
const deviceLinks = (v) => {
  const name = v.device.replace(/^\/dev\//, '')
  const names = new Set([name, name.replace(/^sd/, 'xvd'), name.replace(/^xvd/, 'sd')])
  return [`disk/by-id/nvme-Amazon_Elastic_Block_Store_${v.id.replace('-', '')}`, ...names]
}

/** The bash text run in a fresh mount namespace: /dev becomes an overlay with the volumes' links. */
function namespacePrelude(work, volumes, script) {
  const o = quote(join(work, 'dev'))
  const lines = [
    'set -e',
    `mkdir -p ${o}/upper ${o}/work ${o}/orig`,
    `mount --rbind /dev ${o}/orig`,
    `mount -t overlay overlay -o lowerdir=/dev,upperdir=${o}/upper,workdir=${o}/work /dev`,
    `for m in pts shm mqueue hugepages; do if mountpoint -q ${o}/orig/$m; then mount --bind ${o}/orig/$m /dev/$m; fi; done`,
    `umount -l ${o}/orig`,
    'mkdir -p /dev/disk/by-id'
  ]
  for (const v of volumes)
    for (const link of deviceLinks(v)) lines.push(`ln -sfn ${quote(v.loop)} /dev/${link}`)
  lines.push('set +e', `exec bash ${quote(script)}`)
  return `${lines.join('\n')}\n`
}

/** Whether this machine lets us build the command's private /dev: tried once, for real. */
function probeNamespaces() {
  if (process.getuid?.() !== 0 || !works('losetup', ['--version'])) return false
  const work = mkdtempSync(join(dir, 'probe-'))
  writeFileSync(join(work, 'prelude.sh'), namespacePrelude(work, [], '/dev/null'))
  const ok = works('unshare', ['-m', '--propagation', 'private', 'bash', join(work, 'prelude.sh')])
  rmSync(work, { recursive: true, force: true })
  return ok
}

async function run(command, inv) {
  if (inv.status !== 'Pending') return // cancelled before it started
  const work = mkdtempSync(join(dir, `run-${inv.instanceId}-`))
  const script = join(work, '_script.sh')
  writeFileSync(script, `${(command.Parameters.commands ?? []).join('\n')}\n`)
  mkdirSync(join(work, 'cwd'))
  const volumes = await attachedVolumes(inv.instanceId)
  // A CancelCommand that came while the volumes were looked up has ended it: the agent never runs
  // a cancelled command, and its Cancelled status must not become InProgress again.
  if (inv.status !== 'Pending') {
    rmSync(work, { recursive: true, force: true })
    return
  }
  const childEnv = {
    PATH: `${binDir}:${env.PATH}`,
    HOME: env.HOME ?? '/root',
    LANG: 'C.UTF-8',
    AWS_ENDPOINT_URL: motoUrl,
    AWS_REGION: region,
    AWS_ACCESS_KEY_ID: credentials.accessKeyId,
    AWS_SECRET_ACCESS_KEY: credentials.secretAccessKey
  }
  let argv
  if (namespaces) {
    for (const v of volumes)
      v.loop = execFileSync('losetup', ['-f', '--show', '-P', v.file], { encoding: 'utf8' }).trim()
    writeFileSync(join(work, 'prelude.sh'), namespacePrelude(work, volumes, script))
    argv = ['unshare', '-m', '--propagation', 'private', 'bash', join(work, 'prelude.sh')]
  } else {
    // Without root: the links point at the files; the script would have to look here (a hook).
    childEnv.I2E_FAKE_DEV_DIR = join(work, 'fake-dev')
    for (const v of volumes)
      for (const link of deviceLinks(v)) {
        mkdirSync(join(childEnv.I2E_FAKE_DEV_DIR, link, '..'), { recursive: true })
        symlinkSync(v.file, join(childEnv.I2E_FAKE_DEV_DIR, link))
      }
    argv = ['bash', script]
  }
  const child = spawn(argv[0], argv.slice(1), { cwd: join(work, 'cwd'), env: childEnv, detached: true })
  Object.assign(inv, { child, status: 'InProgress', details: 'InProgress', started: Date.now() })
  child.stdout.setEncoding('utf8').on('data', (s) => {
    inv.stdout = (inv.stdout + s).slice(0, STDOUT_LIMIT)
  })
  child.stderr.setEncoding('utf8').on('data', (s) => {
    inv.stderr = (inv.stderr + s).slice(0, STDERR_LIMIT)
  })
  const timeoutSeconds = Number(command.Parameters.executionTimeout?.[0] ?? 3600)
  const timer = setTimeout(() => {
    inv.timedOut = true
    kill(child)
  }, timeoutSeconds * 1000)
  const [code, signal] = await new Promise((resolve) => child.on('close', (c, s) => resolve([c, s])))
  clearTimeout(timer)
  for (const v of volumes) if (v.loop) works('losetup', ['-d', v.loop])
  rmSync(work, { recursive: true, force: true })
  if (inv.cancelled) finish(inv, 'Cancelled', 'Cancelled', -1)
  else if (inv.timedOut) finish(inv, 'TimedOut', 'ExecutionTimedOut', -1)
  else if (code === 0) finish(inv, 'Success', 'Success', 0)
  else
    finish(
      inv,
      'Failed',
      'Failed',
      code ?? 128 + constants.signals[signal],
      signal ? `killed by ${signal}\n` : ''
    )
}

/** Stops a command's whole process group: TERM, then KILL if it lingers. */
function kill(child) {
  const signalGroup = (signal) => {
    try {
      process.kill(-child.pid, signal)
    } catch {
      // already gone
    }
  }
  signalGroup('SIGTERM')
  setTimeout(() => child.exitCode === null && child.signalCode === null && signalGroup('SIGKILL'), 2000)
}

function invocationOf(commandId, instanceId) {
  const inv = commands.get(commandId)?.invocations.get(instanceId)
  if (!inv || Date.now() - inv.requested < visibleAfterMs) return undefined
  return inv
}

function getCommandInvocation(req) {
  const entry = commands.get(req.CommandId)
  const inv = invocationOf(req.CommandId, req.InstanceId)
  if (!inv) throw new ApiError('InvocationDoesNotExist', 'An error occurred (InvocationDoesNotExist)')
  const done = inv.ended !== undefined
  return {
    CommandId: req.CommandId,
    InstanceId: inv.instanceId,
    Comment: entry.command.Comment,
    DocumentName: entry.command.DocumentName,
    DocumentVersion: entry.command.DocumentVersion,
    PluginName: 'aws:runShellScript',
    ResponseCode: inv.code,
    ExecutionStartDateTime: iso(inv.started),
    ExecutionElapsedTime: inv.started ? `PT${((inv.ended ?? Date.now()) - inv.started) / 1000}S` : '',
    ExecutionEndDateTime: iso(inv.ended),
    Status: inv.status,
    StatusDetails: inv.details,
    // Like SSM, the output arrives when the command ends.
    StandardOutputContent: done ? inv.stdout : '',
    StandardOutputUrl: '',
    StandardErrorContent: done ? inv.stderr : '',
    StandardErrorUrl: '',
    CloudWatchOutputConfig: entry.command.CloudWatchOutputConfig
  }
}

function listCommandInvocations(req) {
  if (req.CommandId && !commands.has(req.CommandId))
    throw new ApiError('InvalidCommandId', 'Invalid command id.')
  const list = []
  for (const [id, { command, invocations }] of commands) {
    if (req.CommandId && id !== req.CommandId) continue
    for (const inv of invocations.values()) {
      if (req.InstanceId && inv.instanceId !== req.InstanceId) continue
      if (!invocationOf(id, inv.instanceId)) continue
      const output = inv.ended
        ? inv.stderr
          ? `${inv.stdout}\n----------ERROR-------\n${inv.stderr}`
          : inv.stdout
        : ''
      list.push({
        CommandId: id,
        InstanceId: inv.instanceId,
        Comment: command.Comment,
        DocumentName: command.DocumentName,
        DocumentVersion: command.DocumentVersion,
        RequestedDateTime: epoch(inv.requested),
        Status: inv.status,
        StatusDetails: inv.details,
        StandardOutputUrl: '',
        StandardErrorUrl: '',
        CommandPlugins: req.Details
          ? [
              {
                Name: 'aws:runShellScript',
                Status: inv.status,
                StatusDetails: inv.details,
                ResponseCode: inv.code,
                ResponseStartDateTime: epoch(inv.started),
                ResponseFinishDateTime: epoch(inv.ended),
                Output: output.slice(0, PLUGIN_OUTPUT_LIMIT),
                StandardOutputUrl: '',
                StandardErrorUrl: ''
              }
            ]
          : [],
        CloudWatchOutputConfig: command.CloudWatchOutputConfig
      })
    }
  }
  return { CommandInvocations: list }
}

function cancelCommand(req) {
  const entry = commands.get(req.CommandId)
  if (!entry) throw new ApiError('InvalidCommandId', 'Invalid command id.')
  for (const inv of entry.invocations.values()) {
    if (req.InstanceIds?.length && !req.InstanceIds.includes(inv.instanceId)) continue
    if (inv.status === 'Pending') {
      clearTimeout(inv.timer)
      finish(inv, 'Cancelled', 'Cancelled', -1)
    } else if (inv.status === 'InProgress' && inv.child) {
      inv.cancelled = true
      inv.details = 'Cancelling'
      kill(inv.child)
    }
  }
  return {}
}

const handlers = {
  DescribeInstanceInformation: describeInstanceInformation,
  SendCommand: (req) =>
    req.DocumentName === 'AWS-RunShellScript' && req.InstanceIds?.length ? sendCommand(req) : undefined,
  GetCommandInvocation: (req) => (commands.has(req.CommandId) ? getCommandInvocation(req) : undefined),
  ListCommandInvocations: listCommandInvocations,
  CancelCommand: cancelCommand
}

/** Sends the request on to moto as it came, and moto's answer back as it came. */
function forward(req, res, body) {
  const url = new URL(req.url, motoUrl)
  const out = httpRequest(url, { method: req.method, headers: req.headers }, (answer) => {
    res.writeHead(answer.statusCode ?? 502, answer.headers)
    answer.pipe(res)
  })
  out.on('error', (err) => {
    res.writeHead(502, { 'content-type': 'text/plain' })
    res.end(`ssm-standin: moto did not answer: ${err.message}`)
  })
  out.end(body)
}

function reply(res, status, payload, errorType) {
  const headers = { 'content-type': 'application/x-amz-json-1.1', 'x-amzn-requestid': randomUUID() }
  if (errorType) headers['x-amzn-errortype'] = errorType
  res.writeHead(status, headers)
  res.end(JSON.stringify(payload))
}

const server = createServer(async (req, res) => {
  const chunks = []
  for await (const c of req) chunks.push(c)
  const body = Buffer.concat(chunks)
  if (req.method === 'GET' && req.url === '/_standin/volumes') return reply(res, 200, volumeFiles)
  const action = String(req.headers['x-amz-target'] ?? '').replace(/^AmazonSSM\./, '')
  const handler = Object.hasOwn(handlers, action) ? handlers[action] : undefined
  if (!handler) return forward(req, res, body)
  try {
    const answer = await handler(JSON.parse(body.toString('utf8') || '{}'))
    if (answer === undefined) return forward(req, res, body)
    reply(res, 200, answer)
  } catch (err) {
    const code = err instanceof ApiError ? err.code : 'InternalServerError'
    if (!(err instanceof ApiError)) log(`${action} failed: ${err.stack ?? err}`)
    reply(res, err instanceof ApiError ? 400 : 500, { __type: code, message: err.message }, code)
  }
})

// Stops the commands under way (they detach their loop devices as they end), then removes the files.
async function shutdown() {
  server.close()
  for (const { invocations } of commands.values())
    for (const inv of invocations.values()) {
      clearTimeout(inv.timer)
      if (inv.child) kill(inv.child)
    }
  await Promise.race([Promise.allSettled(running), new Promise((resolve) => setTimeout(resolve, 5000))])
  if (ownDir) rmSync(dir, { recursive: true, force: true })
  process.exit(0)
}
process.on('SIGTERM', shutdown)
process.on('SIGINT', shutdown)

namespaces = probeNamespaces()
log(
  namespaces
    ? 'volumes appear as loop devices in a private /dev'
    : 'no root, unshare, overlay or losetup: volumes appear only in I2E_FAKE_DEV_DIR'
)
server.listen(Number(env.I2E_STANDIN_PORT ?? 0), '127.0.0.1', () => {
  process.stdout.write(`AWS_ENDPOINT_URL_SSM=http://127.0.0.1:${server.address().port}\n`)
})
