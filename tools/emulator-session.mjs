// One local "AWS account" for the demo (tools/demo.mjs) and the end-to-end tests
// (__tests__/e2e/convert.test.ts): the moto emulator (tools/emulator.sh) seeded with
// instance-store AMIs, the SSM stand-in (tools/ssm-standin.mjs) in front of moto's SSM, the real
// bundle fixture in an emulated bucket, a running EBS-backed helper instance; then the committed
// dist/index.js run as the Actions runner runs it (INPUT_* variables, GITHUB_* files, STATE_* for
// post), and an inventory of what exists, to check for leftovers without trusting the action's log.
//
// moto executes no remote commands. The stand-in runs the action's AWS-RunShellScript commands on
// this machine, with the volumes attached to the helper as loop devices: that needs root.
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import {
  DescribeImagesCommand,
  DescribeInstancesCommand,
  DescribeSnapshotsCommand,
  DescribeVolumesCommand,
  EC2Client,
  RunInstancesCommand
} from '@aws-sdk/client-ec2'
import { CreateBucketCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3'
import { DescribeParametersCommand, SSMClient } from '@aws-sdk/client-ssm'
import { parse as parseYaml } from 'yaml'
import { startEc2BootStandin } from './ec2-boot-standin.mjs'
import { makeRunnerFiles } from './runner-files.mjs'

export const REPO = fileURLToPath(new URL('..', import.meta.url))
export const DIST_INDEX = join(REPO, 'dist', 'index.js')
/** The real bundle made by ec2-bundle-image (manifest, two parts, test key and certificate). */
export const FIXTURE_DIR = process.env.I2E_FIXTURE_DIR ?? join(REPO, 'fixtures', 'bundles', 'hvm-mbr')
export const REGION = 'us-east-1'
export const ZONE = `${REGION}a`
/** moto's account: AMIs seeded with this owner are found with Owners: ['self']. */
export const ACCOUNT = '123456789012'
export const CREDENTIALS = { accessKeyId: 'testing', secretAccessKey: 'testing' }
export const HELPER_AMI_ID = 'ami-0e5e1c0de0a1b2c3d'

const EMULATOR_SH = join(REPO, 'tools', 'emulator.sh')
const STANDIN = join(REPO, 'tools', 'ssm-standin.mjs')
const PROXY = join(REPO, 'tools', 'aws-proxy.mjs')

/** An AMI of ours in moto's MOTO_AMIS_PATH format: what they all have, then its own fields. */
const motoAmi = (own) => ({
  owner_id: ACCOUNT,
  public: false,
  virtualization_type: 'hvm',
  architecture: 'x86_64',
  state: 'available',
  image_type: 'machine',
  hypervisor: 'xen',
  sriov: 'simple',
  tags: {},
  ...own
})

/** An instance-store AMI (RegisterImage in moto cannot make one). */
export function instanceStoreAmi({ amiId, name, imageLocation }) {
  return motoAmi({
    ami_id: amiId,
    name,
    description: `instance-store AMI seeded for instance-to-ebs (${imageLocation})`,
    root_device_name: '/dev/sda1',
    root_device_type: 'instance-store',
    image_location: imageLocation,
    // moto's default is uefi; an instance-store AMI of an MBR image boots legacy BIOS.
    boot_mode: 'legacy-bios'
  })
}

/** The EBS-backed AMI the helper instance is launched from. */
export function helperAmi() {
  return motoAmi({
    ami_id: HELPER_AMI_ID,
    name: 'al2023-ami-helper-x86_64',
    description: 'EBS-backed helper image (emulated)',
    root_device_name: '/dev/xvda',
    root_device_type: 'ebs'
  })
}

/** Runs a command, collects its output; rejects with the last stderr line when it fails. */
function run(command, args, options = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { ...options, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (s) => {
      stdout += s
    })
    child.stderr.setEncoding('utf8').on('data', (s) => {
      stderr += s
      options.onStderr?.(s)
    })
    child.on('error', reject)
    child.on('close', (code, signal) => {
      if (code === 0) return resolve({ stdout, stderr })
      const last = stderr.trim().split('\n').pop() || `${command} exited with ${code ?? signal}`
      reject(Object.assign(new Error(last), { stdout, stderr }))
    })
  })
}

