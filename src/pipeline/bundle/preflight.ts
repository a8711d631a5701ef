// Bundle preflight: everything that can be known before anything is changed, and all a dry run
// does in bundle mode. Each failure names what to fix.
import {
  DescribeImagesCommand,
  DescribeInstancesCommand,
  type DescribeInstancesCommandOutput,
  type EC2Client,
  type Instance,
  RegisterImageCommand
} from '@aws-sdk/client-ec2'
import { SSM_ONLINE_FIX, ssmPingStatus } from '../../aws/instances.js'
import { provePermission } from '../../aws/permissions.js'
import { errorCode } from '../../errors.js'
import type { Architecture, VirtualizationType } from '../../settings/index.js'
import { type RunContext, required } from '../context.js'
import type { Step } from '../runner.js'
import { checkBucketAcceptsAcls, checkBucketRegion, checkPrefixFree } from './bucket.js'
import { registerInstanceStoreInput } from './register.js'
import { BUNDLE_NAME, type BundleImageFacts, bundleState } from './state.js'
import { Input } from '../../settings/inputs.js'

/** bundle.sh's own rules for what it accepts (narrower than the inputs in places). */
const HVM_ROOT_DEVICES = ['/dev/sda1', '/dev/xvda']

async function sourceInstance(ec2: EC2Client, instanceId: string, region: string) {
  let out: Partial<DescribeInstancesCommandOutput> = {}
  try {
    out = await ec2.send(new DescribeInstancesCommand({ InstanceIds: [instanceId] }))
  } catch (err) {
    const code = errorCode(err)
    if (code !== 'InvalidInstanceID.NotFound' && code !== 'InvalidInstanceID.Malformed') throw err
  }
  for (const r of out.Reservations ?? []) {
    const instance = r.Instances?.find((i) => i.InstanceId === instanceId)
    if (instance) return { instance, ownerId: r.OwnerId }
  }
  throw new Error(
    `The source instance ${instanceId} does not exist in ${region}; check ${Input.SourceInstanceId} and ${Input.Region}`
  )
}

export function imageFacts(instance: Instance, ctx: RunContext): BundleImageFacts {
  const o = ctx.settings.image
  const architecture = (o.architecture ?? instance.Architecture) as Architecture | undefined
  const virtualizationType = (o.virtualizationType ?? instance.VirtualizationType) as
    | VirtualizationType
    | undefined
  const rootDeviceName = o.rootDeviceName ?? instance.RootDeviceName ?? '/dev/sda1'
  const id = instance.InstanceId
  if (architecture !== 'x86_64' && architecture !== 'i386' && architecture !== 'arm64')
    throw new Error(
      `The source instance ${id} reports architecture '${architecture ?? 'none'}', which the AMI tools cannot bundle; set architecture to x86_64, i386 or arm64 if that is wrong`
    )
  if (virtualizationType !== 'hvm' && virtualizationType !== 'paravirtual')
    throw new Error(
      `The source instance ${id} reports no virtualization type; set ${Input.VirtualizationType} to hvm or paravirtual`
    )
  if (virtualizationType === 'hvm' && !HVM_ROOT_DEVICES.includes(rootDeviceName))
    throw new Error(
      `The root device ${rootDeviceName} of ${id} cannot be bundled as hvm: ec2-bundle-vol's block-device mapping supports /dev/sda1 and /dev/xvda; set ${Input.RootDeviceName} to one of them`
    )
  const paravirtual = virtualizationType === 'paravirtual'
  return {
    architecture,
    virtualizationType,
    rootDeviceName,
    kernelId: paravirtual ? (o.kernelId ?? instance.KernelId) : undefined,
    ramdiskId: paravirtual ? (o.ramdiskId ?? instance.RamdiskId) : undefined,
    enaSupport: ctx.settings.ami.enaSupport ?? instance.EnaSupport
  }
}

function checkSource(instance: Instance, region: string): void {
  const id = instance.InstanceId
  const state = instance.State?.Name
  if (state !== 'running')
    throw new Error(
      `The source instance ${id} is ${state ?? 'in an unknown state'}, not running; bundling reads its live root filesystem, so start it (an instance-store instance that was stopped or terminated cannot be bundled)`
    )
  if (instance.RootDeviceType !== 'instance-store')
    throw new Error(
      `The source instance ${id} has an ${instance.RootDeviceType ?? 'unknown'} root device, not instance-store: it is already EBS-backed and needs no bundling; make an AMI of it with CreateImage (aws ec2 create-image --instance-id ${id} --region ${region}) instead`
    )
}

/**
 * "Linux systems require kernel version 3.2 or above" (amazon-ssm-agent README, prerequisites;
 * release 3.1.90.0: "Minimum supported linux kernel version for linux 64bit is 3.2+"). Ubuntu
 * 10.04 runs 2.6.32 and older releases older kernels: no agent, so no bundling through SSM.
 */
export const SSM_KERNEL_NOTE =
  'the SSM agent needs Linux kernel 3.2 or later, so sources older than Ubuntu 12.04 (10.04 runs 2.6.32) cannot be bundled through SSM: bundle those by hand with ec2-bundle-vol (see the README, "Sources the action cannot reach")'

/** Ubuntu releases before 12.04, as Canonical's AMI names and descriptions spell them. */
const PRE_3_2_UBUNTU = /\b(lucid|karmic|jaunty|intrepid|hardy|10\.04|9\.10|9\.04|8\.10|8\.04)\b/i

