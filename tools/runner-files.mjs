// The files the Actions runner hands a JavaScript action's step (GITHUB_STATE, GITHUB_OUTPUT,
// GITHUB_STEP_SUMMARY) and how to read back what the action wrote to them. Shared by the emulated
// runner of the end-to-end run (tools/emulator-session.mjs) and the unit tests' fixture
// (__tests__/__fixtures__/runner-files.ts).
import { readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'

/**
 * Parses a GITHUB_STATE / GITHUB_OUTPUT file: `name<<DELIMITER\nvalue\nDELIMITER` records (what
 * @actions/core writes) and `name=value` lines (what a shell step writes); the last one wins.
 */
export function parseCommandFile(text) {
  const values = {}
  const lines = text.split('\n')
  for (let i = 0; i < lines.length; i++) {
    const m = /^([^<=]+)<<(.+)$/.exec(lines[i])
    if (m) {
      const end = lines.indexOf(m[2], i + 1)
      values[m[1]] = lines.slice(i + 1, end).join('\n')
      i = end
    } else {
      const eq = lines[i].indexOf('=')
      if (eq > 0) values[lines[i].slice(0, eq)] = lines[i].slice(eq + 1)
    }
  }
  return values
}

/** Makes the step's files, empty, in DIR; returns their paths and readers of what was written. */
export function makeRunnerFiles(dir) {
  const files = {
    GITHUB_STATE: join(dir, 'state'),
    GITHUB_OUTPUT: join(dir, 'output'),
    GITHUB_STEP_SUMMARY: join(dir, 'summary.md')
  }
  for (const f of Object.values(files)) writeFileSync(f, '')
  return {
    files,
    state: () => parseCommandFile(readFileSync(files.GITHUB_STATE, 'utf8')),
    outputs: () => parseCommandFile(readFileSync(files.GITHUB_OUTPUT, 'utf8')),
    summary: () => readFileSync(files.GITHUB_STEP_SUMMARY, 'utf8')
  }
}
