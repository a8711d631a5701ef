// convert-on: runner end to end: the committed dist/index.js against moto (which implements the
// EBS direct APIs), no helper, no loop device, no root. The snapshot is read back with
// ListSnapshotBlocks/GetSnapshotBlock and compared with what convert.sh (the helper path's
// script) writes onto a file target from the same bundle; a corrupt part and a SIGKILL in the
// middle of the upload (followed by post) leave no completed snapshot, no AMI, nothing at all.
import { spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals'
import { EBSClient, GetSnapshotBlockCommand, ListSnapshotBlocksCommand } from '@aws-sdk/client-ebs'
// @ts-expect-error plain JS module without types
import { startEbsEndpoint } from '../../scripts/ebs-latency.mjs'
import {
  CREDENTIALS,
  EmulatorSession,
  FIXTURE_DIR,
  type Inventory,
  instanceStoreAmi,
  REGION,
  waitUntil
} from '../../scripts/emulator-session.mjs'

const BUCKET = 'i2e-e2e-runner'
const GOOD_AMI = 'ami-0a1b2c3d4e5f60719'
const CORRUPT_AMI = 'ami-0badc0ffee0badc10'
const TIMEOUT_MS = 240_000
const BLOCK = 524288

const expected = Object.fromEntries(
  readFileSync(`${FIXTURE_DIR}/expected.txt`, 'utf8')
    .split('\n')
    .filter((l) => l && !l.startsWith('#') && l.includes('='))
    .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)])
)

const session = new EmulatorSession({
  amis: [
    instanceStoreAmi({
      amiId: GOOD_AMI,
      name: 'runner-good',
      imageLocation: `${BUCKET}/good/image.manifest.xml`
    }),
    instanceStoreAmi({
      amiId: CORRUPT_AMI,
      name: 'runner-corrupt',
      imageLocation: `${BUCKET}/corrupt/image.manifest.xml`
    })
  ]
})
session.ebsDirectOnly = true
let unavailable: string | undefined
try {
  await session.start()
} catch (err) {
  unavailable = `the emulator did not start: ${(err as Error).message}`
  await session.stop()
}

const key = readFileSync(`${FIXTURE_DIR}/test-key.pem`, 'utf8')
const nothing = { volumes: [], snapshots: [], images: [], parameters: [], instances: [] }
const leftovers = async (before: Inventory) => EmulatorSession.added(before, await session.inventory())
const inputs = (extra: Record<string, string>) => ({
  'convert-on': 'runner',
  'x509-private-key': key,
  tags: 'suite=e2e-runner',
  ...extra
})

/** The image a snapshot holds, read back block by block with the EBS direct APIs (holes as zeros). */
async function readBack(snapshotId: string, bytes: number): Promise<Buffer> {
  const ebs = new EBSClient({ region: REGION, endpoint: session.motoUrl, credentials: CREDENTIALS })
  try {
    const image = Buffer.alloc(bytes)
    const list = await ebs.send(new ListSnapshotBlocksCommand({ SnapshotId: snapshotId }))
    expect(list.Blocks?.length).toBeGreaterThan(0)
    for (const b of list.Blocks ?? []) {
      const got = await ebs.send(
        new GetSnapshotBlockCommand({
          SnapshotId: snapshotId,
          BlockIndex: b.BlockIndex,
          BlockToken: b.BlockToken
        })
      )
      const data = Buffer.from((await got.BlockData?.transformToByteArray()) ?? [])
      expect(data.length).toBe(BLOCK)
      expect(createHash('sha256').update(data).digest('base64')).toBe(got.Checksum)
      data.copy(image, Number(b.BlockIndex) * BLOCK, 0, Math.min(BLOCK, bytes - Number(b.BlockIndex) * BLOCK))
    }
    return image
  } finally {
    ebs.destroy()
  }
}

