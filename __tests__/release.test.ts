// The release workflow and the changelog: the tag policy in the README is what the workflow does.
import { afterEach, describe, expect, it } from '@jest/globals'
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { parse } from 'yaml'

const root = new URL('../', import.meta.url)
const text = (path: string) => readFileSync(new URL(path, root), 'utf8')

// Scratch folders for the workflow's shell steps, removed after each test (passed or failed).
const scratch: string[] = []
const scratchDir = () => {
  const made = mkdtempSync(join(tmpdir(), 'i2e-release-'))
  scratch.push(made)
  return made
}
afterEach(() => {
  for (const made of scratch.splice(0)) rmSync(made, { recursive: true, force: true })
})

interface Step {
  name?: string
  uses?: string
  run?: string
  with?: Record<string, unknown>
  env?: Record<string, string>
}
const workflow = parse(text('.github/workflows/release.yml')) as {
  on: { push: { tags: string[] } }
  permissions: Record<string, string>
  jobs: { release: { steps: Step[] } }
}
const steps = workflow.jobs.release.steps
const step = (name: string) => steps.find((s) => s.name === name) as Step

describe('release.yml', () => {
  it('runs on version tags with write access to contents only', () => {
    expect(workflow.on.push.tags).toEqual(['v*.*.*'])
    expect(workflow.permissions).toEqual({ contents: 'write' })
  })

  it('builds on Node 24 from npm ci, with actions pinned by major tag', () => {
    expect(steps.find((s) => s.uses?.startsWith('actions/setup-node'))?.with?.['node-version']).toBe(24)
    expect(steps.some((s) => s.run === 'npm ci')).toBe(true)
    for (const s of steps.filter((s) => s.uses)) expect(s.uses).toMatch(/@v\d+$/)
  })

  it('checks dist/, creates the release, then moves the major tag', () => {
    const order = steps.map((s) => s.name ?? s.uses ?? s.run)
    const at = (n: string) => order.indexOf(n)
    expect(at('dist/ is a fresh build of the tagged sources')).toBeGreaterThan(at('npm ci'))
    expect(at('Create the GitHub release')).toBeGreaterThan(
      at('dist/ is a fresh build of the tagged sources')
    )
    expect(at('Move the major tag')).toBeGreaterThan(at('Create the GitHub release'))
    expect(step('Move the major tag').run).toContain('git push --force origin "refs/tags/$MAJOR"')
  })

  const bash = (script: string, env: Record<string, string>, cwd: string) =>
    execFileSync('bash', ['-euo', 'pipefail', '-c', script], {
      cwd,
      env: { ...process.env, ...env },
      encoding: 'utf8'
    })

  it('derives the major tag and pre-release flag from the tag, and checks package.json', () => {
    const dir = scratchDir()
    const run = step('The tag is a version and matches package.json').run as string
    const outputs = (tag: string, version: string) => {
      writeFileSync(join(dir, 'package.json'), JSON.stringify({ version }))
      writeFileSync(join(dir, 'out'), '')
      bash(run, { GITHUB_REF_NAME: tag, GITHUB_OUTPUT: join(dir, 'out') }, dir)
      return readFileSync(join(dir, 'out'), 'utf8')
    }
    expect(outputs('v1.2.3', '1.2.3')).toBe('version=1.2.3\nmajor=v1\nprerelease=false\n')
    expect(outputs('v0.4.0-rc.1', '0.4.0-rc.1')).toBe('version=0.4.0-rc.1\nmajor=v0\nprerelease=true\n')
    expect(() => outputs('v1.2.3', '1.2.4')).toThrow()
    expect(() => outputs('v1.2', '1.2')).toThrow()
  })

  it('takes the release notes from the version section of the changelog', () => {
    const dir = scratchDir()
    writeFileSync(
      join(dir, 'CHANGELOG.md'),
      '# Changelog\n\n## [Unreleased]\n\n- next\n\n## [1.2.0] - 2026-01-02\n\n### Added\n\n- this\n\n## [1.1.0] - 2026-01-01\n\n- older\n'
    )
    const run = step('Release notes from CHANGELOG.md').run as string
    bash(run, { VERSION: '1.2.0' }, dir)
    expect(readFileSync(join(dir, 'release-notes.md'), 'utf8')).toBe('\n### Added\n\n- this\n\n')
    expect(() => bash(run, { VERSION: '9.9.9' }, dir)).toThrow()
  })
})

describe('CHANGELOG.md', () => {
  const changelog = text('CHANGELOG.md')
  it('keeps a changelog with an Unreleased section first', () => {
    expect(changelog).toMatch(/^# Changelog\n/)
    const versions = [...changelog.matchAll(/^## \[([^\]]+)\]/gm)].map((m) => m[1])
    expect(versions[0]).toBe('Unreleased')
    for (const v of versions.slice(1)) expect(v).toMatch(/^\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?$/)
    for (const v of versions) expect(changelog).toContain(`[${v}]: https://`)
    for (const heading of changelog.matchAll(/^### (.+)$/gm))
      expect(['Added', 'Changed', 'Deprecated', 'Removed', 'Fixed', 'Security']).toContain(heading[1])
  })

  it('is linked from the README with the tag policy', () => {
    const readme = text('README.md')
    expect(readme).toContain('](CHANGELOG.md)')
    expect(readme).toContain('](.github/workflows/release.yml)')
  })
})
