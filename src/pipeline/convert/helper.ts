// The helper: the given instance (checked by preflight), or a temporary one launched for this
// run, recorded the moment RunInstances answers and terminated in cleanup whatever happens. The
// boot check's instance (verify/boot.ts) is terminated by the same remover.
import { RunInstancesCommand, TerminateInstancesCommand } from '@aws-sdk/client-ec2'
import { describeInstance, waitForInstanceRunning, waitForSsmOnline } from '../../aws/instances.js'
import { type RunContext, required, waitOptions } from '../context.js'
import { cliQuote, type Removal, regionOf, tolerateGone } from '../removal.js'
import type { Step } from '../runner.js'
import { runInstancesInput } from './preflight.js'
import { convertState, proceeding } from './state.js'
import { clientToken } from '../run-id.js'

export const helperStep: Step<RunContext> = {
  name: 'helper',
  enabled: proceeding,
  run: async (ctx) => {
    const s = convertState(ctx)
    const { helper } = ctx.settings
    if (helper.instanceId) {
      const instance = await describeInstance(ctx.clients.ec2, helper.instanceId)
      const az = required(
        instance?.Placement?.AvailabilityZone,
        `the availability zone of helper ${helper.instanceId}`
      )
      s.helper = { instanceId: helper.instanceId, availabilityZone: az, launched: false }
      ctx.log.info(`using helper ${helper.instanceId} in ${az}`)
      return
    }
    const launch = required(helper.launch, 'how to launch the helper')
    const amiId = required(s.helperAmiId ?? launch.amiId, 'the helper AMI')
    const out = await ctx.clients.ec2.send(
      new RunInstancesCommand({
        ...runInstancesInput(ctx, launch, amiId),
        ClientToken: clientToken(ctx, 'helper')
      })
    )
    const instance = out.Instances?.[0]
    const instanceId = required(instance?.InstanceId, 'the id of the launched helper')
    ctx.ledger.record({ kind: 'instance', id: instanceId, removeOn: 'always' })
    ctx.log.info(`launched helper ${instanceId} (${launch.instanceType}, ${amiId})`)
    const opts = waitOptions(ctx)
    const running = await waitForInstanceRunning(ctx.clients.ec2, instanceId, opts)
    await waitForSsmOnline(ctx.clients.ssm, instanceId, opts)
    const az = required(
      running.Placement?.AvailabilityZone ?? instance?.Placement?.AvailabilityZone,
      'the helper availability zone'
    )
    s.helper = { instanceId, availabilityZone: az, launched: true }
    ctx.log.info(`helper ${instanceId} is running in ${az} and online in SSM`)
  }
}

export const instanceRemoval: Removal = {
  remove: (r, env) =>
    tolerateGone(() => env.clients.ec2.send(new TerminateInstancesCommand({ InstanceIds: [r.id] }))),
  command: (r) => `aws ec2 terminate-instances ${regionOf(r)} --instance-ids ${cliQuote(r.id)}`
}
