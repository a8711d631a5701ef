// aws/ is the layer of thin helpers over the SDK: it must not reach up into pipeline/ (steps,
// ledger, runner). What both need (errors, the remote tracker's shape) stands alone or in aws/.
import { readdirSync, readFileSync } from 'node:fs'
import { dirname, join, relative, resolve } from 'node:path'
import { describe, expect, it } from '@jest/globals'

const SRC = resolve('src')

/** Every module a file imports or re-exports, statically or with import(). */
function importedSpecifiers(text: string): string[] {
  const found: string[] = []
  for (const m of text.matchAll(/^\s*(?:import|export)\b[^'"]*?\bfrom\s*['"]([^'"]+)['"]/gm))
    found.push(m[1] as string)
  for (const m of text.matchAll(/^\s*import\s*['"]([^'"]+)['"]/gm)) found.push(m[1] as string)
  for (const m of text.matchAll(/\bimport\(\s*['"]([^'"]+)['"]\s*\)/g)) found.push(m[1] as string)
  return found
}

function filesUnder(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? filesUnder(join(dir, e.name)) : /\.[cm]?ts$/.test(e.name) ? [join(dir, e.name)] : []
  )
}

/** The src/pipeline modules a file imports. */
function pipelineImports(file: string): string[] {
  return importedSpecifiers(readFileSync(file, 'utf8'))
    .filter((spec) => spec.startsWith('.'))
    .map((spec) => relative(SRC, resolve(dirname(file), spec)))
    .filter((target) => target === 'pipeline' || target.startsWith(`pipeline/`))
}

describe('layers', () => {
  it('finds every form of import', () => {
    const text = [
      "import { a } from '../pipeline/a.js'",
      "import type { B } from '../pipeline/b.js'",
      'import {\n  c,\n  d\n} from "../pipeline/c.js"',
      "export { e } from '../pipeline/e.js'",
      "import '../pipeline/f.js'",
      "const g = await import('../pipeline/g.js')"
    ].join('\n')
    expect(importedSpecifiers(text)).toEqual(['a', 'b', 'c', 'e', 'f', 'g'].map((x) => `../pipeline/${x}.js`))
  })

  it('no file in src/aws imports from src/pipeline', () => {
    const files = filesUnder(join(SRC, 'aws'))
    expect(files.length).toBeGreaterThan(5)
    const upward = files.flatMap((f) => pipelineImports(f).map((t) => `${relative(SRC, f)} -> ${t}`))
    expect(upward).toEqual([])
  })
})
