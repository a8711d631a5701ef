// Prints the README's inputs and outputs tables from action.yml (`node tools/readme-tables.mjs`).
// __tests__/readme.test.ts fails when the README's tables and action.yml disagree.
import { readFileSync } from 'node:fs'
import { parse } from 'yaml'

const action = parse(readFileSync(new URL('../action.yml', import.meta.url), 'utf8'))
const cell = (s) => String(s).replace(/\|/g, '\\|').replace(/\n/g, ' ').trim()

export function inputsTable() {
  const rows = Object.entries(action.inputs).map(
    ([name, i]) =>
      `| \`${name}\` | ${cell(i.description)} | ${i.default === '' || i.default === undefined ? '' : `\`${i.default}\``} |`
  )
  return ['| input | description | default |', '| --- | --- | --- |', ...rows].join('\n')
}

export function outputsTable() {
  const rows = Object.entries(action.outputs).map(([name, o]) => `| \`${name}\` | ${cell(o.description)} |`)
  return ['| output | description |', '| --- | --- |', ...rows].join('\n')
}

if (process.argv[1] && import.meta.url.endsWith(process.argv[1].split('/').pop())) {
  console.log(`${inputsTable()}\n\n${outputsTable()}`)
}
