// What every RunInstances of the action shares (the helper, the boot check's instance): one
// instance, ended by a halt inside it, tagged on the instance and its volumes.
import type { RunContext } from './context.js'
import { tagSpec } from './tags.js'

export interface LaunchBasics {
  imageId: string
  instanceType: string
  subnetId?: string
  securityGroupIds: string[]
  /** The Name tag of the instance and its volumes. */
  name: string
}

export function oneInstanceInput(ctx: RunContext, o: LaunchBasics) {
  return {
    ImageId: o.imageId,
    InstanceType: o.instanceType as never,
    MinCount: 1,
    MaxCount: 1,
    SubnetId: o.subnetId,
    SecurityGroupIds: o.securityGroupIds.length > 0 ? o.securityGroupIds : undefined,
    // A halt inside the guest ends the instance too, so nothing stays behind stopped.
    InstanceInitiatedShutdownBehavior: 'terminate' as const,
    // RunInstances TagSpecifications: "The tags to apply to the resources that are created during
    // instance launch. You can specify tags for the following resources only: Instances, Volumes,
    // Spot Instance requests, Network interfaces." (EC2 API reference). The run tag on the
    // instance is what lets the runner role terminate it.
    TagSpecifications: [...tagSpec(ctx, 'instance', o.name), ...tagSpec(ctx, 'volume', o.name)]
  }
}
