// The README's policy blocks, from policies/*.json. `node tools/readme-policies.mjs` rewrites
// them in README.md (between <!-- policy:NAME:start --> and <!-- policy:NAME:end -->);
// __tests__/policies.test.ts fails when they differ from the files.
import { readFileSync, writeFileSync } from 'node:fs'

export const POLICY_NAMES = [
  'runner-role',
  'runner-role-replace',
  'runner-role-direct',
  'source-instance-profile',
  'helper-instance-profile'
]

const root = new URL('../', import.meta.url)

export function policyBlock(name) {
  const json = readFileSync(new URL(`policies/${name}.json`, root), 'utf8').trimEnd()
  return `\`\`\`json\n${json}\n\`\`\``
}

const markers = (name) => [`<!-- policy:${name}:start -->`, `<!-- policy:${name}:end -->`]

/** The README with every policy block replaced by the current file; throws when a marker is missing. */
export function withPolicyBlocks(readme) {
  let out = readme
  for (const name of POLICY_NAMES) {
    const [start, end] = markers(name)
    const from = out.indexOf(start)
    const to = out.indexOf(end, from)
    if (from < 0 || to < 0) throw new Error(`README.md lacks ${start} … ${end}`)
    out = `${out.slice(0, from + start.length)}\n${policyBlock(name)}\n${out.slice(to)}`
  }
  return out
}

if (process.argv[1] && import.meta.url.endsWith(process.argv[1].split('/').pop())) {
  const path = new URL('README.md', root)
  const before = readFileSync(path, 'utf8')
  const after = withPolicyBlocks(before)
  if (after !== before) writeFileSync(path, after)
  console.log(after === before ? 'README.md policy blocks are up to date' : 'README.md policy blocks updated')
}
