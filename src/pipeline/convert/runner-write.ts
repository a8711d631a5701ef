// convert-on: runner. The runner itself turns the bundle into a snapshot with the EBS direct
// APIs: no helper, no volume, no SSM command, and the private key never leaves the runner.
// The manifest signature is checked and the AES key unwrapped here; the parts stream from S3
// through decryption, gunzip and the sparse tar reader into 512 KiB blocks; non-zero blocks go
// out with PutSnapshotBlock. CompleteSnapshot is sent only after the tar digest and the image
// size have been verified; otherwise the pending snapshot, recorded in the ledger from the moment
// it exists, is deleted by the cleanup (or by post after a SIGKILL).
import { CompleteSnapshotCommand, StartSnapshotCommand } from '@aws-sdk/client-ebs'
import { GetObjectCommand } from '@aws-sdk/client-s3'
import { GetParameterCommand } from '@aws-sdk/client-ssm'
import { readBundleSecrets, unwrapBundleKey, verifyManifestSignature } from '../../aws/bundle-crypto.js'
import { partKey, s3Url } from '../../aws/manifest.js'
import { errorCode } from '../../errors.js'
import { SnapshotBlockWriter } from '../../aws/snapshot-blocks.js'
import type { KeyMaterial } from '../../settings/index.js'
import { type RunContext, required } from '../context.js'
import type { Step } from '../runner.js'
import { messageOf } from '../../errors.js'
import { newDecodeStats } from './bundle-decode.js'
import { decodeBundleOffThread } from './decode-thread.js'
import { RunnerImage } from './runner-image.js'
import { waitForSnapshot } from './snapshot.js'
import { convertState, proceeding } from './state.js'
import { clientToken } from '../run-id.js'
import { tagsFor } from '../tags.js'
import { Input, type InputName } from '../../settings/inputs.js'

export const onRunner = (ctx: RunContext): boolean => ctx.settings.convertOn === 'runner'

/** The PEM text of key material: given as a value, or read from its SSM parameter (decrypted). */
export async function readKeyMaterial(
  ctx: RunContext,
  material: KeyMaterial,
  input: InputName
): Promise<string> {
  if (material.kind === 'value') return material.pem
  try {
    const out = await ctx.clients.ssm.send(
      new GetParameterCommand({ Name: material.name, WithDecryption: true })
    )
    const value = out.Parameter?.Value
    if (!value) throw new Error('the parameter is empty')
    return value
  } catch (err) {
    throw new Error(
      `Could not read ${input} ${material.name} on the runner (${errorCode(err) ?? messageOf(err)}); allow ssm:GetParameter (and kms:Decrypt for a SecureString) for the action's role`
    )
  }
}

async function readObject(ctx: RunContext, bucket: string, key: string): Promise<Uint8Array> {
  try {
    const out = await ctx.clients.s3.send(new GetObjectCommand({ Bucket: bucket, Key: key }), {
      abortSignal: ctx.signal
    })
    return (await out.Body?.transformToByteArray()) ?? new Uint8Array()
  } catch (err) {
    throw new Error(
      `Could not read s3://${bucket}/${key} (${errorCode(err) ?? messageOf(err)}); check that the action's role may s3:GetObject on arn:aws:s3:::${bucket}/*`
    )
  }
}

/** Minutes without a block written before EBS cancels the pending snapshot. */
const SNAPSHOT_IDLE_MINUTES = 30

export const runnerWriteStep: Step<RunContext> = {
  name: 'write snapshot',
  enabled: (ctx) => proceeding(ctx) && onRunner(ctx),
  run: async (ctx) => {
    const s = convertState(ctx)
    const manifest = required(s.manifest, 'the manifest')
    const name = required(s.amiName, 'the AMI name')
    const volumeSize = required(s.volumeSizeGiB, 'the volume size')
    const where = `the manifest ${s3Url(manifest)}`
    const xml = Buffer.from(await readObject(ctx, manifest.bucket, manifest.key)).toString('utf8')
    const secrets = readBundleSecrets(xml, where)

    const keyMaterial = ctx.settings.x509.privateKey
    if (!keyMaterial)
      throw new Error(`No private key: set '${Input.X509PrivateKey}' or '${Input.X509PrivateKeyParameter}'`)
    const privateKeyPem = await readKeyMaterial(ctx, keyMaterial, Input.X509PrivateKeyParameter)
    const cert = ctx.settings.x509.certificate
    const certificatePem = cert ? await readKeyMaterial(ctx, cert, Input.X509CertificateParameter) : undefined
    // The key first: a wrong key then says so, rather than failing the signature check with its public half.
    const { key, iv } = unwrapBundleKey(secrets, privateKeyPem)
    verifyManifestSignature(secrets, { certificatePem, privateKeyPem }, where)
    ctx.log.info(
      `manifest signature verified (${certificatePem ? 'certificate' : "the private key's public half"}); key and IV unwrapped on the runner`
    )

    // The image's folder on the runner (checked: Linux, e2fsprogs) before anything is created in AWS.
    const image = await RunnerImage.create(ctx, secrets.imageBytes)
    try {
      await writeSnapshot(ctx, image, { secrets, key, iv, name, volumeSize })
    } finally {
      await image.remove(ctx)
    }
  }
}

// Why writeSnapshot is longer than 60 lines: StartSnapshot, the block writes, the tidy's
// rewrites and CompleteSnapshot are one sequence with one catch that must leave the pending
// snapshot in the ledger.
interface WriteInput {
  secrets: ReturnType<typeof readBundleSecrets>
  key: Buffer
  iv: Buffer
  name: string
  volumeSize: number
}

