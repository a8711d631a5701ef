// convert-on: runner end to end: the committed dist/index.js against moto (which implements the
// EBS direct APIs), no helper, no loop device, no root. "Same bytes both ways": the snapshot is
// read back with ListSnapshotBlocks/GetSnapshotBlock and its SHA-256 compared with that of what the
// helper path writes onto its volume from the same bundle (convert.sh --finalize through a loop
// device when root, fstab tidy included), for the hvm-mbr fixture and for a generated bare ext4
// root with four instance-store lines; /etc/fstab lost exactly those lines. A corrupt part and a
// SIGKILL in the middle of the upload (followed by post) leave no completed snapshot, no AMI, no
// image folder on the runner: nothing at all.
import { createHash } from 'node:crypto'
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { basename, join } from 'node:path'
import { afterAll, beforeAll, expect, it } from '@jest/globals'
import { EBSClient, GetSnapshotBlockCommand, ListSnapshotBlocksCommand } from '@aws-sdk/client-ebs'
import {
  extFile,
  extXattrs,
  GENERATED_FSTAB,
  GENERATED_FSTAB_TIDIED,
  GENERATED_KERNEL,
  GENERATED_SELINUX_LABEL,
  helperPathSha256,
  makeInstanceStoreBundle,
  sha256,
  withoutInstanceStore
} from '../__fixtures__/tidied-image.js'
// @ts-expect-error plain JS module without types
import { startEbsEndpoint } from '../../tools/ebs-latency.mjs'
import {
  CREDENTIALS,
  EmulatorSession,
  FIXTURE_DIR,
  type Inventory,
  REGION,
  waitUntil
} from '../../tools/emulator-session.mjs'
import {
  bundleAmis,
  describeWithEmulator,
  expectedFacts,
  NOTHING,
  startSession,
  uploadGoodAndCorrupt
} from '../__fixtures__/e2e-setup.js'

const BUCKET = 'i2e-e2e-runner'
const GOOD_AMI = 'ami-0a1b2c3d4e5f60719'
const CORRUPT_AMI = 'ami-0badc0ffee0badc10'
const GENERATED_AMI = 'ami-0a1b2c3d4e5f6071a'
const TIMEOUT_MS = 240_000
const BLOCK = 524288

const expected = expectedFacts()
const session = new EmulatorSession({
  amis: bundleAmis(BUCKET, {
    good: [GOOD_AMI, 'runner-good'],
    corrupt: [CORRUPT_AMI, 'runner-corrupt'],
    generated: [GENERATED_AMI, 'runner-generated']
  })
})
session.ebsDirectOnly = true
const unavailable = await startSession(session, { suite: 'the convert-on: runner tests', loopDevices: false })

const key = readFileSync(`${FIXTURE_DIR}/test-key.pem`, 'utf8')
const leftovers = async (before: Inventory) => EmulatorSession.added(before, await session.inventory())
const inputs = (extra: Record<string, string>) => ({
  'convert-on': 'runner',
  'x509-private-key': key,
  tags: 'suite=e2e-runner',
  ...extra
})

/** The image folders (convert-on: runner's sparse image) left in a runner's temp folder. */
const workDirs = (dir: string): string[] => readdirSync(dir).filter((n) => n.startsWith('i2e-image-'))