/** action.yml's inputs with their defaults, as the runner sets INPUT_<NAME> (hyphens kept) for each. */
export function actionDefaults() {
  const action = parseYaml(readFileSync(join(REPO, 'action.yml'), 'utf8'))
  return Object.fromEntries(
    Object.entries(action.inputs).map(([name, spec]) => [name, String(spec.default ?? '')])
  )
}

const inputVar = (name) => `INPUT_${name.replace(/ /g, '_').toUpperCase()}`

/**
 * The runner's files for one job step (GITHUB_STATE, GITHUB_OUTPUT, GITHUB_STEP_SUMMARY) and the
 * runs of dist/index.js against them: `main`, then `post` with STATE_* made from the state file.
 */
export class RunnerStep {
  constructor(session, inputs, dir = mkdtempSync(join(session.dir, 'runner-'))) {
    this.session = session
    this.inputs = { ...actionDefaults(), ...inputs }
    this.dir = dir
    const stepFiles = makeRunnerFiles(dir)
    this.files = stepFiles.files
    this.readers = stepFiles
    /** More environment for the action (e.g. AWS_ENDPOINT_URL_EBS of a slower endpoint). */
    this.extraEnv = {}
  }

  state() {
    return this.readers.state()
  }

  outputs() {
    return this.readers.outputs()
  }

  summary() {
    return this.readers.summary()
  }

  /** The ledger main saved so far (what post would remove). */
  ledger() {
    const json = this.state().ledger ?? ''
    return json.trim() === '' ? [] : JSON.parse(json)
  }

  /** The environment the runner gives the action: its own, the inputs, the step files, the emulator. */
  env(entry) {
    const env = {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      HOME: process.env.HOME ?? '/root',
      LANG: 'C.UTF-8',
      CI: 'true',
      GITHUB_ACTIONS: 'true',
      RUNNER_TEMP: this.dir,
      // The emulators answer within a second: wait on them with short first delays, not 5 s
      // (src/settings.ts, readPollDelayMs). The delays still grow by half up to the same caps.
      I2E_POLL_DELAY_MS: '200',
      ...this.files,
      ...this.session.awsEnv(),
      ...this.extraEnv
    }
    for (const [name, value] of Object.entries(this.inputs)) env[inputVar(name)] = value
    if (entry === 'post')
      for (const [name, value] of Object.entries(this.state())) env[`STATE_${name}`] = value
    return env
  }

  /**
   * Starts `node dist/index.js` (main or post). Returns the child and a promise of
   * { code, signal, stdout, stderr }; `echo` copies its output to ours as it comes (the job log).
   */
  start(entry = 'main', { echo = false } = {}) {
    const child = spawn(process.execPath, [DIST_INDEX], {
      cwd: this.dir,
      env: this.env(entry),
      stdio: ['ignore', 'pipe', 'pipe']
    })
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (s) => {
      stdout += s
      if (echo) process.stdout.write(s)
    })
    child.stderr.setEncoding('utf8').on('data', (s) => {
      stderr += s
      if (echo) process.stderr.write(s)
    })
    const done = new Promise((resolve, reject) => {
      child.on('error', reject)
      child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }))
    })
    return { child, done }
  }

  async run(entry = 'main', options = {}) {
    return this.start(entry, options).done
  }
}

/**
 * The emulator, the SSM stand-in and the seeded account. `start()` rejects with a reason a person
 * can act on; `stop()` stops only what this session started and is safe to call twice.
 */
export class EmulatorSession {
  constructor({ amis = [], log = () => {}, bootStandin = false } = {}) {
    this.amis = amis
    /** Route EC2 through tools/ec2-boot-standin.mjs (status checks and console per AMI name). */
    this.wantBootStandin = bootStandin
    this.bootStandin = undefined
    this.log = log
    this.dir = mkdtempSync(join(tmpdir(), 'i2e-emulator-session-'))
    this.stateFile = join(this.dir, 'emulator.env')
    this.motoUrl = ''
    this.standinUrl = ''
    this.standinLog = ''
    /** tools/aws-proxy.mjs: checks every request of the action against the contract rules, adds AWS's delays. */
    this.proxyUrl = ''
    this.proxyLog = ''
    /** True when the stand-in can give commands loop devices (root); the convert needs it. */
    this.loopDevices = false
    this.stopped = false
  }

