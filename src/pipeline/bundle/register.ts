// Registers the uploaded bundle as an instance-store AMI, recorded the moment EC2 gives its id.
import {
  type BlockDeviceMapping,
  RegisterImageCommand,
  type RegisterImageCommandInput
} from '@aws-sdk/client-ec2'
import { type RunContext, required } from '../context.js'
import type { Step } from '../runner.js'
import { tagsFor } from '../tags.js'
import { type BundleImageFacts, bundleState, changing } from './state.js'

/** The instance-store disks, as the seed procedure and Packer's amazon-instance builder map them. */
export const EPHEMERAL_MAPPINGS: BlockDeviceMapping[] = [
  { DeviceName: '/dev/sdb', VirtualName: 'ephemeral0' },
  { DeviceName: '/dev/sdc', VirtualName: 'ephemeral1' }
]

/** The one RegisterImage request of bundle mode, shared by preflight's DryRun probe and this step. */
export function registerInstanceStoreInput(
  ctx: RunContext,
  name: string,
  imageLocation: string,
  facts: BundleImageFacts
): RegisterImageCommandInput {
  const paravirtual = facts.virtualizationType === 'paravirtual'
  return {
    Name: name,
    Description:
      ctx.settings.ami.description ?? `instance-to-ebs: bundle of ${ctx.settings.source.instanceId}`,
    ImageLocation: imageLocation,
    Architecture: facts.architecture,
    VirtualizationType: facts.virtualizationType,
    KernelId: paravirtual ? facts.kernelId : undefined,
    RamdiskId: paravirtual ? facts.ramdiskId : undefined,
    RootDeviceName: facts.rootDeviceName,
    BlockDeviceMappings: EPHEMERAL_MAPPINGS,
    // "This option is supported only for HVM AMIs. Specifying this option with a PV AMI can
    // make instances launched from the AMI unreachable." (RegisterImage EnaSupport/SriovNetSupport)
    EnaSupport: paravirtual ? undefined : facts.enaSupport,
    SriovNetSupport: paravirtual ? undefined : ctx.settings.ami.sriovNetSupport,
    TagSpecifications: [{ ResourceType: 'image', Tags: tagsFor(ctx, name) }]
  }
}

export const registerInstanceStoreImage: Step<RunContext> = {
  name: 'register instance-store AMI',
  enabled: changing,
  run: async (ctx) => {
    const s = bundleState(ctx)
    const facts = required(s.facts, 'the image facts')
    const name = required(s.amiName, 'the AMI name')
    const imageLocation = required(s.imageLocation, 'the uploaded manifest')
    const out = await ctx.clients.ec2.send(
      new RegisterImageCommand(registerInstanceStoreInput(ctx, name, imageLocation, facts))
    )
    const imageId = out.ImageId
    if (!imageId) throw new Error(`EC2 accepted the registration of '${name}' but returned no image id`)
    ctx.ledger.record({ kind: 'image', id: imageId, removeOn: 'failure' })
    s.imageId = imageId
    ctx.log.info(`registered ${imageId} ('${name}') from ${imageLocation}`)
  }
}
