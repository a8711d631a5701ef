// Detaches the written volume so it can be snapshotted in a settled state.
import { DetachVolumeCommand } from '@aws-sdk/client-ec2'
import { waitForDetachment } from '../../aws/ec2-wait.js'
import { type RunContext, required, waitOptions } from '../context.js'
import type { Step } from '../runner.js'
import { convertState, proceeding } from './state.js'

export const detachVolumeStep: Step<RunContext> = {
  name: 'detach volume',
  enabled: proceeding,
  run: async (ctx) => {
    const s = convertState(ctx)
    const helper = required(s.helper, 'the helper')
    const volumeId = required(s.volumeId, 'the work volume')
    await ctx.clients.ec2.send(new DetachVolumeCommand({ VolumeId: volumeId, InstanceId: helper.instanceId }))
    await waitForDetachment(ctx.clients.ec2, volumeId, waitOptions(ctx))
    ctx.ledger.forget('attachment', volumeId)
    ctx.log.info(`detached ${volumeId} from ${helper.instanceId}`)
  }
}
