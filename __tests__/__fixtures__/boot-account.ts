// The fake account, plus what verify-boot calls: instance type offerings and facts (a few real
// types, as EC2 describes them), instance status checks that a test scripts, and a console.
// As strict as EC2 where the action depends on it: RunInstances needs an available AMI and, on a
// Nitro type, one registered with ENA support; GetConsoleOutput Latest only on Nitro types.
import type * as ec2 from '@aws-sdk/client-ec2'
import { type AccountMocks, AL2023_AMI, FakeAccount, mockAccount, serviceError } from './aws-account.js'

// biome-ignore lint/suspicious/noExplicitAny: inputs of many operations, read loosely by the fake
type In = Record<string, any>

interface TypeFacts {
  hypervisor: 'nitro' | 'xen'
  virtualization: ('hvm' | 'paravirtual')[]
  architectures: string[]
}

/** As DescribeInstanceTypes reports them (Hypervisor, SupportedVirtualizationTypes, architectures). */
export const TYPES: Record<string, TypeFacts> = {
  't3.small': { hypervisor: 'nitro', virtualization: ['hvm'], architectures: ['x86_64'] },
  'm5.large': { hypervisor: 'nitro', virtualization: ['hvm'], architectures: ['x86_64'] },
  't2.small': { hypervisor: 'xen', virtualization: ['hvm'], architectures: ['i386', 'x86_64'] },
  'm4.large': { hypervisor: 'xen', virtualization: ['hvm'], architectures: ['x86_64'] },
  'm3.medium': {
    hypervisor: 'xen',
    virtualization: ['hvm', 'paravirtual'],
    architectures: ['i386', 'x86_64']
  },
  'm1.small': {
    hypervisor: 'xen',
    virtualization: ['hvm', 'paravirtual'],
    architectures: ['i386', 'x86_64']
  },
  't4g.small': { hypervisor: 'nitro', virtualization: ['hvm'], architectures: ['arm64'] }
}

export type CheckStatus = 'ok' | 'impaired' | 'initializing' | 'insufficient-data'

export class BootAccount extends FakeAccount {
  /** Instance types offered per availability zone. */
  offerings = new Map<string, string[]>([['us-east-1a', Object.keys(TYPES)]])
  /** Status check answers for the boot check instance, one per DescribeInstanceStatus; the last repeats. */
  statuses: { instance: CheckStatus; system: CheckStatus }[] = [
    { instance: 'initializing', system: 'initializing' },
    { instance: 'ok', system: 'ok' }
  ]
  /** Console text of the boot check instance, one per GetConsoleOutput; the last repeats. */
  consoles: string[] = ['[    0.000000] Linux version 5.10.0\nWelcome to Debian GNU/Linux 11!\nlogin: ']
  private statusCalls = new Map<string, number>()
  private consoleCalls = new Map<string, number>()
  private instanceFacts = new Map<string, { type: string; imageId: string }>()

  constructor() {
    super()
    // The public Amazon Linux 2023 AMI a launched helper runs (the SSM parameter names it).
    this.images.set(AL2023_AMI, {
      settle: 0,
      value: {
        ImageId: AL2023_AMI,
        Name: 'al2023-ami-2023.6-kernel-6.1-x86_64',
        State: 'available',
        OwnerId: '137112412989',
        ImageOwnerAlias: 'amazon',
        RootDeviceType: 'ebs',
        EnaSupport: true
      }
    })
    this.initial.add(AL2023_AMI)
  }

  override opRegisterImage(i: In) {
    const out = super.opRegisterImage(i) as { ImageId: string }
    const image = this.images.get(out.ImageId)
    if (image)
      Object.assign(image.value, { EnaSupport: i.EnaSupport, VirtualizationType: i.VirtualizationType })
    return out
  }

  override opRunInstances(i: In) {
    const image = this.images.get(i.ImageId)?.value
    if (!image) throw serviceError('InvalidAMIID.NotFound', `The image id '[${i.ImageId}]' does not exist`)
    const facts = TYPES[i.InstanceType]
    if (!facts)
      throw serviceError('InvalidParameterValue', `Invalid value '${i.InstanceType}' for InstanceType.`)
    if (facts.hypervisor === 'nitro' && image.RootDeviceType === 'ebs' && image.EnaSupport !== true)
      throw serviceError(
        'InvalidParameterCombination',
        `Enhanced networking with the Elastic Network Adapter (ENA) is required for the '${i.InstanceType}' instance type. Ensure that you are using an AMI that is enabled for ENA.`
      )
    const out = super.opRunInstances(i) as { Instances: ec2.Instance[] }
    const id = out.Instances[0]?.InstanceId as string
    this.instanceFacts.set(id, { type: i.InstanceType, imageId: i.ImageId })
    return out
  }

