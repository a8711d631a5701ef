// What the convert steps hand each other through ctx.state.convert, and the small helpers they share.
import type { Image } from '@aws-sdk/client-ec2'
import type { Architecture, BootMode, S3Location, VirtualizationType } from '../../settings/index.js'
import { type RunContext, stepState } from '../context.js'

export interface ImageFacts {
  architecture: Architecture
  /** Of the new AMI. */
  virtualizationType: VirtualizationType
  /** A paravirtual image that becomes hvm: partitioned, with a boot loader (to-hvm.sh). */
  toHvm: boolean
  rootDeviceName: string
  kernelId?: string
  ramdiskId?: string
  enaSupport?: boolean
  sriovNetSupport?: string
  bootMode?: BootMode
}

export interface ConvertState {
  /** Set by preflight: the source AMI (absent when converting a manifest-location). */
  sourceImage?: Image
  manifest?: S3Location
  imageBytes?: number
  volumeSizeGiB?: number
  amiName?: string
  /** An AMI of that name that if-ami-exists: replace removes once the new one is available. */
  replaces?: Image
  /** Why the steps after preflight do not run. */
  stop?: 'dry-run' | 'reuse'
  /** Resolved default helper AMI when a helper is launched. */
  helperAmiId?: string
  facts?: ImageFacts
  helper?: { instanceId: string; availabilityZone: string; launched: boolean }
  volumeId?: string
  device?: string
  snapshotId?: string
  imageId?: string
}

export const convertState = (ctx: RunContext): ConvertState => stepState<ConvertState>(ctx, 'convert')

/** Steps after preflight run only when it did not stop the run (dry run, or an AMI reused). */
export const proceeding = (ctx: RunContext): boolean =>
  !ctx.settings.dryRun && convertState(ctx).stop === undefined

export const GiB = 1024 ** 3

/** Where to-hvm.sh puts the partition of a paravirtual image made hvm: sector 2048. */
export const HVM_PARTITION_OFFSET = 2048 * 512
