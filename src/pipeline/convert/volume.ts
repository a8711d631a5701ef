// The work volume: created in the helper's availability zone, recorded at once, deleted by the
// cleanup after success as after failure (the snapshot is the product, not the volume): the
// remover below detaches it first if it is still attached.
import {
  CreateVolumeCommand,
  type CreateVolumeCommandInput,
  DeleteVolumeCommand,
  DescribeVolumesCommand
} from '@aws-sdk/client-ec2'
import { waitForVolumeAvailable } from '../../aws/ec2-wait.js'
import { type RunContext, required, waitOptions } from '../context.js'
import { cliQuote, type Removal, regionOf, tolerateGone } from '../removal.js'
import type { Step } from '../runner.js'
import { detachForRemoval } from './attach.js'
import { provisionedIops } from './register.js'
import { convertState, proceeding } from './state.js'
import { clientToken } from '../run-id.js'
import { tagSpec } from '../tags.js'

/** The one CreateVolume request, shared by preflight's DryRun probe and this step. */
export function createVolumeInput(
  ctx: RunContext,
  availabilityZone: string,
  sizeGiB: number,
  name: string
): CreateVolumeCommandInput {
  const { ami } = ctx.settings
  return {
    AvailabilityZone: availabilityZone,
    Size: sizeGiB,
    VolumeType: ami.volumeType,
    Iops: provisionedIops(ami.volumeType),
    // "If KmsKeyId is specified, the encrypted state must be true." (CreateVolume)
    Encrypted: ami.encrypted || ami.kmsKeyId !== undefined || undefined,
    KmsKeyId: ami.kmsKeyId,
    TagSpecifications: tagSpec(ctx, 'volume', name),
    ClientToken: clientToken(ctx, 'volume')
  }
}

export const createVolumeStep: Step<RunContext> = {
  name: 'create volume',
  enabled: proceeding,
  run: async (ctx) => {
    const s = convertState(ctx)
    const { ami } = ctx.settings
    const helper = required(s.helper, 'the helper')
    const size = required(s.volumeSizeGiB, 'the volume size')
    const out = await ctx.clients.ec2.send(
      new CreateVolumeCommand(
        createVolumeInput(
          ctx,
          helper.availabilityZone,
          size,
          `instance-to-ebs work volume for ${s.amiName ?? 'the AMI'}`
        )
      )
    )
    const volumeId = required(out.VolumeId, 'the id of the new volume')
    ctx.ledger.record({ kind: 'volume', id: volumeId, removeOn: 'always' })
    s.volumeId = volumeId
    ctx.log.info(`created ${ami.volumeType} volume ${volumeId} of ${size} GiB in ${helper.availabilityZone}`)
    await waitForVolumeAvailable(ctx.clients.ec2, volumeId, waitOptions(ctx))
  }
}

export const volumeRemoval: Removal = {
  remove: async (r, env) => {
    let attachedTo: string | undefined
    await tolerateGone(async () => {
      const out = await env.clients.ec2.send(new DescribeVolumesCommand({ VolumeIds: [r.id] }))
      attachedTo = out.Volumes?.[0]?.Attachments?.[0]?.InstanceId
    })
    if (attachedTo) await detachForRemoval(r.id, attachedTo, env)
    await tolerateGone(() => env.clients.ec2.send(new DeleteVolumeCommand({ VolumeId: r.id })))
  },
  command: (r) => `aws ec2 delete-volume ${regionOf(r)} --volume-id ${cliQuote(r.id)}`
}
