// convert-on: runner against the strict fake account: the real hvm-mbr bundle streamed from
// "S3" into an EBS-direct snapshot (per-block SHA-256 and the LINEAR aggregate checked by the
// fake as EBS checks them), registered like the helper path; and the faults: a corrupt part, a
// wrong key, a throttling storm on PutSnapshotBlock, a storm that never ends. Whatever fails
// leaves no completed snapshot, no AMI, nothing at all.
import { createHash, generateKeyPairSync } from 'node:crypto'
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from '@jest/globals'
import { runningDecodeWorkers } from '../../../src/pipeline/convert/decode-thread.js'
import { realBundle } from '../../__fixtures__/real-bundles.js'
import {
  type AccountMocks,
  BUCKET,
  directSnapshotImage,
  FakeAccount,
  HELPER,
  MANIFEST_KEY,
  mockAccount,
  REGION,
  SOURCE_AMI,
  serviceError
} from '../../__fixtures__/aws-account.js'
import { runConvert } from '../../__fixtures__/convert-run.js'
import { tidiedImage } from '../../__fixtures__/tidied-image.js'

const hvm = realBundle('hvm-mbr')
// The image as the helper path makes it: rebuilt, then its instance-store fstab line removed.
const tidied = tidiedImage(`${hvm.dir}/image.manifest.xml`, `${hvm.dir}/test-key.pem`)
const onRunner = {
  'source-ami-id': SOURCE_AMI,
  'convert-on': 'runner',
  region: REGION,
  'x509-private-key': hvm.key,
  'upload-concurrency': '8'
}

/** The fake-command folders of the current test: removed after it, passed or failed. */
const fakeBins: string[] = []

/** A folder of stand-in commands (a script body each; empty: the real command, linked). */
function fakeBin(commands: Record<string, string>): string {
  const bin = mkdtempSync(join(tmpdir(), 'i2e-fake-bin-'))
  fakeBins.push(bin)
  for (const [name, body] of Object.entries(commands)) {
    if (body) writeFileSync(join(bin, name), `#!/bin/bash\n${body}\n`, { mode: 0o755 })
    else
      symlinkSync(
        execFileSync('bash', ['-c', `command -v ${name}`], { encoding: 'utf8' }).trim(),
        join(bin, name)
      )
  }
  return bin
}

/** Runs FN with the runner's PATH set to PATH (what the action's scripts are started with). */
async function withPath<T>(path: string, fn: () => Promise<T>): Promise<T> {
  const saved = process.env.PATH
  process.env.PATH = path
  try {
    return await fn()
  } finally {
    process.env.PATH = saved
  }
}

let account: FakeAccount
let mocks: AccountMocks
let runnerTemp = ''
beforeEach(() => {
  account = new FakeAccount().withRealParts()
  mocks = mockAccount(account)
  runnerTemp = mkdtempSync(join(tmpdir(), 'i2e-runner-temp-'))
  process.env.RUNNER_TEMP = runnerTemp
})
afterEach(() => {
  mocks.restore()
  delete process.env.RUNNER_TEMP
  // The image folder on the runner is gone after every run, whether it succeeded or failed.
  const left = readdirSync(runnerTemp)
  rmSync(runnerTemp, { recursive: true, force: true })
  for (const bin of fakeBins.splice(0)) rmSync(bin, { recursive: true, force: true })
  expect(left).toEqual([])
})

/** Operations that reached the account, DryRun probes left out. */
const ops = (): string[] => account.calls.filter((c) => !c.input.DryRun).map((c) => c.op)

