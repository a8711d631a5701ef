// The files the Actions runner hands a JavaScript action (GITHUB_STATE, GITHUB_OUTPUT, …) and
// how the runner turns saved state into STATE_* variables for the post step.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll } from '@jest/globals'

// The folders made for one test file, removed after its last test (passed or failed).
const made: string[] = []
afterAll(() => {
  for (const dir of made.splice(0)) rmSync(dir, { recursive: true, force: true })
})

/** Parses the `name<<DELIMITER\nvalue\nDELIMITER` records of a GITHUB_STATE / GITHUB_OUTPUT file; last one wins. */
export function parseCommandFile(text: string): Record<string, string> {
  const values: Record<string, string> = {}
  const lines = text.split('\n')
  for (let i = 0; i < lines.length; i++) {
    const m = /^([^<=]+)<<(.+)$/.exec(lines[i] as string)
    if (!m) continue
    const end = lines.indexOf(m[2] as string, i + 1)
    values[m[1] as string] = lines.slice(i + 1, end).join('\n')
    i = end
  }
  return values
}

export interface RunnerFiles {
  dir: string
  env: Record<string, string>
  state: () => Record<string, string>
  outputs: () => Record<string, string>
}

export function runnerFiles(): RunnerFiles {
  const dir = mkdtempSync(join(tmpdir(), 'i2e-runner-'))
  made.push(dir)
  const env = {
    GITHUB_STATE: join(dir, 'state'),
    GITHUB_OUTPUT: join(dir, 'output'),
    GITHUB_STEP_SUMMARY: join(dir, 'summary.md')
  }
  for (const f of Object.values(env)) writeFileSync(f, '')
  return {
    dir,
    env,
    state: () => parseCommandFile(readFileSync(env.GITHUB_STATE, 'utf8')),
    outputs: () => parseCommandFile(readFileSync(env.GITHUB_OUTPUT, 'utf8'))
  }
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
