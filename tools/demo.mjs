// npm run demo: the whole action, as the GitHub Actions runner runs it, against a local AWS
// emulator. Converts the real instance-store bundle fixture (fixtures/bundles/hvm-mbr)
// into an EBS-backed AMI and prints, as its last line, ami-id=<the new AMI id>.
//
// What runs where:
//   - moto (tools/emulator.sh) answers EC2, S3 and SSM; it executes no remote commands itself;
//   - the SSM stand-in (tools/ssm-standin.mjs) runs the action's AWS-RunShellScript commands
//     (the real convert.sh) on THIS machine, with the new volume as a loop device: so, root;
//   - the committed dist/index.js runs as the `main` and then the `post` step of a job.
import { spawnSync } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

const SOURCE_AMI = 'ami-0123456789abcdef0'
const BUCKET = 'instance-to-ebs-demo'
const PREFIX = 'bundles/hvm-mbr'
const REPO = fileURLToPath(new URL('..', import.meta.url))
// --convert-on runner: the runner writes the snapshot with the EBS direct APIs (no helper, no root).
const convertOnAt = process.argv.indexOf('--convert-on')
const CONVERT_ON = convertOnAt > 0 ? process.argv[convertOnAt + 1] : 'helper'
if (CONVERT_ON !== 'helper' && CONVERT_ON !== 'runner') {
  process.stderr.write(`demo: --convert-on takes helper or runner, not '${CONVERT_ON}'\n`)
  process.exit(2)
}
const ON_RUNNER = CONVERT_ON === 'runner'

// A closed pipe (npm run demo | head) must not kill the demo before it stops what it started.
for (const stream of [process.stdout, process.stderr]) stream.on('error', () => {})
const say = (line = '') => process.stdout.write(`${line}\n`)
// When the demo started (kept across the re-run under Node 24), to say how long it took.
const startedAt = Number(process.env.I2E_DEMO_STARTED_MS) || Date.now()
const seconds = (since) => `${Math.round((Date.now() - since) / 1000)} s`
const fail = (message) => {
  process.stderr.write(`demo: ${message}\n`)
  process.exitCode = 1
}

if (!process.env.I2E_DEMO_PREPARED) {
  say('instance-to-ebs demo: convert an instance-store AMI into an EBS-backed AMI on a local AWS emulator.')
  say('  - The emulator (moto) answers the EC2, S3 and SSM APIs; it executes no remote commands itself.')
  say('  - The SSM stand-in (tools/ssm-standin.mjs) runs the convert script that the action sends')
  say('    through SSM Run Command locally, on this machine, with the new EBS volume as a loop device.')
  say('  - The bundle is a real ec2-bundle-image bundle (test key, not a secret) in an emulated bucket.')
  say()
  if (ON_RUNNER)
    say(
      '  - convert-on: runner: no helper and no SSM command; the action writes the snapshot itself (EBS direct APIs).'
    )
  if (!ON_RUNNER && process.getuid?.() !== 0) {
    fail(
      'needs root: the SSM stand-in gives the convert script the new volume as a loop device ' +
        '(losetup, unshare, mount). Run it as root, e.g.: sudo npm run demo'
    )
    process.exit()
  }

  // What the end-to-end tests need is what the demo needs: Debian tools, npm packages (with Node 24), moto.
  const cache = join(
    process.env.XDG_CACHE_HOME ?? join(process.env.HOME ?? '/root', '.cache'),
    'instance-to-ebs'
  )
  const fresh =
    !existsSync(join(REPO, 'node_modules', '@aws-sdk', 'client-ec2')) ||
    !existsSync(join(process.env.I2E_MOTO_ROOT ?? join(cache, 'moto-root'), '.instance-to-ebs-complete'))
  say(
    fresh
      ? 'Preparing (tools/setup.sh): a first run installs npm packages and the moto emulator into a cache (about 1-3 minutes)...'
      : 'Checking prerequisites (tools/setup.sh)...'
  )
  const setupStarted = Date.now()
  const setup = spawnSync('bash', [join(REPO, 'tools', 'setup.sh')], { stdio: 'inherit' })
  if (setup.status !== 0) {
    fail(`tools/setup.sh failed (exit ${setup.status ?? setup.signal}); see above`)
    process.exit()
  }
  say(`Prepared in ${seconds(setupStarted)}.`)
  // The action runs on the Node that action.yml declares (node24): the `node` devDependency's.
  if (Number(process.versions.node.split('.')[0]) < 24) {
    process.on('SIGINT', () => {}) // the terminal's Ctrl-C reaches the child, which cleans up
    process.on('SIGTERM', () => {})
    const again = spawnSync(
      join(REPO, 'node_modules', 'node', 'bin', 'node'),
      [fileURLToPath(import.meta.url), ...process.argv.slice(2)],
      {
        stdio: 'inherit',
        env: { ...process.env, I2E_DEMO_PREPARED: '1', I2E_DEMO_STARTED_MS: String(startedAt) }
      }
    )
    process.exit(again.status ?? 1)
  }
}

const { ACCOUNT, EmulatorSession, FIXTURE_DIR, instanceStoreAmi, REGION } = await import(
  './emulator-session.mjs'
)

const session = new EmulatorSession({
  amis: [
    instanceStoreAmi({
      amiId: SOURCE_AMI,
      name: 'hvm-mbr-instance-store',
      imageLocation: `${BUCKET}/${PREFIX}/image.manifest.xml`
    })
  ],
  log: (line) => process.stderr.write(`${line}\n`)
})

session.ebsDirectOnly = ON_RUNNER

