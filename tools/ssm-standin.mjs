// SSM stand-in for the end-to-end tests: test infrastructure, not product (see tools/EMULATOR.md).
//
// moto records SSM Run Command but executes nothing (always Success, empty output) and lacks
// DescribeInstanceInformation, ListCommandInvocations and CancelCommand. Point AWS_ENDPOINT_URL_SSM
// here: this server answers those calls and AWS-RunShellScript by really running the commands on
// this machine the way the SSM agent does, and forwards every other SSM request to moto unchanged.
//
//   node tools/ssm-standin.mjs            (I2E_MOTO_URL names moto; prints AWS_ENDPOINT_URL_SSM=…)
//   import { startStandin } from './ssm-standin.mjs'   (the same, in-process; returns { url, close })
//
// How the agent runs a command, and so how this runs it (amazon-ssm-agent at commit 1c217c8, 2024):
// - agent/plugins/runscript/runshellscript.go:32-34: shellScriptName = "_script.sh",
//   shellCommand = "sh", shellArgs = ["-c"]; runscript.go:178-192 writes the commands, joined by
//   "\n" (pluginutil.go:84-85, mode rwx), to <orchestration dir>/_script.sh and runs
//   `sh -c <that path>`. The file has no #! line, so /bin/sh itself reads it: dash on Ubuntu and
//   Debian. Here: `dash -c <path>` when dash is installed (I2E_STANDIN_SHELL overrides).
// - agent/executers/executers_unix.go:29-33 prepareProcess: Setpgid, the shell leads its own
//   process group; executers_unix.go:42-53 killProcess: syscall.Kill(-pid, SIGKILL), the whole
//   group at once, nothing before it. executers.go:325-351 does that when executionTimeout passes
//   or the command is cancelled, stops copying its output at once (stopStdout/stopStderr) and sets
//   exit code 137 (appconfig/constants_unix.go:97 CommandStoppedPreemptivelyExitCode);
//   pluginutil_unix.go:34-50 GetStatus turns 137 into Cancelled (cancel) or TimedOut. So no trap
//   of the script runs: whatever must be undone needs another command (src/scripts/cleanup.sh).
// - Output: appconfig/constants.go:228-229 and iohandler.go:60-62: StandardOutputContent keeps
//   24,000 characters, StandardErrorContent 8,000, cut by pluginutil.go:43-57 StringPrefix, which
//   ends a cut text with "--output truncated--". ListCommandInvocations' CommandPlugins[].Output
//   is iohandler.go:436-472 TruncateOutput(stdout, stderr, 2500) (MaximumPluginOutputSize).
//   Go's len() counts bytes: so do the cuts here.
//
// A command for an instance sees that instance's attached moto volumes as block devices, as on
// EC2: each volume is a sparse file (its moto size) on a loop device. Each instance is one
// "machine": a mount namespace of its own, kept for the stand-in's lifetime (so a filesystem a
// killed command left mounted stays mounted, as on EC2), whose /dev is an overlay holding
// /dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol<hex>, /dev/sdX and /dev/xvdX links. Needs root
// (unshare, nsenter, mount, losetup); otherwise it falls back to I2E_FAKE_DEV_DIR (see EMULATOR.md).
//
// Test controls: GET /_standin/volumes → {"vol-…": "/path/to/file"}; GET /_standin/holders?volume=vol-…
// → what still holds that volume on its machine (mounts, loop devices), i.e. whether a detach
// would hang; POST /_standin/offline {"instanceId", "offline": true|false} → the agent stops (or
// resumes) answering: PingStatus ConnectionLost, commands stay Pending until their delivery
// timeout (TimeoutSeconds) and end DeliveryTimedOut.
import { execFileSync, spawn } from 'node:child_process'
import { randomUUID } from 'node:crypto'
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync
} from 'node:fs'
import { createServer } from 'node:http'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { DescribeInstancesCommand, DescribeVolumesCommand, EC2Client } from '@aws-sdk/client-ec2'
import { readBody, relay } from './http-relay.mjs'

export const STDOUT_LIMIT = 24000 // appconfig/constants.go:228 MaxStdoutLength
export const STDERR_LIMIT = 8000 // appconfig/constants.go:229 MaxStderrLength
export const PLUGIN_OUTPUT_LIMIT = 2500 // iohandler.go:33 MaximumPluginOutputSize
export const TRUNCATED_SUFFIX = '--output truncated--' // iohandler.go:62 OutputTruncatedSuffix
const STOPPED_EXIT_CODE = 137 // constants_unix.go:97: 128 + SIGKILL

