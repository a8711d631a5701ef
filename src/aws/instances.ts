// The helper instance: what EC2 and SSM say about it, and the waits for a freshly launched one.
import { DescribeInstancesCommand, type EC2Client, type Instance } from '@aws-sdk/client-ec2'
import { DescribeInstanceInformationCommand, type SSMClient } from '@aws-sdk/client-ssm'
import { EC2_NOT_YET_VISIBLE, steadily, type WaitOptions } from './ec2-wait.js'
import { poll } from './poll.js'

/** How to get an instance online in SSM, for error messages. */
export const SSM_ONLINE_FIX =
  'the SSM agent must run on it, its instance profile must include the AmazonSSMManagedInstanceCore policy, and it must reach the ssm, ssmmessages and ec2messages endpoints (a NAT/internet route or VPC interface endpoints)'

export async function describeInstance(ec2: EC2Client, instanceId: string): Promise<Instance | undefined> {
  const out = await ec2.send(new DescribeInstancesCommand({ InstanceIds: [instanceId] }))
  return out.Reservations?.flatMap((r) => r.Instances ?? []).find((i) => i.InstanceId === instanceId)
}

/** PingStatus (Online, ConnectionLost, Inactive) or undefined when SSM does not know the instance. */
export async function ssmPingStatus(ssm: SSMClient, instanceId: string): Promise<string | undefined> {
  const out = await ssm.send(
    new DescribeInstanceInformationCommand({ Filters: [{ Key: 'InstanceIds', Values: [instanceId] }] })
  )
  return out.InstanceInformationList?.find((i) => i.InstanceId === instanceId)?.PingStatus
}

export function waitForInstanceRunning(
  ec2: EC2Client,
  instanceId: string,
  o: WaitOptions = {}
): Promise<Instance> {
  return poll({
    what: `instance ${instanceId} to be running`,
    timeoutSeconds: o.timeoutSeconds ?? 600,
    ...steadily(o),
    tolerate: EC2_NOT_YET_VISIBLE,
    check: async () => {
      const i = await describeInstance(ec2, instanceId)
      if (!i)
        throw Object.assign(new Error(`instance ${instanceId} not found`), {
          name: 'InvalidInstanceID.NotFound'
        })
      const state = i.State?.Name
      if (state === 'running') return { done: true, value: i }
      if (state === 'pending') return { done: false, progress: 'pending' }
      throw new Error(
        `instance ${instanceId} went to '${state}' instead of 'running'${i.StateReason?.Message ? `: ${i.StateReason.Message}` : ''}; check the helper AMI, instance type and subnet`
      )
    }
  })
}

export function waitForSsmOnline(ssm: SSMClient, instanceId: string, o: WaitOptions = {}): Promise<void> {
  return poll({
    what: `instance ${instanceId} to come online in SSM`,
    timeoutSeconds: o.timeoutSeconds ?? 600,
    ...steadily(o),
    check: async () => {
      const status = await ssmPingStatus(ssm, instanceId)
      if (status === 'Online') return { done: true, value: undefined }
      return { done: false, progress: status ?? 'not registered yet' }
    }
  }).catch((err: unknown) => {
    if (err instanceof Error && err.name === 'PollTimeoutError')
      throw new Error(`Helper ${instanceId} did not come online in SSM (${err.message}); ${SSM_ONLINE_FIX}`)
    throw err
  })
}
