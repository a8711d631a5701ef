// CI is one script, .ci/run, and it runs the README's test command; the GitHub workflow runs that
// same script, with the emulator root and npm's cache kept between runs and the old-shell sources
// laid where the compatibility tests look for them.
import { readFileSync } from 'node:fs'
import { describe, expect, it } from '@jest/globals'
import { parse } from 'yaml'

/** A GitHub expression as the workflow writes it. */
const expression = (inner: string) => `\${{ ${inner} }}`
const parent = '..'
const text = (path: string) => readFileSync(new URL(`../${path}`, import.meta.url), 'utf8')

interface Step {
  id?: string
  uses?: string
  run?: string
  if?: string
  with?: Record<string, unknown>
}
const workflow = parse(text('.github/workflows/ci.yml')) as {
  jobs: Record<string, { env?: Record<string, string>; steps: Step[] }>
}

describe('.ci/run', () => {
  it("runs the README's test command", () => {
    const readmeTest = /^```sh\n.*\n(npm run [\w:]+)/m.exec(text('README.md'))?.[1]
    expect(readmeTest).toBe('npm run test:fresh')
    const lines = text('.ci/run')
      .split('\n')
      .map((l) => l.trim())
    expect(lines).toContain(readmeTest)
  })
})

describe('.github/workflows/ci.yml', () => {
  const jobs = Object.values(workflow.jobs)
  const steps = jobs.flatMap((j) => j.steps)

  it('runs the same .ci/run, as root with the environment kept', () => {
    expect(steps.filter((s) => /\bbash \.ci\/run\b/.test(s.run ?? '')).map((s) => s.run?.trim())).toEqual([
      'sudo -E env "PATH=$PATH" bash .ci/run'
    ])
  })

  it("caches npm's downloads and the emulator root", () => {
    expect(steps.find((s) => s.uses?.startsWith('actions/setup-node@'))?.with).toMatchObject({
      'node-version': 24,
      cache: 'npm'
    })
    const env = jobs.find((j) => j.env?.I2E_MOTO_ROOT)?.env ?? {}
    expect(env.I2E_MOTO_ROOT).toMatch(/instance-to-ebs\/moto-root$/)
    const cache = steps.find((s) => s.uses?.startsWith('actions/cache@'))
    expect(cache?.with?.path).toBe(expression('env.EMULATOR_TARBALL'))
    expect(String(cache?.with?.key)).toContain("hashFiles('tools/emulator.sh')")
    // A hit unpacks the root; a miss builds it and packs it for the cache, with the marker emulator.sh trusts.
    const unpack = steps.find((s) => s.if?.includes("cache-hit == 'true'"))
    const build = steps.find((s) => s.if?.includes("cache-hit != 'true'"))
    expect(unpack?.run).toContain('tar -xzf "$EMULATOR_TARBALL" -C "$I2E_MOTO_ROOT"')
    expect(build?.run).toContain('.instance-to-ebs-complete')
    expect(build?.run).toContain('tar -czf "$EMULATOR_TARBALL" -C "$I2E_MOTO_ROOT" .')
  })

  it("caches the boot tests' images with their bundles and the old shells, keyed by the scripts that make them", () => {
    const env = jobs.find((j) => j.env?.I2E_BOOT_IMAGE_CACHE)?.env ?? {}
    // The variables the scripts read for their caches (boot-images.sh, old-shells.sh).
    expect(text('tools/boot-images.sh')).toContain('${I2E_BOOT_IMAGE_CACHE:-')
    expect(text('tools/old-shells.sh')).toContain('${XDG_CACHE_HOME:-')
    const cache = steps.find((s) => String(s.with?.path ?? '').includes('env.I2E_BOOT_IMAGE_CACHE'))
    const paths = String(cache?.with?.path).trim().split('\n')
    expect(paths).toEqual([
      expression('env.I2E_BOOT_IMAGE_CACHE'),
      `${expression('env.XDG_CACHE_HOME')}/instance-to-ebs/shells`
    ])
    for (const made of ['tools/boot-images.sh', 'bench/make-bundle.sh', 'tools/old-shells.sh'])
      expect(String(cache?.with?.key)).toContain(`'${made}'`)
    expect(env.I2E_BOOT_IMAGE_CACHE).toMatch(/^\/home\/runner\/\.cache\//)
    expect(env.XDG_CACHE_HOME).toBe('/home/runner/.cache')
  })

  it('lays the bash 4.2 and 4.3 sources beside the clone before .ci/run', () => {
    const env = jobs.find((j) => j.env?.COMPAT_DIR)?.env ?? {}
    // The one place outside the project that CI reads (see self-contained.test.ts).
    expect(env.COMPAT_DIR).toBe(`${expression('github.workspace')}/${parent}/shared/compat`)
    const fetchAt = steps.findIndex((s) => (s.run ?? '').includes('bash-$v.tar.gz'))
    expect(steps[fetchAt]?.run).toContain('for v in 4.2 4.3')
    expect(steps[fetchAt]?.run).toContain('"$COMPAT_DIR/bash-$v.tar.gz"')
    expect(fetchAt).toBeLessThan(steps.findIndex((s) => (s.run ?? '').includes('.ci/run')))
  })
})
