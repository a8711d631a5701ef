// verify-boot end to end: the committed dist/index.js, run as the runner runs it, converts the real
// hvm-mbr bundle on the emulator and then boot-checks the new AMI. moto answers every instance with
// both status checks ok and a fixed console, so EC2 goes through tools/ec2-boot-standin.mjs,
// which serves status checks and console text per AMI name (and refuses Latest on Xen types, as
// EC2 does). Every path is checked for leftovers by listing the emulator's resources, and the test
// instance itself is looked up: it must be terminated, also after SIGKILL of main and then post.
//
// Needs root (loop devices), like convert.test.ts; skipped with the reason outside CI.
import { afterAll, beforeAll, expect, it } from '@jest/globals'
import { DescribeInstancesCommand, DescribeSnapshotsCommand } from '@aws-sdk/client-ec2'
import { readFileSync } from 'node:fs'
import {
  type ActionResult,
  EmulatorSession,
  FIXTURE_DIR,
  type Inventory,
  waitUntil
} from '../../tools/emulator-session.mjs'
import {
  bundleAmis,
  describeWithEmulator,
  NOTHING as nothing,
  startSession
} from '../__fixtures__/e2e-setup.js'

const BUCKET = 'i2e-e2e-boot'
const SOURCE_AMI = 'ami-0b007c4ec0ffee123'
const TIMEOUT_MS = 240_000

const session = new EmulatorSession({
  amis: bundleAmis(BUCKET, { good: [SOURCE_AMI, 'hvm-mbr-boot-source'] }),
  bootStandin: true
})
const unavailable = await startSession(session, {
  suite: 'the end-to-end verify-boot tests',
  loopDevices: true
})

const key = readFileSync(`${FIXTURE_DIR}/test-key.pem`, 'utf8')
let helper = ''

const GOOD_BOOT = [
  '[    0.000000] Linux version 6.1.0-27-cloud-amd64 (debian-kernel@lists.debian.org)',
  '[  OK  ] Reached target Local File Systems.',
  '[  OK  ] Reached target Multi-User System.',
  'Debian GNU/Linux 12 ip-10-0-0-12 ttyS0',
  'ip-10-0-0-12 login: '
].join('\r\n')
const PANIC = [
  '[    1.120000] VFS: Cannot open root device "xvda1" or unknown-block(0,0): error -6',
  '[    1.120500] Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)',
  '[    1.121000] ---[ end Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0) ]---'
].join('\n')
const MAINTENANCE = [
  'fsck from util-linux 2.20.1',
  'The disk drive for /mnt is not ready yet or not present.',
  'Give root password for maintenance',
  '(or type Control-D to continue):'
].join('\n')

function inputs(amiName: string, extra: Record<string, string> = {}): Record<string, string> {
  return {
    'source-ami-id': SOURCE_AMI,
    'ami-name': amiName,
    'helper-instance-id': helper,
    'x509-private-key': key,
    'verify-boot': 'true',
    tags: 'suite=e2e-boot',
    ...extra
  }
}

const errors = (r: ActionResult): string =>
  r.stdout
    .split('\n')
    .filter((l) => l.startsWith('::error'))
    .join('\n')

/**
 * What exists now that did not before. moto's RegisterImage ignores the block device mapping and
 * makes a snapshot of its own ("Auto-created snapshot for AMI ami-…", see tools/EMULATOR.md),
 * which EC2 would not: those of the run's AMIs are left out. The run's own snapshot is not.
 */
async function leftovers(before: Inventory, amiIds: (string | undefined)[] = []): Promise<Inventory> {
  const left = EmulatorSession.added(before, await session.inventory())
  if (left.snapshots.length === 0) return left
  const out = await session.ec2.send(new DescribeSnapshotsCommand({ SnapshotIds: left.snapshots }))
  const motoMade = new Set(
    (out.Snapshots ?? [])
      .filter((s) => amiIds.some((id) => id && s.Description === `Auto-created snapshot for AMI ${id}`))
      .map((s) => s.SnapshotId)
  )
  return { ...left, snapshots: left.snapshots.filter((id) => !motoMade.has(id)) }
}

/** The boot check instances of the run: launched from the run's new AMI, by the ledger or the stand-in's calls. */
async function bootInstance(
  amiId: string | undefined
): Promise<{ id: string; state: string; type: string }[]> {
  const out = await session.ec2.send(
    new DescribeInstancesCommand({ Filters: [{ Name: 'image-id', Values: [amiId ?? 'none'] }] })
  )
  return (out.Reservations ?? [])
    .flatMap((r) => r.Instances ?? [])
    .map((i) => ({ id: i.InstanceId ?? '', state: i.State?.Name ?? '', type: i.InstanceType ?? '' }))
}

