// Image facts: what the EBS AMI is registered with. Read from the source AMI, each one
// overridden by its input; for a manifest-location source the inputs are all there is.
// Also where a dry run ends: everything has been checked by now and nothing was made.
import type { Image } from '@aws-sdk/client-ec2'
import type { Architecture, BootMode, Settings, VirtualizationType } from '../../settings/index.js'
import type { RunContext } from '../context.js'
import type { Step } from '../runner.js'
import { convertState, type ImageFacts } from './state.js'
import { Input } from '../../settings/inputs.js'

const ARCHITECTURES: readonly string[] = ['x86_64', 'i386', 'arm64']

/** The source's virtualization type (input, else the source AMI's), when known. */
export function sourceVirtualizationType(settings: Settings, source: Image | undefined): string | undefined {
  return settings.image.virtualizationType ?? source?.VirtualizationType
}

/** A paravirtual source that comes out hvm (output-virtualization-type: hvm). */
export const convertsToHvm = (settings: Settings, source: Image | undefined): boolean =>
  settings.image.outputVirtualizationType === 'hvm' &&
  sourceVirtualizationType(settings, source) === 'paravirtual'

// "HVM: Differs by AMI /dev/sda1 or /dev/xvda" (EC2 User Guide, device naming on Linux instances).
const HVM_ROOT_DEVICES = ['/dev/sda1', '/dev/xvda']

export function deriveImageFacts(settings: Settings, source: Image | undefined): ImageFacts {
  const { image, ami } = settings
  const what = source?.ImageId ? `source AMI ${source.ImageId}` : 'the manifest'
  const architecture = image.architecture ?? source?.Architecture
  if (!architecture || !ARCHITECTURES.includes(architecture))
    throw new Error(
      `The architecture of ${what} is '${architecture ?? 'unknown'}'; set '${Input.Architecture}' (x86_64, i386 or arm64)`
    )
  const sourceType = sourceVirtualizationType(settings, source)
  if (sourceType !== 'hvm' && sourceType !== 'paravirtual')
    throw new Error(
      `The virtualization type of ${what} is unknown; set '${Input.VirtualizationType}' (hvm or paravirtual)`
    )
  if (sourceType === 'hvm' && image.outputVirtualizationType === 'paravirtual')
    throw new Error(
      `${what} is hvm, and an hvm image cannot be made paravirtual; leave '${Input.OutputVirtualizationType}' empty or set it to hvm`
    )
  const toHvm = convertsToHvm(settings, source)
  if (toHvm) {
    if (architecture === 'arm64')
      throw new Error(`${what} is arm64 and paravirtual: no such AMI boots; nothing to make hvm`)
    const sourceRoot = source?.RootDeviceName
    return {
      architecture: architecture as Architecture,
      virtualizationType: 'hvm',
      toHvm,
      rootDeviceName:
        image.rootDeviceName ??
        (sourceRoot && HVM_ROOT_DEVICES.includes(sourceRoot) ? sourceRoot : '/dev/xvda'),
      // No kernel or ramdisk: the volume boots through its own boot loader, GRUB 2 for BIOS.
      bootMode: 'legacy-bios',
      // Decided by the drivers the image has (write image), unless ena-support says.
      enaSupport: ami.enaSupport,
      sriovNetSupport: ami.sriovNetSupport ?? source?.SriovNetSupport
    }
  }
  const virtualizationType = sourceType
  const paravirtual = virtualizationType === 'paravirtual'
  const kernelId = paravirtual ? (image.kernelId ?? source?.KernelId) : undefined
  if (paravirtual && !kernelId)
    throw new Error(
      `A paravirtual AMI boots through a kernel image and ${what} names none; set '${Input.KernelId}' to a PV-GRUB hd0 AKI of the region, or '${Input.OutputVirtualizationType}: hvm'`
    )
  const bootMode =
    virtualizationType === 'hvm' ? (ami.bootMode ?? (source?.BootMode as BootMode | undefined)) : undefined
  return {
    architecture: architecture as Architecture,
    virtualizationType: virtualizationType as VirtualizationType,
    toHvm: false,
    rootDeviceName: image.rootDeviceName ?? source?.RootDeviceName ?? '/dev/sda1',
    kernelId,
    ramdiskId: paravirtual ? (image.ramdiskId ?? source?.RamdiskId) : undefined,
    enaSupport: ami.enaSupport ?? source?.EnaSupport,
    sriovNetSupport: ami.sriovNetSupport ?? source?.SriovNetSupport,
    bootMode
  }
}

export const imageFactsStep: Step<RunContext> = {
  name: 'image facts',
  enabled: (ctx) => convertState(ctx).stop === undefined,
  run: async (ctx) => {
    const s = convertState(ctx)
    const f = deriveImageFacts(ctx.settings, s.sourceImage)
    s.facts = f
    const shown: [string, string | undefined][] = [
      ['architecture', f.architecture],
      ['virtualization type', f.virtualizationType],
      ['converted from', f.toHvm ? 'paravirtual (partitioned, GRUB 2 installed)' : undefined],
      ['root device', f.rootDeviceName],
      ['kernel', f.kernelId],
      ['ramdisk', f.ramdiskId],
      ['ENA support', f.enaSupport === undefined ? undefined : String(f.enaSupport)],
      ['SR-IOV', f.sriovNetSupport],
      ['boot mode', f.bootMode]
    ]
    for (const [k, v] of shown) {
      if (v === undefined) continue
      ctx.facts[k] = v
      ctx.log.info(`${k}: ${v}`)
    }
    if (f.toHvm)
      ctx.log.info(
        'paravirtual in, hvm out: the helper partitions the volume and installs GRUB 2; ENA support follows the drivers the image turns out to have'
      )
    else if (f.virtualizationType === 'hvm' && f.enaSupport !== true)
      ctx.log.info(
        `ENA support is off: the AMI will not launch on current (Nitro) instance types; set ${Input.EnaSupport}: true if its kernel has the ena driver`
      )
    if (ctx.settings.dryRun) {
      s.stop = 'dry-run'
      ctx.log.info('dry run: everything checked, nothing created')
    }
  }
}
