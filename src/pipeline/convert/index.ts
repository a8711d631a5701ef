// The convert steps, in order. Mode convert runs them all; mode full can run
// `convertChecks` before the bundle steps and `convertWork` after them (the source checks
// then read outputs['instance-store-ami-id'], which the bundle steps set).
import { keyParameterStep } from '../key-parameter.js'
import type { RunContext } from '../context.js'
import type { Step } from '../runner.js'
import { attachVolumeStep } from './attach.js'
import { detachVolumeStep } from './detach.js'
import { helperStep } from './helper.js'
import { imageFactsStep } from './image-facts.js'
import { preflightStep } from './preflight.js'
import { preflightSourceStep } from './preflight-source.js'
import { registerStep } from './register.js'
import { onRunner, runnerWriteStep } from './runner-write.js'
import { snapshotStep } from './snapshot.js'
import { proceeding } from './state.js'
import { createVolumeStep } from './volume.js'
import { writeImageStep } from './write.js'
import { bootStep } from '../verify/boot.js'
import { bootCheckPreflightStep, bootCheckTypesStep } from '../verify/instance-types.js'

/** Needs no source: helper, key parameter, permissions. */
export const convertChecks: Step<RunContext>[] = [preflightStep]

/** Mode full, before the bundle: those, and the boot check's instance types from the inputs. */
export const fullChecks: Step<RunContext>[] = [preflightStep, bootCheckPreflightStep]

/** The steps only one place of writing uses (the plan leaves out the other's). */
export const HELPER_ONLY = new Set<string>()
export const RUNNER_ONLY = new Set<string>([runnerWriteStep.name])

/** A helper-path step: skipped with convert-on: runner. */
const onHelper = (step: Step<RunContext>): Step<RunContext> => {
  HELPER_ONLY.add(step.name)
  return { ...step, enabled: (ctx) => !onRunner(ctx) && (step.enabled?.(ctx) ?? true) }
}

/**
 * Source checks (and the dry-run stop), then everything that creates something: on a helper
 * (volume written over SSM, then snapshotted) or on the runner (snapshot written with the EBS
 * direct APIs); both end in the same registration and the optional boot check.
 */
export const convertWork: Step<RunContext>[] = [
  preflightSourceStep,
  imageFactsStep,
  bootCheckTypesStep,
  ...[
    helperStep,
    keyParameterStep({ enabled: proceeding }),
    createVolumeStep,
    attachVolumeStep,
    writeImageStep,
    detachVolumeStep,
    snapshotStep
  ].map(onHelper),
  runnerWriteStep,
  registerStep,
  bootStep
]

export const convertSteps: Step<RunContext>[] = [...convertChecks, ...convertWork]
