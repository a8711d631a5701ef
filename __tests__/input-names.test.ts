// Input names are spelt in one place, the table in src/settings/inputs.ts; the rest of src/ takes
// them from there (Input.X), so that renaming an input, or misspelling one, is a type error.
import { describe, expect, it } from '@jest/globals'
import { readdirSync, readFileSync } from 'node:fs'
import { join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import { INPUT_NAMES } from '../src/settings/index.js'

const src = fileURLToPath(new URL('../src/', import.meta.url))
const files = (dir: string): string[] =>
  readdirSync(dir, { withFileTypes: true }).flatMap((entry) =>
    entry.isDirectory()
      ? files(join(dir, entry.name))
      : entry.name.endsWith('.ts')
        ? [join(dir, entry.name)]
        : []
  )

/** The code of a file without its comments (whole-line and block comments, and `// ` tails). */
const code = (text: string): string =>
  text
    .replace(/\/\*[\s\S]*?\*\//g, (comment) => comment.replace(/[^\n]/g, ''))
    .split('\n')
    .map((line) => (/^\s*\/\//.test(line) ? '' : line.replace(/\s\/\/\s.*$/, '')))
    .join('\n')

// Words that are input names but also something else, in the one form where they are that.
const NOT_INPUTS = [
  /outputs\['manifest-location'\]/g, // the output of that name
  /\| 'manifest-location'/g, // RunContext's output names
  /output: 'manifest-location'/g, // the summary's link to that output
  /\/x509-certificate`/g, // the name of a temporary SSM parameter
  /\bstop(?: =|\?:| ===) 'dry-run'/g, // a run state: stopped for a dry run
  /ATTEMPTS_STATE = 'max-attempts'/g // a ledger key
]

// Names of one word (mode, region, tags, ...) are also ordinary words and fields: only the
// names with a hyphen are searched for.
const HYPHENATED = INPUT_NAMES.filter((name) => name.includes('-'))

describe('input names', () => {
  it('are spelt only in the names table', () => {
    const found: string[] = []
    for (const file of files(src)) {
      const path = relative(src, file)
      if (path === join('settings', 'inputs.ts')) continue
      let text = code(readFileSync(file, 'utf8'))
      for (const pattern of NOT_INPUTS) text = text.replace(pattern, '')
      text.split('\n').forEach((line, i) => {
        for (const name of HYPHENATED)
          if (new RegExp(`(?<![\\w-])${name}(?![\\w-])`).test(line)) found.push(`${path}:${i + 1}: ${name}`)
      })
    }
    expect(found).toEqual([])
  })

  it('finds a name spelt out (the check can fail)', () => {
    const line = 'throw new Error("set \'helper-ami-id\'") // see helper-subnet-id'
    expect(HYPHENATED.filter((name) => new RegExp(`(?<![\\w-])${name}(?![\\w-])`).test(code(line)))).toEqual([
      'helper-ami-id'
    ])
  })
})