  /** The SDK settings the action gets: the contract proxy in front of moto and the SSM stand-in, dummy credentials. */
  awsEnv() {
    return {
      AWS_ENDPOINT_URL: this.proxyUrl,
      AWS_ENDPOINT_URL_SSM: this.proxyUrl,
      AWS_ACCESS_KEY_ID: CREDENTIALS.accessKeyId,
      AWS_SECRET_ACCESS_KEY: CREDENTIALS.secretAccessKey,
      AWS_REGION: REGION,
      AWS_EC2_METADATA_DISABLED: 'true'
    }
  }

  async start() {
    const amisFile = join(this.dir, 'amis.json')
    writeFileSync(amisFile, JSON.stringify([helperAmi(), ...this.amis], null, 2))
    const env = { ...process.env, I2E_EMULATOR_STATE: this.stateFile, I2E_MOTO_AMIS_PATH: amisFile }
    const { stdout } = await run('bash', [EMULATOR_SH, 'start'], {
      env,
      onStderr: (s) => this.log(s.trimEnd())
    })
    this.motoUrl = /^I2E_MOTO_URL=(.+)$/m.exec(stdout)?.[1] ?? ''
    if (!this.motoUrl) throw new Error(`tools/emulator.sh start printed no I2E_MOTO_URL: ${stdout}`)
    const clientOptions = { endpoint: this.motoUrl, region: REGION, credentials: CREDENTIALS }
    this.ec2 = new EC2Client(clientOptions)
    this.s3 = new S3Client({ ...clientOptions, forcePathStyle: true })
    this.ssm = new SSMClient(clientOptions)
    await this.checkSeeded()
    await this.startStandin()
    if (this.wantBootStandin)
      this.bootStandin = await startEc2BootStandin({
        motoUrl: this.motoUrl,
        region: REGION,
        credentials: CREDENTIALS
      })
    await this.startProxy()
  }

  async startProxy() {
    this.proxy = spawn(process.execPath, [PROXY], {
      env: {
        ...process.env,
        I2E_MOTO_URL: this.bootStandin?.url ?? this.motoUrl,
        I2E_SSM_URL: this.standinUrl
      },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true
    })
    this.proxy.stderr.setEncoding('utf8').on('data', (s) => {
      this.proxyLog += s
    })
    const exited = once(this.proxy, 'exit').then(() => {
      throw new Error(`the AWS contract proxy exited while starting: ${this.proxyLog.trim()}`)
    })
    const [line] = await Promise.race([once(this.proxy.stdout.setEncoding('utf8'), 'data'), exited])
    this.proxyUrl = /^AWS_PROXY_URL=(\S+)/.exec(line)?.[1] ?? ''
    if (!this.proxyUrl) throw new Error(`the AWS contract proxy printed no address: ${line}`)
  }

  /** What the proxy saw: contract violations, requests checked per operation, pending states served. */
  async proxyReport() {
    return (await fetch(`${this.proxyUrl}/_proxy/report`)).json()
  }

  /** An external moto (I2E_MOTO_URL) ignores our AMIs file: say how to start it instead. */
  async checkSeeded() {
    const ids = [HELPER_AMI_ID, ...this.amis.map((a) => a.ami_id)]
    const out = await this.ec2.send(new DescribeImagesCommand({ Owners: ['self'] }))
    const known = new Set((out.Images ?? []).map((i) => i.ImageId))
    const missing = ids.filter((id) => !known.has(id))
    if (missing.length > 0)
      throw new Error(
        `the moto at ${this.motoUrl} does not know the seeded AMIs ${missing.join(', ')}: a server this ` +
          `session did not start ignores I2E_MOTO_AMIS_PATH; unset I2E_MOTO_URL, or start it with MOTO_AMIS_PATH=${join(this.dir, 'amis.json')}`
      )
  }

