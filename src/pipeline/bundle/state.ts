// What the bundle steps hand each other through ctx.state.bundle, and the small helpers they share.
import type { Architecture, VirtualizationType } from '../../settings/index.js'
import { type RunContext, stepState } from '../context.js'

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

export const bundleState = (ctx: RunContext): BundleState => stepState<BundleState>(ctx, 'bundle')

/** Everything after preflight is skipped by a dry run. */
export const changing = (ctx: RunContext): boolean => !ctx.settings.dryRun
