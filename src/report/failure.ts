// The one line a failed run ends with: which step, what went wrong, and the fix when we know it.
import type { PipelineResult } from '../pipeline/runner.js'
import { messageOf } from '../errors.js'
import { RemoteCommandError } from '../aws/remote-script.js'
import { hintFor } from './hints.js'

export function failureText(error: unknown): string {
  return error instanceof RemoteCommandError ? `${error.message}\n${error.output}` : messageOf(error)
}

export function failureLine(result: PipelineResult): string {
  const message = messageOf(result.error)
  const where = result.failedStep ? `${result.failedStep}: ` : ''
  const hint = hintFor(failureText(result.error))
  const fix = hint ? ` Fix: ${hint.fix}` : ''
  const leftovers =
    result.cleanup.problems.length > 0
      ? ` Cleanup could not remove everything (${result.cleanup.problems.length} problem(s), see warnings); the post step tries again.`
      : ''
  return `${where}${message}${fix}${leftovers}`
}
