// The files the Actions runner hands a JavaScript action (GITHUB_STATE, GITHUB_OUTPUT, …) and
// how the runner turns saved state into STATE_* variables for the post step.
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll } from '@jest/globals'
import { makeRunnerFiles } from '../../tools/runner-files.mjs'

// The folders made for one test file, removed after its last test (passed or failed).
const made: string[] = []
afterAll(() => {
  for (const dir of made.splice(0)) rmSync(dir, { recursive: true, force: true })
})

export interface RunnerFiles {
  dir: string
  env: Record<string, string>
  state: () => Record<string, string>
  outputs: () => Record<string, string>
}

export function runnerFiles(): RunnerFiles {
  const dir = mkdtempSync(join(tmpdir(), 'i2e-runner-'))
  made.push(dir)
  const { files, state, outputs } = makeRunnerFiles(dir)
  return { dir, env: { ...files }, state, outputs }
}

/** Sets process.env for the duration of fn, then restores it. */
export async function withEnv<T>(vars: Record<string, string | undefined>, fn: () => Promise<T>): Promise<T> {
  const before = Object.fromEntries(Object.keys(vars).map((k) => [k, process.env[k]]))
  for (const [k, v] of Object.entries(vars)) {
    if (v === undefined) delete process.env[k]
    else process.env[k] = v
  }
  try {
    return await fn()
  } finally {
    for (const [k, v] of Object.entries(before)) {
      if (v === undefined) delete process.env[k]
      else process.env[k] = v
    }
  }
}
