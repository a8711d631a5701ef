// The set-up the end-to-end suites share: the emulator (tools/emulator.sh through an
// EmulatorSession, or a plain moto), the SSM stand-in, the seeded AMIs and the rule that a suite
// whose emulator did not start FAILS in CI (a skip would pass unseen) and is skipped elsewhere,
// loudly: a console warning and the reason in the suite's title.
import { type ChildProcessWithoutNullStreams, execFileSync, spawn } from 'node:child_process'
import { once } from 'node:events'
import { closeSync, mkdtempSync, openSync, readFileSync, readSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { EC2Client, RunInstancesCommand } from '@aws-sdk/client-ec2'
import { S3Client } from '@aws-sdk/client-s3'
import { SSMClient } from '@aws-sdk/client-ssm'
import { describe, it } from '@jest/globals'
import {
  CREDENTIALS,
  type EmulatorSession,
  FIXTURE_DIR,
  type Inventory,
  instanceStoreAmi,
  type MotoAmi,
  REGION
} from '../../tools/emulator-session.mjs'

const tools = fileURLToPath(new URL('../../tools/', import.meta.url))

// What an inventory diff is when a run left nothing.
export const NOTHING: Inventory = { volumes: [], snapshots: [], images: [], parameters: [], instances: [] }

// The key=value facts of a fixture bundle's expected.txt (comments and blank lines left out).
export function expectedFacts(dir: string = FIXTURE_DIR): Record<string, string> {
  return Object.fromEntries(
    readFileSync(join(dir, 'expected.txt'), 'utf8')
      .split('\n')
      .filter((l) => l && !l.startsWith('#') && l.includes('='))
      .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)])
  )
}

// LENGTH bytes of FILE from OFFSET.
export function bytesAt(file: string, offset: number, length: number): Buffer {
  const buf = Buffer.alloc(length)
  const fd = openSync(file, 'r')
  try {
    readSync(fd, buf, 0, length, offset)
  } finally {
    closeSync(fd)
  }
  return buf
}

// Instance-store AMIs whose bundles are at s3://BUCKET/<prefix>/, given as { prefix: [amiId, name] }.
export function bundleAmis(bucket: string, byPrefix: Record<string, readonly [string, string]>): MotoAmi[] {
  return Object.entries(byPrefix).map(([prefix, [amiId, name]]) =>
    instanceStoreAmi({ amiId, name, imageLocation: `${bucket}/${prefix}/image.manifest.xml` })
  )
}

// Uploads the fixture bundle to BUCKET twice: intact under good/, with image.part.1 corrupted under corrupt/.
export async function uploadGoodAndCorrupt(session: EmulatorSession, bucket: string): Promise<void> {
  await session.uploadBundle({ bucket, prefix: 'good' })
  await session.uploadBundle({ bucket, prefix: 'corrupt', corrupt: 'image.part.1' })
}

// Starts a session (stopped again if it cannot serve the suite); undefined, or why the suite cannot run.
export async function startSession(
  session: EmulatorSession,
  { suite, loopDevices }: { suite: string; loopDevices: boolean }
): Promise<string | undefined> {
  let unavailable: string | undefined
  const startedAt = Date.now()
  try {
    await session.start()
    if (loopDevices && !session.loopDevices)
      unavailable =
        'the SSM stand-in cannot give commands loop devices here (needs root, losetup, unshare, overlay mounts)'
  } catch (err) {
    unavailable = `the emulator did not start: ${(err as Error).message}`
  }
  if (unavailable) {
    await session.stop()
    warnSkip(suite, unavailable)
  } else {
    console.info(`e2e: emulator and SSM stand-in up in ${(Date.now() - startedAt) / 1000} s`)
  }
  return unavailable
}

// Outside CI, says loudly on the console that SUITE is skipped and why.
function warnSkip(suite: string, unavailable: string): void {
  if (!process.env.CI) console.warn(`skipping ${suite}: ${unavailable}`)
}