// Ctrl-C / SIGTERM: the action (which gets the terminal's SIGINT too) stops and cleans up, post
// still runs, then everything this demo started is stopped. A second one stops at once.
let interrupted = false
let action
const onSignal = (signal) => {
  if (interrupted) {
    process.stderr.write(`demo: ${signal} again: stopping now\n`)
    session.stop().finally(() => process.exit(130))
    return
  }
  interrupted = true
  process.stderr.write(`demo: ${signal}: stopping the action, cleaning up, then stopping the emulator\n`)
  action?.kill('SIGINT')
}
process.on('SIGINT', onSignal)
process.on('SIGTERM', onSignal)
process.on('uncaughtException', (err) => {
  process.stderr.write(`demo: ${err.stack ?? err}\n`)
  session.stop().finally(() => process.exit(1))
})

/** The job log as the runner shows it: masked secrets, no ::add-mask:: lines. */
function jobLog() {
  const masks = []
  let pending = ''
  return (chunk) => {
    if (chunk === null) {
      if (pending === '') return
      chunk = '\n'
    }
    pending += chunk
    const lines = pending.split('\n')
    pending = lines.pop() ?? ''
    for (const line of lines) {
      const mask = /^::add-mask::(.*)$/.exec(line)
      if (mask) {
        masks.push(mask[1].replace(/%0A/g, '\n').replace(/%0D/g, '\r').replace(/%25/g, '%'))
        continue
      }
      let shown = line
      for (const m of masks) if (m.trim()) shown = shown.split(m).join('***')
      process.stdout.write(`  | ${shown}\n`)
    }
  }
}

/** The summary's few HTML elements (headings, tables) as plain text lines. */
function asText(html) {
  return html
    .replace(/<h(\d)>(.*?)<\/h\d>/g, (_, n, t) => `${'#'.repeat(Number(n))} ${t}\n`)
    .replace(/<tr>(.*?)<\/tr>/g, (_, row) => `| ${row.replace(/<\/t[hd]><t[hd]>/g, ' | ')} |\n`)
    .replace(/<[^>]+>/g, '')
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&amp;/g, '&')
    .replace(/\n{2,}/g, '\n')
    .trimEnd()
}

async function runEntry(step, entry) {
  const { child, done } = step.start(entry)
  action = child
  const show = jobLog()
  child.stdout.on('data', show)
  child.stderr.on('data', show)
  const result = await done
  show(null)
  action = undefined
  return result
}

let amiId = ''
let summary = ''
try {
  say('Starting the emulator and the SSM stand-in...')
  const started = Date.now()
  await session.start()
  if (!ON_RUNNER && !session.loopDevices)
    throw new Error(
      'the SSM stand-in cannot give commands loop devices here (no losetup, unshare or overlay mounts); ' +
        `its log: ${session.standinLog.trim()}`
    )
  say(
    `  moto at ${session.motoUrl}, SSM stand-in at ${session.standinUrl} (${(Date.now() - started) / 1000} s)`
  )

  say(`Seeding the emulated account ${ACCOUNT} in ${REGION}:`)
  const bundle = await session.uploadBundle({ bucket: BUCKET, prefix: PREFIX })
  say(`  bundle s3://${BUCKET}/${PREFIX}/: image.manifest.xml, ${bundle.parts.join(', ')}`)
  say(`  instance-store AMI ${SOURCE_AMI}, ImageLocation ${bundle.imageLocation}`)
  const helper = ON_RUNNER ? undefined : await session.launchHelper()
  if (helper)
    say(`  helper instance ${helper.instanceId} (EBS root, running, online in SSM through the stand-in)`)
  const before = await session.inventory()

  const step = session.step({
    'source-ami-id': SOURCE_AMI,
    ...(helper ? { 'helper-instance-id': helper.instanceId } : { 'convert-on': 'runner' }),
    'x509-private-key': readFileSync(`${FIXTURE_DIR}/test-key.pem`, 'utf8'),
    'ami-name': 'hvm-mbr-ebs-demo',
    tags: 'project=instance-to-ebs-demo'
  })
  say()
  // The runner runs what is committed; say so when the working tree's dist/ is not that.
  const dist = spawnSync('git', ['-C', REPO, 'status', '--porcelain', '--', 'dist'], { encoding: 'utf8' })
  if (dist.status === 0 && dist.stdout.trim())
    say("note: dist/ differs from the last commit here; running the working tree's dist/index.js")
  say(`Running dist/index.js (main) with ${process.execPath} (${process.version}), as the runner would:`)
  const main = await runEntry(step, 'main')
  say(`main exited with ${main.code ?? main.signal}`)
  say('Running dist/index.js (post), with STATE_* from the main step:')
  const post = await runEntry(step, 'post')
  say(`post exited with ${post.code ?? post.signal}`)

  summary = step.summary()
  amiId = step.outputs()['ami-id'] ?? ''
  const left = EmulatorSession.added(before, await session.inventory())
  const leftVolumes = left.volumes.map((v) => v.id)
  if (leftVolumes.length > 0 || left.parameters.length > 0)
    fail(`the run left behind: ${[...leftVolumes, ...left.parameters].join(', ')}`)
  if (interrupted) fail('interrupted')
  else if (main.code !== 0 || !amiId) fail('the action did not produce an AMI (see its log above)')
  else if (!left.images.includes(amiId)) fail(`the emulator does not list ${amiId}`)
} catch (err) {
  fail(err instanceof Error ? err.message : String(err))
} finally {
  await session.stop()
}

if (summary) {
  say()
  say('Job summary (GITHUB_STEP_SUMMARY, its HTML shown as text):')
  say(asText(summary))
}
if (process.exitCode === undefined || process.exitCode === 0) {
  say()
  say(`The demo took ${seconds(startedAt)} in all.`)
  say(`ami-id=${amiId}`)
}
