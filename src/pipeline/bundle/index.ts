// The bundle steps, in order: check, store the key material, bundle and upload on the source
// instance, register the instance-store AMI and wait for it.
import type { RunContext } from '../context.js'
import type { Step } from '../runner.js'
import { bundleKeyMaterial } from './key-material.js'
import { bundlePreflight } from './preflight.js'
import { registerInstanceStoreImage } from './register.js'
import { bundleVolume } from './remote-bundle.js'
import { waitInstanceStoreImage } from './wait-available.js'

export function bundleSteps(): Step<RunContext>[] {
  return [
    bundlePreflight(),
    bundleKeyMaterial,
    bundleVolume,
    registerInstanceStoreImage,
    waitInstanceStoreImage
  ]
}
