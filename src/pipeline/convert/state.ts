// What the convert steps hand each other through ctx.state.convert, and the small helpers they share.
import { randomBytes } from 'node:crypto'
import type { Image, ResourceType, TagSpecification } from '@aws-sdk/client-ec2'
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

export const RUN_TAG = 'instance-to-ebs:run'

/**
 * One id per job, kept in ctx.state: the workflow run and attempt plus a random part (the jobs
 * of a matrix share the run and attempt, and must not share names or idempotency tokens), or
 * random outside Actions. Used in the run tag, temporary names and client tokens.
 */
export function runIdOf(ctx: RunContext, env: NodeJS.ProcessEnv = process.env): string {
  if (typeof ctx.state.runId === 'string') return ctx.state.runId
  const random = randomBytes(4).toString('hex')
  const id = env.GITHUB_RUN_ID
    ? `${env.GITHUB_RUN_ID}-${env.GITHUB_RUN_ATTEMPT ?? '1'}-${random}`
    : `local-${random}`
  ctx.state.runId = id
  return id
}

/** An idempotency token for one create call of this job (EC2 allows 64 characters). */
export const clientToken = (ctx: RunContext, what: string): string => `i2e-${runIdOf(ctx)}-${what}`.slice(-64)

/** The user's tags, the run tag, and a Name unless the user gave one. */
export function tagsFor(ctx: RunContext, name: string): { Key: string; Value: string }[] {
  const tags = [...ctx.settings.ami.tags]
  if (!tags.some((t) => t.Key === 'Name')) tags.push({ Key: 'Name', Value: name })
  tags.push({ Key: RUN_TAG, Value: runIdOf(ctx) })
  return tags
}

export const tagSpec = (ctx: RunContext, type: ResourceType, name: string): TagSpecification[] => [
  { ResourceType: type, Tags: tagsFor(ctx, name) }
]

export const GiB = 1024 ** 3

/** Where to-hvm.sh puts the partition of a paravirtual image made hvm: sector 2048. */
export const HVM_PARTITION_OFFSET = 2048 * 512