  async startStandin() {
    // Its own process group: a Ctrl-C in the terminal must not stop it before post has run.
    this.standin = spawn(process.execPath, [STANDIN], {
      env: { ...process.env, I2E_MOTO_URL: this.motoUrl, AWS_REGION: REGION },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true
    })
    this.standin.stderr.setEncoding('utf8').on('data', (s) => {
      this.standinLog += s
    })
    const exited = once(this.standin, 'exit').then(() => {
      throw new Error(`the SSM stand-in exited while starting: ${this.standinLog.trim()}`)
    })
    const [line] = await Promise.race([once(this.standin.stdout.setEncoding('utf8'), 'data'), exited])
    this.standinUrl = /^AWS_ENDPOINT_URL_SSM=(\S+)/.exec(line)?.[1] ?? ''
    if (!this.standinUrl) throw new Error(`the SSM stand-in printed no endpoint: ${line}`)
    this.loopDevices = this.standinLog.includes('loop devices')
    this.ssmViaStandin = new SSMClient({
      endpoint: this.standinUrl,
      region: REGION,
      credentials: CREDENTIALS
    })
  }

  /** Uploads the fixture bundle (manifest + parts) to s3://bucket/prefix/; `corrupt` flips a byte of that part. */
  async uploadBundle({ bucket, prefix, fixtureDir = FIXTURE_DIR, corrupt }) {
    try {
      await this.s3.send(new CreateBucketCommand({ Bucket: bucket }))
    } catch (err) {
      if (err.name !== 'BucketAlreadyOwnedByYou' && err.name !== 'BucketAlreadyExists') throw err
    }
    const manifest = readFileSync(join(fixtureDir, 'image.manifest.xml'), 'utf8')
    const parts = [...manifest.matchAll(/<filename>([^<]+)<\/filename>/g)].map((m) => m[1])
    if (parts.length === 0) throw new Error(`no <filename> parts in ${fixtureDir}/image.manifest.xml`)
    for (const name of ['image.manifest.xml', ...parts]) {
      let body = readFileSync(join(fixtureDir, name))
      if (name === corrupt) {
        body = Buffer.from(body)
        const at = Math.floor(body.length / 2)
        body[at] = (body[at] ?? 0) ^ 0xff
      }
      await this.s3.send(new PutObjectCommand({ Bucket: bucket, Key: `${prefix}/${name}`, Body: body }))
    }
    return { imageLocation: `${bucket}/${prefix}/image.manifest.xml`, parts }
  }

  /** A running EBS-backed helper, as the action expects (online in SSM through the stand-in). */
  async launchHelper() {
    const out = await this.ec2.send(
      new RunInstancesCommand({
        ImageId: HELPER_AMI_ID,
        InstanceType: 't3.small',
        MinCount: 1,
        MaxCount: 1,
        Placement: { AvailabilityZone: ZONE },
        BlockDeviceMappings: [
          { DeviceName: '/dev/xvda', Ebs: { VolumeSize: 8, VolumeType: 'gp3', DeleteOnTermination: true } }
        ],
        TagSpecifications: [{ ResourceType: 'instance', Tags: [{ Key: 'Name', Value: 'i2e-helper' }] }]
      })
    )
    const instanceId = out.Instances?.[0]?.InstanceId ?? ''
    const described = await this.ec2.send(new DescribeInstancesCommand({ InstanceIds: [instanceId] }))
    const instance = described.Reservations?.[0]?.Instances?.[0]
    const rootVolumeIds = (instance?.BlockDeviceMappings ?? []).map((m) => m.Ebs?.VolumeId).filter(Boolean)
    return { instanceId, rootVolumeIds, rootDeviceName: instance?.RootDeviceName }
  }

