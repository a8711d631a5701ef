// Waits for the instance-store AMI to become available; then it and its manifest are outputs,
// and the convert steps of a full run take it as their source.
import { DescribeImagesCommand } from '@aws-sdk/client-ec2'
import { poll } from '../../aws/poll.js'
import { type RunContext, required } from '../context.js'
import type { Step } from '../runner.js'
import { bundleState, changing } from './state.js'

const FAILED = new Set(['failed', 'invalid', 'error', 'deregistered', 'disabled'])

export const waitInstanceStoreImage: Step<RunContext> = {
  name: 'wait for instance-store AMI',
  enabled: changing,
  run: async (ctx) => {
    const s = bundleState(ctx)
    const imageId = required(s.imageId, 'the instance-store AMI')
    await poll({
      what: `${imageId} to become available`,
      timeoutSeconds: ctx.settings.timeoutMinutes * 60,
      signal: ctx.signal,
      minDelayMs: ctx.pollDelayMs,
      maxDelayMs: Math.max(ctx.pollDelayMs, 15000),
      tolerate: ['InvalidAMIID.NotFound'],
      onProgress: (m) => ctx.log.info(m),
      check: async () => {
        const out = await ctx.clients.ec2.send(new DescribeImagesCommand({ ImageIds: [imageId] }))
        const image = out.Images?.find((i) => i.ImageId === imageId)
        const state = image?.State
        if (state === 'available') return { done: true, value: image }
        if (state && FAILED.has(state))
          throw new Error(
            `${imageId} went to state '${state}' instead of available${image?.StateReason?.Message ? `: ${image.StateReason.Message}` : ''}; check that the bundle at ${s.manifestUrl} is complete and readable by EC2 (aws-exec-read ACL)`
          )
        return { done: false, progress: state ?? 'not visible yet' }
      }
    })
    ctx.outputs['instance-store-ami-id'] = imageId
    ctx.outputs['manifest-location'] = required(s.manifestUrl, 'the manifest location')
    ctx.facts['instance-store AMI'] = imageId
    ctx.log.info(`${imageId} is available`)
  }
}
