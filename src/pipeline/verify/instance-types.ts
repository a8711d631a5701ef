// verify-boot, before anything is made: where the test instance goes (its subnet, security groups
// and availability zone) and which instance types can boot the image there. Nothing is created;
// a region or zone without a suitable type fails here, not after an hour of bundling and writing.
import {
  DescribeInstanceTypeOfferingsCommand,
  DescribeInstanceTypesCommand,
  DescribeSubnetsCommand,
  type InstanceTypeInfo
} from '@aws-sdk/client-ec2'
import { describeInstance } from '../../aws/instances.js'
import { errorCode } from '../../errors.js'
import type { Architecture, VirtualizationType } from '../../settings/index.js'
import type { RunContext } from '../context.js'
import type { Step } from '../runner.js'
import { convertState } from '../convert/state.js'
import { Input } from '../../settings/inputs.js'

export interface BootType {
  instanceType: string
  /** Nitro types serve the live console (GetConsoleOutput Latest); Xen types post it late. */
  nitro: boolean
}

export interface BootPlan {
  subnetId: string
  securityGroupIds: string[]
  availabilityZone: string
  /** Offered in the zone and able to run the image, in order of preference. */
  types: BootType[]
  /** The user named the types (verify-boot-instance-types): their order is kept as given. */
  explicit: boolean
}

export interface VerifyState {
  plan?: BootPlan
  /** What the boot check saw, for the job summary. */
  report?: BootReport
}

export interface BootReport {
  instanceId?: string
  instanceType: string
  nitro: boolean
  verdict: 'passed' | 'failed'
  reason?: string
  statusChecks?: string
  consoleTail: string[]
  consoleNote?: string
}

export const verifyState = (ctx: RunContext): VerifyState => {
  ctx.state.verify ??= {}
  return ctx.state.verify as VerifyState
}

/**
 * Candidates when verify-boot-instance-types is empty, following the summary's "boots on" verdict:
 * paravirtual images only on the previous-generation families that still offer PV; hvm on Nitro
 * (t3…) or Xen (t2…) families; 32-bit only on Xen; arm64 only on Graviton.
 */
const DEFAULT_TYPES: Record<'paravirtual' | 'x86_64' | 'i386' | 'arm64', string[]> = {
  paravirtual: ['m3.medium', 'm1.small', 'm1.medium', 'c3.large', 'm3.large', 'c1.medium', 't1.micro'],
  x86_64: ['t3.small', 't3a.small', 'm5.large', 't2.small', 'm4.large', 'c4.large'],
  i386: ['t2.small', 'm3.medium', 'c3.large', 't2.micro'],
  arm64: ['t4g.small', 'm6g.medium', 'c6g.medium', 'a1.medium']
}

export function defaultBootTypes(virtualization?: VirtualizationType, architecture?: Architecture): string[] {
  const hvm = architecture ? DEFAULT_TYPES[architecture] : [...DEFAULT_TYPES.x86_64, ...DEFAULT_TYPES.arm64]
  if (virtualization === 'paravirtual') return DEFAULT_TYPES.paravirtual
  if (virtualization === 'hvm') return hvm
  return [...new Set([...DEFAULT_TYPES.paravirtual, ...hvm])]
}

const INPUT = Input.VerifyBootInstanceTypes

/** The subnet and groups: verify-boot-subnet-id, else the helper's (launched or given). */
async function bootPlace(ctx: RunContext): Promise<Omit<BootPlan, 'types' | 'explicit'>> {
  const { verifyBoot, helper } = ctx.settings
  let subnetId = verifyBoot.subnetId
  let securityGroupIds = verifyBoot.securityGroupIds
  let whose = `'${Input.VerifyBootSubnetId}'`
  if (!subnetId && helper.launch) {
    subnetId = helper.launch.subnetId
    if (securityGroupIds.length === 0) securityGroupIds = helper.launch.securityGroupIds
    whose = `'${Input.HelperSubnetId}' (used by the boot check as no '${Input.VerifyBootSubnetId}' is set)`
  } else if (!subnetId && helper.instanceId) {
    const instance = await describeInstance(ctx.clients.ec2, helper.instanceId)
    subnetId = instance?.SubnetId
    if (!subnetId)
      throw new Error(
        `Helper ${helper.instanceId} is in no VPC subnet, so the boot check has none to use; set '${Input.VerifyBootSubnetId}'`
      )
    if (securityGroupIds.length === 0)
      securityGroupIds = (instance?.SecurityGroups ?? [])
        .map((g) => g.GroupId)
        .filter((g): g is string => !!g)
    whose = `the subnet of helper ${helper.instanceId} (used by the boot check as no '${Input.VerifyBootSubnetId}' is set)`
  }
  if (!subnetId)
    throw new Error(
      `The boot check needs a subnet: set '${Input.VerifyBootSubnetId}' (or a helper to take it from)`
    )
  let availabilityZone: string | undefined
  try {
    const out = await ctx.clients.ec2.send(new DescribeSubnetsCommand({ SubnetIds: [subnetId] }))
    availabilityZone = out.Subnets?.[0]?.AvailabilityZone
  } catch (err) {
    if (!/^InvalidSubnet/.test(errorCode(err) ?? '')) throw err
  }
  if (!availabilityZone)
    throw new Error(`Subnet ${subnetId}, ${whose}, does not exist in ${ctx.settings.region}`)
  return { subnetId, securityGroupIds, availabilityZone }
}

/**
 * Which of `candidates` are offered in the zone and run the image. DescribeInstanceTypeOfferings:
 * "availability-zone - The Availability Zone. When you specify a location filter, it must be an
 * Availability Zone for the current Region." (EC2 API reference)
 */
