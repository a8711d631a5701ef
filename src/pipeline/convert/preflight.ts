// Preflight, part one: what does not depend on the source image. The helper is usable (or can
// be launched), the private key parameter exists, and EC2 DryRun proves the mutating calls are
// allowed. Nothing is created. In mode full this can run before the bundle is made.
import {
  AttachVolumeCommand,
  CreateSnapshotCommand,
  CreateVolumeCommand,
  DescribeSubnetsCommand,
  RegisterImageCommand,
  RunInstancesCommand
} from '@aws-sdk/client-ec2'
import { DescribeParametersCommand, GetParameterCommand } from '@aws-sdk/client-ssm'
import { describeInstance, SSM_ONLINE_FIX, ssmPingStatus } from '../../aws/instances.js'
import { type Proof, provePermission } from '../../aws/permissions.js'
import { errorCode } from '../../errors.js'
import type { HelperLaunch } from '../../settings/index.js'
import type { RunContext } from '../context.js'
import { oneInstanceInput } from '../launch.js'
import type { Step } from '../runner.js'
import { registerImageInput } from './register.js'
import { convertState } from './state.js'
import { tagSpec } from '../tags.js'
import { createVolumeInput } from './volume.js'
import { Input } from '../../settings/inputs.js'

/** Stand-ins for ids that do not exist yet; EC2 checks permission before it looks them up. */
const PLACEHOLDER_VOLUME = 'vol-00000000000000000'
const PLACEHOLDER_SNAPSHOT = 'snap-00000000000000000'
const PLACEHOLDER_INSTANCE = 'i-00000000000000000'

/** Graviton families (a1, t4g, m7g, c6gn, x2gd, is4gen…) run arm64; the rest of the types x86_64. */
export const helperArchitecture = (instanceType: string): 'arm64' | 'x86_64' =>
  /^(a1|[a-z]+\d+g[a-z]*)\./.test(instanceType) ? 'arm64' : 'x86_64'

export const defaultHelperAmiParameter = (arch: 'arm64' | 'x86_64'): string =>
  `/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-${arch}`

interface HelperPlace {
  availabilityZone: string
  instanceId?: string
  rootVolumeId?: string
}

async function checkGivenHelper(ctx: RunContext, instanceId: string): Promise<HelperPlace> {
  const { ec2, ssm } = ctx.clients
  let instance: Awaited<ReturnType<typeof describeInstance>>
  try {
    instance = await describeInstance(ec2, instanceId)
  } catch (err) {
    if (!/^InvalidInstanceID\./.test(errorCode(err) ?? '')) throw err
  }
  if (!instance)
    throw new Error(
      `Helper instance ${instanceId} does not exist in ${ctx.settings.region}; check '${Input.HelperInstanceId}' and '${Input.Region}'`
    )
  const state = instance.State?.Name
  if (state !== 'running')
    throw new Error(
      `Helper instance ${instanceId} is ${state ?? 'in an unknown state'}; start it or give a running '${Input.HelperInstanceId}'`
    )
  if (instance.RootDeviceType !== 'ebs')
    throw new Error(
      `Helper instance ${instanceId} is instance-store-backed; the helper must be EBS-backed: give another '${Input.HelperInstanceId}' or launch one with '${Input.HelperSubnetId}'`
    )
  const ping = await ssmPingStatus(ssm, instanceId)
  if (ping !== 'Online')
    throw new Error(
      `Helper instance ${instanceId} is ${ping ? `${ping} in SSM` : 'not registered with SSM'}, so commands cannot reach it; ${SSM_ONLINE_FIX}`
    )
  const az = instance.Placement?.AvailabilityZone
  if (!az) throw new Error(`EC2 did not say which availability zone helper ${instanceId} is in; try again`)
  const root = instance.BlockDeviceMappings?.find((b) => b.DeviceName === instance.RootDeviceName)
  ctx.log.info(`helper ${instanceId}: running, EBS-backed, online in SSM, in ${az}`)
  return { availabilityZone: az, instanceId, rootVolumeId: root?.Ebs?.VolumeId }
}

