// The only module that reads the action's inputs. Everything else receives a Settings.
// One reader per concern (keys, source and mode, run options, helper, bundle, image, AMI) reads
// each input once; the checks across inputs then work on what was read.
import * as core from '@actions/core'
import { readAmi } from './ami.js'
import { readBundle } from './bundle.js'
import { checkAcrossInputs, type Read } from './checks.js'
import { readHelper } from './helper.js'
import { readImage } from './image.js'
import { readKeys } from './keys.js'
import { InputParser, type InputReader, SettingsError } from './parser.js'
import { readRunOptions } from './run.js'
import { readSourceAndMode } from './source.js'
import type { Mode, Settings } from './types.js'

export { idPattern } from './forms.js'
export { INPUT_NAMES, Input, type InputName } from './inputs.js'
export { type InputReader, SettingsError } from './parser.js'
export { POLL_DELAY_VARIABLE, readPollDelayMs } from './test-env.js'
export type * from './types.js'

const readActionInput: InputReader = (name) => core.getInput(name)

export interface ReadSettingsOptions {
  env?: NodeJS.ProcessEnv
  now?: Date
}

/** Reads and validates every input; throws one SettingsError listing every problem. */
export function readSettings(
  read: InputReader = readActionInput,
  options: ReadSettingsOptions = {}
): Settings {
  const p = new InputParser(read)
  // Secrets first, so that they are masked before anything could print them.
  const x509 = readKeys(p)
  const { source, mode, region } = readSourceAndMode(p, options.env ?? process.env)
  const run = readRunOptions(p)
  const values: Read = {
    mode,
    region,
    convertOn: run.convertOn,
    uploadConcurrency: run.uploadConcurrency,
    source,
    helper: readHelper(p, mode !== 'bundle' && run.convertOn === 'helper'),
    bundle: readBundle(p, { mode, sourceInstanceId: source.instanceId, now: options.now ?? new Date() }),
    image: readImage(p),
    ami: readAmi(p),
    x509,
    verifyBoot: run.verifyBoot,
    dryRun: run.dryRun,
    timeoutMinutes: run.timeoutMinutes,
    maxAttempts: run.maxAttempts,
    logGroup: run.logGroup,
    credentialsExpiration: run.credentialsExpiration
  }
  const problems = [...p.problems, ...checkAcrossInputs(values, (name) => p.given(name))]
  if (problems.length > 0) throw new SettingsError(problems)
  return { ...values, mode: mode as Mode }
}
