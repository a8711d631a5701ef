// Summary inputs stored as JSON (a real run can be dumped the same way): the error is kept as
// { name, message, output? } and rebuilt into the error class the failure line expects.
import { readFileSync } from 'node:fs'
import { RemoteCommandError } from '../../../src/aws/remote-script.js'
import type { PipelineResult } from '../../../src/pipeline/runner.js'
import type { SummaryInput } from '../../../src/report/summary.js'

interface StoredError {
  name: string
  message: string
  output?: string
}

export const fixture = (name: string): string => readFileSync(new URL(`./${name}`, import.meta.url), 'utf8')

export function loadSummaryInput(name: string): SummaryInput {
  const stored = JSON.parse(fixture(`${name}.input.json`)) as SummaryInput & {
    result: PipelineResult & { error?: StoredError }
  }
  const e = stored.result.error
  if (e) {
    stored.result.error =
      e.name === 'RemoteCommandError'
        ? new RemoteCommandError(e.message, 'Failed', 1, e.output ?? '')
        : Object.assign(new Error(e.message), { name: e.name })
  }
  return stored
}

/** The stored form of a summary input (errors reduced to name, message and output). */
export function storeSummaryInput(input: SummaryInput): string {
  const e = input.result.error
  const error =
    e instanceof Error
      ? { name: e.name, message: e.message, output: (e as Partial<RemoteCommandError>).output }
      : e === undefined
        ? undefined
        : { name: 'Error', message: String(e) }
  return `${JSON.stringify({ ...input, result: { ...input.result, error } }, null, 2)}\n`
}