async function checkLaunch(ctx: RunContext, launch: HelperLaunch): Promise<HelperPlace> {
  const { ec2, ssm } = ctx.clients
  let az: string | undefined
  try {
    const out = await ec2.send(new DescribeSubnetsCommand({ SubnetIds: [launch.subnetId] }))
    az = out.Subnets?.[0]?.AvailabilityZone
  } catch (err) {
    if (!/^InvalidSubnet/.test(errorCode(err) ?? '')) throw err
  }
  if (!az)
    throw new Error(
      `Subnet ${launch.subnetId} does not exist in ${ctx.settings.region}; check '${Input.HelperSubnetId}'`
    )

  const s = convertState(ctx)
  let amiId = launch.amiId
  if (!amiId) {
    const arch = helperArchitecture(launch.instanceType)
    const name = defaultHelperAmiParameter(arch)
    try {
      const out = await ssm.send(new GetParameterCommand({ Name: name }))
      amiId = out.Parameter?.Value
    } catch (err) {
      throw new Error(
        `Could not read the latest Amazon Linux 2023 AMI id from ${name} (${errorCode(err) ?? 'error'}); allow ssm:GetParameter on it or set '${Input.HelperAmiId}'`
      )
    }
    if (!amiId) throw new Error(`SSM parameter ${name} is empty; set '${Input.HelperAmiId}'`)
    ctx.log.info(`helper AMI: ${amiId} (latest Amazon Linux 2023, ${arch})`)
  }
  s.helperAmiId = amiId

  const proof = await provePermission(
    'ec2:RunInstances (with iam:PassRole for the helper instance profile and ec2:CreateTags)',
    () => ec2.send(new RunInstancesCommand({ ...runInstancesInput(ctx, launch, amiId), DryRun: true }))
  )
  report(ctx, 'launch the helper', proof)
  return { availabilityZone: az }
}

/** The one RunInstances request, shared by the DryRun probe and the helper step. */
export function runInstancesInput(ctx: RunContext, launch: HelperLaunch, amiId: string) {
  const profile = launch.instanceProfile.startsWith('arn:')
    ? { Arn: launch.instanceProfile }
    : { Name: launch.instanceProfile }
  return {
    ...oneInstanceInput(ctx, {
      imageId: amiId,
      instanceType: launch.instanceType,
      subnetId: launch.subnetId,
      securityGroupIds: launch.securityGroupIds,
      name: 'instance-to-ebs helper'
    }),
    IamInstanceProfile: profile,
    MetadataOptions: { HttpTokens: 'required' as const, HttpEndpoint: 'enabled' as const }
  }
}

function report(ctx: RunContext, what: string, proof: Proof): void {
  if (proof.proven) ctx.log.info(`permission to ${what}: ok`)
  else
    ctx.log.info(
      `permission to ${what}: not provable in advance (DryRun answered ${proof.code}); it is checked when the call is made`
    )
}

async function checkKeyParameter(ctx: RunContext): Promise<void> {
  const key = ctx.settings.x509.privateKey
  if (key?.kind !== 'parameter') return
  const out = await ctx.clients.ssm.send(
    new DescribeParametersCommand({
      ParameterFilters: [{ Key: 'Name', Option: 'Equals', Values: [key.name] }]
    })
  )
  const found = out.Parameters?.find((p) => p.Name === key.name || `/${p.Name}` === key.name)
  if (!found)
    throw new Error(
      `SSM parameter ${key.name} does not exist in ${ctx.settings.region}; check '${Input.X509PrivateKeyParameter}' (a SecureString holding the PEM private key)`
    )
  if (found.Type !== 'SecureString')
    ctx.log.warning(
      `SSM parameter ${key.name} is a ${found.Type}, not a SecureString: the private key is stored unencrypted`
    )
}

/**
 * The RegisterImage request of the register step, with stand-ins for what is not known yet (the
 * snapshot, the image facts unless given as inputs): the probe sends the same shape, tags included.
 */
