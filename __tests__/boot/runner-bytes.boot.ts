// "Same bytes both ways" on the boot suite's real Debian images (tools/boot-images.sh, bundled
// by bench/make-bundle.sh as converted-images.boot.ts bundles them): each bundle goes through the
// runner path (the committed dist/index.js against moto, convert-on: runner) and through the
// helper path's convert.sh --finalize (a loop device, as on a volume); the snapshot read back
// with ListSnapshotBlocks/GetSnapshotBlock has the SHA-256 of the helper's volume, and /etc/fstab
// lost its instance-store line. converted-images.boot.ts boots the helper's bytes, so the
// runner's, being the same, boot too.
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, truncateSync, writeSync } from 'node:fs'
import { createHash } from 'node:crypto'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, expect, it } from '@jest/globals'
import { EBSClient, GetSnapshotBlockCommand, ListSnapshotBlocksCommand } from '@aws-sdk/client-ebs'
import { CREDENTIALS, EmulatorSession, REGION } from '../../tools/emulator-session.mjs'
import { bundleAmis, describeWithEmulator, startSession } from '../__fixtures__/e2e-setup.js'
import { extFile, helperPathSha256, withoutInstanceStore } from '../__fixtures__/tidied-image.js'
import { type BootImages, bootImages, cachedBundle } from './boot-harness.js'

const BUCKET = 'i2e-boot-runner'
const BLOCK = 524288
const AMIS = { hvm: 'ami-0b00b00b00b00b0a1', pv: 'ami-0b00b00b00b00b0a2' } as const

const session = new EmulatorSession({
  amis: bundleAmis(BUCKET, { hvm: [AMIS.hvm, 'boot-hvm'], pv: [AMIS.pv, 'boot-pv'] })
})
session.ebsDirectOnly = true
const unavailable = await startSession(session, {
  suite: 'the boot images through the runner path',
  loopDevices: false
})

/** The snapshot read back into a sparse FILE of BYTES (blocks not listed stay holes: zeros). */
async function readBackInto(snapshotId: string, bytes: number, file: string): Promise<string> {
  const ebs = new EBSClient({ region: REGION, endpoint: session.motoUrl, credentials: CREDENTIALS })
  const fd = openSync(file, 'w')
  try {
    const blocks: { index: number; token: string }[] = []
    let token: string | undefined
    do {
      const page = await ebs.send(new ListSnapshotBlocksCommand({ SnapshotId: snapshotId, NextToken: token }))
      for (const b of page.Blocks ?? [])
        blocks.push({ index: Number(b.BlockIndex), token: b.BlockToken ?? '' })
      token = page.NextToken
    } while (token)
    for (const b of blocks) {
      const got = await ebs.send(
        new GetSnapshotBlockCommand({ SnapshotId: snapshotId, BlockIndex: b.index, BlockToken: b.token })
      )
      const data = Buffer.from((await got.BlockData?.transformToByteArray()) ?? [])
      expect(createHash('sha256').update(data).digest('base64')).toBe(got.Checksum)
      writeSync(fd, data, 0, Math.min(BLOCK, bytes - b.index * BLOCK), b.index * BLOCK)
    }
  } finally {
    closeSync(fd)
    ebs.destroy()
  }
  truncateSync(file, bytes)
  return createHash('sha256').update(readFileSync(file)).digest('hex')
}

const title = "the boot images through the runner path: same bytes as the helper's"
describeWithEmulator(title, unavailable, () => {
  let images: BootImages
  let tmp = ''
  beforeAll(() => {
    images = bootImages()
    tmp = mkdtempSync(join(tmpdir(), 'i2e-boot-runner-'))
  })
  afterAll(async () => {
    await session.stop()
    if (tmp) rmSync(tmp, { recursive: true, force: true })
  })

  it.each([
    ['hvm', 1048576],
    ['pv', 0]
  ] as const)(
    '%s: the snapshot the runner writes is the volume the helper writes, fstab tidy included',
    async (name, offset) => {
      const bundle = cachedBundle(name, images[`${name}_image`] as string).dir
      await session.uploadBundle({ bucket: BUCKET, prefix: name, fixtureDir: bundle })
      const step = session.step({
        'convert-on': 'runner',
        'source-ami-id': AMIS[name],
        'ami-name': `boot-runner-${name}`,
        'x509-private-key': readFileSync(join(bundle, 'key.pem'), 'utf8'),
        tags: 'suite=boot-runner'
      })
      const main = await step.run('main')
      if (main.code !== 0) console.error(main.stdout, main.stderr)
      expect(main.code).toBe(0)
      const manifest = readFileSync(join(bundle, 'image.manifest.xml'), 'utf8')
      const bytes = Number(/<size>(\d+)<\/size>/.exec(manifest)?.[1])
      const file = join(tmp, `${name}.snapshot.img`)
      const runnerSha = await readBackInto(step.outputs()['snapshot-id'] ?? '', bytes, file)
      const helperSha = helperPathSha256(join(bundle, 'image.manifest.xml'), join(bundle, 'key.pem'))
      process.stderr.write(`boot-runner ${name}: runner ${runnerSha}, helper ${helperSha}\n`)
      expect(runnerSha).toBe(helperSha)
      const backup = extFile(file, offset, '/etc/fstab.instance-to-ebs.bak') ?? ''
      expect(backup).toMatch(/^\/dev\/xvdb /m)
      expect(extFile(file, offset, '/etc/fstab')).toBe(withoutInstanceStore(backup))
      expect(step.summary()).toMatch(/fstab removed \| 1/)
      expect((await step.run('post')).code).toBe(0)
      rmSync(file, { force: true })
    },
    20 * 60_000
  )
})
