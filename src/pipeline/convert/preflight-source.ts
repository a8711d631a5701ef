// Preflight, part two: the source. The instance-store AMI (or the manifest given directly), the
// manifest and every part in S3, the volume size, and the name of the AMI to make. In mode full
// the source AMI is the one the bundle steps registered (outputs['instance-store-ami-id']).
import { DeregisterImageCommand, DescribeImagesCommand, type Image } from '@aws-sdk/client-ec2'
import { createPublicKey } from 'node:crypto'
import { readBundleSecrets, unwrapBundleKey, verifyManifestSignature } from '../../aws/bundle-crypto.js'
import { checkParts, manifestFromImageLocation, readManifest, s3Url } from '../../aws/manifest.js'
import { provePermission } from '../../aws/permissions.js'
import { errorCode } from '../../errors.js'
import type { RunContext } from '../context.js'
import type { Step } from '../runner.js'
import { convertsToHvm } from './image-facts.js'
import { convertState, GiB, HVM_PARTITION_OFFSET } from './state.js'
import { RUN_TAG } from '../tags.js'
import { Input } from '../../settings/inputs.js'

const parses = (pem: string | undefined): pem is string => {
  if (!pem) return false
  try {
    createPublicKey(pem)
    return true
  } catch {
    return false
  }
}

/**
 * Helper path: the manifest signature (and, with the private key at hand, the key itself) is
 * checked here on the runner, before a helper or a volume exists. Node's OpenSSL verifies the
 * SHA-1 signature that a helper's crypto policy may refuse (`openssl dgst -sha1 -verify`).
 * Key material kept in SSM parameters is not read here: the helper checks it.
 */
function checkSignatureOnRunner(ctx: RunContext, xml: string, where: string): void {
  const { certificate, privateKey } = ctx.settings.x509
  const certificatePem = certificate?.kind === 'value' ? certificate.pem : undefined
  const privateKeyPem = privateKey?.kind === 'value' ? privateKey.pem : undefined
  const usable = [certificatePem, privateKeyPem].filter(parses)
  if (usable.length === 0) {
    ctx.log.info(
      'manifest signature: checked on the helper (no certificate or private key readable on the runner)'
    )
    return
  }
  const secrets = readBundleSecrets(xml, `the manifest ${where}`)
  if (parses(privateKeyPem)) unwrapBundleKey(secrets, privateKeyPem) // a wrong key says so first
  verifyManifestSignature(
    secrets,
    { certificatePem: parses(certificatePem) ? certificatePem : undefined, privateKeyPem },
    `the manifest ${where}`
  )
  ctx.log.info(
    `manifest signature verified on the runner${parses(privateKeyPem) ? '; the private key opens the bundle key' : ''}`
  )
}

async function describeSourceImage(ctx: RunContext, amiId: string): Promise<Image> {
  let image: Image | undefined
  try {
    const out = await ctx.clients.ec2.send(new DescribeImagesCommand({ ImageIds: [amiId] }))
    image = out.Images?.[0]
  } catch (err) {
    if (!/^InvalidAMIID\./.test(errorCode(err) ?? '')) throw err
  }
  if (!image)
    throw new Error(
      `Source AMI ${amiId} does not exist in ${ctx.settings.region} or is not visible to this account; check '${Input.SourceAmiId}' and '${Input.Region}'`
    )
  if (image.RootDeviceType === 'ebs')
    throw new Error(
      `Source AMI ${amiId} is already EBS-backed; there is nothing to convert (give an instance-store AMI in '${Input.SourceAmiId}')`
    )
  if (image.State !== 'available')
    throw new Error(`Source AMI ${amiId} is ${image.State}; only an available AMI can be converted`)
  return image
}

/**
 * The name of the new AMI: the input; or the source's name without the '-instance-store' that
 * mode full's bundle steps append (so both modes default alike); or the source's name with -ebs.
 */