const suite = unavailable === undefined ? describe : process.env.CI ? describe : describe.skip
suite(`convert-on: runner on the emulator${unavailable ? ` (${unavailable})` : ''}`, () => {
  if (unavailable) {
    it('has an emulator to run against', () => {
      throw new Error(`CI must run the end-to-end tests, but ${unavailable}`)
    })
    return
  }
  beforeAll(async () => {
    await session.uploadBundle({ bucket: BUCKET, prefix: 'good' })
    await session.uploadBundle({ bucket: BUCKET, prefix: 'corrupt', corrupt: 'image.part.1' })
  })
  afterAll(() => session.stop())

  it(
    "writes the same bytes as the helper path's convert.sh, with no helper and no volume",
    async () => {
      const before = await session.inventory()
      const step = session.step(inputs({ 'source-ami-id': GOOD_AMI, 'ami-name': 'e2e-runner' }))
      const main = await step.run('main')
      if (main.code !== 0) console.error(main.stdout, main.stderr)
      expect(main.code).toBe(0)
      const out = step.outputs()
      expect(out['ami-id']).toMatch(/^ami-/)
      const bytes = Number(expected.image_size_bytes)
      const image = await readBack(out['snapshot-id'] ?? '', bytes)
      const runnerSha = createHash('sha256').update(image).digest('hex')

      // The helper path's writer, convert.sh, on a file target from the same bundle.
      const dir = mkdtempSync(join(tmpdir(), 'i2e-runner-e2e-'))
      try {
        const target = join(dir, 'volume.img')
        const run = spawnSync(
          'bash',
          [
            'src/scripts/convert.sh',
            '--manifest',
            `${FIXTURE_DIR}/image.manifest.xml`,
            '--key',
            `${FIXTURE_DIR}/test-key.pem`,
            '--target',
            target
          ],
          { encoding: 'utf8', env: { PATH: process.env.PATH ?? '/usr/bin:/bin', LANG: 'C' } }
        )
        expect(run.stdout).toContain('::result digest=ok')
        const helperSha = createHash('sha256').update(readFileSync(target).subarray(0, bytes)).digest('hex')
        expect(runnerSha).toBe(helperSha)
      } finally {
        rmSync(dir, { recursive: true, force: true })
      }
      expect(runnerSha).toBe(expected.image_sha256)

      const left = await leftovers(before)
      expect(left.volumes).toEqual([])
      expect(left.instances).toEqual([])
      expect(left.parameters).toEqual([])
      expect(left.images).toEqual([out['ami-id']])
      expect(step.summary()).toMatch(/blocks written/)
      expect((await step.run('post')).code).toBe(0)
    },
    TIMEOUT_MS
  )

  it(
    'leaves nothing behind on a corrupt part: the snapshot is never completed and is deleted',
    async () => {
      const before = await session.inventory()
      const step = session.step(inputs({ 'source-ami-id': CORRUPT_AMI, 'ami-name': 'e2e-runner-corrupt' }))
      const main = await step.run('main')
      expect(main.code).not.toBe(0)
      expect(main.stdout).toMatch(/image\.part\.1 digest mismatch/)
      expect(main.stdout).toMatch(/removed snapshot snap-/)
      expect(await leftovers(before)).toEqual(nothing)
      expect((await step.run('post')).code).toBe(0)
      expect(await leftovers(before)).toEqual(nothing)
    },
    TIMEOUT_MS
  )

  it(
    'post alone removes the pending snapshot of a main process killed with SIGKILL mid-upload',
    async () => {
      // Each PutSnapshotBlock takes 400 ms more, one at a time: the upload is surely under way when killed.
      const slow = await startEbsEndpoint({ delayMs: 400, target: session.motoUrl })
      try {
        const before = await session.inventory()
        const step = session.step(
          inputs({ 'source-ami-id': GOOD_AMI, 'ami-name': 'e2e-runner-killed', 'upload-concurrency': '1' })
        )
        step.extraEnv = { AWS_ENDPOINT_URL_EBS: slow.url }
        const { child, done } = step.start('main')
        const reached = await waitUntil(() => child.exitCode !== null || slow.stats.puts >= 3, {
          timeoutMs: 120_000
        })
        child.kill('SIGKILL')
        const main = await done
        expect(reached).toBe(true)
        expect(main.signal).toBe('SIGKILL')
        const snapshot = step.ledger().find((r) => r.kind === 'snapshot')?.id
        expect(snapshot).toMatch(/^snap-/)
        // Non-vacuous: the pending snapshot is there until post runs.
        expect((await leftovers(before)).snapshots).toEqual([snapshot])

        const post = await step.run('post')
        expect(post.code).toBe(0)
        expect(post.stdout).not.toMatch(/^::warning/m)
        expect(await leftovers(before)).toEqual(nothing)
      } finally {
        await slow.close()
      }
    },
    TIMEOUT_MS
  )
})
