// The whole action end to end: the committed dist/index.js, run as the Actions runner runs it
// (a child process with INPUT_* variables and the runner's files, then the post entry), against
// moto seeded with instance-store AMIs whose bundle is the real hvm-mbr fixture, with the SSM
// stand-in running the convert script on a loop device. Leftovers are checked by listing the
// emulator's resources before and after, never by reading the action's log.
//
// Needs root (loop devices). When the emulator cannot start, CI fails; elsewhere the suite is skipped
// with the reason on the console.
import { readFileSync } from 'node:fs'
import { afterAll, beforeAll, expect, it } from '@jest/globals'
import { DescribeImagesCommand, DescribeSnapshotsCommand } from '@aws-sdk/client-ec2'
import { ListCommandInvocationsCommand } from '@aws-sdk/client-ssm'
import {
  type ActionResult,
  EmulatorSession,
  FIXTURE_DIR,
  type Inventory,
  type RunnerStep,
  waitUntil
} from '../../tools/emulator-session.mjs'
import {
  bundleAmis,
  bytesAt,
  describeWithEmulator,
  expectedFacts,
  NOTHING as nothing,
  startSession,
  uploadGoodAndCorrupt
} from '../__fixtures__/e2e-setup.js'

const BUCKET = 'i2e-e2e-bundles'
const GOOD_AMI = 'ami-0a1b2c3d4e5f60718'
const CORRUPT_AMI = 'ami-0badc0ffee0badc0f'
const MISSING_HELPER = 'i-0123456789abcdef0'
const CONVERT_TIMEOUT_MS = 240_000

const expected = expectedFacts()
const session = new EmulatorSession({
  amis: bundleAmis(BUCKET, {
    good: [GOOD_AMI, 'hvm-mbr-instance-store'],
    corrupt: [CORRUPT_AMI, 'hvm-mbr-corrupt-part']
  })
})
const unavailable = await startSession(session, { suite: 'the end-to-end convert tests', loopDevices: true })

const key = readFileSync(`${FIXTURE_DIR}/test-key.pem`, 'utf8')
let helper = ''
let helperRoot: string[] = []

/** What exists now that did not before `before`: the emulator's own listing. */
async function leftovers(before: Inventory): Promise<Inventory> {
  return EmulatorSession.added(before, await session.inventory())
}

/** The ::error:: lines of a run, for messages. */
const errors = (r: ActionResult): string[] =>
  r.stdout
    .split('\n')
    .filter((l) => l.startsWith('::error'))
    .map((l) => l.replace(/^::error[^:]*::/, ''))

const explain = (r: ActionResult): string => `exit ${r.code ?? r.signal}\n${r.stdout}\n${r.stderr}`

function inputs(extra: Record<string, string>): Record<string, string> {
  return {
    'helper-instance-id': helper,
    'x509-private-key': key,
    tags: 'suite=e2e',
    ...extra
  }
}

