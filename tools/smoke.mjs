// Runs the committed dist/index.js as the Actions runner would (INPUT_* variables, runner files)
// with a bad input, and checks for the clear error and a non-zero exit: proof that the bundle loads.
import { spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

const dir = mkdtempSync(join(tmpdir(), 'i2e-smoke-'))
const files = Object.fromEntries(
  ['GITHUB_STATE', 'GITHUB_OUTPUT', 'GITHUB_STEP_SUMMARY'].map((n) => [n, join(dir, n)])
)
for (const f of Object.values(files)) writeFileSync(f, '')

const run = spawnSync(process.execPath, ['dist/index.js'], {
  encoding: 'utf8',
  env: {
    PATH: process.env.PATH,
    ...files,
    'INPUT_SOURCE-AMI-ID': 'ami-12',
    'INPUT_HELPER-INSTANCE-ID': 'i-0123456789abcdef0',
    INPUT_REGION: 'us-east-1',
    'INPUT_X509-PRIVATE-KEY-PARAMETER': '/ci/key'
  }
})
rmSync(dir, { recursive: true, force: true })
const expected =
  "::error::Invalid input: 'source-ami-id': 'ami-12' is not valid; expected an AMI id such as ami-0123456789abcdef0"
const ok = run.status !== 0 && run.stdout.includes(expected)
console.log(`smoke: dist/index.js (${process.version}) exit ${run.status}`)
if (!ok) {
  console.error(
    `smoke: expected a non-zero exit and the line\n  ${expected}\ngot:\n${run.stdout}${run.stderr}`
  )
  process.exit(1)
}
console.log('smoke: the bundle loads and rejects a bad input clearly')
