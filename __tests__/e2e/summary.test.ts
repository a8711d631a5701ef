// The job summary of real runs: dist/index.js converting on the emulator (see convert.test.ts for
// the set-up), once successfully and once failing on a corrupted part. The summary the runner
// would show is compared with expected markdown after replacing what changes from run to run
// (resource ids, timings, random names) by stable placeholders.
// UPDATE_SUMMARY_FIXTURES=1 rewrites the expected files (review the diff before committing).
import { readFileSync, writeFileSync } from 'node:fs'
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals'
import { EmulatorSession, FIXTURE_DIR } from '../../tools/emulator-session.mjs'
import {
  bundleAmis,
  describeWithEmulator,
  startSession,
  uploadGoodAndCorrupt
} from '../__fixtures__/e2e-setup.js'

const BUCKET = 'i2e-e2e-summary'
const GOOD_AMI = 'ami-0a1b2c3d4e5f60718'
const CORRUPT_AMI = 'ami-0badc0ffee0badc0f'
const TIMEOUT_MS = 240_000

const session = new EmulatorSession({
  amis: bundleAmis(BUCKET, {
    good: [GOOD_AMI, 'hvm-mbr-instance-store'],
    corrupt: [CORRUPT_AMI, 'hvm-mbr-corrupt-part']
  })
})
const unavailable = await startSession(session, { suite: 'the emulator summary tests', loopDevices: true })

/** Stable placeholders for what differs between runs; the seeded source AMIs keep their ids. */
function normalise(markdown: string): string {
  const seen = new Map<string, string>()
  const counters = new Map<string, number>()
  const placeholder = (kind: string, id: string) => {
    if (id === GOOD_AMI || id === CORRUPT_AMI) return id
    if (!seen.has(id)) {
      const n = (counters.get(kind) ?? 0) + 1
      counters.set(kind, n)
      seen.set(id, `${kind}-<${n}>`)
    }
    return seen.get(id) as string
  }
  return markdown
    .replace(/\b(ami|snap|vol|i)-[0-9a-f]{8,17}\b/g, (id, kind: string) => placeholder(kind, id))
    .replace(/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/g, '<uuid>')
    .replace(/\blocal-[0-9a-f]{8}\b/g, '<run>')
    .replace(/\/dev\/loop\d+/g, '/dev/loop<n>')
    .replace(/\| (?:\d+\.\d s|\d+ min \d+ s|\d+ h \d+ min) \|/g, '| <time> |')
}

const key = readFileSync(`${FIXTURE_DIR}/test-key.pem`, 'utf8')
let helper = ''

const expectMarkdown = (name: string, markdown: string) => {
  const url = new URL(`../__fixtures__/summary/${name}.md`, import.meta.url)
  if (process.env.UPDATE_SUMMARY_FIXTURES) writeFileSync(url, markdown)
  expect(markdown).toBe(readFileSync(url, 'utf8'))
}

describeWithEmulator('job summary of emulator runs', unavailable, () => {
  beforeAll(async () => {
    await uploadGoodAndCorrupt(session, BUCKET)
    helper = (await session.launchHelper()).instanceId
  })

  afterAll(async () => {
    await session.stop()
  })

  const run = async (sourceAmi: string, amiName: string) => {
    const step = session.step({
      'helper-instance-id': helper,
      'x509-private-key': key,
      'source-ami-id': sourceAmi,
      'ami-name': amiName
    })
    const main = await step.run('main')
    await step.run('post')
    return { code: main.code, summary: step.summary() }
  }

  it(
    'shows the AMI, snapshot, image facts and steps of a successful conversion',
    async () => {
      const { code, summary } = await run(GOOD_AMI, 'e2e-summary')
      expect(code).toBe(0)
      expectMarkdown('emulator-success', normalise(summary))
    },
    TIMEOUT_MS
  )

  it(
    'shows the failed step, the reason and the cleanup of a failed conversion',
    async () => {
      const { code, summary } = await run(CORRUPT_AMI, 'e2e-summary-corrupt')
      expect(code).not.toBe(0)
      expectMarkdown('emulator-failure', normalise(summary))
    },
    TIMEOUT_MS
  )
})

describe('normalise', () => {
  it('numbers ids in order of appearance and blanks timings', () => {
    expect(
      normalise(`| x | 1.5 s |\nami-0123456789abcdef0 ami-00000000 ami-0123456789abcdef0 ${GOOD_AMI}`)
    ).toBe(`| x | <time> |\nami-<1> ami-<2> ami-<1> ${GOOD_AMI}`)
  })
})
