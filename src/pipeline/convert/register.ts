// Registers the EBS-backed AMI from the snapshot, waits until it is available and sets the
// outputs. The snapshot is tagged when it is made (CreateSnapshot): RegisterImage tags only the
// image ("To tag the AMI, the value for ResourceType must be image. If you specify another value
// for ResourceType, the request fails." — RegisterImage, EC2 API reference).
//
// With if-ami-exists: replace nothing of the user's goes before the new AMI exists. EC2 keeps
// names unique, so the new image is first registered under a temporary name and waited for; only
// then is the old AMI deregistered, the real name registered from the same snapshot, the temporary
// AMI deregistered, and at last the old AMI's snapshots deleted.
//
// Every AMI the action registers (here and the instance-store AMI of bundle/register.ts) is
// deregistered by removeImage, below.
import {
  DeregisterImageCommand,
  type EC2Client,
  type Image,
  type RegisterImageCommandInput,
  RegisterImageCommand
} from '@aws-sdk/client-ec2'
import { s3Url } from '../../aws/manifest.js'
import { errorCode } from '../../errors.js'
import type { VolumeType } from '../../settings/index.js'
import { waitForImageAvailable } from '../../aws/ec2-wait.js'
import { type RunContext, required, waitOptions } from '../context.js'
import { cliQuote, type Removal, regionOf, tolerateGone } from '../removal.js'
import type { Step } from '../runner.js'
import { messageOf } from '../../errors.js'
import { removeSnapshot } from './snapshot.js'
import { convertState, type ImageFacts, proceeding } from './state.js'
import { runIdOf } from '../run-id.js'
import { tagSpec } from '../tags.js'
import { Input } from '../../settings/inputs.js'

export interface RegisterRequest {
  name: string
  description: string
  facts: ImageFacts
  snapshotId: string
  volumeSizeGiB?: number
}

/** The one RegisterImage request, shared by preflight's DryRun probe and this step. */
export function registerImageInput(ctx: RunContext, r: RegisterRequest): RegisterImageCommandInput {
  const { ami } = ctx.settings
  const f = r.facts
  const paravirtual = f.virtualizationType === 'paravirtual'
  return {
    Name: r.name,
    Description: r.description,
    Architecture: f.architecture,
    // "The device name of the root device volume (for example, /dev/sda1)." (RegisterImage)
    RootDeviceName: f.rootDeviceName,
    // "The type of virtualization (hvm | paravirtual). Default: paravirtual" (RegisterImage):
    // always sent, or a paravirtual image made hvm would register as paravirtual.
    VirtualizationType: f.virtualizationType,
    // A kernel and ramdisk only boot a paravirtual image; an hvm image boots its own loader.
    KernelId: paravirtual ? f.kernelId : undefined,
    RamdiskId: paravirtual ? f.ramdiskId : undefined,
    BlockDeviceMappings: [
      {
        DeviceName: f.rootDeviceName,
        Ebs: {
          SnapshotId: r.snapshotId,
          VolumeType: ami.volumeType,
          VolumeSize: r.volumeSizeGiB,
          Iops: provisionedIops(ami.volumeType),
          DeleteOnTermination: true
        }
      }
    ],
    // "This option is supported only for HVM AMIs. Specifying this option with a PV AMI can make
    // instances launched from the AMI unreachable." (RegisterImage EnaSupport / SriovNetSupport)
    EnaSupport: paravirtual ? undefined : f.enaSupport,
    SriovNetSupport: paravirtual ? undefined : f.sriovNetSupport,
    // "The operating system contained in the AMI must be configured to support the specified boot
    // mode." (RegisterImage, BootMode): legacy-bios for a converted image, whose GRUB 2 is for BIOS.
    BootMode: f.bootMode,
    TagSpecifications: tagSpec(ctx, 'image', r.name)
  }
}

/** io1/io2 require a rate ("This parameter is required for io1 and io2 volumes"); 3000 is gp3's baseline. */
export const provisionedIops = (type: VolumeType): number | undefined =>
  type === 'io1' || type === 'io2' ? 3000 : undefined

/** A name for the new image while the old one still holds the real name (at most 128 characters). */
export function temporaryName(ctx: RunContext, name: string): string {
  const suffix = ` (instance-to-ebs ${runIdOf(ctx)})`
  return `${name.slice(0, 128 - suffix.length)}${suffix}`
}

async function register(ctx: RunContext, input: RegisterImageCommandInput): Promise<string> {
  const out = await ctx.clients.ec2.send(new RegisterImageCommand(input))
  return required(out.ImageId, 'the id of the new AMI')
}

async function waitAvailable(ctx: RunContext, imageId: string): Promise<void> {
  await waitForImageAvailable(ctx.clients.ec2, imageId, {
    ...waitOptions(ctx),
    timeoutSeconds: Math.max(60, ctx.settings.timeoutMinutes) * 60,
    what: `AMI ${imageId}`,
    fix: `check the image facts (${Input.Architecture}, ${Input.RootDeviceName}, ${Input.VirtualizationType}, ${Input.KernelId}) and run again`
  })
}