export function amiNameFor(ctx: RunContext, source: Image | undefined): string {
  if (ctx.settings.ami.name) return ctx.settings.ami.name
  const base = (source?.Name ?? source?.ImageId ?? 'instance-to-ebs').replace(
    /[^A-Za-z0-9()[\] ./\-'@_]/g,
    '-'
  )
  const stem = base.replace(/-instance-store$/, '')
  return stem !== base && stem.length >= 3 ? stem : `${base.slice(0, 124)}-ebs`
}

/** Looks for an own AMI of that name and applies if-ami-exists. */
async function checkAmiName(ctx: RunContext, name: string, sourceId: string | undefined): Promise<void> {
  const s = convertState(ctx)
  const out = await ctx.clients.ec2.send(
    new DescribeImagesCommand({ Owners: ['self'], Filters: [{ Name: 'name', Values: [name] }] })
  )
  const existing = out.Images?.find((i) => i.Name === name)
  if (!existing) {
    ctx.log.info(`AMI name '${name}' is free`)
    return
  }
  const id = existing.ImageId as string
  if (id === sourceId || existing.RootDeviceType !== 'ebs')
    throw new Error(
      `AMI name '${name}' belongs to the instance-store AMI ${id}; set '${Input.AmiName}' to a different name for the EBS-backed AMI`
    )
  switch (ctx.settings.ami.ifExists) {
    case 'fail':
      throw new Error(
        `An AMI named '${name}' already exists (${id}); set '${Input.IfAmiExists}' to reuse or replace, or choose another '${Input.AmiName}'`
      )
    case 'reuse': {
      s.stop = 'reuse'
      const snapshot = existing.BlockDeviceMappings?.find((b) => b.DeviceName === existing.RootDeviceName)
        ?.Ebs?.SnapshotId
      ctx.outputs['ami-id'] = id
      if (snapshot) ctx.outputs['snapshot-id'] = snapshot
      ctx.log.info(
        `AMI '${name}' exists (${id}); ${Input.IfAmiExists}: reuse, so it is the result and nothing is made`
      )
      return
    }
    case 'replace':
      await provePermission(
        `ec2:DeregisterImage on ${id} (the policy may allow it only for AMIs tagged ${RUN_TAG})`,
        () => ctx.clients.ec2.send(new DeregisterImageCommand({ ImageId: id, DryRun: true }))
      )
      s.replaces = existing
      ctx.log.info(
        `AMI '${name}' exists (${id}); ${Input.IfAmiExists}: replace, so it is deregistered once the new image is ready`
      )
      return
  }
}

export const preflightSourceStep: Step<RunContext> = {
  name: 'preflight source',
  run: async (ctx) => {
    const s = convertState(ctx)
    const { settings } = ctx
    let manifest = settings.source.manifest
    const amiId = settings.source.amiId ?? ctx.outputs['instance-store-ami-id']
    if (!manifest) {
      if (!amiId) {
        if (settings.dryRun) {
          s.stop = 'dry-run'
          ctx.log.info(
            'dry run: the source AMI is made by the bundle steps, so its checks wait for a real run'
          )
          return
        }
        throw new Error(`No source to convert: set '${Input.SourceAmiId}' or '${Input.ManifestLocation}'`)
      }
      const image = await describeSourceImage(ctx, amiId)
      s.sourceImage = image
      manifest = manifestFromImageLocation(image.ImageLocation ?? '')
      if (!manifest)
        throw new Error(
          `Source AMI ${amiId} has no usable bundle location ('${image.ImageLocation ?? ''}'); set '${Input.ManifestLocation}' to s3://bucket/prefix/name.manifest.xml instead`
        )
      ctx.log.info(
        `source ${amiId} (${image.Name ?? 'no name'}): instance-store, bundle at ${s3Url(manifest)}`
      )
    }
    s.manifest = manifest

    const parsed = await readManifest(ctx.clients.s3, manifest)
    const bundled = await checkParts(ctx.clients.s3, manifest, parsed.parts)
    ctx.log.info(
      `manifest: image of ${parsed.imageBytes} bytes in ${parsed.parts.length} part(s) (${bundled} bytes), all readable`
    )
    if (settings.convertOn === 'helper' && parsed.xml)
      checkSignatureOnRunner(ctx, parsed.xml, s3Url(manifest))
    s.imageBytes = parsed.imageBytes
    // A paravirtual image made hvm goes into a partition that starts 1 MiB into the volume.
    const partitioned = convertsToHvm(settings, s.sourceImage)
    const diskBytes = parsed.imageBytes + (partitioned ? HVM_PARTITION_OFFSET : 0)
    const needed = Math.max(1, Math.ceil(diskBytes / GiB))
    const asked = settings.ami.volumeSizeGiB
    if (asked !== undefined && asked < needed)
      throw new Error(
        `'${Input.VolumeSize}' ${asked} GiB is smaller than the image (${parsed.imageBytes} bytes${partitioned ? ' after a 1 MiB partition offset' : ''} = ${needed} GiB); set it to ${needed} or more, or leave it empty`
      )
    s.volumeSizeGiB = Math.max(needed, asked ?? 0)
    ctx.log.info(`volume size: ${s.volumeSizeGiB} GiB`)

    const name = amiNameFor(ctx, s.sourceImage)
    s.amiName = name
    await checkAmiName(ctx, name, amiId)
    if (s.stop === 'reuse') {
      if (amiId) ctx.outputs['instance-store-ami-id'] = amiId
      ctx.outputs['manifest-location'] = s3Url(manifest)
    }
  }
}