export function registerProbeInput(ctx: RunContext) {
  const { image } = ctx.settings
  const toHvm = image.outputVirtualizationType === 'hvm'
  const virtualizationType = toHvm ? 'hvm' : (image.virtualizationType ?? 'hvm')
  return registerImageInput(ctx, {
    name: 'instance-to-ebs-permission-probe',
    description: 'instance-to-ebs permission probe',
    facts: {
      architecture: image.architecture ?? 'x86_64',
      virtualizationType,
      toHvm,
      rootDeviceName: image.rootDeviceName ?? (toHvm ? '/dev/xvda' : '/dev/sda1'),
      kernelId: image.kernelId,
      ramdiskId: image.ramdiskId,
      enaSupport: ctx.settings.ami.enaSupport,
      sriovNetSupport: ctx.settings.ami.sriovNetSupport,
      bootMode: toHvm ? 'legacy-bios' : ctx.settings.ami.bootMode
    },
    snapshotId: PLACEHOLDER_SNAPSHOT,
    volumeSizeGiB: ctx.settings.ami.volumeSizeGiB ?? 8
  })
}

async function provePermissions(ctx: RunContext, place: HelperPlace): Promise<void> {
  const { ec2 } = ctx.clients
  const volume = place.rootVolumeId ?? PLACEHOLDER_VOLUME
  const checks: [string, string, () => Promise<unknown>][] = [
    [
      'create the volume',
      'ec2:CreateVolume (and ec2:CreateTags)',
      () =>
        ec2.send(
          new CreateVolumeCommand({
            ...createVolumeInput(ctx, place.availabilityZone, 1, 'instance-to-ebs work volume'),
            ClientToken: undefined,
            DryRun: true
          })
        )
    ],
    [
      'attach the volume',
      'ec2:AttachVolume',
      () =>
        ec2.send(
          new AttachVolumeCommand({
            DryRun: true,
            VolumeId: volume,
            InstanceId: place.instanceId ?? PLACEHOLDER_INSTANCE,
            Device: '/dev/sdf'
          })
        )
    ],
    [
      'snapshot the volume',
      'ec2:CreateSnapshot (and ec2:CreateTags)',
      () =>
        ec2.send(
          new CreateSnapshotCommand({
            DryRun: true,
            VolumeId: volume,
            Description: 'instance-to-ebs: permission probe',
            TagSpecifications: tagSpec(ctx, 'snapshot', 'instance-to-ebs')
          })
        )
    ],
    ['register the AMI', 'ec2:RegisterImage (and ec2:CreateTags)', registerProbe(ctx)]
  ]
  for (const [what, actions, call] of checks) report(ctx, what, await provePermission(actions, call))
}

/** The register step's own request shape (tags included), sent as a DryRun. */
const registerProbe = (ctx: RunContext) => () =>
  ctx.clients.ec2.send(new RegisterImageCommand({ ...registerProbeInput(ctx), DryRun: true }))

/** Helper, key parameter and permissions: the checks that need no source image. */
export const preflightStep: Step<RunContext> = {
  name: 'preflight',
  run: async (ctx) => {
    if (ctx.settings.convertOn === 'runner') {
      ctx.log.info(
        `${Input.ConvertOn}: runner: no helper; the runner writes the snapshot with the EBS direct APIs`
      )
      await checkKeyParameter(ctx)
      report(
        ctx,
        'register the AMI',
        await provePermission('ec2:RegisterImage (and ec2:CreateTags)', registerProbe(ctx))
      )
      return
    }
    const { helper } = ctx.settings
    let place: HelperPlace
    if (helper.instanceId) place = await checkGivenHelper(ctx, helper.instanceId)
    else if (helper.launch) place = await checkLaunch(ctx, helper.launch)
    else
      throw new Error(
        `No helper: set '${Input.HelperInstanceId}' (a running EBS-backed instance online in SSM) or '${Input.HelperSubnetId}' and '${Input.HelperInstanceProfile}' to launch one`
      )
    await checkKeyParameter(ctx)
    await provePermissions(ctx, place)
  }
}
