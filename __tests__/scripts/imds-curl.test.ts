// bundle-aws.sh hands the IMDSv2 token to curl through a pipe (`printf … | curl --config -`) so that
// it never shows in an argument list. The pipe is safe only because curl reads its config before it
// does anything else; a stand-in curl must do the same, or a printf that the scheduler starts after
// the stand-in has answered dies of SIGPIPE and pipefail fails the IMDS read. That was the
// cancel-undo e2e flake ("could not read the credentials of the instance profile bundler-role from
// IMDSv2", 1 run in 3 under `stress-ng --cpu 2`). Here the writer is made late on purpose.
import { spawnSync } from 'node:child_process'
import { mkdirSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from '@jest/globals'
import {
  fakeImdsCurl,
  isolatedPath,
  type Machine,
  makeMachine,
  scriptsDir,
  testShell
} from './bundle-harness.js'

// The writer of the pipe, made late: every printf sleeps first (a function wins over the builtin).
const latePrintf = 'printf() { sleep 0.5; builtin printf "$@"; }'

let machine: Machine | undefined
afterEach(() => machine?.cleanup())

function run(script: string, env: Record<string, string>) {
  const r = spawnSync(testShell(), ['-c', `set -euo pipefail\n${script}`], {
    env: { HOME: '/nonexistent', LANG: 'C', ...env },
    encoding: 'utf8',
    timeout: 30_000
  })
  return { status: r.status, stdout: r.stdout, stderr: r.stderr }
}

const realCurl = spawnSync('bash', ['-c', 'command -v curl'], { encoding: 'utf8' }).stdout.trim()
if (!realCurl) console.warn('skipping the real-curl half of imds-curl.test.ts: no curl on PATH')

describe('curl --config - reads the config before it answers', () => {
  ;(realCurl ? it : it.skip)('the real curl: a late writer of the config is not killed', () => {
    // file:///dev/null: a transfer that needs no network once the config is read
    const out = run(
      `${latePrintf}
printf 'header = "X-aws-ec2-metadata-token: t"\\n' | curl -sf --config - file:///dev/null
echo "pipestatus=\${PIPESTATUS[*]}"`,
      { PATH: process.env.PATH ?? '' }
    )
    expect(out.stderr).toBe('')
    expect(out.stdout).toBe('pipestatus=0 0\n')
  })

  it("the stand-in that bundle.sh's tests and the cancel-undo e2e use: imds_get with a late printf still reads the credentials", () => {
    machine = makeMachine()
    const fake = join(machine.dir, 'fake')
    mkdirSync(fake)
    writeFileSync(join(fake, 'imds-token'), 'tok-123')
    writeFileSync(join(fake, 'credentials.json'), '{"AccessKeyId":"ASIAFAKE","SecretAccessKey":"s"}\n')
    fakeImdsCurl(machine)
    // bundle-aws.sh only defines functions: sourced, its own imds_get runs against the stand-in
    const out = run(
      `source ${JSON.stringify(join(scriptsDir, 'bundle-aws.sh'))}
IMDS=http://169.254.169.254 IMDS_TOKEN=tok-123
${latePrintf}
imds_get meta-data/iam/security-credentials/bundler-role`,
      { PATH: isolatedPath(machine), FAKE: fake }
    )
    expect(out).toEqual({
      status: 0,
      stdout: '{"AccessKeyId":"ASIAFAKE","SecretAccessKey":"s"}\n',
      stderr: ''
    })
  })
})
