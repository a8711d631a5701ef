// The project stands alone: a clone from GitHub has nothing beside it. On our machines a folder
// named "shared" lies beside the repository; no tracked file may read it (by a relative path, by
// joining '..' and 'shared', or by its absolute path on these machines). The one exception is the
// sources of the old shells for the compatibility tests, which CI lays in the shared folder's
// compat/ subfolder: README.md explains it, tools/old-shells.sh builds the shells from it and
// the GitHub workflow fetches the sources there.
import { execFileSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from '@jest/globals'

const REPO = fileURLToPath(new URL('..', import.meta.url))

/** The files that may name the old-shell sources (the compat/ subfolder), and nothing else there. */
const COMPAT_ALLOWED = new Set(['README.md', 'tools/old-shells.sh', '.github/workflows/ci.yml'])

// A path to the folder beside the repository, and what may follow it in the allowed files.
const MENTIONS = [
  { what: 'a relative path to it', pattern: /\.\.[/\\]shared(?![\w-])/g, compat: /^[/\\]compat\b/ },
  {
    what: "a join of '..' and 'shared'",
    pattern: /(['"`])\.\.\1\s*,\s*(['"`])shared\2/g,
    compat: /^\s*,\s*(['"`])compat\1/
  },
  { what: 'its absolute path on our machines', pattern: /\/work\/shared(?![\w-])/g, compat: /^\/compat\b/ }
]

interface Finding {
  path: string
  line: number
  what: string
  text: string
}

/** Every mention in one file's text that its path does not allow. */
function findMentions(path: string, text: string): Finding[] {
  const found: Finding[] = []
  for (const { what, pattern, compat } of MENTIONS) {
    for (const m of text.matchAll(pattern)) {
      const at = m.index ?? 0
      const rest = text.slice(at + m[0].length)
      if (COMPAT_ALLOWED.has(path) && compat.test(rest)) continue
      const line = text.slice(0, at).split('\n').length
      found.push({ path, line, what, text: (text.split('\n')[line - 1] ?? '').trim().slice(0, 160) })
    }
  }
  return found
}

function trackedFiles(): string[] {
  return execFileSync('git', ['-C', REPO, 'ls-files', '-z'], { encoding: 'utf8', maxBuffer: 64 << 20 })
    .split('\0')
    .filter((p) => p !== '')
}

// Built from pieces, so that this file itself does not contain what it looks for.
const up = '..'
const name = 'shared'
const beside = `${up}/${name}`
const quoted = (a: string, b: string) => `'${a}', '${b}'`

describe('the project stands alone', () => {
  it('has no tracked file that reads the shared folder beside the repository (old-shell sources excepted)', () => {
    const files = trackedFiles()
    expect(files).toContain('package.json') // the listing itself worked
    const found: Finding[] = []
    for (const path of files) {
      let data: Buffer
      try {
        data = readFileSync(join(REPO, path))
      } catch {
        continue // deleted in the work tree, not yet committed
      }
      if (data.includes(0)) continue // binary: bundle parts
      found.push(...findMentions(path, data.toString('utf8')))
    }
    expect(found.map((f) => `${f.path}:${f.line}: ${f.what}: ${f.text}`)).toEqual([])
  })

  it.each([
    ['a relative path', 'src/x.ts', `const dir = '${beside}/fixtures/bundles'`],
    ['a path in a URL', '__tests__/x.ts', `new URL('../../${beside}/fixtures/', import.meta.url)`],
    ['a join', 'tools/x.mjs', `join(REPO, ${quoted(up, name)}, 'fixtures')`],
    ['a join with double quotes', 'tools/x.mjs', `path.join(repo, "${up}", "${name}")`],
    ['the absolute path', 'bench/x.sh', `cp /work/${name}/fixtures/a .`],
    ['a compat path outside the allowed files', 'tools/x.sh', `tar xf ${beside}/compat/bash-4.2.tar.gz`],
    ['a non-compat path in README.md', 'README.md', `see ${beside}/fixtures/bundles`],
    ['a non-compat join in the old-shell script', 'tools/old-shells.sh', `${quoted(up, name)}, 'x'`]
  ])('finds %s', (_name, path, text) => {
    const found = findMentions(path, `first line\n${text}\n`)
    expect(found).toHaveLength(1)
    expect(found[0]?.line).toBe(2)
  })

  it.each([
    ['README.md', `CI takes them from \`${beside}/compat\``],
    ['tools/old-shells.sh', `src=\${I2E_COMPAT_DIR:-$repo/${beside}/compat}`],
    ['.github/workflows/ci.yml', `mkdir -p ${beside}/compat`],
    ['src/x.ts', `const sharedState = '../shared-state'; join('..', 'shared-x')`]
  ])('allows the old-shell sources in %s, and names that only look alike', (path, text) => {
    expect(findMentions(path, text)).toEqual([])
  })
})