describe('convert-on: runner', () => {
  it('writes the image into a snapshot with no helper and registers it like the helper path', async () => {
    const { result, ctx, lines } = await runConvert(onRunner)
    expect(result.error).toBeUndefined()
    const snapshotId = ctx.outputs['snapshot-id'] as string
    const image = directSnapshotImage(account, snapshotId, Number(hvm.facts.image_size_bytes))
    expect(createHash('sha256').update(image).digest('hex')).toBe(tidied.sha256)
    expect(tidied.sha256).not.toBe(hvm.facts.image_sha256) // non-vacuous: the tidy changed it
    // The image's facts and the tidy, reported as the helper path reports them.
    expect(ctx.facts).toMatchObject({
      fstab_removed: '1',
      fstab_backup: '/etc/fstab.instance-to-ebs.bak',
      filesystem: 'ext4',
      filesystem_label: hvm.facts.filesystem_label,
      bootloader_config: '/boot/grub/menu.lst',
      kernel_version: 'none'
    })
    expect(lines.join('\n')).toMatch(/^-\/dev\/xvdb\t\/mnt/m) // the diff of the fstab, in the log
    expect(lines.join('\n')).toContain(`tidied ${join(runnerTemp, 'i2e-image-')}`) // where the image was
    // No helper, no volume, no command, no key parameter.
    for (const op of [
      'RunInstances',
      'CreateVolume',
      'AttachVolume',
      'SendCommand',
      'PutParameter',
      'CreateSnapshot'
    ])
      expect(ops()).not.toContain(op)
    const start = account.callsOf('StartSnapshot')[0]
    expect(start).toMatchObject({
      VolumeSize: 1,
      ClientToken: expect.stringMatching(/^i2e-4242-1-a1b2c3d4-/)
    })
    expect(start?.Tags).toContainEqual({ Key: 'instance-to-ebs:run', Value: '4242-1-a1b2c3d4' })
    // Completed once, after every block, with the count the fake saw.
    expect(ops().filter((o) => o === 'CompleteSnapshot')).toHaveLength(1)
    expect(ops().lastIndexOf('PutSnapshotBlock')).toBeLessThan(ops().indexOf('CompleteSnapshot'))
    expect(ops().indexOf('CompleteSnapshot')).toBeLessThan(ops().indexOf('RegisterImage'))
    const register = account.callsOf('RegisterImage').find((i) => !i.DryRun)
    expect(register?.BlockDeviceMappings?.[0]?.Ebs?.SnapshotId).toBe(snapshotId)
    expect(account.leftovers()).toEqual([`image ${ctx.outputs['ami-id']}`, `snapshot ${snapshotId}`])
    // Blocks: 128 in a 64 MiB image; the bundle's holes and zero blocks are not sent.
    const written = Number(ctx.facts['blocks written'])
    expect(written).toBe(account.direct.get(snapshotId)?.blocks.size)
    expect(written).toBeGreaterThan(0)
    expect(written).toBeLessThan(128)
    expect(ctx.facts['blocks skipped']).toMatch(new RegExp(`^${128 - written} `))
    // The blocks the tidy changed went again (the superblock, bitmaps, /etc, the new fstab's block).
    const again = /^(\d+) after the fstab tidy \((\d+) sent again, (\d+) new\)$/.exec(
      ctx.facts['blocks re-written'] ?? ''
    )
    expect(again).not.toBeNull()
    const resent = Number(again?.[2])
    expect(Number(again?.[1])).toBeGreaterThan(0)
    expect(Number(ctx.facts['bytes sent'])).toBe((written + resent) * 524288)
    expect(ctx.facts['upload rate']).toMatch(/MiB\/s$/)
    expect(lines.join('\n')).toMatch(/manifest signature verified/)
    // The plan holds no helper step: the summary lists only what could run.
    expect(result.timings.map((t) => t.step)).toEqual([
      'preflight',
      'preflight source',
      'image facts',
      'write snapshot',
      'register'
    ])
  })

  it('refuses a corrupt part: never completed, the snapshot deleted, no AMI', async () => {
    const key = `${BUCKET}/legacy/image.part.1`
    const part = Buffer.from(account.objects.get(key) as Buffer)
    part[4242] = (part[4242] as number) ^ 0xff
    account.objects.set(key, part)
    const { result } = await runConvert(onRunner)
    expect(result.ok).toBe(false)
    expect(String(result.error)).toMatch(/part image\.part\.1 digest mismatch/)
    expect(ops()).toContain('StartSnapshot')
    expect(ops()).not.toContain('CompleteSnapshot')
    expect(ops()).not.toContain('RegisterImage')
    expect(account.leftovers()).toEqual([])
    expect(result.cleanup.problems).toEqual([])
  })

  it('fails cleanly when the decoder thread dies mid-upload: never completed, the snapshot deleted', async () => {
    // The first PutSnapshotBlock ends the decoder's worker thread as a crash would (at most
    // BLOCK_WINDOW blocks ahead of the uploads, it is still decoding then).
    account.failOn(
      'PutSnapshotBlock',
      () => {
        for (const worker of runningDecodeWorkers) void worker.terminate()
        return undefined
      },
      1
    )
    const { result } = await runConvert(onRunner)
    expect(result.ok).toBe(false)
    expect(String(result.error)).toMatch(/bundle decoder's worker thread stopped/)
    expect(ops()).toContain('PutSnapshotBlock')
    expect(ops()).not.toContain('CompleteSnapshot')
    expect(ops()).not.toContain('RegisterImage')
    expect(ops()).toContain('DeleteSnapshot')
    expect(account.leftovers()).toEqual([])
    expect(result.cleanup.problems).toEqual([])
    expect(runningDecodeWorkers.size).toBe(0)
  })

  it('refuses a wrong key before anything is made', async () => {
    const other = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({
      type: 'pkcs8',
      format: 'pem'
    }) as string
    const { result } = await runConvert({ ...onRunner, 'x509-private-key': other })
    expect(result.ok).toBe(false)
    expect(String(result.error)).toMatch(/wrong private key/)
    expect(ops()).not.toContain('StartSnapshot')
    expect(account.leftovers()).toEqual([])
  })

  it('refuses a wrong key with the right certificate: the unwrap check, not an error from RSA', async () => {
    const other = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({
      type: 'pkcs8',
      format: 'pem'
    }) as string
    const { result } = await runConvert({
      ...onRunner,
      'x509-private-key': other,
      'x509-certificate': hvm.cert
    })
    expect(String(result.error)).toMatch(/wrong private key/)
    expect(ops()).not.toContain('StartSnapshot')
    expect(account.leftovers()).toEqual([])
  })

  it('refuses a runner without debugfs before anything is made', async () => {
    const bin = fakeBin({ bash: '', dirname: '' })
    const { result } = await withPath(bin, () => runConvert(onRunner))
    expect(result.ok).toBe(false)
    expect(String(result.error)).toMatch(/cannot tidy the image on this runner: required command 'debugfs'/)
    expect(ops()).not.toContain('StartSnapshot')
    expect(account.leftovers()).toEqual([])
  })

  it('a tidy that fails after the upload: never completed, the snapshot deleted, no AMI', async () => {
    // A debugfs that passes the tool check but cannot read anything.
    const bin = fakeBin({ debugfs: 'echo "debugfs: cannot open" >&2; exit 1' })
    const { result } = await withPath(`${bin}:${process.env.PATH}`, () => runConvert(onRunner))
    expect(result.ok).toBe(false)
    expect(String(result.error)).toMatch(/could not be tidied on the runner .*debugfs/)
    expect(ops()).toContain('PutSnapshotBlock')
    expect(ops()).not.toContain('CompleteSnapshot')
    expect(ops()).not.toContain('RegisterImage')
    expect(account.leftovers()).toEqual([])
  })

  it('rides out a throttling storm on PutSnapshotBlock with back-off', async () => {
    // Every block is throttled twice, and every third block then meets a 500 as well.
    const tries = new Map<number, number>()
    account.failOn(
      'PutSnapshotBlock',
      (input) => {
        const n = (tries.get(input.BlockIndex) ?? 0) + 1
        tries.set(input.BlockIndex, n)
        if (n <= 2) return serviceError('ThrottlingException', 'Rate exceeded', 400)
        return n === 3 && input.BlockIndex % 3 === 0
          ? serviceError('InternalServerException', 'internal', 500)
          : undefined
      },
      Number.POSITIVE_INFINITY
    )
    const { result, ctx } = await runConvert(onRunner)
    expect(result.error).toBeUndefined()
    const snapshotId = ctx.outputs['snapshot-id'] as string
    const image = directSnapshotImage(account, snapshotId, Number(hvm.facts.image_size_bytes))
    expect(createHash('sha256').update(image).digest('hex')).toBe(tidied.sha256)
    const puts = account.calls.filter((c) => c.op === 'PutSnapshotBlock').length
    expect(puts).toBeGreaterThanOrEqual(3 * Number(ctx.facts['blocks written']))
  })

  it('gives up on a storm that never ends: nothing completed, nothing left', async () => {
    account.failOn(
      'PutSnapshotBlock',
      serviceError('ThrottlingException', 'Rate exceeded', 400),
      Number.POSITIVE_INFINITY
    )
    const { result } = await runConvert(onRunner)
    expect(result.ok).toBe(false)
    expect(String(result.error)).toMatch(
      /PutSnapshotBlock of block \d+ .* failed after 10 attempt\(s\) \(ThrottlingException\)/
    )
    expect(ops()).not.toContain('CompleteSnapshot')
    expect(account.leftovers()).toEqual([])
  })

  it('does not retry what retrying cannot fix', async () => {
    account.failOn(
      'PutSnapshotBlock',
      serviceError('AccessDeniedException', 'no', 403),
      Number.POSITIVE_INFINITY
    )
    const { result } = await runConvert(onRunner)
    expect(String(result.error)).toMatch(/failed after 1 attempt\(s\) \(AccessDeniedException\)/)
    expect(account.leftovers()).toEqual([])
  })
})

describe('convert-on: helper, the signature checked on the runner in preflight', () => {
  const onHelper = { 'source-ami-id': SOURCE_AMI, 'helper-instance-id': HELPER, region: REGION }

  it('refuses a manifest changed after signing before a volume exists (certificate given)', async () => {
    const key = `${BUCKET}/${MANIFEST_KEY}`
    account.objects.set(
      key,
      String(account.objects.get(key)).replace('<size>67108864</size>', '<size>67108865</size>')
    )
    const { result } = await runConvert({
      ...onHelper,
      'x509-private-key': hvm.key,
      'x509-certificate': hvm.cert
    })
    expect(result.failedStep).toBe('preflight source')
    expect(String(result.error)).toMatch(/manifest signature mismatch/)
    for (const op of ['CreateVolume', 'SendCommand', 'PutParameter']) expect(ops()).not.toContain(op)
    expect(account.leftovers()).toEqual([])
  })

  it('refuses a wrong private key in preflight, whatever RSA decryption returns', async () => {
    const other = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({
      type: 'pkcs8',
      format: 'pem'
    }) as string
    const { result } = await runConvert({
      ...onHelper,
      'x509-private-key': other,
      'x509-certificate': hvm.cert
    })
    expect(String(result.error)).toMatch(/wrong private key/)
    expect(ops()).not.toContain('CreateVolume')
  })

  it('passes the real bundle with its key and says so', async () => {
    const { result, lines } = await runConvert({
      ...onHelper,
      'x509-private-key': hvm.key,
      'dry-run': 'true'
    })
    expect(result.error).toBeUndefined()
    expect(lines).toContain('manifest signature verified on the runner; the private key opens the bundle key')
  })
})