  /** Every id that exists now, per kind: compare two of these to find what a run left behind. */
  async inventory() {
    const volumes = []
    let token
    do {
      const out = await this.ec2.send(new DescribeVolumesCommand({ NextToken: token }))
      for (const v of out.Volumes ?? [])
        volumes.push({
          id: v.VolumeId,
          state: v.State,
          tagged: (v.Tags ?? []).length > 0,
          attachedTo: (v.Attachments ?? []).map((a) => `${a.InstanceId}:${a.Device}`)
        })
      token = out.NextToken
    } while (token)
    const snapshots = []
    const snapshotSources = new Set()
    token = undefined
    do {
      const out = await this.ec2.send(new DescribeSnapshotsCommand({ OwnerIds: ['self'], NextToken: token }))
      for (const s of out.Snapshots ?? []) {
        snapshots.push(s.SnapshotId)
        if (s.VolumeId) snapshotSources.add(s.VolumeId)
      }
      token = out.NextToken
    } while (token)
    const images = await this.ec2.send(new DescribeImagesCommand({ Owners: ['self'] }))
    const parameters = []
    token = undefined
    do {
      const out = await this.ssm.send(new DescribeParametersCommand({ NextToken: token }))
      for (const p of out.Parameters ?? []) parameters.push(p.Name)
      token = out.NextToken
    } while (token)
    const instances = await this.ec2.send(new DescribeInstancesCommand({}))
    // moto's StartSnapshot (EBS direct APIs) makes an untagged volume behind each snapshot it
    // starts (moto/ebs/models.py, start_snapshot), and keeps it when the snapshot is deleted; real
    // EBS makes none, so it is not a leftover. The action tags every volume it creates, so an
    // untagged one is moto's: always when a snapshot names it, and in sessions that only use the
    // runner path (ebsDirectOnly) also once its snapshot is gone.
    const emulatorOnly = new Set(
      volumes.filter((v) => !v.tagged && (snapshotSources.has(v.id) || this.ebsDirectOnly)).map((v) => v.id)
    )
    return {
      volumes: volumes.filter((v) => !emulatorOnly.has(v.id)),
      snapshots,
      images: (images.Images ?? []).map((i) => i.ImageId),
      parameters,
      instances: (instances.Reservations ?? [])
        .flatMap((r) => r.Instances ?? [])
        .filter((i) => i.State?.Name !== 'terminated')
        .map((i) => i.InstanceId)
    }
  }

  /** What `after` holds that `before` did not, per kind (volumes by id). */
  static added(before, after) {
    const diff = (a, b, key = (x) => x) => {
      const had = new Set(a.map(key))
      return b.filter((x) => !had.has(key(x)))
    }
    return {
      volumes: diff(before.volumes, after.volumes, (v) => v.id),
      snapshots: diff(before.snapshots, after.snapshots),
      images: diff(before.images, after.images),
      parameters: diff(before.parameters, after.parameters),
      instances: diff(before.instances, after.instances)
    }
  }

  /** A runner step with these inputs (over action.yml's defaults). */
  step(inputs) {
    return new RunnerStep(this, inputs)
  }

  async stop() {
    if (this.stopped) return
    this.stopped = true
    if (this.proxy && this.proxy.exitCode === null && this.proxy.signalCode === null) {
      const exited = once(this.proxy, 'exit')
      this.proxy.kill('SIGTERM')
      await exited
    }
    if (this.standin && this.standin.exitCode === null && this.standin.signalCode === null) {
      const exited = once(this.standin, 'exit')
      this.standin.kill('SIGTERM')
      const timer = setTimeout(() => this.standin.kill('SIGKILL'), 10_000)
      await exited
      clearTimeout(timer)
    }
    await this.bootStandin?.close()
    for (const c of [this.ec2, this.s3, this.ssm, this.ssmViaStandin]) c?.destroy()
    if (existsSync(this.stateFile))
      await run('bash', [EMULATOR_SH, 'stop'], {
        env: { ...process.env, I2E_EMULATOR_STATE: this.stateFile }
      }).catch((err) => this.log(`stopping the emulator: ${err.message}`))
    rmSync(this.dir, { recursive: true, force: true })
  }
}

/** Waits until `test()` is true, checking every `everyMs`; false when `timeoutMs` passes first. */
export async function waitUntil(test, { timeoutMs = 60_000, everyMs = 50 } = {}) {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    if (await test()) return true
    await new Promise((resolve) => setTimeout(resolve, everyMs))
  }
  return false
}
