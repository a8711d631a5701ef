// Image facts: what the EBS AMI is registered with. Read from the source AMI, each one
// overridden by its input; for a manifest-location source the inputs are all there is.
// Also where a dry run ends: everything has been checked by now and nothing was made.
import type { Image } from '@aws-sdk/client-ec2'
import type { Architecture, BootMode, Settings, VirtualizationType } from '../../settings.js'
import type { RunContext } from '../context.js'
import type { Step } from '../runner.js'
import { convertState, type ImageFacts } from './state.js'

const ARCHITECTURES: readonly string[] = ['x86_64', 'i386', 'arm64']

export function deriveImageFacts(settings: Settings, source: Image | undefined): ImageFacts {
  const { image, ami } = settings
  const what = source?.ImageId ? `source AMI ${source.ImageId}` : 'the manifest'
  const architecture = image.architecture ?? source?.Architecture
  if (!architecture || !ARCHITECTURES.includes(architecture))
    throw new Error(
      `The architecture of ${what} is '${architecture ?? 'unknown'}'; set 'architecture' (x86_64, i386 or arm64)`
    )
  const virtualizationType = image.virtualizationType ?? source?.VirtualizationType
  if (virtualizationType !== 'hvm' && virtualizationType !== 'paravirtual')
    throw new Error(
      `The virtualization type of ${what} is unknown; set 'virtualization-type' (hvm or paravirtual)`
    )
  const paravirtual = virtualizationType === 'paravirtual'
  const kernelId = paravirtual ? (image.kernelId ?? source?.KernelId) : undefined
  if (paravirtual && !kernelId)
    throw new Error(
      `A paravirtual AMI boots through a kernel image and ${what} names none; set 'kernel-id' to a PV-GRUB hd0 AKI of the region`
    )
  const bootMode =
    virtualizationType === 'hvm' ? (ami.bootMode ?? (source?.BootMode as BootMode | undefined)) : undefined
  return {
    architecture: architecture as Architecture,
    virtualizationType: virtualizationType as VirtualizationType,
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
    if (f.virtualizationType === 'hvm' && f.enaSupport !== true)
      ctx.log.info(
        'ENA support is off: the AMI will not launch on current (Nitro) instance types; set ena-support: true if its kernel has the ena driver'
      )
    if (ctx.settings.dryRun) {
      s.stop = 'dry-run'
      ctx.log.info('dry run: everything checked, nothing created')
    }
  }
}