// describe() when the emulator is there; else one test that FAILS in CI and is skipped elsewhere, the reason in the title.
export function describeWithEmulator(title: string, unavailable: string | undefined, body: () => void): void {
  if (unavailable === undefined) {
    describe(title, body)
    return
  }
  const ci = Boolean(process.env.CI)
  ;(ci ? describe : describe.skip)(`${title} (${ci ? 'FAILS in CI' : 'skipped'}: ${unavailable})`, () => {
    it('has an emulator to run against', () => {
      throw new Error(`CI must run the end-to-end tests, but ${unavailable}`)
    })
  })
}

export interface Moto {
  url?: string
  unavailable?: string
  stop: () => void
}

// Starts a plain moto (its default AMIs) with tools/emulator.sh in a private state folder, or says why it did not.
export function startMoto(suite: string): Moto {
  const stateDir = mkdtempSync(join(tmpdir(), 'i2e-e2e-moto-'))
  const env = { ...process.env, I2E_EMULATOR_STATE: join(stateDir, 'emulator.env') }
  const stop = () => {
    execFileSync('bash', [join(tools, 'emulator.sh'), 'stop'], { env, stdio: 'ignore' })
    rmSync(stateDir, { recursive: true, force: true })
  }
  try {
    const out = execFileSync('bash', [join(tools, 'emulator.sh'), 'start'], {
      env,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: 10 * 60_000 // a cold install takes a minute or two
    })
    const url = /^I2E_MOTO_URL=(.+)$/m.exec(out)?.[1]
    if (url) return { url, stop }
    throw new Error(`tools/emulator.sh start printed no I2E_MOTO_URL: ${out}`)
  } catch (err) {
    const stderr = String((err as { stderr?: string }).stderr || err).trim()
    const unavailable = `the emulator did not start: ${stderr.split('\n').pop()}`
    stop()
    warnSkip(suite, unavailable)
    return { unavailable, stop: () => {} }
  }
}

export interface SsmStandin {
  url: string
  readonly log: string
  stop: () => Promise<void>
}

// Starts tools/ssm-standin.mjs in front of MOTO_URL (ENV added to its environment) and waits for its endpoint.
async function startSsmStandin(motoUrl: string, env: Record<string, string> = {}): Promise<SsmStandin> {
  const child: ChildProcessWithoutNullStreams = spawn(process.execPath, [join(tools, 'ssm-standin.mjs')], {
    env: { ...process.env, I2E_MOTO_URL: motoUrl, AWS_REGION: REGION, ...env }
  })
  let log = ''
  child.stderr.setEncoding('utf8').on('data', (s: string) => {
    log += s
  })
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      const exited = once(child, 'exit')
      child.kill('SIGTERM')
      await exited
    }
  }
  const [line] = (await once(child.stdout.setEncoding('utf8'), 'data')) as [string]
  const url = /^AWS_ENDPOINT_URL_SSM=(\S+)/.exec(line)?.[1] ?? ''
  return {
    url,
    get log() {
      return log
    },
    stop
  }
}

export interface StandinAccount {
  standin: SsmStandin
  ec2: EC2Client
  ssm: SSMClient
  s3: S3Client
  instanceId: string
}

// Starts the SSM stand-in in front of MOTO_URL, SDK clients for both, and one instance of moto's ami-12c6146b it serves.
export async function startStandinAccount(
  motoUrl: string,
  env: Record<string, string> = {}
): Promise<StandinAccount> {
  const standin = await startSsmStandin(motoUrl, env)
  const ec2 = new EC2Client({ endpoint: motoUrl, region: REGION, credentials: CREDENTIALS })
  const ssm = new SSMClient({ endpoint: standin.url, region: REGION, credentials: CREDENTIALS })
  const s3 = new S3Client({
    endpoint: motoUrl,
    region: REGION,
    credentials: CREDENTIALS,
    forcePathStyle: true
  })
  try {
    const run = await ec2.send(
      new RunInstancesCommand({
        ImageId: 'ami-12c6146b',
        MinCount: 1,
        MaxCount: 1,
        Placement: { AvailabilityZone: `${REGION}a` }
      })
    )
    return { standin, ec2, ssm, s3, instanceId: run.Instances?.[0]?.InstanceId ?? '' }
  } catch (err) {
    await standin.stop() // the caller has no account to stop it with
    throw err
  }
}
