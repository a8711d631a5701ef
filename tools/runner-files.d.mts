// Types for tools/runner-files.mjs (used by tools/emulator-session.mjs as JavaScript, by the tests as TypeScript).
export interface StepFiles {
  GITHUB_STATE: string
  GITHUB_OUTPUT: string
  GITHUB_STEP_SUMMARY: string
}

export function parseCommandFile(text: string): Record<string, string>

export function makeRunnerFiles(dir: string): {
  files: StepFiles
  state: () => Record<string, string>
  outputs: () => Record<string, string>
  summary: () => string
}