async function deregisterReplaced(ctx: RunContext, old: Image): Promise<void> {
  try {
    await ctx.clients.ec2.send(new DeregisterImageCommand({ ImageId: old.ImageId }))
  } catch (err) {
    if (errorCode(err) === 'InvalidAMIID.NotFound' || errorCode(err) === 'InvalidAMIID.Unavailable') return
    throw new Error(
      `Could not deregister ${old.ImageId}, the AMI that ${Input.IfAmiExists}: replace replaces (${errorCode(err) ?? messageOf(err)}); deregister it by hand or choose another '${Input.AmiName}'`
    )
  }
  ctx.log.info(
    `deregistered the old AMI ${old.ImageId} (${Input.IfAmiExists}: replace); its snapshots go once the new AMI has its name`
  )
}

async function deleteReplacedSnapshots(ctx: RunContext, old: Image): Promise<void> {
  const ids = (old.BlockDeviceMappings ?? []).map((b) => b.Ebs?.SnapshotId).filter((id): id is string => !!id)
  for (const id of ids) {
    try {
      await removeSnapshot(ctx.clients.ec2, id, { pollDelayMs: ctx.pollDelayMs, signal: ctx.signal })
      ctx.log.info(`deleted ${id} of the replaced AMI ${old.ImageId}`)
    } catch (err) {
      ctx.log.warning(
        `could not delete snapshot ${id} of the replaced AMI ${old.ImageId}: ${messageOf(err)}; delete it by hand`
      )
    }
  }
}

/** if-ami-exists: replace — the new image exists (temporary name) before the old one goes. */
async function registerReplacing(
  ctx: RunContext,
  input: RegisterImageCommandInput,
  old: Image,
  snapshotId: string
): Promise<string> {
  const name = required(input.Name, 'the AMI name')
  const temporary = temporaryName(ctx, name)
  const tempId = await register(ctx, {
    ...input,
    Name: temporary,
    TagSpecifications: tagSpec(ctx, 'image', name)
  })
  ctx.ledger.record({ kind: 'image', id: tempId, removeOn: 'always' })
  ctx.log.info(`registered ${tempId} as '${temporary}' while '${name}' is still ${old.ImageId}`)
  await waitAvailable(ctx, tempId)

  // From here the new image is the user's: a kill must leave it (and its snapshot), not remove it.
  ctx.ledger.forget('image', tempId)
  ctx.ledger.forget('snapshot', snapshotId)
  await deregisterReplaced(ctx, old)
  let imageId: string
  try {
    imageId = await register(ctx, input)
  } catch (err) {
    throw new Error(
      `The old AMI ${old.ImageId} is deregistered, but registering '${name}' failed (${errorCode(err) ?? messageOf(err)}); the new image is available as ${tempId} '${temporary}' (snapshot ${snapshotId}, kept). Its old snapshots are kept too`
    )
  }
  ctx.ledger.record({ kind: 'snapshot', id: snapshotId, removeOn: 'failure' })
  ctx.ledger.record({ kind: 'image', id: imageId, removeOn: 'failure' })
  ctx.ledger.record({ kind: 'image', id: tempId, removeOn: 'always' })
  await waitAvailable(ctx, imageId)
  try {
    await removeImage(ctx.clients.ec2, tempId)
    ctx.ledger.forget('image', tempId)
    ctx.log.info(`deregistered the temporary ${tempId}`)
  } catch (err) {
    ctx.log.warning(
      `could not deregister the temporary ${tempId} '${temporary}': ${messageOf(err)}; cleanup tries again`
    )
  }
  return imageId
}

export const registerStep: Step<RunContext> = {
  name: 'register',
  enabled: proceeding,
  run: async (ctx) => {
    const s = convertState(ctx)
    const snapshotId = required(s.snapshotId, 'the snapshot')
    const name = required(s.amiName, 'the AMI name')
    const input = registerImageInput(ctx, {
      name,
      description:
        ctx.settings.ami.description ??
        `EBS-backed copy of ${s.sourceImage?.ImageId ?? s3Url(required(s.manifest, 'the manifest'))}, made by instance-to-ebs`.slice(
          0,
          255
        ),
      facts: required(s.facts, 'the image facts'),
      snapshotId,
      volumeSizeGiB: s.volumeSizeGiB
    })
    let imageId: string
    if (s.replaces) {
      imageId = await registerReplacing(ctx, input, s.replaces, snapshotId)
      s.imageId = imageId
    } else {
      imageId = await register(ctx, input)
      ctx.ledger.record({ kind: 'image', id: imageId, removeOn: 'failure' })
      s.imageId = imageId
      ctx.log.info(`registered ${imageId} '${name}'`)
      await waitAvailable(ctx, imageId)
    }
    ctx.outputs['ami-id'] = imageId
    ctx.outputs['snapshot-id'] = snapshotId
    if (s.sourceImage?.ImageId) ctx.outputs['instance-store-ami-id'] = s.sourceImage.ImageId
    ctx.outputs['manifest-location'] = s3Url(required(s.manifest, 'the manifest'))
    ctx.outputs.region = ctx.settings.region
    ctx.log.info(`AMI ${imageId} '${name}' is available`)
    if (s.replaces) await deleteReplacedSnapshots(ctx, s.replaces)
  }
}

/** Deregisters an AMI; already gone counts as deregistered. */
export const removeImage = (ec2: EC2Client, imageId: string): Promise<void> =>
  tolerateGone(() => ec2.send(new DeregisterImageCommand({ ImageId: imageId })))

export const imageRemoval: Removal = {
  remove: (r, env) => removeImage(env.clients.ec2, r.id),
  command: (r) => `aws ec2 deregister-image ${regionOf(r)} --image-id ${cliQuote(r.id)}`
}