/** /etc/fstab and its backup in an image held in memory (written to a scratch file for debugfs). */
function readBackFile(image: Buffer, offset: number): { fstab?: string; backup?: string } {
  const dir = mkdtempSync(join(tmpdir(), 'i2e-runner-e2e-'))
  try {
    const file = join(dir, 'image.raw')
    writeFileSync(file, image)
    return {
      fstab: extFile(file, offset, '/etc/fstab'),
      backup: extFile(file, offset, '/etc/fstab.instance-to-ebs.bak')
    }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

/** The extended attributes of /etc/fstab in a bare ext image held in memory. */
function readBackXattrs(image: Buffer): string {
  const dir = mkdtempSync(join(tmpdir(), 'i2e-runner-e2e-'))
  try {
    const file = join(dir, 'image.raw')
    writeFileSync(file, image)
    return extXattrs(file, 0, '/etc/fstab')
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

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

describeWithEmulator('convert-on: runner on the emulator', unavailable, () => {
  let scratch = ''
  let generated = ''
  beforeAll(async () => {
    await uploadGoodAndCorrupt(session, BUCKET)
    scratch = mkdtempSync(join(tmpdir(), 'i2e-runner-e2e-gen-'))
    generated = makeInstanceStoreBundle(scratch)
    await session.uploadBundle({ bucket: BUCKET, prefix: 'generated', fixtureDir: generated })
  })
  afterAll(async () => {
    await session.stop()
    rmSync(scratch, { recursive: true, force: true })
  })

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

      // The helper path's writer and finalizer, convert.sh, from the same bundle: as root through a
      // loop device exactly as on a volume (--finalize); otherwise the same tidy, standalone.
      const helperSha = helperPathSha256(`${FIXTURE_DIR}/image.manifest.xml`, `${FIXTURE_DIR}/test-key.pem`)
      expect(runnerSha).toBe(helperSha)
      expect(runnerSha).not.toBe(expected.image_sha256) // non-vacuous: the tidy changed the image
      // /etc/fstab lost exactly its instance-store line; the backup is the bundled file itself.
      const offset = Number(expected.filesystem_offset_bytes)
      const fstab = readBackFile(image, offset)
      expect(sha256(Buffer.from(fstab.backup ?? ''))).toBe(expected.etc_fstab_sha256)
      expect(fstab.fstab).toBe(withoutInstanceStore(fstab.backup ?? ''))
      expect(fstab.fstab).not.toBe(fstab.backup)
      // The image facts and the block counts, in the log and the job summary as on the helper path.
      expect(main.stdout).toMatch(/^-\/dev\/xvdb\t\/mnt/m)
      expect(main.stdout).toMatch(/fstab tidy: \d+ block\(s\) written again/)
      const summary = step.summary()
      for (const fact of [
        'fstab removed',
        'fstab backup',
        'boot loader configuration',
        'blocks re-written',
        'upload rate'
      ])
        expect([fact, summary.includes(fact)]).toEqual([fact, true])
      expect(workDirs(step.dir)).toEqual([])

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
    'gives the same bytes as the helper path for a bare ext4 root with four instance-store lines and an SELinux label',
    async () => {
      const step = session.step({
        ...inputs({ 'source-ami-id': GENERATED_AMI, 'ami-name': 'e2e-runner-generated' }),
        'x509-private-key': readFileSync(join(generated, 'key.pem'), 'utf8')
      })
      const main = await step.run('main')
      if (main.code !== 0) console.error(main.stdout, main.stderr)
      expect(main.code).toBe(0)
      const out = step.outputs()
      const manifest = readFileSync(join(generated, 'image.manifest.xml'), 'utf8')
      const bytes = Number(/<size>(\d+)<\/size>/.exec(manifest)?.[1])
      const image = await readBack(out['snapshot-id'] ?? '', bytes)
      expect(sha256(image)).toBe(
        helperPathSha256(join(generated, 'image.manifest.xml'), join(generated, 'key.pem'))
      )
      const fstab = readBackFile(image, 0)
      expect(fstab.backup).toBe(GENERATED_FSTAB)
      expect(fstab.fstab).toBe(GENERATED_FSTAB_TIDIED)
      expect(GENERATED_FSTAB_TIDIED.split('\n')).toHaveLength(GENERATED_FSTAB.split('\n').length - 4)
      // The new fstab keeps the original's SELinux label.
      expect(readBackXattrs(image)).toContain(`security.selinux (${GENERATED_SELINUX_LABEL.length + 1})`)
      const summary = step.summary()
      expect(summary).toContain(GENERATED_KERNEL)
      expect(summary).toMatch(/NVMe driver in the image \| yes/)
      expect(summary).toMatch(/fstab removed \| 4/)
      expect(workDirs(step.dir)).toEqual([])
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
      expect(await leftovers(before)).toEqual(NOTHING)
      expect(workDirs(step.dir)).toEqual([])
      expect((await step.run('post')).code).toBe(0)
      expect(await leftovers(before)).toEqual(NOTHING)
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
        // Non-vacuous: the pending snapshot and the image folder are there until post runs.
        expect((await leftovers(before)).snapshots).toEqual([snapshot])
        const folder = step.ledger().find((r) => r.kind === 'work-dir')?.id
        expect(folder).toBeDefined()
        expect(workDirs(step.dir)).toEqual([basename(folder ?? '')])

        const post = await step.run('post')
        expect(post.code).toBe(0)
        expect(post.stdout).not.toMatch(/^::warning/m)
        expect(await leftovers(before)).toEqual(NOTHING)
        expect(workDirs(step.dir)).toEqual([])
      } finally {
        await slow.close()
      }
    },
    TIMEOUT_MS
  )
})
