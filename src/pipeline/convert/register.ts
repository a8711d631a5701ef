// Registers the EBS-backed AMI from the snapshot, waits until it is available and sets the
// outputs. With if-ami-exists: replace the old AMI of that name is deregistered just before
// (EC2 keeps names unique, so both cannot exist) and its snapshots are deleted only once the
// new AMI is available, so a failed registration leaves them for a manual re-register.
import {
  DeleteSnapshotCommand,
  DeregisterImageCommand,
  DescribeImagesCommand,
  type Image,
  RegisterImageCommand
} from '@aws-sdk/client-ec2'
import { s3Url } from '../../aws/manifest.js'
import { errorCode, poll } from '../../aws/poll.js'
import { type RunContext, required } from '../context.js'
import { messageOf, type Step } from '../runner.js'
import { convertState, proceeding, tagSpec } from './state.js'

async function deregisterReplaced(ctx: RunContext, old: Image): Promise<void> {
  try {
    await ctx.clients.ec2.send(new DeregisterImageCommand({ ImageId: old.ImageId }))
  } catch (err) {
    if (errorCode(err) === 'InvalidAMIID.NotFound' || errorCode(err) === 'InvalidAMIID.Unavailable') return
    throw new Error(
      `Could not deregister ${old.ImageId}, the AMI that if-ami-exists: replace replaces (${errorCode(err) ?? messageOf(err)}); deregister it by hand or choose another 'ami-name'`
    )
  }
  ctx.log.info(
    `deregistered the old AMI ${old.ImageId} (if-ami-exists: replace); its snapshots go once the new AMI is available`
  )
}

async function deleteReplacedSnapshots(ctx: RunContext, old: Image): Promise<void> {
  const ids = (old.BlockDeviceMappings ?? []).map((b) => b.Ebs?.SnapshotId).filter((id): id is string => !!id)
  for (const id of ids) {
    try {
      await ctx.clients.ec2.send(new DeleteSnapshotCommand({ SnapshotId: id }))
      ctx.log.info(`deleted ${id} of the replaced AMI ${old.ImageId}`)
    } catch (err) {
      if (errorCode(err) !== 'InvalidSnapshot.NotFound')
        ctx.log.warning(
          `could not delete snapshot ${id} of the replaced AMI ${old.ImageId}: ${messageOf(err)}; delete it by hand`
        )
    }
  }
}

export const registerStep: Step<RunContext> = {
  name: 'register',
  enabled: proceeding,
  run: async (ctx) => {
    const s = convertState(ctx)
    const f = required(s.facts, 'the image facts')
    const snapshotId = required(s.snapshotId, 'the snapshot')
    const name = required(s.amiName, 'the AMI name')
    const { ami } = ctx.settings
    if (s.replaces) await deregisterReplaced(ctx, s.replaces)
    const paravirtual = f.virtualizationType === 'paravirtual'
    const out = await ctx.clients.ec2.send(
      new RegisterImageCommand({
        Name: name,
        Description:
          ami.description ??
          `EBS-backed copy of ${s.sourceImage?.ImageId ?? s3Url(required(s.manifest, 'the manifest'))}, made by instance-to-ebs`.slice(
            0,
            255
          ),
        Architecture: f.architecture,
        // "The device name of the root device volume (for example, /dev/sda1)." (RegisterImage)
        RootDeviceName: f.rootDeviceName,
        // "The type of virtualization (hvm | paravirtual). Default: paravirtual" (RegisterImage):
        // always sent, or a paravirtual image made hvm would register as paravirtual.
        VirtualizationType: f.virtualizationType,
        // An hvm AMI boots from its own volume (a converted one through GRUB 2): no kernel, no ramdisk.
        KernelId: paravirtual ? f.kernelId : undefined,
        RamdiskId: paravirtual ? f.ramdiskId : undefined,
        BlockDeviceMappings: [
          {
            DeviceName: f.rootDeviceName,
            Ebs: {
              SnapshotId: snapshotId,
              VolumeType: ami.volumeType,
              VolumeSize: s.volumeSizeGiB,
              Iops: ami.volumeType === 'io1' || ami.volumeType === 'io2' ? 3000 : undefined,
              DeleteOnTermination: true
            }
          }
        ],
        // "Set to true to enable enhanced networking with ENA ... This option is supported only for
        // HVM AMIs. Specifying this option with a PV AMI can make instances launched from the AMI
        // unreachable." (RegisterImage, EnaSupport); a converted image sets it only when its kernel has ena.
        EnaSupport: f.enaSupport,
        SriovNetSupport: f.sriovNetSupport,
        // "The operating system contained in the AMI must be configured to support the specified boot
        // mode." (RegisterImage, BootMode): legacy-bios for a converted image, whose GRUB 2 is for BIOS.
        BootMode: f.bootMode,
        TagSpecifications: [...tagSpec(ctx, 'image', name), ...tagSpec(ctx, 'snapshot', name)]
      })
    )
    const imageId = required(out.ImageId, 'the id of the new AMI')
    ctx.ledger.record({ kind: 'image', id: imageId, removeOn: 'failure' })
    s.imageId = imageId
    ctx.log.info(`registered ${imageId} '${name}'`)
    await poll({
      what: `AMI ${imageId} to become available`,
      timeoutSeconds: Math.max(60, ctx.settings.timeoutMinutes) * 60,
      signal: ctx.signal,
      minDelayMs: ctx.pollDelayMs,
      maxDelayMs: Math.max(ctx.pollDelayMs, 30000),
      tolerate: ['InvalidAMIID.NotFound'],
      onProgress: ctx.log.info,
      check: async () => {
        const d = await ctx.clients.ec2.send(new DescribeImagesCommand({ ImageIds: [imageId] }))
        const image = d.Images?.[0]
        if (image?.State === 'available') return { done: true, value: image }
        if (image?.State === 'failed' || image?.State === 'error' || image?.State === 'invalid')
          throw new Error(
            `AMI ${imageId} went to state '${image.State}'${image.StateReason?.Message ? `: ${image.StateReason.Message}` : ''}; check the image facts (architecture, root-device-name, virtualization-type, kernel-id) and run again`
          )
        return { done: false, progress: image?.State ?? 'not listed yet' }
      }
    })
    ctx.outputs['ami-id'] = imageId
    ctx.outputs['snapshot-id'] = snapshotId
    if (s.sourceImage?.ImageId) ctx.outputs['instance-store-ami-id'] = s.sourceImage.ImageId
    ctx.outputs['manifest-location'] = s3Url(required(s.manifest, 'the manifest'))
    ctx.outputs.region = ctx.settings.region
    ctx.log.info(`AMI ${imageId} is available`)
    if (s.replaces) await deleteReplacedSnapshots(ctx, s.replaces)
  }
}
