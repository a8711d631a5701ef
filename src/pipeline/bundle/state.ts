// What the bundle steps hand each other through ctx.state.bundle, and the small helpers they share.
import { randomBytes } from 'node:crypto'
import type { Architecture, VirtualizationType } from '../../settings.js'
import type { RunContext } from '../context.js'

/** ec2-bundle-vol's -p: the bundle is <prefix>/image.manifest.xml and image.part.NN beside it. */
export const BUNDLE_NAME = 'image'

/** What RegisterImage needs to describe the bundled image: the instance's own, overridden by inputs. */
export interface BundleImageFacts {
  architecture: Architecture
  virtualizationType: VirtualizationType
  rootDeviceName: string
  kernelId?: string
  ramdiskId?: string
  enaSupport?: boolean
}

export interface BundleState {
  /** Set by preflight. */
  accountId?: string
  facts?: BundleImageFacts
  /** The instance-store AMI's name: `<ami-name or default>-instance-store`. */
  amiName?: string
  bucket?: string
  prefix?: string
  /** s3://bucket/prefix/image.manifest.xml: where the bundle will be, the 'bundle' resource id. */
  manifestUrl?: string
  /** Set by the bundle step from bundle.sh's image_location: bucket/prefix/image.manifest.xml. */
  imageLocation?: string
  /** Set by the register step. */
  imageId?: string
}

export function bundleState(ctx: RunContext): BundleState {
  let s = ctx.state.bundle as BundleState | undefined
  if (!s) {
    s = {}
    ctx.state.bundle = s
  }
  return s
}

/** Fails loudly when a step runs without what an earlier step should have left. */
export function known<T>(value: T | undefined, what: string): T {
  if (value === undefined)
    throw new Error(`internal error: ${what} is not known yet (a step ran out of order)`)
  return value
}

/** Everything after preflight is skipped by a dry run. */
export const changing = (ctx: RunContext): boolean => !ctx.settings.dryRun

/** The tag every resource of one run carries (the same key the convert steps use). */
export const RUN_TAG = 'instance-to-ebs:run'

/** One id per run: the workflow run and attempt, or random outside Actions. Kept in ctx.state. */
export function runId(ctx: RunContext, env: NodeJS.ProcessEnv = process.env): string {
  if (typeof ctx.state.runId === 'string') return ctx.state.runId
  const id = env.GITHUB_RUN_ID
    ? `${env.GITHUB_RUN_ID}-${env.GITHUB_RUN_ATTEMPT ?? '1'}`
    : `local-${randomBytes(6).toString('hex')}`
  ctx.state.runId = id
  return id
}

/** The user's tags, the run tag, and a Name unless the user gave one. */
export function bundleTags(ctx: RunContext, name: string): { Key: string; Value: string }[] {
  const tags = [...ctx.settings.ami.tags]
  if (!tags.some((t) => t.Key === 'Name')) tags.push({ Key: 'Name', Value: name })
  tags.push({ Key: RUN_TAG, Value: runId(ctx) })
  return tags
}