/** The source AMI's name or description when it says the OS is too old for the agent. */
async function tooOldForSsm(ec2: EC2Client, instance: Instance): Promise<string | undefined> {
  if (!instance.ImageId) return undefined
  try {
    const out = await ec2.send(new DescribeImagesCommand({ ImageIds: [instance.ImageId] }))
    const image = out.Images?.find((i) => i.ImageId === instance.ImageId)
    const said = [image?.Name, image?.Description].find((t) => t && PRE_3_2_UBUNTU.test(t))
    return said ? `its AMI ${instance.ImageId} is '${said}'` : undefined
  } catch {
    return undefined // a deregistered or foreign AMI tells nothing
  }
}

async function checkOnline(ctx: RunContext, instance: Instance): Promise<void> {
  const instanceId = instance.InstanceId as string
  const status = await ssmPingStatus(ctx.clients.ssm, instanceId)
  if (status === 'Online') return
  const where = status === undefined ? 'not known to SSM' : `${status} in SSM`
  const old = await tooOldForSsm(ctx.clients.ec2, instance)
  if (old) throw new Error(`The source instance ${instanceId} is ${where} and ${old}: ${SSM_KERNEL_NOTE}`)
  throw new Error(
    `The source instance ${instanceId} is ${where}, so no command can run on it; ${SSM_ONLINE_FIX} (and ${SSM_KERNEL_NOTE})`
  )
}

async function checkAmiNameFree(ec2: EC2Client, name: string): Promise<void> {
  const out = await ec2.send(
    new DescribeImagesCommand({ Owners: ['self'], Filters: [{ Name: 'name', Values: [name] }] })
  )
  const taken = out.Images?.find((i) => i.Name === name)
  if (taken)
    throw new Error(
      `An AMI named '${name}' already exists (${taken.ImageId}); the instance-store AMI takes the name '<${Input.AmiName}>-instance-store': choose another ${Input.AmiName} or deregister ${taken.ImageId}`
    )
}

/** EC2 DryRun proves the permission to register without registering anything. */
async function checkRegisterPermission(
  ctx: RunContext,
  name: string,
  facts: BundleImageFacts
): Promise<void> {
  const s = bundleState(ctx)
  const imageLocation = `${s.bucket}/${s.prefix}/${BUNDLE_NAME}.manifest.xml`
  const proof = await provePermission('ec2:RegisterImage (and ec2:CreateTags)', () =>
    ctx.clients.ec2.send(
      new RegisterImageCommand({
        ...registerInstanceStoreInput(ctx, name, imageLocation, facts),
        DryRun: true
      })
    )
  )
  if (!proof.proven) ctx.log.info(`RegisterImage permission not proven by DryRun (${proof.code}); going on`)
}

/** Default base name of the AMIs: the instance and the time of the run. */
export function defaultAmiName(instanceId: string, now: Date): string {
  const stamp = now.toISOString().replace(/[-:]/g, '').replace(/\..*$/, '').replace('T', '-')
  return `instance-to-ebs-${instanceId}-${stamp}`
}

export function bundlePreflight(now: () => Date = () => new Date()): Step<RunContext> {
  return {
    name: 'bundle preflight',
    run: async (ctx) => {
      const { settings, clients } = ctx
      const s = bundleState(ctx)
      const instanceId = required(settings.source.instanceId, Input.SourceInstanceId)
      s.bucket = required(settings.bundle.bucket, Input.S3Bucket)
      s.prefix = required(settings.bundle.prefix, Input.S3Prefix)

      const { instance, ownerId } = await sourceInstance(clients.ec2, instanceId, settings.region)
      checkSource(instance, settings.region)
      if (!ownerId || !/^\d{12}$/.test(ownerId))
        throw new Error(
          `EC2 did not say which account owns ${instanceId}; ec2-bundle-vol needs it (--account-id)`
        )
      s.accountId = ownerId
      s.facts = imageFacts(instance, ctx)
      await checkOnline(ctx, instance)

      await checkBucketRegion(clients.s3, s.bucket, settings.region)
      await checkBucketAcceptsAcls(clients.s3, s.bucket, ctx.log)
      await checkPrefixFree(clients.s3, s.bucket, s.prefix, settings.bundle.ifExists, ctx.log)
      s.manifestUrl = `s3://${s.bucket}/${s.prefix}/${BUNDLE_NAME}.manifest.xml`

      s.amiName = `${settings.ami.name ?? defaultAmiName(instanceId, now())}-instance-store`
      if (s.amiName.length > 128)
        throw new Error(
          `The instance-store AMI name '${s.amiName}' is longer than 128 characters; shorten ${Input.AmiName}`
        )
      await checkAmiNameFree(clients.ec2, s.amiName)
      await checkRegisterPermission(ctx, s.amiName, s.facts)

      const f = s.facts
      Object.assign(ctx.facts, {
        'source instance': `${instanceId} (${f.virtualizationType}, ${f.architecture}, root ${f.rootDeviceName}${f.kernelId ? `, kernel ${f.kernelId}` : ''})`,
        'bundle location': s.manifestUrl,
        'instance-store AMI name': s.amiName
      })
      ctx.log.info(
        `${instanceId} can be bundled to ${s.manifestUrl} and registered as '${s.amiName}'${settings.dryRun ? ' (dry run: stopping here)' : ''}`
      )
    }
  }
}