describeWithEmulator('verify-boot end to end on the emulator', unavailable, () => {
  beforeAll(async () => {
    await session.uploadBundle({ bucket: BUCKET, prefix: 'good' })
    helper = (await session.launchHelper()).instanceId
  }, TIMEOUT_MS)

  afterAll(async () => {
    await session.stop()
  })

  it(
    'boots the converted AMI, outputs boot-verified=true, shows the console tail and terminates the test instance',
    async () => {
      session.bootStandin?.setScenario('e2e-boot-ok', {
        statuses: [
          { instance: 'initializing', system: 'initializing' },
          { instance: 'ok', system: 'ok' }
        ],
        console: GOOD_BOOT
      })
      const before = await session.inventory()
      const step = session.step(inputs('e2e-boot-ok'))
      const main = await step.run('main')
      if (main.code !== 0) console.error(main.stdout, main.stderr)
      expect({ code: main.code, errors: errors(main) }).toEqual({ code: 0, errors: '' })
      const out = step.outputs()
      expect(out['boot-verified']).toBe('true')

      const [instance, ...others] = await bootInstance(out['ami-id'])
      expect(others).toEqual([])
      expect(instance).toMatchObject({ state: 'terminated', type: 't2.small' })
      // A Xen type: the console was read without Latest (the stand-in would refuse it).
      expect(
        session.bootStandin?.calls.filter(
          (c) => c.instanceId === instance?.id && c.action === 'GetConsoleOutput'
        )
      ).toEqual([{ action: 'GetConsoleOutput', instanceId: instance?.id, latest: false }])
      const summary = step.summary()
      expect(summary).toContain('### Boot check')
      expect(summary).toContain('ip-10-0-0-12 login:')

      const left = await leftovers(before)
      expect(left.instances).toEqual([])
      expect(left.volumes).toEqual([])
      expect(left.images).toEqual([out['ami-id']])
      expect((await step.run('post')).code).toBe(0)
    },
    TIMEOUT_MS
  )

  it.each([
    [
      'a failed instance status check',
      'e2e-boot-impaired',
      { statuses: [{ instance: 'impaired', system: 'ok' }], console: MAINTENANCE },
      /did not boot: the instance status check of i-\w+ failed.*Give root password for maintenance/
    ],
    [
      'a kernel panic on the console',
      'e2e-boot-panic',
      { statuses: [{ instance: 'ok', system: 'ok' }], console: PANIC },
      /did not boot: the console of i-\w+ shows kernel panic: "\[ {4}1\.120500\] Kernel panic - not syncing/
    ]
  ])(
    'fails on %s, outputs boot-verified=false and leaves nothing: no instance, AMI or snapshot',
    async (_what, amiName, scenario, message) => {
      session.bootStandin?.setScenario(amiName, scenario)
      const before = await session.inventory()
      const step = session.step(inputs(amiName))
      const main = await step.run('main')
      expect(main.code).not.toBe(0)
      expect(errors(main)).toMatch(message)
      const out = step.outputs()
      expect(out['boot-verified']).toBe('false')
      const instances = await bootInstance(out['ami-id'])
      expect(instances.map((i) => i.state)).toEqual(['terminated'])
      expect(step.ledger()).toEqual([])
      expect(out['snapshot-id']).toMatch(/^snap-/)
      expect(await leftovers(before, [out['ami-id']])).toEqual(nothing)
      expect(step.summary()).toContain('**did not boot**')
      expect((await step.run('post')).code).toBe(0)
    },
    TIMEOUT_MS
  )

  it(
    'keeps the AMI and snapshot with verify-boot-failure: keep, still failing, and terminates the instance',
    async () => {
      session.bootStandin?.setScenario('e2e-boot-keep', { console: PANIC })
      const before = await session.inventory()
      const step = session.step(inputs('e2e-boot-keep', { 'verify-boot-failure': 'keep' }))
      const main = await step.run('main')
      expect(main.code).not.toBe(0)
      const out = step.outputs()
      expect(out['boot-verified']).toBe('false')
      expect((await bootInstance(out['ami-id'])).map((i) => i.state)).toEqual(['terminated'])
      const left = await leftovers(before)
      expect(left.instances).toEqual([])
      expect(left.images).toEqual([out['ami-id']])
      expect(left.snapshots).toContain(out['snapshot-id'])
      expect((await step.run('post')).code).toBe(0)
      expect((await leftovers(before)).images).toEqual([out['ami-id']])
    },
    TIMEOUT_MS
  )

  it(
    'terminates the test instance with the post entry alone after main is killed with SIGKILL during the boot check',
    async () => {
      // Status checks that never finish: main waits until it is killed.
      session.bootStandin?.setScenario('e2e-boot-killed', {
        statuses: [{ instance: 'initializing', system: 'initializing' }]
      })
      const before = await session.inventory()
      const step = session.step(inputs('e2e-boot-killed'))
      const { child, done } = step.start('main')
      const reached = await waitUntil(
        () =>
          child.exitCode !== null ||
          step.ledger().some((r) => r.kind === 'instance' && r.step === 'boot check'),
        { timeoutMs: 180_000 }
      )
      child.kill('SIGKILL')
      const main = await done
      expect(reached).toBe(true)
      // A main that ended on its own says why in its output: shown with the failure.
      expect({
        signal: main.signal,
        output: main.signal ? '' : `${main.stdout}\n${main.stderr}`.slice(-4000)
      }).toEqual({
        signal: 'SIGKILL',
        output: ''
      })

      // Non-vacuous: the killed main left its running test instance, and the AMI.
      const instanceId = step.ledger().find((r) => r.kind === 'instance')?.id
      expect(instanceId).toMatch(/^i-/)
      const amiId = step.ledger().find((r) => r.kind === 'image')?.id
      const snapshotId = step.ledger().find((r) => r.kind === 'snapshot')?.id
      expect(snapshotId).toMatch(/^snap-/)
      const left = await leftovers(before)
      expect(left.instances).toEqual([instanceId])
      expect(left.images).toEqual([amiId])
      expect(left.snapshots).toContain(snapshotId)

      const post = await step.run('post')
      expect({ code: post.code, warnings: post.stdout.match(/^::warning.*$/gm) ?? [] }).toEqual({
        code: 0,
        warnings: []
      })
      expect(await leftovers(before, [amiId])).toEqual(nothing)
      const after = await session.ec2.send(
        new DescribeInstancesCommand({ InstanceIds: [instanceId as string] })
      )
      expect(after.Reservations?.[0]?.Instances?.[0]?.State?.Name).toBe('terminated')
      // The helper is the user's: post leaves it alone.
      expect((await session.inventory()).instances).toContain(helper)
    },
    TIMEOUT_MS
  )
})
