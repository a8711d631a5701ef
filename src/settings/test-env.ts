// Settings for the tests, read from the environment: not inputs of the action.
import { SettingsError } from './parser.js'

/**
 * I2E_POLL_DELAY_MS, a test setting (not an input of the action): the first delay between two
 * checks of anything awaited, in ms (main's default is 5000; each delay then grows by half up to
 * its cap). The end-to-end tests set it, so that waiting on emulators that answer within a second
 * does not cost production delays. Undefined when unset.
 */
export const POLL_DELAY_VARIABLE = 'I2E_POLL_DELAY_MS'
export function readPollDelayMs(env: NodeJS.ProcessEnv = process.env): number | undefined {
  const raw = env[POLL_DELAY_VARIABLE]
  if (raw === undefined || raw === '') return undefined
  const ms = /^\d+$/.test(raw) ? Number(raw) : Number.NaN
  if (!(ms >= 1 && ms <= 60000))
    throw new SettingsError([
      `${POLL_DELAY_VARIABLE} must be a whole number of milliseconds from 1 to 60000, not "${raw}"`
    ])
  return ms
}