/** pluginutil.go:43-57 StringPrefix, in bytes as Go counts them. */
export function stringPrefix(text, max, suffix = TRUNCATED_SUFFIX) {
  const bytes = Buffer.from(text)
  if (bytes.length < max) return text
  return bytes.subarray(0, max - suffix.length).toString() + suffix
}

/** iohandler.go:436-472 TruncateOutput: what ListCommandInvocations shows as a plugin's Output. */
export function truncateOutput(stdoutText, stderrText, capacity = PLUGIN_OUTPUT_LIMIT) {
  const out = Buffer.from(stdoutText)
  const err = Buffer.from(stderrText)
  const errTitle = '\n----------ERROR-------\n'
  const truncateOut = '\n---Output truncated---'
  const truncateError = '\n---Error truncated----'
  const title = err.length > 0 ? errTitle : ''
  const available = capacity - title.length
  const cut = (b, n) => b.subarray(0, n).toString()
  if (out.length + err.length < available) return `${stdoutText}${title}${stderrText}`
  if (out.length > available / 2 && err.length > available / 2) {
    const size = available - truncateError.length - truncateOut.length
    return `${cut(out, Math.trunc(size / 2))}${truncateOut}${title}${cut(err, Math.trunc(size / 2))}${truncateError}`
  }
  if (out.length <= available / 2)
    return `${stdoutText}${title}${cut(err, available - truncateError.length - out.length)}${truncateError}`
  return `${cut(out, available - truncateOut.length - err.length)}${truncateOut}${title}${stderrText}`
}

class ApiError extends Error {
  constructor(code, message) {
    super(message)
    this.code = code
  }
}

const epoch = (ms) => (ms ? ms / 1000 : undefined) // the JSON protocol's timestamps
const iso = (ms) => (ms ? new Date(ms).toISOString() : '')
const works = (cmd, args) => {
  try {
    execFileSync(cmd, args, { stdio: 'ignore' })
    return true
  } catch {
    return false
  }
}

