// The verify-boot steps, which the plan leaves out entirely when verify-boot is off (so the job
// summary's step table does not list three skipped steps on every run).
import type { RunContext } from '../context.js'
import type { Step } from '../runner.js'
import { bootStep } from './boot.js'
import { bootCheckPreflightStep, bootCheckTypesStep } from './instance-types.js'

const BOOT_CHECK_STEPS: ReadonlySet<Step<RunContext>> = new Set([
  bootCheckPreflightStep,
  bootCheckTypesStep,
  bootStep
])

export const isBootCheckStep = (step: Step<RunContext>): boolean => BOOT_CHECK_STEPS.has(step)
