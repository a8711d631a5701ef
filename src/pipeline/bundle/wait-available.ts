// Waits for the instance-store AMI to become available; then it and its manifest are outputs,
// and the convert steps of a full run take it as their source.
import { waitForImageAvailable } from '../../aws/ec2-wait.js'
import { type RunContext, required, waitOptions } from '../context.js'
import type { Step } from '../runner.js'
import { bundleState, changing } from './state.js'

export const waitInstanceStoreImage: Step<RunContext> = {
  name: 'wait for instance-store AMI',
  enabled: changing,
  run: async (ctx) => {
    const s = bundleState(ctx)
    const imageId = required(s.imageId, 'the instance-store AMI')
    await waitForImageAvailable(ctx.clients.ec2, imageId, {
      ...waitOptions(ctx),
      timeoutSeconds: ctx.settings.timeoutMinutes * 60,
      what: imageId,
      fix: `check that the bundle at ${s.manifestUrl} is complete and readable by EC2 (aws-exec-read ACL)`
    })
    ctx.outputs['instance-store-ami-id'] = imageId
    ctx.outputs['manifest-location'] = required(s.manifestUrl, 'the manifest location')
    ctx.facts['instance-store AMI'] = imageId
    ctx.log.info(`${imageId} is available`)
  }
}
