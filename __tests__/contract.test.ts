// action.yml, the workflows and the README agree with each other and parse.
import { describe, expect, it } from '@jest/globals'
import { readdirSync, readFileSync } from 'node:fs'
import { parse } from 'yaml'
import { INPUT_NAMES, readSettings } from '../src/settings/index.js'
// @ts-expect-error plain JS module without types
import { inputsTable, outputsTable } from '../tools/readme-tables.mjs'

const root = new URL('../', import.meta.url)
const text = (path: string) => readFileSync(new URL(path, root), 'utf8')
const action = parse(text('action.yml')) as {
  inputs: Record<string, { description: string; default?: string }>
  outputs: Record<string, { description: string }>
  runs: Record<string, string>
}

const block = (readme: string, name: string) => {
  const m = new RegExp(`<!-- ${name}:start -->\\n([\\s\\S]*?)\\n<!-- ${name}:end -->`).exec(readme)
  return m?.[1]
}

describe('action.yml', () => {
  it('runs on node24 with a post step that always runs', () => {
    expect(action.runs).toEqual({
      using: 'node24',
      main: 'dist/index.js',
      post: 'dist/index.js',
      'post-if': 'always()'
    })
  })

  it('has kebab-case inputs, each described', () => {
    for (const [name, input] of Object.entries(action.inputs)) {
      expect(name).toMatch(/^[a-z0-9]+(-[a-z0-9]+)*$/)
      expect(input.description.length).toBeGreaterThan(10)
    }
    for (const o of Object.values(action.outputs)) expect(o.description.length).toBeGreaterThan(10)
  })

  it('takes no AWS credentials as inputs', () => {
    expect(Object.keys(action.inputs).filter((n) => /access-key|secret-key|session-token/.test(n))).toEqual(
      []
    )
  })

  it('declares every input the settings read, and the settings read every input', () => {
    const asked = new Set<string>()
    try {
      readSettings((name) => {
        asked.add(name)
        return ''
      })
    } catch {
      // No source: a SettingsError, after every input was read.
    }
    expect([...asked].sort()).toEqual(Object.keys(action.inputs).sort())
  })

  it('has every input in the names table, and every name in the table is an input', () => {
    expect([...INPUT_NAMES].sort()).toEqual(Object.keys(action.inputs).sort())
    expect(new Set(INPUT_NAMES).size).toBe(INPUT_NAMES.length)
  })
})

describe('README', () => {
  const readme = text('README.md')
  it('inputs table equals action.yml', () => expect(block(readme, 'inputs')).toBe(inputsTable()))
  it('outputs table equals action.yml', () => expect(block(readme, 'outputs')).toBe(outputsTable()))
  it('starts with the demo and test commands', () => {
    expect(readme).toMatch(/^# instance-to-ebs\n\n```sh\nnpm run demo .*\nnpm run test:fresh .*\n```/)
  })
})

describe('YAML files', () => {
  const files = [
    'action.yml',
    ...readdirSync(new URL('.github/workflows/', root)).map((f) => `.github/workflows/${f}`)
  ]
  it.each(files)('%s parses', (file) => {
    expect(() => parse(text(file))).not.toThrow()
  })
})

describe('test runtime', () => {
  it('is the Node 24 that action.yml declares', () => expect(process.version).toMatch(/^v24\./))
})