async function usableTypes(
  ctx: RunContext,
  zone: string,
  candidates: string[],
  virtualization?: VirtualizationType,
  architecture?: Architecture
): Promise<{ types: BootType[]; offered: string[]; info: Map<string, InstanceTypeInfo> }> {
  const { ec2 } = ctx.clients
  const offeredSet = new Set<string>()
  let token: string | undefined
  do {
    const out = await ec2.send(
      new DescribeInstanceTypeOfferingsCommand({
        LocationType: 'availability-zone',
        Filters: [
          { Name: 'location', Values: [zone] },
          { Name: 'instance-type', Values: candidates }
        ],
        NextToken: token
      })
    )
    for (const o of out.InstanceTypeOfferings ?? []) if (o.InstanceType) offeredSet.add(o.InstanceType)
    token = out.NextToken
  } while (token)
  const offered = candidates.filter((t) => offeredSet.has(t))
  const info = new Map<string, InstanceTypeInfo>()
  if (offered.length > 0) {
    const out = await ec2.send(new DescribeInstanceTypesCommand({ InstanceTypes: offered as never[] }))
    for (const t of out.InstanceTypes ?? []) if (t.InstanceType) info.set(t.InstanceType, t)
  }
  const types = offered
    .filter((t) => {
      const i = info.get(t)
      if (!i) return false
      if (virtualization && !(i.SupportedVirtualizationTypes ?? []).includes(virtualization)) return false
      if (architecture && !(i.ProcessorInfo?.SupportedArchitectures ?? []).includes(architecture as never))
        return false
      return true
    })
    .map((t) => ({ instanceType: t, nitro: info.get(t)?.Hypervisor === 'nitro' }))
  return { types, offered, info }
}

export async function planBootCheck(
  ctx: RunContext,
  virtualization?: VirtualizationType,
  architecture?: Architecture
): Promise<BootPlan> {
  const place = await bootPlace(ctx)
  const explicit = ctx.settings.verifyBoot.instanceTypes.length > 0
  const candidates = explicit
    ? ctx.settings.verifyBoot.instanceTypes
    : defaultBootTypes(virtualization, architecture)
  const { types, offered } = await usableTypes(
    ctx,
    place.availabilityZone,
    candidates,
    virtualization,
    architecture
  )
  const image = [virtualization, architecture].filter(Boolean).join(' ') || 'this'
  if (offered.length === 0)
    throw new Error(
      `None of ${candidates.join(', ')} is offered in ${place.availabilityZone} (${ctx.settings.region}), where the boot check would run (subnet ${place.subnetId}); set '${INPUT}' to a type offered there that runs ${image} images${virtualization === 'paravirtual' ? ' (paravirtual images need a previous-generation type such as m3.medium, m1.small or c3.large, which newer regions do not offer)' : ''}, or '${Input.VerifyBootSubnetId}' to a subnet in another zone`
    )
  if (types.length === 0)
    throw new Error(
      `None of ${offered.join(', ')} (offered in ${place.availabilityZone}) runs ${image} images; set '${INPUT}' to a type that does`
    )
  const plan: BootPlan = { ...place, types, explicit }
  ctx.log.info(
    `boot check: ${types.map((t) => `${t.instanceType}${t.nitro ? ' (Nitro)' : ' (Xen)'}`).join(', ')} offered in ${place.availabilityZone}, subnet ${place.subnetId}`
  )
  return plan
}

/**
 * The type to launch once the convert has reported the image's drivers. A named list is tried in
 * the user's order. Otherwise Nitro first when the verdict allows it (NVMe and ENA drivers found,
 * registered with ENA support); RunInstances refuses a Nitro type for an AMI without ENA support.
 */
export function chooseBootType(plan: BootPlan, facts: Record<string, string>): BootType {
  if (plan.explicit) return plan.types[0] as BootType
  const enaRegistered = facts['ENA support'] === 'true'
  const nitroReady = enaRegistered && facts.initramfs_nvme === 'yes' && facts.initramfs_ena === 'yes'
  const nitro = plan.types.filter((t) => t.nitro && enaRegistered)
  const xen = plan.types.filter((t) => !t.nitro)
  const pick = nitroReady ? (nitro[0] ?? xen[0]) : (xen[0] ?? nitro[0])
  if (!pick)
    throw new Error(
      `The image is registered without ENA support, and the boot check found only Nitro types (${plan.types.map((t) => t.instanceType).join(', ')}), which need it; set '${INPUT}' to a Xen type such as t2.small, or '${Input.EnaSupport}: true' if the image has the ena driver`
    )
  return pick
}

const wanted = (ctx: RunContext): boolean => ctx.settings.verifyBoot.enabled

/** Mode full: before the bundle, with what the inputs say of the image (types checked again later). */
export const bootCheckPreflightStep: Step<RunContext> = {
  name: 'boot check preflight',
  enabled: (ctx) => wanted(ctx) && ctx.settings.mode === 'full',
  run: async (ctx) => {
    const { virtualizationType, architecture } = ctx.settings.image
    verifyState(ctx).plan = await planBootCheck(ctx, virtualizationType, architecture)
  }
}

/** After the image facts, before the helper or volume exists (also in a dry run). */
export const bootCheckTypesStep: Step<RunContext> = {
  name: 'boot check types',
  enabled: (ctx) => {
    const stop = convertState(ctx).stop
    return wanted(ctx) && (stop === undefined || stop === 'dry-run')
  },
  run: async (ctx) => {
    const facts = convertState(ctx).facts
    verifyState(ctx).plan = await planBootCheck(ctx, facts?.virtualizationType, facts?.architecture)
  }
}
