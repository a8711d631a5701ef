// The old-shell suites: the tests of the scripts that run on SOURCE instances (bundle.sh,
// bundle-checks.sh, common.sh) and of convert.sh, run again with the bash of the oldest targets, and the SSM
// command text that starts them run with dash (Ubuntu's /bin/sh, which the SSM agent uses).
// The shells come from tools/old-shells.sh (built once per machine into a cache outside the
// repository). Under CI=true a missing shell fails; elsewhere the suite says loudly it skipped.
import { describe, expect, it } from '@jest/globals'
import { spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync, symlinkSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { delimiter, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { buildCommand } from '../../../src/aws/remote-script.js'
import { useShell } from '../test-shell.js'

const repo = fileURLToPath(new URL('../../../', import.meta.url))

export type OldShell = { path: string } | { missing: string }

export function oldShell(version: '4.2' | '4.3'): OldShell {
  const out = spawnSync('bash', [join(repo, 'tools/old-shells.sh'), 'path', version], { encoding: 'utf8' })
  if (out.status === 0) return { path: out.stdout.trim() }
  return { missing: out.stderr.trim() || `tools/old-shells.sh path ${version} exited ${out.status}` }
}

const dash = (): string | undefined => {
  const out = spawnSync('sh', ['-c', 'command -v dash'], { encoding: 'utf8' })
  return out.status === 0 ? out.stdout.trim() : undefined
}

/** Registers the source-instance suites under bash VERSION (or the reason they cannot run). */
export async function underOldBash(version: '4.2' | '4.3'): Promise<void> {
  const shell = oldShell(version)
  if ('missing' in shell) {
    const why = `bash ${version} is not available: ${shell.missing}`
    if (process.env.CI === 'true') {
      it(`bash ${version} is built (CI requires it: bash tools/old-shells.sh build)`, () => {
        throw new Error(why)
      })
    } else {
      console.warn(`SKIPPED: the bundle.sh suites under bash ${version}. ${why}`)
      it.skip(`SKIPPED: bundle.sh, bundle-checks.sh under bash ${version}: ${why}`, () => {})
    }
    return
  }
  useShell(shell.path)
  describe(`under bash ${version} (${shell.path})`, () => {
    it(`is bash ${version}`, () => {
      const v = spawnSync(shell.path, ['-c', 'echo "$BASH_VERSION"'], {
        encoding: 'utf8'
      })
      expect(v.stdout.trim()).toMatch(new RegExp(`^${version.replace('.', '\\.')}\\.`))
    })
    wrapperUnderDash(shell.path)
  })
  await import('../bundle-checks.test.js')
  await import('../bundle.test.js')
  // convert.sh runs on the helper (Amazon Linux 2023, bash 5), but a helper the user names may
  // be older: its suites run under the old bash too
  await import('../convert.test.js')
  await import('../convert-remote.test.js')
}

/** The command text SSM runs with `sh -c` (dash on Ubuntu), handing bundle.sh to the old bash. */
function wrapperUnderDash(bash: string): void {
  const sh = dash()
  const available = sh !== undefined
  if (!available) {
    if (process.env.CI === 'true')
      it('dash is installed (CI requires it: apt-get install dash)', () => {
        throw new Error('dash is not installed')
      })
    else console.warn('SKIPPED: the SSM command text under dash: dash is not installed')
  }
  ;(available ? it : it.skip)('the SSM command text runs under dash and hands bundle.sh to this bash', () => {
    const bin = mkdtempSync(join(tmpdir(), 'i2e-old-bash-'))
    try {
      symlinkSync(bash, join(bin, 'bash'))
      const text = buildCommand('bundle.sh', ['--virtualization-type', 'hvm', '--architecture', 'sparc'])
      expect(spawnSync(sh as string, ['-n', '-c', text]).status).toBe(0)
      const out = spawnSync(sh as string, ['-c', text], {
        encoding: 'utf8',
        env: { PATH: [bin, process.env.PATH ?? ''].join(delimiter), LANG: 'C', I2E_ROOT: bin }
      })
      expect(out.stderr).toBe('')
      expect(out.stdout).toBe(
        '::fail --architecture must be x86_64, i386 or arm64 (usage: see the top of bundle.sh)\n'
      )
      expect(out.status).toBe(2)
    } finally {
      rmSync(bin, { recursive: true, force: true })
    }
  })
}