async function writeSnapshot(ctx: RunContext, image: RunnerImage, input: WriteInput): Promise<void> {
  const s = convertState(ctx)
  const manifest = required(s.manifest, 'the manifest')
  const { secrets, key, iv, name, volumeSize } = input
  const { ami } = ctx.settings
  const source = s.sourceImage?.ImageId ?? s3Url(manifest)
  const started = await ctx.clients.ebs.send(
    new StartSnapshotCommand({
      VolumeSize: volumeSize,
      Description: `instance-to-ebs: root of ${name}, converted from ${source}`.slice(0, 255),
      Tags: tagsFor(ctx, name),
      // "A unique, case-sensitive identifier that you provide to ensure the idempotency of the
      // request. ... Maximum length of 255" (StartSnapshot, ClientToken).
      ClientToken: clientToken(ctx, 'start-snapshot'),
      Encrypted: ami.encrypted || undefined,
      KmsKeyArn: ami.kmsKeyId,
      // "The amount of time (in minutes) after which the snapshot is automatically cancelled if:
      // No blocks are written to the snapshot. The snapshot is not completed after writing the
      // last block of data." (StartSnapshot, Timeout; 10 to 4320): a dead runner's pending
      // snapshot goes away by itself even if post never runs.
      Timeout: SNAPSHOT_IDLE_MINUTES
    }),
    { abortSignal: ctx.signal }
  )
  const snapshotId = required(started.SnapshotId, 'the id of the new snapshot')
  ctx.ledger.record({ kind: 'snapshot', id: snapshotId, removeOn: 'failure' })
  s.snapshotId = snapshotId
  ctx.log.info(`snapshot ${snapshotId} started (${volumeSize} GiB, EBS direct APIs)`)

  const writer = new SnapshotBlockWriter({
    ebs: ctx.clients.ebs,
    snapshotId,
    concurrency: ctx.settings.uploadConcurrency,
    signal: ctx.signal,
    // Tests poll every millisecond; the block back-off shrinks with them.
    ...(ctx.pollDelayMs < 100 ? { backoffBaseMs: 1, backoffCapMs: 5 } : {})
  })
  const stats = newDecodeStats()
  const t0 = Date.now()
  let lastReport = t0
  try {
    for await (const block of decodeBundleOffThread({
      secrets,
      key,
      iv,
      stats,
      digests: true,
      readPart: (part) => readObject(ctx, manifest.bucket, partKey(manifest, part))
    })) {
      await image.write(block.index, block.data)
      // The block's memory goes back to the decoder once it is written (it is in the image file).
      await writer.put(block.index, block.data, { sha256: block.sha256, onSent: block.release })
      if (Date.now() - lastReport > 30_000) {
        lastReport = Date.now()
        ctx.log.info(
          `write snapshot: ${stats.dataBlocks} blocks sent, ${(stats.tarBytes / 1048576).toFixed(0)} MiB of the tar stream read`
        )
      }
    }
  } catch (err) {
    await writer.settle()
    throw err
  }
  const sent = await writer.finish()
  // Reached only when decodeBundle returned: the tar digest and the image size are verified
  // (and the signature was checked before the snapshot was started). Now the tidy, as on the
  // helper (tidy-fstab.sh), and the blocks it changed written again.
  const results = await image.tidy(ctx.log.info, ctx.signal)
  for (const [k, v] of Object.entries(results)) ctx.facts[k] = v
  let again: { rewritten: number; added: number }
  try {
    again = await image.rewriteChanged(writer)
  } catch (err) {
    await writer.settle()
    throw err
  }
  const totals = await writer.finish()
  ctx.log.info(
    `fstab tidy: ${again.rewritten} block(s) written again, ${again.added} block(s) added (of ${sent.blocksWritten} sent)`
  )
  await ctx.clients.ebs.send(
    new CompleteSnapshotCommand({
      SnapshotId: snapshotId,
      ChangedBlocksCount: totals.blocksWritten,
      Checksum: totals.checksum,
      ChecksumAlgorithm: 'SHA256',
      ChecksumAggregationMethod: 'LINEAR'
    }),
    { abortSignal: ctx.signal }
  )
  const seconds = Math.max(0.001, (Date.now() - t0) / 1000)
  const skipped = stats.blocks - totals.blocksWritten
  const mibs = (totals.bytesSent / 1048576 / seconds).toFixed(1)
  ctx.facts['blocks written'] = String(totals.blocksWritten)
  ctx.facts['blocks re-written'] =
    `${again.rewritten + again.added} after the fstab tidy (${again.rewritten} sent again, ${again.added} new)`
  ctx.facts['blocks skipped'] =
    `${skipped} (${stats.zeroBlocks} all-zero, ${skipped - stats.zeroBlocks} holes)`
  ctx.facts['bytes sent'] = String(totals.bytesSent)
  ctx.facts['upload rate'] = `${mibs} MiB/s`
  ctx.facts.digest = 'ok'
  ctx.log.info(
    `wrote ${totals.blocksWritten} of ${stats.blocks} blocks (${skipped} skipped: zeros or holes; ${again.rewritten + again.added} re-written after the fstab tidy), ${totals.bytesSent} bytes in ${seconds.toFixed(1)} s (${mibs} MiB/s, ${totals.retries} retries); tar digest and image size verified; snapshot completed`
  )
  await waitForSnapshot(ctx, snapshotId)
}