/** A word for bash: the text in single quotes. */
const quote = (s) => `'${String(s).replace(/'/g, `'\\''`)}'`

/** The links a volume has on EC2: by volume id (Nitro NVMe) and by the attachment's device name. */
const deviceLinks = (v) => {
  const name = v.device.replace(/^\/dev\//, '')
  const names = new Set([name, name.replace(/^sd/, 'xvd'), name.replace(/^xvd/, 'sd')])
  return [`disk/by-id/nvme-Amazon_Elastic_Block_Store_${v.id.replace('-', '')}`, ...names]
}

/**
 * The bash text that makes a machine: a private /dev overlay, then it waits to be entered. Written
 * to a file in the machine's work folder and run as `bash FILE`: its folder is the work folder.
 */
function machinePrelude(final) {
  return `${[
    'set -e',
    'o=$(dirname -- "$0")/dev',
    'mkdir -p "$o/upper" "$o/work" "$o/orig"',
    'mount --rbind /dev "$o/orig"', // kept: devOverlay mounts a fresh overlay of it
    devOverlay('"$o"'),
    'mkdir -p /dev/disk/by-id',
    final
  ].join('\n')}\n`
}

/**
 * The machine's /dev: an overlay of the host's /dev (lower, read-only) and the machine's own device
 * links (upper). An overlay keeps what it once looked up in the lower /dev: when a loop device is
 * used again by a later volume, the kernel gives its partitions new nodes (blkext minors are handed
 * out afresh, and other loop users take the old ones), and the old overlay still shows the former
 * /dev/loopNp1, whose device no longer exists: e2fsck then fails with ENXIO ("Possibly
 * non-existent or swap device?"). So the overlay is mounted afresh whenever the machine's loop
 * devices change (syncDevices), as a real instance's devtmpfs and udev always show the live nodes.
 */
function devOverlay(o) {
  return [
    `mount -t overlay overlay -o lowerdir=${o}/orig,upperdir=${o}/upper,workdir=${o}/work /dev`,
    `for m in pts shm mqueue hugepages; do if mountpoint -q ${o}/orig/$m; then mount --bind ${o}/orig/$m /dev/$m; fi; done`
  ].join('\n')
}

/**
 * Starts the stand-in. Options (each defaults to the environment variable in brackets):
 * motoUrl (I2E_MOTO_URL), port (I2E_STANDIN_PORT), dir (I2E_STANDIN_DIR), visibleAfterMs
 * (I2E_STANDIN_VISIBLE_AFTER_MS, 500), startAfterMs (I2E_STANDIN_START_AFTER_MS, 1000), shell
 * (I2E_STANDIN_SHELL, dash), commandEnv (I2E_STANDIN_COMMAND_ENV, JSON: extra environment of the
 * commands, for test harnesses), deliveryTimeoutScale (I2E_STANDIN_DELIVERY_TIMEOUT_SCALE, 1: a
 * factor on TimeoutSeconds, so a test need not wait the minimum 30 s for DeliveryTimedOut).
 */
export async function startStandin(options = {}) {
  const env = process.env
  const motoUrl = (options.motoUrl ?? env.I2E_MOTO_URL ?? '').replace(/\/$/, '')
  if (!motoUrl) throw new Error('set I2E_MOTO_URL to the moto server (tools/emulator.sh start prints it)')
  const region = env.AWS_REGION ?? env.AWS_DEFAULT_REGION ?? 'us-east-1'
  const credentials = {
    accessKeyId: env.AWS_ACCESS_KEY_ID ?? 'testing',
    secretAccessKey: env.AWS_SECRET_ACCESS_KEY ?? 'testing'
  }
  const ec2 = new EC2Client({ endpoint: motoUrl, region, credentials })
  // Eventual consistency, as on AWS: an invocation is unknown for a moment, then Pending for a moment.
  const visibleAfterMs = Number(options.visibleAfterMs ?? env.I2E_STANDIN_VISIBLE_AFTER_MS ?? 500)
  const startAfterMs = Number(options.startAfterMs ?? env.I2E_STANDIN_START_AFTER_MS ?? 1000)
  const deliveryScale = Number(options.deliveryTimeoutScale ?? env.I2E_STANDIN_DELIVERY_TIMEOUT_SCALE ?? 1)
  const commandEnv = options.commandEnv ?? JSON.parse(env.I2E_STANDIN_COMMAND_ENV || '{}')
  const shell = options.shell ?? env.I2E_STANDIN_SHELL ?? (works('dash', ['-c', 'exit 0']) ? 'dash' : 'sh')
  const log = options.log ?? ((msg) => process.stderr.write(`ssm-standin: ${msg}\n`))

  const ownDir = !(options.dir ?? env.I2E_STANDIN_DIR)
  const dir = options.dir ?? env.I2E_STANDIN_DIR ?? mkdtempSync(join(tmpdir(), 'i2e-ssm-standin-'))
  const binDir = join(dir, 'bin')
  const volumeDir = join(dir, 'volumes')
  mkdirSync(binDir, { recursive: true })
  mkdirSync(volumeDir, { recursive: true })
  const shim = fileURLToPath(new URL('./aws-shim.mjs', import.meta.url))
  writeFileSync(join(binDir, 'aws'), `#!/bin/sh\nexec '${process.execPath}' '${shim}' "$@"\n`)
  chmodSync(join(binDir, 'aws'), 0o755)

  /** commandId → { command, invocations: Map(instanceId → invocation) } */
  const commands = new Map()
  const volumeFiles = {}
  /** instanceId → { pid, holder, volumes: Map(volumeId → { loop, links }) } (with namespaces) */
  const machines = new Map()
  const offline = new Set()
  const running = new Set() // promises of the commands under way, awaited on close

  async function ec2Instances() {
    const out = await ec2.send(new DescribeInstancesCommand({}))
    return (out.Reservations ?? []).flatMap((r) => r.Instances ?? [])
  }

  // Online when running in moto's EC2 and not switched off by a test; a stopped instance has lost
  // its agent's connection.
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
        PingStatus: state === 'running' && !offline.has(i.InstanceId) ? 'Online' : 'ConnectionLost',
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

  /** running → the agent may answer; gone → Undeliverable; else (stopped…) not deliverable now. */
  async function instanceState(instanceId) {
    const found = (await ec2Instances()).find((i) => i.InstanceId === instanceId)
    const state = found?.State?.Name
    if (!found || state === 'terminated' || state === 'shutting-down') return 'gone'
    return state === 'running' && !offline.has(instanceId) ? 'online' : 'offline'
  }

  // SendCommand: an instance SSM does not know as managed (unknown, stopped, terminated) is refused
  // with InvalidInstanceId ("the instance isn't running or registered", API_SendCommand); a running
  // one whose agent stopped answering gets the command, which waits for delivery.
  async function sendCommand(req) {
    const ids = req.InstanceIds
    const known = new Set()
    for (const i of await ec2Instances()) if (i.State?.Name === 'running') known.add(i.InstanceId)
    const bad = ids.filter((id) => !known.has(id))
    if (bad.length)
      throw new ApiError(
        'InvalidInstanceId',
        `Instances [[${bad.join(', ')}]] not in a valid state for account`
      )
    const now = Date.now()
    const timeoutSeconds = req.TimeoutSeconds ?? 3600
    const command = {
      CommandId: randomUUID(),
      DocumentName: req.DocumentName,
      DocumentVersion: req.DocumentVersion ?? '$DEFAULT',
      Comment: req.Comment ?? '',
      Parameters: req.Parameters ?? {},
      InstanceIds: ids,
      Targets: [],
      RequestedDateTime: epoch(now),
      ExpiresAfter: epoch(now + timeoutSeconds * 1000),
      Status: 'Pending',
      StatusDetails: 'Pending',
      TargetCount: ids.length,
      CompletedCount: 0,
      ErrorCount: 0,
      DeliveryTimedOutCount: 0,
      TimeoutSeconds: timeoutSeconds,
      CloudWatchOutputConfig: req.CloudWatchOutputConfig ?? { CloudWatchOutputEnabled: false }
    }
    const invocations = new Map()
    for (const instanceId of ids) {
      const inv = {
        instanceId,
        requested: now,
        deliverBy: now + timeoutSeconds * 1000 * deliveryScale,
        status: 'Pending',
        details: 'Pending',
        code: -1,
        stdout: Buffer.alloc(0),
        stderr: Buffer.alloc(0)
      }
      invocations.set(instanceId, inv)
      inv.timer = setTimeout(() => deliver(command, inv), startAfterMs)
    }
    commands.set(command.CommandId, { command, invocations })
    return { Command: command }
  }

  /** Hands the command to the agent once the instance answers, until its delivery timeout. */
  async function deliver(command, inv) {
    inv.timer = undefined
    if (inv.status !== 'Pending') return // cancelled before it was delivered
    let state
    try {
      state = await instanceState(inv.instanceId)
    } catch (err) {
      state = 'offline'
      log(`could not read the state of ${inv.instanceId}: ${err.message}`)
    }
    if (inv.status !== 'Pending') return
    if (state === 'gone') return finish(inv, 'Failed', 'Undeliverable', -1)
    if (state === 'offline') {
      if (Date.now() >= inv.deliverBy) return finish(inv, 'TimedOut', 'DeliveryTimedOut', -1)
      inv.timer = setTimeout(() => deliver(command, inv), 200)
      return
    }
    const done = run(command, inv).catch((err) => {
      if (!inv.ended) finish(inv, 'Failed', 'Failed', 1, `ssm-standin: ${err.message}\n`)
    })
    running.add(done)
    done.finally(() => running.delete(done))
  }

  // A terminal status is never replaced: a command cancelled while it was being started stays
  // Cancelled (the start checks the status again after every wait).
  function finish(inv, status, details, code, extraStderr = '') {
    if (inv.ended) return
    Object.assign(inv, { status, details, code, ended: Date.now(), child: undefined })
    if (extraStderr) inv.stderr = Buffer.concat([inv.stderr, Buffer.from(extraStderr)])
  }

  // The volumes attached to an instance, except its root, as sparse files of their moto size.
  async function attachedVolumes(instanceId) {
    const out = await ec2.send(
      new DescribeVolumesCommand({
        Filters: [{ Name: 'attachment.instance-id', Values: [instanceId] }]
      })
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

  /** The instance's machine: its mount namespace, made on first use (root only). */
  async function machineOf(instanceId) {
    const known = machines.get(instanceId)
    if (known) return known
    const work = mkdtempSync(join(dir, `machine-${instanceId}-`))
    writeFileSync(join(work, 'prelude.sh'), machinePrelude('echo ready\nexec sleep infinity'))
    const holder = spawn('unshare', ['-m', '--propagation', 'private', 'bash', join(work, 'prelude.sh')], {
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true
    })
    let errors = ''
    holder.stderr.setEncoding('utf8').on('data', (s) => {
      errors += s
    })
    await new Promise((resolveReady, reject) => {
      holder.stdout.setEncoding('utf8').on('data', (s) => s.includes('ready') && resolveReady())
      holder.on('exit', () => reject(new Error(`the machine of ${instanceId} did not start: ${errors}`)))
    })
    const machine = { pid: holder.pid, holder, work, volumes: new Map() }
    machines.set(instanceId, machine)
    return machine
  }

  /** Runs a small bash text inside a machine's mount namespace, with args as its $1, $2, … */
  const inMachine = (machine, text, ...args) =>
    execFileSync('nsenter', ['-t', String(machine.pid), '-m', '--', 'bash', '-c', text, 'bash', ...args], {
      stdio: ['ignore', 'ignore', 'pipe']
    })

  /** Makes the machine's devices match moto's attachments: a loop device and links per volume. */
  async function syncDevices(machine, volumes) {
    const now = new Map(volumes.map((v) => [v.id, v]))
    let changed = false
    for (const [id, held] of machine.volumes) {
      if (now.get(id)?.device === held.device) continue
      inMachine(machine, held.links.map((l) => `rm -f /dev/${l}`).join('\n'))
      works('losetup', ['-d', held.loop]) // a busy device is released when its last user goes
      machine.volumes.delete(id)
      changed = true
    }
    for (const v of volumes) {
      if (machine.volumes.has(v.id)) continue
      const loop = execFileSync('losetup', ['-f', '--show', '-P', v.file], {
        encoding: 'utf8'
      }).trim()
      const links = deviceLinks(v)
      inMachine(machine, links.map((l) => `ln -sfn "$1" /dev/${l}`).join('\n'), loop)
      machine.volumes.set(v.id, { loop, links, device: v.device })
      changed = true
    }
    // The links live in the upper layer and stay; the host's nodes are looked up afresh.
    if (changed) inMachine(machine, `umount -l /dev\n${devOverlay(quote(join(machine.work, 'dev')))}`)
  }

  /** Whether this machine lets us build the instances' private /dev: tried once, for real. */
  function probeNamespaces() {
    if (process.getuid?.() !== 0 || !works('losetup', ['--version']) || !works('nsenter', ['--version']))
      return false
    const work = mkdtempSync(join(dir, 'probe-'))
    writeFileSync(join(work, 'prelude.sh'), machinePrelude('exit 0'))
    const ok = works('unshare', ['-m', '--propagation', 'private', 'bash', join(work, 'prelude.sh')])
    rmSync(work, { recursive: true, force: true })
    return ok
  }
  const namespaces = probeNamespaces()

  async function run(command, inv) {
    const work = mkdtempSync(join(dir, `run-${inv.instanceId}-`))
    const script = join(work, '_script.sh')
    writeFileSync(script, `${(command.Parameters.commands ?? []).join('\n')}\n`, { mode: 0o700 })
    mkdirSync(join(work, 'cwd'))
    const volumes = await attachedVolumes(inv.instanceId)
    const childEnv = {
      PATH: `${binDir}:${env.PATH}`,
      HOME: env.HOME ?? '/root',
      LANG: 'C.UTF-8',
      AWS_ENDPOINT_URL: motoUrl,
      AWS_REGION: region,
      AWS_ACCESS_KEY_ID: credentials.accessKeyId,
      AWS_SECRET_ACCESS_KEY: credentials.secretAccessKey,
      ...commandEnv
    }
    let argv = [shell, '-c', script]
    if (namespaces) {
      const machine = await machineOf(inv.instanceId)
      await syncDevices(machine, volumes)
      argv = ['nsenter', '-t', String(machine.pid), '-m', '--', ...argv]
    } else {
      // Without root: the links point at the files; the script would have to look here (a hook).
      childEnv.I2E_FAKE_DEV_DIR = join(work, 'fake-dev')
      for (const v of volumes)
        for (const link of deviceLinks(v)) {
          mkdirSync(join(childEnv.I2E_FAKE_DEV_DIR, link, '..'), { recursive: true })
          symlinkSync(v.file, join(childEnv.I2E_FAKE_DEV_DIR, link))
        }
    }
    if (inv.status !== 'Pending') return // cancelled while the devices were being prepared
    // detached: setsid, so the shell leads its own process group, as with Setpgid. nsenter for a
    // mount namespace alone execs the shell in place, so the group is the shell's.
    const child = spawn(argv[0], argv.slice(1), {
      cwd: join(work, 'cwd'),
      env: childEnv,
      detached: true
    })
    Object.assign(inv, { child, status: 'InProgress', details: 'InProgress', started: Date.now() })
    const keep = (which) => (chunk) => {
      if (inv.stopped) return // the agent stops copying the output when it kills the command
      inv[which] = Buffer.concat([inv[which], chunk]).subarray(0, STDOUT_LIMIT + 1)
    }
    child.stdout.on('data', keep('stdout'))
    child.stderr.on('data', keep('stderr'))
    const timeoutSeconds = Number(command.Parameters.executionTimeout?.[0] ?? 3600)
    const timer = setTimeout(() => {
      inv.timedOut = true
      kill(inv)
    }, timeoutSeconds * 1000)
    // Like Go's cmd.Wait, a normal end waits for the output pipes to close (a background process
    // that keeps them open keeps the command InProgress); a killed command ends at once.
    const [code, signal] = await new Promise((resolveEnd) => {
      child.on('close', (c, s) => resolveEnd([c, s]))
      child.on('exit', (c, s) => inv.stopped && resolveEnd([c, s]))
    })
    clearTimeout(timer)
    rmSync(work, { recursive: true, force: true })
    if (inv.cancelled) finish(inv, 'Cancelled', 'Cancelled', STOPPED_EXIT_CODE)
    else if (inv.timedOut) finish(inv, 'TimedOut', 'ExecutionTimedOut', STOPPED_EXIT_CODE)
    else if (code === 0) finish(inv, 'Success', 'Success', 0)
    // executers.go:355-360: the exit status; a shell killed by a signal reports -1 there.
    else finish(inv, 'Failed', 'Failed', code ?? -1, signal ? `killed by ${signal}\n` : '')
  }

  /** executers_unix.go:52: syscall.Kill(-pid, SIGKILL): the whole process group, no warning. */
  function kill(inv) {
    inv.stopped = true
    try {
      process.kill(-inv.child.pid, 'SIGKILL')
    } catch {
      // already gone
    }
  }

  function invocationOf(commandId, instanceId) {
    const inv = commands.get(commandId)?.invocations.get(instanceId)
    if (!inv || Date.now() - inv.requested < visibleAfterMs) return undefined
    return inv
  }

  const outputOf = (inv) => ({
    stdout: inv.ended ? stringPrefix(inv.stdout.toString(), STDOUT_LIMIT) : '',
    stderr: inv.ended ? stringPrefix(inv.stderr.toString(), STDERR_LIMIT) : ''
  })

  function getCommandInvocation(req) {
    const entry = commands.get(req.CommandId)
    const inv = invocationOf(req.CommandId, req.InstanceId)
    if (!inv) throw new ApiError('InvocationDoesNotExist', 'An error occurred (InvocationDoesNotExist)')
    const { stdout, stderr } = outputOf(inv)
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
      StandardOutputContent: stdout,
      StandardOutputUrl: '',
      StandardErrorContent: stderr,
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
        const output = inv.ended ? truncateOutput(inv.stdout.toString(), inv.stderr.toString()) : ''
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
                  Output: output,
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
        kill(inv)
      }
    }
    return {}
  }

  /** What still holds a volume on its machine: mounts of it, its partitions, or loops over them. */
  function holdersOf(volumeId) {
    for (const [instanceId, machine] of machines) {
      const held = machine.volumes.get(volumeId)
      if (!held) continue
      const name = held.loop.replace('/dev/', '')
      const devices = new Set([name])
      for (const entry of readdirSync(`/sys/block/${name}`))
        if (entry.startsWith(`${name}p`)) devices.add(entry)
      const loops = []
      for (const other of readdirSync('/sys/block').filter((b) => b.startsWith('loop'))) {
        let backing = ''
        try {
          backing = readFileSync(`/sys/block/${other}/loop/backing_file`, 'utf8').trim()
        } catch {
          continue // not in use
        }
        if (devices.has(backing.replace('/dev/', ''))) {
          loops.push(`/dev/${other}`)
          devices.add(other)
        }
      }
      const numbers = new Map()
      for (const d of devices) {
        const sys = existsSync(`/sys/block/${d}/dev`) ? `/sys/block/${d}/dev` : `/sys/block/${name}/${d}/dev`
        if (existsSync(sys)) numbers.set(readFileSync(sys, 'utf8').trim(), d)
      }
      const mounts = readFileSync(`/proc/${machine.pid}/mountinfo`, 'utf8')
        .split('\n')
        .map((line) => line.split(' '))
        .filter((f) => numbers.has(f[2]))
        .map((f) => `/dev/${numbers.get(f[2])} on ${f[4]}`)
      return { instanceId, device: held.loop, mounts, loops }
    }
    return { mounts: [], loops: [] }
  }

  const handlers = {
    DescribeInstanceInformation: describeInstanceInformation,
    SendCommand: (req) =>
      req.DocumentName === 'AWS-RunShellScript' && req.InstanceIds?.length ? sendCommand(req) : undefined,
    GetCommandInvocation: (req) => (commands.has(req.CommandId) ? getCommandInvocation(req) : undefined),
    ListCommandInvocations: listCommandInvocations,
    CancelCommand: cancelCommand
  }

  function reply(res, status, payload, errorType) {
    const headers = {
      'content-type': 'application/x-amz-json-1.1',
      'x-amzn-requestid': randomUUID()
    }
    if (errorType) headers['x-amzn-errortype'] = errorType
    res.writeHead(status, headers)
    res.end(JSON.stringify(payload))
  }

  function control(req, res, body) {
    const url = new URL(req.url, 'http://standin')
    if (req.method === 'GET' && url.pathname === '/_standin/volumes') return reply(res, 200, volumeFiles)
    if (req.method === 'GET' && url.pathname === '/_standin/holders')
      return reply(res, 200, holdersOf(url.searchParams.get('volume') ?? ''))
    if (req.method === 'POST' && url.pathname === '/_standin/offline') {
      const { instanceId, offline: off } = JSON.parse(body.toString('utf8'))
      if (off) offline.add(instanceId)
      else offline.delete(instanceId)
      return reply(res, 200, {})
    }
    reply(res, 404, { message: `no such control: ${req.method} ${url.pathname}` })
  }

  const forward = (req, res, body) => relay(motoUrl, req, body, res, 'ssm-standin')
  const server = createServer(async (req, res) => {
    const body = await readBody(req)
    if (req.url?.startsWith('/_standin/')) return control(req, res, body)
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

  // Stops the commands under way, the machines (their mounts go with their namespaces) and the
  // loop devices, then removes the files.
  async function close() {
    server.close()
    for (const { invocations } of commands.values())
      for (const inv of invocations.values()) {
        clearTimeout(inv.timer)
        if (inv.child) kill(inv)
      }
    await Promise.race([Promise.allSettled(running), new Promise((done) => setTimeout(done, 5000))])
    for (const machine of machines.values()) {
      try {
        process.kill(-machine.pid, 'SIGKILL')
      } catch {
        // already gone
      }
      await new Promise((done) => {
        if (machine.holder.exitCode !== null || machine.holder.signalCode !== null) done()
        else machine.holder.once('exit', done)
      })
      for (const held of machine.volumes.values()) works('losetup', ['-d', held.loop])
    }
    if (ownDir) rmSync(dir, { recursive: true, force: true })
  }

  log(
    namespaces
      ? 'volumes appear as loop devices in a private /dev per instance'
      : 'no root, unshare, nsenter, overlay or losetup: volumes appear only in I2E_FAKE_DEV_DIR'
  )
  await new Promise((listening) =>
    server.listen(Number(options.port ?? env.I2E_STANDIN_PORT ?? 0), '127.0.0.1', listening)
  )
  return { url: `http://127.0.0.1:${server.address().port}`, dir, namespaces, close }
}

/** Runs the stand-in as a program: prints the endpoint, serves until SIGTERM/SIGINT. */
export async function main() {
  let standin
  const stop = async () => {
    await standin?.close()
    process.exit(0)
  }
  process.on('SIGTERM', stop)
  process.on('SIGINT', stop)
  try {
    standin = await startStandin()
  } catch (err) {
    process.stderr.write(`ssm-standin: ${err.message}\n`)
    process.exit(2)
  }
  process.stdout.write(`AWS_ENDPOINT_URL_SSM=${standin.url}\n`)
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) await main()
