// npm test (tools/test.sh) runs jest with a private TMPDIR and fails the run when a test left
// anything in it: run for real on a one-test project that leaks a folder, and on one that does not.
import { spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, describe, expect, it } from '@jest/globals'

const wrapper = fileURLToPath(new URL('../tools/test.sh', import.meta.url))
const work = mkdtempSync(join(tmpdir(), 'i2e-test-command-'))
afterAll(() => rmSync(work, { recursive: true, force: true }))

/** Runs the wrapper on a project whose only test has this body; its TMPDIR's parent is `outer`. */
function runWrapper(name: string, body: string) {
  const project = join(work, name)
  const outer = join(work, `${name}-tmp`)
  for (const dir of [project, outer]) rmSync(dir, { recursive: true, force: true })
  spawnSync('mkdir', ['-p', project, outer])
  writeFileSync(
    join(project, 'probe.test.cjs'),
    `const fs = require('node:fs'); const os = require('node:os'); const path = require('node:path')\ntest('${name}', () => {\n${body}\n})\n`
  )
  const config = JSON.stringify({ rootDir: project, testMatch: ['**/probe.test.cjs'], transform: {} })
  const env: Record<string, string | undefined> = { ...process.env, TMPDIR: outer }
  delete env.JEST_WORKER_ID
  const run = spawnSync('bash', [wrapper, '--config', config, '--coverage=false'], { encoding: 'utf8', env })
  return { ...run, outer }
}

describe('npm test (tools/test.sh)', () => {
  it('fails a run whose tests all passed but left a folder in TMPDIR, names it, and removes it', () => {
    const run = runWrapper('leaks', "fs.mkdtempSync(path.join(os.tmpdir(), 'left-behind-'))")
    expect(run.stderr).toMatch(/Tests:\s+1 passed/)
    expect(run.stderr).toMatch(/left 1 file\(s\) or folder\(s\) in their TMPDIR/)
    expect(run.stderr).toMatch(/^ {2}left-behind-\w+$/m)
    expect(run.status).toBe(1)
    // The private TMPDIR went with it; jest's cache (outside it) is all that stays.
    expect(readdirSync(run.outer)).toEqual(['jest-instance-to-ebs'])
  }, 60_000)

  it('passes a run whose tests removed what they made', () => {
    const run = runWrapper(
      'cleans',
      "const d = fs.mkdtempSync(path.join(os.tmpdir(), 'made-')); fs.rmSync(d, { recursive: true })"
    )
    expect(run.stderr).toMatch(/Tests:\s+1 passed/)
    expect(run.stderr).not.toMatch(/TMPDIR/)
    expect(run.status).toBe(0)
  }, 60_000)

  it("keeps jest's own failure status", () => {
    const run = runWrapper('fails', 'expect(1).toBe(2)')
    expect(run.stderr).toMatch(/Tests:\s+1 failed/)
    expect(run.status).toBe(1)
    expect(existsSync(run.outer)).toBe(true)
  }, 60_000)
})
