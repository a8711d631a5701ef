// The bash that runs the scripts under test: today's `bash` on PATH, or an old one (bash 4.2 or
// 4.3, as on Ubuntu 12.04 and 14.04) set by the old-shell suites in __tests__/scripts/old-shells/.
let shell = 'bash'

export function useShell(path: string): void {
  shell = path
}

export const testShell = (): string => shell