  /** The instances launched from an AMI this run registered (the boot checks). */
  bootInstances(): string[] {
    return [...this.instanceFacts.entries()]
      .filter(([, f]) => this.created.some((c) => c.kind === 'image' && c.id === f.imageId))
      .map(([id]) => id)
  }

  stateOf(instanceId: string): string | undefined {
    return this.instances.get(instanceId)?.value.State?.Name
  }

  opDescribeInstanceTypeOfferings(i: In) {
    if (i.LocationType !== 'availability-zone')
      throw new Error('the fake answers availability-zone offerings only')
    const filters = (i.Filters ?? []) as ec2.Filter[]
    const zone = filters.find((f) => f.Name === 'location')?.Values?.[0] ?? ''
    const wanted = filters.find((f) => f.Name === 'instance-type')?.Values
    const types = (this.offerings.get(zone) ?? []).filter((t) => !wanted || wanted.includes(t))
    return {
      InstanceTypeOfferings: types.map((t) => ({
        InstanceType: t,
        LocationType: 'availability-zone',
        Location: zone
      }))
    }
  }

  opDescribeInstanceTypes(i: In) {
    const names = i.InstanceTypes as string[]
    const unknown = names.filter((n) => !TYPES[n])
    if (unknown.length > 0)
      throw serviceError(
        'InvalidInstanceType',
        `The following supplied instance types do not exist: [${unknown.join(', ')}]`
      )
    return {
      InstanceTypes: names.map((n) => {
        const t = TYPES[n] as TypeFacts
        return {
          InstanceType: n,
          Hypervisor: t.hypervisor,
          SupportedVirtualizationTypes: t.virtualization,
          ProcessorInfo: { SupportedArchitectures: t.architectures }
        }
      })
    }
  }

  opDescribeInstanceStatus(i: In) {
    const ids = i.InstanceIds as string[]
    const all = i.IncludeAllInstances === true
    const statuses: ec2.InstanceStatus[] = []
    for (const id of ids) {
      const p = this.instances.get(id)
      if (!p) throw serviceError('InvalidInstanceID.NotFound', `The instance ID '${id}' does not exist`)
      // Pending for one look, as DescribeInstances.
      if (p.settle > 0) {
        p.settle -= 1
        if (p.settle === 0) p.value.State = { Name: 'running' }
      }
      const state = p.value.State?.Name
      // "By default, only running instances are described" (DescribeInstanceStatus).
      if (state !== 'running' && !all) continue
      let checks: { instance: string; system: string } = {
        instance: 'not-applicable',
        system: 'not-applicable'
      }
      if (state === 'running') {
        const n = this.statusCalls.get(id) ?? 0
        this.statusCalls.set(id, n + 1)
        checks = this.statuses[Math.min(n, this.statuses.length - 1)] as { instance: string; system: string }
      }
      statuses.push({
        InstanceId: id,
        InstanceState: { Name: state as ec2.InstanceStateName },
        InstanceStatus: { Status: checks.instance as ec2.SummaryStatus },
        SystemStatus: { Status: checks.system as ec2.SummaryStatus }
      })
    }
    return { InstanceStatuses: statuses }
  }

  opGetConsoleOutput(i: In) {
    const f = this.instanceFacts.get(i.InstanceId)
    if (!f)
      throw serviceError('InvalidInstanceID.NotFound', `The instance ID '${i.InstanceId}' does not exist`)
    // "You can optionally retrieve the latest serial console output at any time during the
    // instance lifecycle. This option is supported on instance types that use the Nitro hypervisor."
    if (i.Latest && TYPES[f.type]?.hypervisor !== 'nitro')
      throw serviceError(
        'UnsupportedOperation',
        `Retrieving the latest console output is not supported for ${f.type}.`
      )
    const n = this.consoleCalls.get(i.InstanceId) ?? 0
    this.consoleCalls.set(i.InstanceId, n + 1)
    const text = this.consoles[Math.min(n, this.consoles.length - 1)] ?? ''
    // "The console output, base64-encoded."
    return {
      InstanceId: i.InstanceId,
      Output: text === '' ? undefined : Buffer.from(text).toString('base64')
    }
  }
}

const BOOT_OPS = [
  'DescribeInstanceTypeOfferings',
  'DescribeInstanceTypes',
  'DescribeInstanceStatus',
  'GetConsoleOutput'
]

/** mockAccount, plus the verify-boot operations. */
export function mockBootAccount(account: BootAccount): AccountMocks {
  return mockAccount(account, { ec2: BOOT_OPS })
}
