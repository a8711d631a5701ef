// Which steps run, by mode. bundle: bundle steps; convert: convert steps; full: both, the
// bundle's manifest, image facts and key handed to convert through the run context.
import type { Settings } from '../settings/index.js'
import { bundleSteps } from './bundle/index.js'
import type { RunContext } from './context.js'
import { convertSteps, convertWork, fullChecks, HELPER_ONLY, RUNNER_ONLY } from './convert/index.js'
import type { Step } from './runner.js'
import { isBootCheckStep } from './verify/index.js'

export function planSteps(settings: Settings): Step<RunContext>[] {
  // The other place of writing's steps are left out, so the summary lists only what could run;
  // so are the boot check's steps when verify-boot is off.
  const other = settings.convertOn === 'runner' ? HELPER_ONLY : RUNNER_ONLY
  return stepsOfMode(settings).filter(
    (step) => !other.has(step.name) && (settings.verifyBoot.enabled || !isBootCheckStep(step))
  )
}

function stepsOfMode(settings: Settings): Step<RunContext>[] {
  switch (settings.mode) {
    case 'convert':
      return [...convertSteps]
    case 'bundle':
      return bundleSteps()
    case 'full':
      // Helper and permission checks first, so a full run fails before an hour of bundling.
      return [...fullChecks, ...bundleSteps(), ...convertWork]
  }
}