const title = 'end-to-end convert on the emulator (dist/index.js as the runner runs it)'
describeWithEmulator(title, unavailable, () => {
  beforeAll(async () => {
    await uploadGoodAndCorrupt(session, BUCKET)
    const launched = await session.launchHelper()
    helper = launched.instanceId
    helperRoot = launched.rootVolumeIds
  })

  afterAll(async () => {
    await session.stop()
  })

  it(
    'converts the instance-store AMI into an EBS-backed AMI and leaves no volume or parameter behind',
    async () => {
      const before = await session.inventory()
      const step = session.step(inputs({ 'source-ami-id': GOOD_AMI, 'ami-name': 'e2e-converted' }))
      const main = await step.run('main')
      if (main.code !== 0) console.error(explain(main))
      expect({ code: main.code, errors: errors(main) }).toEqual({ code: 0, errors: [] })

      const out = step.outputs()
      expect(out['ami-id']).toMatch(/^ami-[0-9a-f]+$/)
      expect(out['snapshot-id']).toMatch(/^snap-[0-9a-f]+$/)
      const left = await leftovers(before)
      expect(left.volumes).toEqual([]) // the work volume was deleted
      expect(left.parameters).toEqual([]) // the temporary key parameter too
      expect(left.instances).toEqual([])
      expect(left.images).toEqual([out['ami-id']])
      expect(left.snapshots).toContain(out['snapshot-id'])

      const image = (await session.ec2.send(new DescribeImagesCommand({ ImageIds: [out['ami-id'] ?? ''] })))
        .Images?.[0]
      expect(image?.Name).toBe('e2e-converted')
      const snap = (
        await session.ec2.send(new DescribeSnapshotsCommand({ SnapshotIds: [out['snapshot-id'] ?? ''] }))
      ).Snapshots?.[0]
      expect(snap?.Tags).toEqual(expect.arrayContaining([{ Key: 'suite', Value: 'e2e' }]))

      // The bundle really landed on the volume: the image's MBR and its ext4 root, from the stand-in's file.
      const files = (await (await fetch(`${session.standinUrl}/_standin/volumes`)).json()) as Record<
        string,
        string
      >
      const volumeFile = files[snap?.VolumeId ?? ''] ?? ''
      expect(volumeFile).not.toBe('')
      const diskId = Number.parseInt(expected.partition_table_id ?? '', 16)
      expect(bytesAt(volumeFile, 440, 4).readUInt32LE(0)).toBe(diskId)
      expect(bytesAt(volumeFile, 510, 2).toString('hex')).toBe('55aa')
      const superblock = Number(expected.filesystem_offset_bytes) + 1024
      expect(bytesAt(volumeFile, superblock + 0x38, 2).readUInt16LE(0)).toBe(0xef53)

      expect(step.summary()).toContain(out['ami-id'])
      const post = await step.run('post')
      expect(post.code).toBe(0)
      const afterPost = await leftovers(before)
      expect(afterPost.images).toEqual([out['ami-id']]) // post keeps the product
    },
    CONVERT_TIMEOUT_MS
  )

  it(
    'creates nothing with dry-run: true',
    async () => {
      const before = await session.inventory()
      const step = session.step(
        inputs({ 'source-ami-id': GOOD_AMI, 'ami-name': 'e2e-dry-run', 'dry-run': 'true' })
      )
      const main = await step.run('main')
      expect({ code: main.code, errors: errors(main) }).toEqual({ code: 0, errors: [] })
      expect(step.outputs()['ami-id']).toBeUndefined()
      expect(step.ledger()).toEqual([])
      expect(await leftovers(before)).toEqual(nothing)
    },
    CONVERT_TIMEOUT_MS
  )

  it(
    'leaves nothing behind when the remote script fails on a corrupted part after the volume exists',
    async () => {
      const before = await session.inventory()
      const step = session.step(inputs({ 'source-ami-id': CORRUPT_AMI, 'ami-name': 'e2e-corrupt' }))
      const main = await step.run('main')
      expect(main.code).not.toBe(0)
      expect(errors(main).join('\n')).toMatch(/image\.part\.1 digest mismatch/)
      // The volume existed (the failure came after it), and is gone now.
      expect(main.stdout).toMatch(/vol-[0-9a-f]+/)
      expect(await leftovers(before)).toEqual(nothing)
      expect(step.ledger()).toEqual([])

      const post = await step.run('post')
      expect(post.code).toBe(0)
      expect(await leftovers(before)).toEqual(nothing)
    },
    CONVERT_TIMEOUT_MS
  )

  it(
    'says clearly when the helper instance does not exist, and creates nothing',
    async () => {
      const before = await session.inventory()
      const step = session.step(
        inputs({
          'source-ami-id': GOOD_AMI,
          'ami-name': 'e2e-bad-helper',
          'helper-instance-id': MISSING_HELPER
        })
      )
      const main = await step.run('main')
      expect(main.code).not.toBe(0)
      const message = errors(main).join('\n')
      expect(message).toContain(MISSING_HELPER)
      expect(message).toMatch(/does not exist|not found/i)
      expect(message).toContain('helper-instance-id')
      expect(await leftovers(before)).toEqual(nothing)
    },
    CONVERT_TIMEOUT_MS
  )

  // Killed once the volume is attached (no command yet), and once the convert script runs on it.
  it.each(['attachment', 'command'])(
    'removes with the post entry alone what a main process killed with SIGKILL left (killed at its first %s)',
    async (killAt) => {
      const before = await session.inventory()
      const step: RunnerStep = session.step(
        inputs({ 'source-ami-id': GOOD_AMI, 'ami-name': `e2e-killed-${killAt}` })
      )
      const { child, done } = step.start('main')
      const reached = await waitUntil(
        () => child.exitCode !== null || step.ledger().some((r) => r.kind === killAt),
        { timeoutMs: 120_000 }
      )
      child.kill('SIGKILL')
      const main = await done
      expect(reached).toBe(true)
      if (main.signal !== 'SIGKILL') console.error(explain(main))
      expect(main.signal).toBe('SIGKILL') // it did not end on its own first

      // Non-vacuous: the killed run did leave its volume, attached to the helper, and its key parameter.
      const ledger = step.ledger()
      const volume = ledger.find((r) => r.kind === 'volume')?.id
      expect(volume).toMatch(/^vol-/)
      const left = await leftovers(before)
      expect(left.volumes.map((v) => v.id)).toEqual([volume])
      expect(left.volumes[0]?.attachedTo).toEqual([expect.stringContaining(helper)])
      expect(left.parameters).toEqual(ledger.filter((r) => r.kind === 'parameter').map((r) => r.id))
      expect(left.parameters).toHaveLength(1)

      const post = await step.run('post')
      expect({ code: post.code, warnings: post.stdout.match(/^::warning.*$/gm) ?? [] }).toEqual({
        code: 0,
        warnings: []
      })
      expect(await leftovers(before)).toEqual(nothing)
      const command = ledger.find((r) => r.kind === 'command')?.id
      if (killAt === 'command') {
        // The convert script was cancelled, not left writing to a deleted volume: post removed the
        // volume only after the command had ended, so it says Cancelled now, without waiting.
        const listed = await session.ssmViaStandin.send(
          new ListCommandInvocationsCommand({ CommandId: command })
        )
        expect(listed.CommandInvocations?.map((i) => i.Status)).toEqual(['Cancelled'])
      }
      // The helper and its root volume are the user's: post leaves them alone.
      const after = await session.inventory()
      expect(after.instances).toContain(helper)
      expect(after.volumes.map((v) => v.id)).toEqual(expect.arrayContaining(helperRoot))
    },
    CONVERT_TIMEOUT_MS
  )

  // Runs last: what tools/aws-proxy.mjs saw of every request dist/index.js sent in this suite.
  it('sent only requests that keep the AWS contract rules, and waited through NotFound and pending states', async () => {
    const report = await session.proxyReport()
    const served = Object.fromEntries(Object.entries(report.served).map(([k, v]) => [k, v.length]))
    const checked = Object.values(report.checked).reduce((a, b) => a + b, 0)
    console.info(`aws-proxy: ${checked} requests checked, pending states served ${JSON.stringify(served)}`)
    expect(report.violations).toEqual([])
    // Non-vacuous: the proxy decoded and checked the calls of every service.
    for (const op of [
      'RegisterImage',
      'CreateVolume',
      'AttachVolume',
      'CreateSnapshot',
      'SendCommand',
      'PutParameter',
      'GetObject'
    ])
      expect([op, report.checked[op] ?? 0]).toEqual([op, expect.any(Number)])
    expect(
      Math.min(
        ...['RegisterImage', 'CreateVolume', 'SendCommand', 'GetObject'].map((op) => report.checked[op] ?? 0)
      )
    ).toBeGreaterThan(0)
    // Every waiting path met what AWS does: NotFound right after creation, then a pending state.
    expect(report.served.notFound.some((id) => id.startsWith('vol-'))).toBe(true)
    expect(report.served.notFound.some((id) => id.startsWith('snap-'))).toBe(true)
    expect(report.served.notFound.some((id) => id.startsWith('ami-'))).toBe(true)
    expect(report.served.creating.length).toBeGreaterThan(0)
    expect(report.served.attaching.length).toBeGreaterThan(0)
    expect(report.served.snapshotPending.length).toBeGreaterThan(0)
    expect(report.served.imagePending.length).toBeGreaterThan(0)
  })
})
