// bundle.sh, run for real with every outside command replaced by a recording stand-in on PATH:
// the AMI tools, the aws CLI, curl (IMDSv2 and the tools download), systemctl/service, pgrep/pkill,
// the package managers and df. Each stand-in appends its argv to one log, so the tests see the
// exact arguments and the order of the calls.
import { afterEach, describe, expect, it } from '@jest/globals'
import { spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { companions } from '../../src/scripts/index.js'
import {
  calls,
  failLines,
  fakeDf,
  fakeImdsCurl,
  fixturesDir,
  isolatedPath,
  type Machine,
  makeMachine,
  type RunResult,
  realBundleDir,
  results,
  runScript,
  scriptsDir,
  standIn
} from './bundle-harness.js'

const GiB = 1024 * 1024 // in KiB

// Fake secrets: none of these may appear in an argument list or in the script's output.
const CERT_BODY = 'MIIFAKECERTIFICATEBODYcert0123456789'
const KEY_BODY = 'MIIFAKEPRIVATEKEYBODYkey9876543210'
const ACCESS_KEY_ID = 'ASIAFAKEACCESSKEYID7'
const SECRET_ACCESS_KEY = 'wJalrFAKESECRETKEYbPxRfiCYEXAMPLEKEY'
const SESSION_TOKEN = 'IQoJb3JpZ2luFAKESESSIONTOKENxyz/+=='
const IMDS_TOKEN = 'AQAEAFAKEIMDSV2TOKEN-abc=='
const secrets = [CERT_BODY, KEY_BODY, ACCESS_KEY_ID, SECRET_ACCESS_KEY, SESSION_TOKEN, IMDS_TOKEN]

const TOOLS_URL = 'https://s3.amazonaws.com/ec2-downloads/ec2-ami-tools-1.5.19.zip'
// What the curl stand-in serves for a *.zip URL, and its SHA-256 (sha256sum of "zip\n").
const ZIP_SHA256 = createHash('sha256').update('zip\n').digest('hex')
const MIRROR_URL = 'https://mirror.example.com/tools/ec2-ami-tools-1.5.19.zip'

const baseArgs: Record<string, string> = {
  '--virtualization-type': 'hvm',
  '--architecture': 'x86_64',
  '--root-device-name': '/dev/sda1',
  '--account-id': '123456789012',
  '--bucket': 'my-bundles',
  '--prefix': 'amis/web',
  '--region': 'us-west-2',
  '--cert-parameter': '/i2e/run-1/cert',
  '--key-parameter': '/i2e/run-1/key'
}

function argList(overrides: Record<string, string | null> = {}, flags: string[] = []): string[] {
  const merged: Record<string, string | null> = { ...baseArgs, ...overrides }
  const out: string[] = []
  for (const [k, v] of Object.entries(merged)) if (v !== null) out.push(k, v)
  return [...out, ...flags]
}

interface Setup {
  machine: Machine
  fake: string
  running: (names: string[]) => void
}

let current: Machine | undefined
afterEach(() => current?.cleanup())

const TOOL_BODIES = {
  'ec2-bundle-vol': `
if [[ $1 == --version ]]; then cat "$FAKE/ami-tools-version"; exit 0; fi
d='' p=image k=''
while (($#)); do case $1 in -d) d=$2; shift 2 ;; -p) p=$2; shift 2 ;; -k) k=$2; shift 2 ;; *) shift ;; esac; done
{ echo "key-folder-mode=$(stat -c %a "$(dirname "$k")")"; echo "key-mode=$(stat -c %a "$k")"
  echo "running=$(sort "$FAKE/running" | tr '\\n' ' ')"
  echo "menu-lst-lines-fixed=$(grep -c 'console=ttyS0 xen_emul_unplug=unnecessary' "$I2E_ROOT/boot/grub/menu.lst")"; } > "$FAKE/bundle-vol-saw"
rc=$(cat "$FAKE/bundle-rc")
if [[ $rc != 0 ]]; then
  echo "Copying / into the image file $d/$p..."
  echo "ERROR: Couldn't find grub stages under /mnt/img-mnt" >&2
  exit "$rc"
fi
for i in $(seq 1 40); do echo "Created $p.part.$i"; done
cp "$REAL_BUNDLE/image.manifest.xml" "$d/$p.manifest.xml"
: > "$d/$p"; : > "$d/$p.part.0"; : > "$d/$p.part.1"
echo "Bundle manifest is $d/$p.manifest.xml"
echo "ec2-bundle-vol complete."`,
  'ec2-upload-bundle': `
if [[ $1 == --version ]]; then cat "$FAKE/ami-tools-version"; exit 0; fi
{ env | grep -E '^(AWS_[A-Z_]*|RUBYOPT)=' | sort
  shim=\${RUBYOPT#-r}; shim=\${shim%% *}
  if grep -q get_creds_from_instance_profile "$shim" 2>/dev/null; then echo "shim=present"; fi; } > "$FAKE/upload-env"
echo "$AWS_ACCESS_KEY_ID" >> "$FAKE/upload-keys"
expired=$(cat "$FAKE/upload-expired" 2>/dev/null || echo 0)
if ((expired > 0)); then
  echo $((expired - 1)) > "$FAKE/upload-expired"
  echo "ERROR: Error talking to S3: Server.ExpiredToken(400): The provided token has expired." >&2
  exit 1
fi
rc=$(cat "$FAKE/upload-rc")
if [[ $rc != 0 ]]; then
  echo "ERROR: Could not create or access bucket my-bundles: server response Forbidden 403" >&2
  exit "$rc"
fi
echo "Uploaded manifest."
echo "Bundle upload completed."`
}

function setup(fixture: string, options: { hvm?: boolean; systemd?: boolean } = {}): Setup {
  const machine = makeMachine(fixture)
  current = machine
  const fake = join(machine.dir, 'fake')
  mkdirSync(join(fake, 'params'), { recursive: true })
  writeFileSync(join(fake, 'running'), '')
  writeFileSync(join(fake, 'bundle-rc'), '0')
  writeFileSync(join(fake, 'upload-rc'), '0')
  writeFileSync(join(fake, 'ami-tools-version'), '1.5.7 20071010\n\nCopyright 2008-2014 Amazon.com, Inc.\n')
  writeFileSync(join(fake, 'imds-token'), IMDS_TOKEN)
  writeFileSync(
    join(fake, 'credentials.json'),
    `{\n  "Code" : "Success",\n  "LastUpdated" : "2026-11-24T10:00:00Z",\n  "Type" : "AWS-HMAC",\n  "AccessKeyId" : "${ACCESS_KEY_ID}",\n  "SecretAccessKey" : "${SECRET_ACCESS_KEY}",\n  "Token" : "${SESSION_TOKEN}",\n  "Expiration" : "2026-11-24T16:00:00Z"\n}\n`
  )
  writeFileSync(
    join(fake, 'params', '_i2e_run-1_cert'),
    `-----BEGIN CERTIFICATE-----\n${CERT_BODY}\n-----END CERTIFICATE-----\n`
  )
  writeFileSync(
    join(fake, 'params', '_i2e_run-1_key'),
    `-----BEGIN RSA PRIVATE KEY-----\n${KEY_BODY}\n-----END RSA PRIVATE KEY-----\n`
  )
  if (options.hvm !== false) {
    mkdirSync(join(machine.root, 'usr/lib/grub/x86_64-pc'), { recursive: true })
    writeFileSync(join(machine.root, 'usr/lib/grub/x86_64-pc/stage1'), '')
  }
  if (options.systemd !== false) mkdirSync(join(machine.root, 'run/systemd/system'), { recursive: true })

  for (const [name, body] of Object.entries(TOOL_BODIES)) standIn(machine, name, body)
  for (const name of ['openssl', 'rsync', 'sgdisk', 'kpartx', 'parted', 'apt-get']) standIn(machine, name)
  standIn(
    machine,
    'ruby',
    `[[ $* == *openssl* && -f "$FAKE/ruby-without-openssl" ]] && exit 1
if [[ \${1:-} == */ssm-get-parameter.rb ]]; then
  [[ -f \${1%/*}/common.sh ]] || { echo "ssm-get-parameter.rb is not beside bundle.sh" >&2; exit 1; }
  echo "$2 $3 $AWS_ACCESS_KEY_ID $AWS_SECRET_ACCESS_KEY $AWS_SESSION_TOKEN" >> "$FAKE/parameter-env"
  f="$FAKE/params/\${3//\\//_}"
  if [[ ! -f $f ]]; then
    echo "An error occurred (ParameterNotFound) when calling the GetParameter operation: " >&2
    exit 1
  fi
  cat "$f"
fi
exit 0`
  )
  standIn(machine, 'grub', 'echo "grub (GNU GRUB 0.97)"')
  standIn(machine, 'seq', 'i=$1; while ((i <= $2)); do echo $i; i=$((i + 1)); done')
  fakeImdsCurl(machine)
  standIn(
    machine,
    'unzip',
    'while (($#)); do [[ $1 == -d ]] && d=$2; shift; done\ncp -r "$FAKE/zip-tree/." "$d/"'
  )
  const running = `r="$FAKE/running"; grep -qx "$NAME" "$r"`
  const stop = `grep -vx "$NAME" "$FAKE/running" > "$FAKE/running.new"; mv "$FAKE/running.new" "$FAKE/running"`
  const start = `echo "$NAME" >> "$FAKE/running"`
  standIn(
    machine,
    'systemctl',
    `case $1 in
is-active) NAME=$3; ${running} ;;
stop) NAME=$2; [[ -f "$FAKE/cannot-stop-$NAME" ]] && { echo "Job for $NAME failed" >&2; exit 1; }; ${stop} ;;
start) NAME=$2; ${start} ;;
esac`
  )
  standIn(
    machine,
    'service',
    `NAME=$1
case $2 in
status) if grep -qx "$NAME" "$FAKE/running"; then echo "$NAME start/running"; else echo "$NAME stop/waiting"; fi ;;
stop) ${stop} ;;
start) ${start} ;;
esac`
  )
  standIn(machine, 'pgrep', `NAME=$2; ${running}`)
  standIn(machine, 'pkill', `NAME=$2; ${stop}`)
  standIn(machine, 'epmd', `NAME=epmd; ${start}`)
  fakeDf(machine, { rootUsedKb: 2 * GiB, mntAvailKb: 100 * GiB, tmpAvailKb: 5 * GiB })
  return {
    machine,
    fake,
    running: (names) => writeFileSync(join(fake, 'running'), names.map((n) => `${n}\n`).join(''))
  }
}

function run(s: Setup, args: string[]): RunResult {
  return runScript('bundle.sh', args, {
    I2E_ROOT: s.machine.root,
    PATH: isolatedPath(s.machine),
    FAKE: s.fake,
    REAL_BUNDLE: realBundleDir
  })
}

const callsOf = (s: Setup, name: string) => calls(s.machine).filter((c) => c[0] === name)
const toolCall = (s: Setup, name: string) => {
  const found = callsOf(s, name).filter((c) => c[1] !== '--version')
  expect(found).toHaveLength(1)
  return (found[0] ?? []).slice(1)
}

/** The random folders of a run, read from the bundler's arguments. */
function folders(s: Setup, args: string[]): { keys: string; bundle: string } {
  const keyPath = args[args.indexOf('-k') + 1] ?? ''
  const keys = keyPath.replace(/\/pk\.pem$/, '')
  const bundle = args[args.indexOf('-d') + 1] ?? ''
  expect(keys).toMatch(new RegExp(`^${s.machine.root}/dev/shm/i2e-keys\\.[A-Za-z0-9]{6}$`))
  expect(bundle).toMatch(new RegExp(`^${s.machine.root}/mnt/i2e-bundle\\.[A-Za-z0-9]{6}$`))
  return { keys, bundle }
}

function expectSuccess(out: RunResult): void {
  if (out.status !== 0) throw new Error(`bundle.sh exited ${out.status}\n${out.stdout}\n${out.stderr}`)
}

function expectNoSecrets(s: Setup, out: RunResult): void {
  const argv = readFileSync(s.machine.log, 'utf8')
  for (const secret of secrets) {
    expect(argv).not.toContain(secret)
    expect(out.stdout).not.toContain(secret)
    expect(out.stderr).not.toContain(secret)
  }
}

describe('the exact ec2-bundle-vol and ec2-upload-bundle arguments', () => {
  it('hvm with /dev/sda1: MBR, ami=sda,root=/dev/sda1', () => {
    const s = setup('precise-hvm')
    const out = run(s, argList())
    expectSuccess(out)
    const bundleVol = toolCall(s, 'ec2-bundle-vol')
    const { keys, bundle } = folders(s, bundleVol)
    expect(bundleVol).toEqual([
      '-k',
      `${keys}/pk.pem`,
      '-c',
      `${keys}/cert.pem`,
      '-u',
      '123456789012',
      '-r',
      'x86_64',
      '-d',
      bundle,
      '-p',
      'image',
      '-e',
      `${keys},${bundle}`,
      '--batch',
      '--no-filter',
      '--no-inherit',
      '-P',
      'mbr',
      '-B',
      'ami=sda,root=/dev/sda1'
    ])
    expect(toolCall(s, 'ec2-upload-bundle')).toEqual([
      '-b',
      'my-bundles/amis/web',
      '-m',
      `${bundle}/image.manifest.xml`,
      '--region',
      'us-west-2',
      '--retry',
      '--batch'
    ])
    const r = results(out.stdout)
    expect(r).toMatchObject({
      manifest_location: 's3://my-bundles/amis/web/image.manifest.xml',
      image_location: 'my-bundles/amis/web/image.manifest.xml',
      bundle_destination: bundle,
      image_bytes: '67108864',
      bundled_bytes: '15748384',
      part_count: '2',
      partition: 'mbr',
      block_device_mapping: 'ami=sda,root=/dev/sda1',
      inherit_metadata: 'no',
      ami_tools_version: '1.5.7',
      cmdline_matches_menu_lst: 'no'
    })
    expect(failLines(out.stdout)).toEqual([])
  })

  it('hvm with /dev/xvda: ami=xvda,root=/dev/xvda, and the GPT partition when asked', () => {
    const s = setup('precise-hvm')
    const out = run(
      s,
      argList({ '--root-device-name': '/dev/xvda', '--partition': 'gpt', '--bundle-name': 'web-2026' })
    )
    expectSuccess(out)
    const bundleVol = toolCall(s, 'ec2-bundle-vol')
    const { keys, bundle } = folders(s, bundleVol)
    expect(bundleVol).toEqual([
      '-k',
      `${keys}/pk.pem`,
      '-c',
      `${keys}/cert.pem`,
      '-u',
      '123456789012',
      '-r',
      'x86_64',
      '-d',
      bundle,
      '-p',
      'web-2026',
      '-e',
      `${keys},${bundle}`,
      '--batch',
      '--no-filter',
      '--no-inherit',
      '-P',
      'gpt',
      '-B',
      'ami=xvda,root=/dev/xvda'
    ])
    expect(toolCall(s, 'ec2-upload-bundle')).toEqual([
      '-b',
      'my-bundles/amis/web',
      '-m',
      `${bundle}/web-2026.manifest.xml`,
      '--region',
      'us-west-2',
      '--retry',
      '--batch'
    ])
    expect(results(out.stdout).manifest_location).toBe('s3://my-bundles/amis/web/web-2026.manifest.xml')
  })

  it('paravirtual: a bare filesystem (-P none), no block-device mapping, no hvm prerequisites', () => {
    const s = setup('precise-pv', { hvm: false })
    for (const tool of ['sgdisk', 'kpartx', 'parted', 'grub']) rmSync(join(s.machine.bin, tool))
    const out = run(
      s,
      argList({
        '--virtualization-type': 'paravirtual',
        '--root-device-name': null,
        '--architecture': 'i386'
      })
    )
    expectSuccess(out)
    const bundleVol = toolCall(s, 'ec2-bundle-vol')
    const { keys, bundle } = folders(s, bundleVol)
    expect(bundleVol).toEqual([
      '-k',
      `${keys}/pk.pem`,
      '-c',
      `${keys}/cert.pem`,
      '-u',
      '123456789012',
      '-r',
      'i386',
      '-d',
      bundle,
      '-p',
      'image',
      '-e',
      `${keys},${bundle}`,
      '--batch',
      '--no-filter',
      '--no-inherit',
      '-P',
      'none'
    ])
    expect(results(out.stdout).block_device_mapping).toBeUndefined()
    expect(results(out.stdout).cmdline_matches_menu_lst).toBe('yes')
  })

  it('lets the tool inherit the metadata when the instance still answers IMDSv1', () => {
    const s = setup('precise-hvm')
    writeFileSync(join(s.fake, 'imdsv1'), '')
    expectSuccess(run(s, argList()))
    expect(toolCall(s, 'ec2-bundle-vol')).not.toContain('--no-inherit')
  })
})

describe('--fix-menu-lst', () => {
  it('rewrites menu.lst before bundling, keeping a backup', () => {
    const s = setup('precise-hvm')
    const out = run(s, argList({}, ['--fix-menu-lst']))
    expectSuccess(out)
    expect(readFileSync(join(s.fake, 'bundle-vol-saw'), 'utf8')).toContain('menu-lst-lines-fixed=2')
    const r = results(out.stdout)
    expect(r.menu_lst_fixed).toBe('yes')
    expect(readFileSync(r.menu_lst_backup ?? '', 'utf8')).toBe(
      readFileSync(join(fixturesDir, 'precise-hvm/boot/grub/menu.lst'), 'utf8')
    )
  })

  it('changes nothing when the run fails before bundling', () => {
    const s = setup('precise-hvm')
    rmSync(join(s.fake, 'params', '_i2e_run-1_cert'))
    const out = run(s, argList({}, ['--fix-menu-lst']))
    expect(out.status).toBe(6)
    expect(readFileSync(join(s.machine.root, 'boot/grub/menu.lst'), 'utf8')).toBe(
      readFileSync(join(fixturesDir, 'precise-hvm/boot/grub/menu.lst'), 'utf8')
    )
    expect(readdirSync(join(s.machine.root, 'boot/grub'))).toEqual(['menu.lst'])
  })

  it('without the flag leaves menu.lst alone and reports the difference', () => {
    const s = setup('precise-hvm')
    const out = run(s, argList())
    expectSuccess(out)
    expect(readFileSync(join(s.fake, 'bundle-vol-saw'), 'utf8')).toContain('menu-lst-lines-fixed=0')
    expect(results(out.stdout).menu_lst_fixed).toBeUndefined()
  })
})

describe('the key material', () => {
  it('is excluded from the bundle with the user excludes, private while bundling, and gone afterwards', () => {
    const s = setup('precise-hvm')
    const out = run(s, argList({ '--exclude': '/var/cache/apt /home/jenkins/workspace' }))
    expectSuccess(out)
    const bundleVol = toolCall(s, 'ec2-bundle-vol')
    const { keys, bundle } = folders(s, bundleVol)
    const excludes = (bundleVol[bundleVol.indexOf('-e') + 1] ?? '').split(',')
    expect(excludes).toEqual([keys, bundle, '/var/cache/apt', '/home/jenkins/workspace'])
    expect(bundleVol[bundleVol.indexOf('-c') + 1]?.startsWith(`${keys}/`)).toBe(true)

    const saw = readFileSync(join(s.fake, 'bundle-vol-saw'), 'utf8')
    expect(saw).toContain('key-folder-mode=700')
    expect(saw).toContain('key-mode=600')

    expect(existsSync(keys)).toBe(false)
    expect(existsSync(bundle)).toBe(false)
    expect(readdirSync(join(s.machine.root, 'mnt'))).toEqual([])
  })

  it('reaches no argument list and no output; the upload gets the credentials in its environment only', () => {
    const s = setup('precise-hvm')
    const out = run(s, argList())
    expectSuccess(out)
    expectNoSecrets(s, out)

    const env = readFileSync(join(s.fake, 'upload-env'), 'utf8')
    expect(env).toContain(`AWS_ACCESS_KEY_ID=${ACCESS_KEY_ID}\n`)
    expect(env).toContain(`AWS_SECRET_ACCESS_KEY=${SECRET_ACCESS_KEY}\n`)
    expect(env).toContain(`AWS_SESSION_TOKEN=${SESSION_TOKEN}\n`)
    expect(env).toMatch(/^RUBYOPT=-r\S+\/credentials-from-env\.rb$/m)
    expect(env).toContain('shim=present')

    // the IMDSv2 token went to curl on stdin: the credential requests carry no token argument
    const imds = callsOf(s, 'curl').filter((c) => c.some((a) => a.includes('security-credentials')))
    expect(imds.length).toBeGreaterThanOrEqual(2)
    for (const c of imds) expect(c).toEqual(expect.arrayContaining(['--config', '-']))
  })

  it('fetches the parameters with ssm-get-parameter.rb beside the script, in the region, credentials in its environment', () => {
    const s = setup('precise-hvm')
    rmSync(join(s.machine.bin, 'aws'), { force: true })
    const out = run(s, argList())
    expectSuccess(out)
    const rubyCalls = callsOf(s, 'ruby')
      .map((c) => c.slice(1))
      .filter((c) => c[0]?.endsWith('/ssm-get-parameter.rb'))
    expect(rubyCalls.map((c) => c.slice(1))).toEqual([
      ['us-west-2', '/i2e/run-1/cert'],
      ['us-west-2', '/i2e/run-1/key']
    ])
    expect(readFileSync(join(s.fake, 'parameter-env'), 'utf8')).toBe(
      `us-west-2 /i2e/run-1/cert ${ACCESS_KEY_ID} ${SECRET_ACCESS_KEY} ${SESSION_TOKEN}\n`.repeat(1) +
        `us-west-2 /i2e/run-1/key ${ACCESS_KEY_ID} ${SECRET_ACCESS_KEY} ${SESSION_TOKEN}\n`
    )
    expectNoSecrets(s, out)
  })

  it('fails with the parameter name when a parameter cannot be read', () => {
    const s = setup('precise-hvm')
    rmSync(join(s.fake, 'params', '_i2e_run-1_key'))
    const out = run(s, argList())
    expect(out.status).toBe(6)
    expect(failLines(out.stdout)).toEqual([
      expect.stringMatching(
        /^::fail could not read the SecureString parameter \/i2e\/run-1\/key: .*ParameterNotFound/
      )
    ])
    expect(callsOf(s, 'ec2-bundle-vol').filter((c) => c[1] !== '--version')).toEqual([])
  })
})

describe('services', () => {
  const services = '--stop-services'
  const names = 'jenkins rabbitmq-server redis-server epmd'

  /** The service-related calls, as "tool verb name" strings, in order, with the AMI tools. */
  function timeline(s: Setup): string[] {
    const tools: Record<string, string> = { 'ec2-bundle-vol': 'BUNDLE', 'ec2-upload-bundle': 'UPLOAD' }
    return calls(s.machine)
      .filter((c) =>
        ['systemctl', 'service', 'pgrep', 'pkill', 'epmd', ...Object.keys(tools)].includes(c[0] ?? '')
      )
      .filter((c) => c[1] !== '--version')
      .map((c) => tools[c[0] ?? ''] ?? c.filter((a) => a !== '--quiet').join(' '))
  }

  it('stops the running ones before bundling and starts them again, in reverse order, before the upload', () => {
    const s = setup('precise-hvm')
    s.running(['jenkins', 'rabbitmq-server', 'epmd'])
    const out = run(s, argList({ [services]: names }))
    expectSuccess(out)
    expect(timeline(s)).toEqual([
      'systemctl is-active jenkins',
      'systemctl stop jenkins',
      'systemctl is-active rabbitmq-server',
      'systemctl stop rabbitmq-server',
      'systemctl is-active redis-server',
      'pgrep -x epmd',
      'pkill -x epmd',
      'BUNDLE',
      'epmd -daemon',
      'systemctl start rabbitmq-server',
      'systemctl start jenkins',
      'UPLOAD'
    ])
    expect(readFileSync(join(s.fake, 'bundle-vol-saw'), 'utf8')).toMatch(/^running=$/m)
    expect(results(out.stdout).services_stopped).toBe('jenkins,rabbitmq-server,epmd')
    expect(results(out.stdout).services_restarted).toBe('epmd,rabbitmq-server,jenkins')
  })

  it('starts them again when the bundler fails, and fails with its error', () => {
    const s = setup('precise-hvm')
    s.running(['jenkins', 'redis-server'])
    writeFileSync(join(s.fake, 'bundle-rc'), '1')
    const out = run(s, argList({ [services]: names }))
    expect(out.status).toBe(7)
    expect(timeline(s).slice(-3)).toEqual([
      'BUNDLE',
      'systemctl start redis-server',
      'systemctl start jenkins'
    ])
    expect(readFileSync(join(s.fake, 'running'), 'utf8').split('\n').filter(Boolean).sort()).toEqual([
      'jenkins',
      'redis-server'
    ])
    expect(failLines(out.stdout)).toEqual([
      "::fail ec2-bundle-vol failed (exit 1): ERROR: Couldn't find grub stages under /mnt/img-mnt"
    ])
    expect(callsOf(s, 'ec2-upload-bundle').filter((c) => c[1] !== '--version')).toEqual([])
    expectNoSecrets(s, out)
    const bundle = toolCall(s, 'ec2-bundle-vol')
    expect(existsSync(bundle[bundle.indexOf('-d') + 1] ?? '/')).toBe(false)
  })

  it('starts the stopped ones again when stopping another one fails (exit trap)', () => {
    const s = setup('precise-hvm')
    s.running(['jenkins', 'rabbitmq-server'])
    writeFileSync(join(s.fake, 'cannot-stop-rabbitmq-server'), '')
    const out = run(s, argList({ [services]: names }))
    expect(out.status).toBe(1)
    expect(failLines(out.stdout)).toEqual([
      '::fail could not stop rabbitmq-server: Job for rabbitmq-server failed'
    ])
    expect(timeline(s)).toEqual([
      'systemctl is-active jenkins',
      'systemctl stop jenkins',
      'systemctl is-active rabbitmq-server',
      'systemctl stop rabbitmq-server',
      'systemctl start jenkins'
    ])
    expect(results(out.stdout).services_restarted).toBe('jenkins')
  })

  it('uses "service" where systemd does not run (upstart says stop/waiting for stopped jobs)', () => {
    const s = setup('precise-hvm', { systemd: false })
    s.running(['jenkins'])
    expectSuccess(run(s, argList({ [services]: 'jenkins redis-server' })))
    expect(timeline(s)).toEqual([
      'service jenkins status',
      'service jenkins stop',
      'service redis-server status',
      'BUNDLE',
      'service jenkins start',
      'UPLOAD'
    ])
  })
})

describe('the upload', () => {
  it('gives the tool the S3 URL of a region missing from its built-in map', () => {
    const s = setup('precise-hvm')
    expectSuccess(run(s, argList({ '--region': 'eu-central-1' })))
    expect(toolCall(s, 'ec2-upload-bundle').slice(4)).toEqual([
      '--region',
      'eu-central-1',
      '--url',
      'https://s3.eu-central-1.amazonaws.com',
      '--retry',
      '--batch'
    ])
  })

  it('refused for expired credentials, is tried again with credentials read afresh (rotation)', () => {
    const s = setup('precise-hvm')
    writeFileSync(join(s.fake, 'upload-expired'), '1')
    // reads 1 and 2 fetch the certificate and key, 3 the first upload, 4 the second
    writeFileSync(
      join(s.fake, 'credentials-4.json'),
      readFileSync(join(s.fake, 'credentials.json'), 'utf8').replace(ACCESS_KEY_ID, 'ASIAROTATEDACCESSKEY')
    )
    const out = run(s, argList())
    expectSuccess(out)
    expect(readFileSync(join(s.fake, 'upload-keys'), 'utf8')).toBe(`${ACCESS_KEY_ID}\nASIAROTATEDACCESSKEY\n`)
    expect(out.stdout).toMatch(
      /the credentials expired during the upload: reading fresh ones and uploading again \(2 of 3\)/
    )
    expectNoSecrets(s, out)
  })

  it('gives up after three expired attempts, and does not retry other refusals', () => {
    const s = setup('precise-hvm')
    writeFileSync(join(s.fake, 'upload-expired'), '5')
    const out = run(s, argList())
    expect(out.status).toBe(8)
    expect(readFileSync(join(s.fake, 'upload-keys'), 'utf8').split('\n').filter(Boolean)).toHaveLength(3)
    expect(failLines(out.stdout)[0]).toMatch(/ec2-upload-bundle failed \(exit 1\): .*ExpiredToken/)
    s.machine.cleanup()

    const other = setup('precise-hvm')
    writeFileSync(join(other.fake, 'upload-rc'), '3')
    expect(run(other, argList()).status).toBe(8)
    expect(readFileSync(join(other.fake, 'upload-keys'), 'utf8').split('\n').filter(Boolean)).toHaveLength(1)
  })
})

describe('failures', () => {
  it('an upload refused with exit 3 names the bucket problem (Packer hint)', () => {
    const s = setup('precise-hvm')
    writeFileSync(join(s.fake, 'upload-rc'), '3')
    const out = run(s, argList())
    expect(out.status).toBe(8)
    expect(failLines(out.stdout)).toEqual([
      expect.stringMatching(
        /^::fail ec2-upload-bundle failed \(exit 3\) \(the bucket may not exist, or exist and be owned by somebody else\): ERROR: Could not create or access bucket/
      )
    ])
    expectNoSecrets(s, out)
  })

  it('an instance without an instance profile fails before anything is stopped', () => {
    const s = setup('precise-hvm')
    writeFileSync(join(s.fake, 'no-role'), '')
    s.running(['jenkins'])
    const out = run(s, argList({ '--stop-services': 'jenkins' }))
    expect(out.status).toBe(6)
    expect(failLines(out.stdout)[0]).toMatch(/no instance profile/)
    expect(callsOf(s, 'systemctl')).toEqual([])
  })

  it('bad arguments exit 2 and name the argument', () => {
    const s = setup('precise-hvm')
    const out = run(s, argList({ '--bucket': null }))
    expect(out.status).toBe(2)
    expect(failLines(out.stdout)).toEqual([expect.stringMatching(/--bucket must be an S3 bucket name/)])
    const pv = run(s, argList({ '--virtualization-type': 'paravirtual', '--partition': 'gpt' }))
    expect(pv.status).toBe(2)
    expect(failLines(pv.stdout)[0]).toMatch(/hvm only/)
  })
})

describe('prerequisites', () => {
  it('a missing rsync fails with the install command (nothing installed unless allowed)', () => {
    const s = setup('precise-hvm')
    rmSync(join(s.machine.bin, 'rsync'))
    const out = run(s, argList())
    expect(out.status).toBe(3)
    const [fail] = failLines(out.stdout)
    expect(fail).toMatch(
      /missing on this instance: rsync; install with: apt-get update && apt-get install -y rsync/
    )
    expect(fail).toMatch(/install-prerequisites: true/)
    expect(callsOf(s, 'apt-get')).toEqual([])
  })

  it('ruby without openssl and a GRUB 2 machine name every missing piece and one command', () => {
    const s = setup('precise-hvm')
    writeFileSync(join(s.fake, 'ruby-without-openssl'), '')
    standIn(s.machine, 'grub', 'echo "grub-install (GRUB) 1.99-21ubuntu3.10"')
    rmSync(join(s.machine.bin, 'kpartx'))
    const out = run(s, argList())
    expect(out.status).toBe(3)
    expect(failLines(out.stdout)).toEqual([
      expect.stringContaining(
        "::fail missing on this instance: ruby's openssl library, kpartx, GRUB legacy (grub 0.9x with its stage files); install with: apt-get update && apt-get install -y ruby-full kpartx grub"
      )
    ])
  })

  it('uses yum names where yum is the package manager', () => {
    const s = setup('precise-hvm')
    rmSync(join(s.machine.bin, 'apt-get'))
    standIn(s.machine, 'yum')
    rmSync(join(s.machine.bin, 'sgdisk'))
    const out = run(s, argList())
    expect(failLines(out.stdout)[0]).toMatch(/gdisk \(sgdisk\); install with: yum install -y gdisk/)
  })

  it('with --install-prerequisites true installs the missing packages and carries on', () => {
    const s = setup('precise-hvm')
    rmSync(join(s.machine.bin, 'kpartx'))
    rmSync(join(s.machine.bin, 'rsync'))
    // the package manager stand-in "installs" a command named like the package
    standIn(
      s.machine,
      'apt-get',
      `if [[ $1 == install ]]; then for p in "$@"; do case $p in -*|install) ;; *) printf '#!/bin/bash\\nexit 0\\n' > "${s.machine.bin}/$p"; chmod +x "${s.machine.bin}/$p" ;; esac; done; fi`
    )
    const out = run(s, argList({ '--install-prerequisites': 'true' }))
    expectSuccess(out)
    expect(callsOf(s, 'apt-get').map((c) => c.slice(1))).toEqual([
      ['update', '-q'],
      ['install', '-y', '-q', 'rsync'],
      ['install', '-y', '-q', 'kpartx']
    ])
  })

  it('AMI tools older than 1.5 are refused with the download command', () => {
    const s = setup('precise-hvm')
    writeFileSync(join(s.fake, 'ami-tools-version'), '1.4.0.9 20071010\n')
    const out = run(s, argList())
    expect(out.status).toBe(3)
    expect(failLines(out.stdout)[0]).toMatch(
      new RegExp(
        `ec2-ami-tools 1\\.4\\.0\\.9 \\(.*\\) are older than 1\\.5; install 1\\.5 or later: curl -fsSLo /tmp/ec2-ami-tools\\.zip ${TOOLS_URL.replaceAll('.', '\\.')}`
      )
    )
  })

  it('missing AMI tools are downloaded from Amazon and unpacked under /opt when allowed', () => {
    const s = setup('precise-hvm')
    for (const tool of Object.keys(TOOL_BODIES)) rmSync(join(s.machine.bin, tool))
    const tree = join(s.fake, 'zip-tree', 'ec2-ami-tools-1.5.19', 'bin')
    mkdirSync(tree, { recursive: true })
    writeFileSync(join(s.fake, 'ami-tools-version'), '1.5.19 20071010\n')
    const home = join(s.machine.root, 'opt', 'ec2-ami-tools-1.5.19')
    // the unpacked tools record themselves like the other stand-ins
    const unpacked = makeToolsIn(s, tree)
    const lib = join(s.fake, 'zip-tree', 'ec2-ami-tools-1.5.19', 'lib', 'ec2', 'amitools')
    mkdirSync(lib, { recursive: true })
    writeFileSync(join(lib, 'fileutil.rb'), 'return unless File.exists?(path)\nFile.exists? x\n')
    const out = run(
      s,
      argList({
        '--install-prerequisites': 'true',
        '--ami-tools-url': MIRROR_URL,
        '--ami-tools-sha256': ZIP_SHA256
      })
    )
    expectSuccess(out)
    expect(callsOf(s, 'curl').find((c) => c.includes(MIRROR_URL))).toBeDefined()
    // Ruby 3.2 removed File.exists?
    expect(readFileSync(join(home, 'lib', 'ec2', 'amitools', 'fileutil.rb'), 'utf8')).toBe(
      'return unless File.exist?(path)\nFile.exist? x\n'
    )
    // unpacked in the private work folder, patched, then copied under /opt
    expect(callsOf(s, 'unzip')[0]).toEqual(
      expect.arrayContaining(['-d', expect.stringMatching(/\/dev\/shm\/i2e-keys\.\w+\/ami-tools$/)])
    )
    expect(existsSync(join(home, 'bin', 'ec2-bundle-vol'))).toBe(true)
    expect(unpacked.every((name) => toolCall(s, name).length > 0)).toBe(true)
    expect(results(out.stdout).ami_tools_version).toBe('1.5.19')
  })

  it('the pinned 1.5.19 zip is checked against its SHA-256: other bytes are refused and not unpacked', () => {
    const s = setup('precise-hvm')
    for (const tool of Object.keys(TOOL_BODIES)) rmSync(join(s.machine.bin, tool))
    mkdirSync(join(s.fake, 'zip-tree', 'ec2-ami-tools-1.5.19', 'bin'), { recursive: true })
    const out = run(s, argList({ '--install-prerequisites': 'true' }))
    expect(out.status).toBe(3)
    expect(callsOf(s, 'curl').find((c) => c.includes(TOOLS_URL))).toBeDefined()
    expect(failLines(out.stdout)).toEqual([
      `::fail the AMI tools downloaded from ${TOOLS_URL} have SHA-256 ${ZIP_SHA256}, not the expected bdda4494bea7d55dfff995459dd4705a953f3365bbc69f03430c796b5cc1dd7f: not installed`
    ])
    expect(callsOf(s, 'unzip')).toEqual([])
    expect(readdirSync(join(s.machine.root, 'opt'))).toEqual([])
  })

  it('another --ami-tools-url needs its --ami-tools-sha256', () => {
    const s = setup('precise-hvm')
    const out = run(s, argList({ '--ami-tools-url': MIRROR_URL }))
    expect(out.status).toBe(2)
    expect(failLines(out.stdout)[0]).toMatch(/--ami-tools-url needs --ami-tools-sha256/)
  })

  it('without permission to install, missing AMI tools fail with the download command', () => {
    const s = setup('precise-hvm')
    for (const tool of Object.keys(TOOL_BODIES)) rmSync(join(s.machine.bin, tool))
    const out = run(s, argList())
    expect(out.status).toBe(3)
    expect(failLines(out.stdout)[0]).toMatch(
      /^::fail ec2-ami-tools are not installed; install 1\.5 or later: curl -fsSLo \/tmp\/ec2-ami-tools\.zip \S+ec2-ami-tools-1\.5\.19\.zip && echo 'bdda4494\w{56} {2}\/tmp\/ec2-ami-tools\.zip' \| sha256sum -c && unzip/
    )
  })
})

/** Writes the recording tool stand-ins into `dir` (as if unpacked from the zip). */
function makeToolsIn(s: Setup, dir: string): string[] {
  const staging = { ...s.machine, bin: dir }
  for (const [name, body] of Object.entries(TOOL_BODIES)) standIn(staging, name, body)
  return Object.keys(TOOL_BODIES)
}

describe('the Ruby preload that hands the credentials to ec2-upload-bundle', () => {
  const ruby = spawnSync('ruby', ['--version']).status === 0
  // A stand-in of the one thing the preload relies on in ec2-ami-tools 1.5
  // (lib/ec2/amitools/s3toolparameters.rb): without -a, validate_params calls
  // get_creds_from_instance_profile, which fills @user and @pass (IMDSv1 lookup, refused here).
  const toolSource = `class S3ToolParameters
  attr_reader :user, :pass
  def get_creds_from_instance_profile
    @user = nil
  end
  def validate_params
    get_creds_from_instance_profile unless @user
    raise 'missing mandatory parameter: --access-key' unless @user && @user['aws_access_key_id']
  end
end
`
  const main = `require 'ec2/amitools/s3toolparameters'
p = S3ToolParameters.new
p.validate_params
puts [p.user['aws_access_key_id'], p.user['aws_secret_access_key'], p.user['aws_delegation_token'], p.pass].join(' ')
`
  ;(ruby ? it : it.skip)('makes the tool take AWS_* from the environment instead of IMDSv1', () => {
    const s = setup('precise-hvm')
    const lib = join(s.machine.dir, 'lib', 'ec2', 'amitools')
    mkdirSync(lib, { recursive: true })
    writeFileSync(join(lib, 's3toolparameters.rb'), toolSource)
    writeFileSync(join(s.machine.dir, 'uploadbundle.rb'), main)
    const shim = join(s.machine.dir, 'credentials-from-env.rb')
    const write = spawnSync(
      'bash',
      ['-c', `. "${scriptsDir}/bundle.sh" && write_credentials_shim "${shim}"`],
      {
        encoding: 'utf8'
      }
    )
    expect(write.status).toBe(0)

    const env = { PATH: process.env.PATH ?? '', RUBYOPT: `-r${shim}` }
    const withCreds = spawnSync(
      'ruby',
      ['-I', join(s.machine.dir, 'lib'), join(s.machine.dir, 'uploadbundle.rb')],
      {
        encoding: 'utf8',
        env: {
          ...env,
          AWS_ACCESS_KEY_ID: 'AKID',
          AWS_SECRET_ACCESS_KEY: 'SECRET',
          AWS_SESSION_TOKEN: 'TOKEN'
        }
      }
    )
    expect(withCreds.stderr).toContain('Using the instance-profile credentials passed in the environment.')
    expect(withCreds.stdout.trim()).toBe('AKID SECRET TOKEN SECRET')

    const without = spawnSync(
      'ruby',
      ['-I', join(s.machine.dir, 'lib'), join(s.machine.dir, 'uploadbundle.rb')],
      {
        encoding: 'utf8',
        env
      }
    )
    expect(without.status).not.toBe(0)
    expect(without.stderr).toContain('missing mandatory parameter: --access-key')
  })
})

describe('shellcheck', () => {
  const available = spawnSync('shellcheck', ['--version']).status === 0
  ;(available ? it : it.skip)('finds nothing in bundle.sh and the shell files it sources', () => {
    const sourced = companions['bundle.sh'].filter((f) => f.endsWith('.sh'))
    const out = spawnSync('shellcheck', ['-x', 'bundle.sh', ...sourced], {
      cwd: scriptsDir,
      encoding: 'utf8'
    })
    expect(out.stdout + out.stderr).toBe('')
    expect(out.status).toBe(0)
  })
})
