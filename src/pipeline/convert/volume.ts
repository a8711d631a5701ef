// The work volume: created in the helper's availability zone, recorded at once, deleted by the
// cleanup after success as after failure (the snapshot is the product, not the volume).
import { CreateVolumeCommand } from '@aws-sdk/client-ec2'
import { waitForVolumeAvailable } from '../../aws/ec2-wait.js'
import { type RunContext, required } from '../context.js'
import type { Step } from '../runner.js'
import { clientToken, convertState, proceeding, tagSpec } from './state.js'

export const createVolumeStep: Step<RunContext> = {
  name: 'create volume',
  enabled: proceeding,
  run: async (ctx) => {
    const s = convertState(ctx)
    const { ami } = ctx.settings
    const helper = required(s.helper, 'the helper')
    const size = required(s.volumeSizeGiB, 'the volume size')
    const out = await ctx.clients.ec2.send(
      new CreateVolumeCommand({
        AvailabilityZone: helper.availabilityZone,
        Size: size,
        VolumeType: ami.volumeType,
        // io1/io2 require a rate; 3000 is gp3's baseline.
        Iops: ami.volumeType === 'io1' || ami.volumeType === 'io2' ? 3000 : undefined,
        Encrypted: ami.encrypted || undefined,
        KmsKeyId: ami.kmsKeyId,
        TagSpecifications: tagSpec(
          ctx,
          'volume',
          `instance-to-ebs work volume for ${s.amiName ?? 'the AMI'}`
        ),
        ClientToken: clientToken(ctx, 'volume')
      })
    )
    const volumeId = required(out.VolumeId, 'the id of the new volume')
    ctx.ledger.record({ kind: 'volume', id: volumeId, removeOn: 'always' })
    s.volumeId = volumeId
    ctx.log.info(`created ${ami.volumeType} volume ${volumeId} of ${size} GiB in ${helper.availabilityZone}`)
    await waitForVolumeAvailable(ctx.clients.ec2, volumeId, {
      signal: ctx.signal,
      minDelayMs: ctx.pollDelayMs,
      onProgress: ctx.log.info
    })
  }
}
