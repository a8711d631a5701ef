// convert.sh in remote mode: manifest and parts streamed from S3 and the key read from SSM,
// through a stand-in `aws` command that serves a fixture bundle from a local folder.
import { spawnSync } from 'node:child_process'
import {
  chmodSync,
  cpSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync
} from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals'
import {
  bundlesDir,
  expected,
  need,
  needNumber,
  type Run,
  runConvert,
  type Scratch,
  scratch,
  sha256File
} from './convert-harness.js'

const systemPath = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'
const bundle = 'hvm-mbr'
const bucket = 'i2e-test-bucket'
const prefix = 'bundles/hvm'
const parameter = '/i2e/test/bundle-key'
const region = 'eu-west-1'

// The stand-in: logs each call, then answers s3 cp / s3 ls / ssm get-parameter from $FAKE_S3.
const fakeAws = `#!/bin/bash
printf '%s\\n' "$*" >>"$FAKE_AWS_LOG"
[[ $1 == --region ]] && shift 2
cmd="$1 $2"; shift 2
args=(); name=''
while (($#)); do
  case $1 in
  --name) name=$2; shift 2 ;;
  --query | --output) shift 2 ;;
  --only-show-errors | --with-decryption) shift ;;
  *) args+=("$1"); shift ;;
  esac
done
local_path() { printf '%s/%s' "$FAKE_S3" "\${1#s3://}"; }
case $cmd in
"ssm get-parameter")
  if [[ $name != "$FAKE_PARAMETER" ]]; then
    echo "An error occurred (ParameterNotFound) when calling the GetParameter operation: " >&2; exit 254
  fi
  out=$(readlink -f /proc/$$/fd/1)
  echo "key-file-mode $(stat -c %a "$out") key-dir-mode $(stat -c %a "$(dirname "$out")")" >>"$FAKE_AWS_LOG"
  cat "$FAKE_KEY" ;;
"s3 cp")
  [[ \${args[1]} == - ]] && echo "start \${args[0]##*/}" >>"$FAKE_AWS_LOG" && sleep "\${FAKE_DELAY:-0}"
  src=$(local_path "\${args[0]}")
  if [[ ! -f $src ]]; then
    echo "fatal error: An error occurred (404) when calling the HeadObject operation: Key \\"\${args[0]#s3://*/}\\" does not exist" >&2; exit 1
  fi
  if [[ \${args[1]} == - ]]; then cat "$src"; echo "end \${args[0]##*/}" >>"$FAKE_AWS_LOG"; else cp "$src" "\${args[1]}"; fi ;;
"s3 ls")
  if [[ -n $FAKE_LS_DENIED ]]; then
    echo "An error occurred (AccessDenied) when calling the ListObjectsV2 operation: Access Denied" >&2; exit 1
  fi
  for f in "$(local_path "\${args[0]}")"*; do
    [[ -f $f ]] && printf '2026-11-24 18:48:00 %10d %s\\n' "$(stat -c %s "$f")" "\${f##*/}"
  done ;;
*) echo "stand-in aws: unexpected $cmd" >&2; exit 2 ;;
esac
`

let tmp: Scratch
let bin: string
let s3: string
let log: string

beforeAll(() => {
  tmp = scratch('i2e-convert-remote-')
  bin = join(tmp.dir, 'bin')
  s3 = join(tmp.dir, 's3')
  log = join(tmp.dir, 'aws.log')
  mkdirSync(bin)
  writeFileSync(join(bin, 'aws'), fakeAws)
  chmodSync(join(bin, 'aws'), 0o755)
})
afterAll(() => tmp.cleanup())

/** Uploads a fresh copy of the fixture bundle to the fake bucket (without its key files). */
function upload(): string {
  const dir = join(s3, bucket, prefix)
  rmSync(dir, { recursive: true, force: true })
  mkdirSync(dir, { recursive: true })
  for (const file of readdirSync(join(bundlesDir, bundle))) {
    if (file.startsWith('image.')) cpSync(join(bundlesDir, bundle, file), join(dir, file))
  }
  spawnSync('chmod', ['-R', 'u+w', dir])
  return dir
}

function remote(args: string[], extra: Record<string, string> = {}): Run {
  writeFileSync(log, '')
  return runConvert(args, {
    PATH: `${bin}:${systemPath}`,
    I2E_SHM_DIR: tmp.shm,
    FAKE_AWS_LOG: log,
    FAKE_S3: s3,
    FAKE_KEY: join(bundlesDir, bundle, 'test-key.pem'),
    FAKE_PARAMETER: parameter,
    ...extra
  })
}

const calls = () => readFileSync(log, 'utf8').split('\n').filter(Boolean)
const manifestUrl = `s3://${bucket}/${prefix}/image.manifest.xml`

describe('convert.sh reads the bundle from S3 and the key from SSM', () => {
  it('rebuilds the image byte for byte; the key stays in a private dir and out of every log', () => {
    upload()
    const target = join(tmp.dir, 'remote.img')
    const run = remote([
      '--manifest',
      manifestUrl,
      '--key-parameter',
      parameter,
      '--target',
      target,
      '--region',
      region
    ])
    expect(run.fails).toEqual([])
    expect(run.status).toBe(0)
    expect(sha256File(target)).toBe(need(expected(bundle), 'image_sha256'))

    const made = calls()
    const ssm = made.filter((c) => c.includes('ssm get-parameter'))
    expect(ssm).toEqual([
      `--region ${region} ssm get-parameter --name ${parameter} --with-decryption --query Parameter.Value --output text`
    ])
    expect(made).toContain('key-file-mode 600 key-dir-mode 700')
    // Parts are streamed to stdout ("-"), in manifest order, from the manifest's own prefix.
    const parts = made.filter((c) => / s3 cp .* -$/.test(c))
    expect(parts).toEqual(
      need(expected(bundle), 'part_files')
        .split(' ')
        .map((p) => `--region ${region} s3 cp --only-show-errors s3://${bucket}/${prefix}/${p} -`)
    )
    for (const call of made.filter((c) => c.startsWith('--'))) expect(call).toMatch(/^--region eu-west-1 /)
    const key = readFileSync(join(bundlesDir, bundle, 'test-key.pem'), 'utf8')
    const keyBody = key.split('\n')[1] as string
    for (const text of [run.stdout, run.stderr, readFileSync(log, 'utf8')]) {
      expect(text).not.toContain('PRIVATE KEY')
      expect(text).not.toContain(keyBody)
    }
    expect(readdirSync(tmp.shm)).toEqual([])
  })

  it('takes the parts from --parts when given', () => {
    const dir = upload()
    const target = join(tmp.dir, 'parts.img')
    const run = remote([
      '--manifest',
      join(dir, 'image.manifest.xml'),
      '--parts',
      `s3://${bucket}/${prefix}`,
      '--key',
      join(bundlesDir, bundle, 'test-key.pem'),
      '--target',
      target
    ])
    expect(run.status).toBe(0)
    expect(sha256File(target)).toBe(need(expected(bundle), 'image_sha256'))
    expect(calls().some((c) => c.startsWith('ssm'))).toBe(false)
  })

  it('a part missing from the bucket is named before anything is written', () => {
    const dir = upload()
    const last = need(expected(bundle), 'part_files').split(' ').pop() as string
    rmSync(join(dir, last))
    const target = join(tmp.dir, 'missing.img')
    const run = remote(['--manifest', manifestUrl, '--key-parameter', parameter, '--target', target])
    expect(run.status).not.toBe(0)
    expect(run.fails).toEqual([
      `missing part s3://${bucket}/${prefix}/${last}: upload the complete bundle again (ec2-upload-bundle)`
    ])
    expect(run.results.target).toBeUndefined()
  })

  it('without list permission: a missing part fails when it is read, naming it and the S3 error', () => {
    const dir = upload()
    const last = need(expected(bundle), 'part_files').split(' ').pop() as string
    rmSync(join(dir, last))
    const run = remote(
      ['--manifest', manifestUrl, '--key-parameter', parameter, '--target', join(tmp.dir, 'x.img')],
      {
        FAKE_LS_DENIED: '1'
      }
    )
    expect(run.status).not.toBe(0)
    expect(run.stdout).toMatch(/note: cannot list .*AccessDenied.*checked by digest only/)
    expect(run.fails).toEqual([
      expect.stringMatching(new RegExp(`^cannot read part s3://${bucket}/${prefix}/${last}: .*\\(404\\)`))
    ])
    expect(run.results.digest).toBeUndefined()
  })

  it('without list permission: a truncated part is caught by its digest', () => {
    const dir = upload()
    const last = need(expected(bundle), 'part_files').split(' ').pop() as string
    const data = readFileSync(join(dir, last))
    writeFileSync(join(dir, last), data.subarray(0, data.length - 4096))
    const run = remote(
      ['--manifest', manifestUrl, '--key-parameter', parameter, '--target', join(tmp.dir, 'x.img')],
      {
        FAKE_LS_DENIED: '1'
      }
    )
    expect(run.status).not.toBe(0)
    expect(run.fails).toEqual([
      expect.stringMatching(new RegExp(`^part ${last.replaceAll('.', '\\.')} digest mismatch`))
    ])
    expect(run.results.digest).toBeUndefined()
    expect(needNumber(expected(bundle), 'part_count')).toBeGreaterThan(1)
  })

  it('an SSM parameter that cannot be read', () => {
    upload()
    const run = remote([
      '--manifest',
      manifestUrl,
      '--key-parameter',
      '/nope',
      '--target',
      join(tmp.dir, 'x.img')
    ])
    expect(run.status).not.toBe(0)
    expect(run.fails).toEqual([
      expect.stringMatching(
        /^cannot read the private key from SSM parameter '\/nope': .*ParameterNotFound.*kms:Decrypt/
      )
    ])
    expect(readdirSync(tmp.shm)).toEqual([])
  })

  const shmIsTmpfs =
    spawnSync('stat', ['-f', '-c', '%T', '/dev/shm'], { encoding: 'utf8' }).stdout.trim() === 'tmpfs'
  const inMemory = shmIsTmpfs ? it : it.skip
  inMemory(
    `with the work dir in memory, parts are fetched ahead and verified before use${shmIsTmpfs ? '' : ' (skipped: /dev/shm is not tmpfs)'}`,
    () => {
      const shm = mkdtempSync('/dev/shm/i2e-convert-test-')
      try {
        upload()
        const target = join(tmp.dir, 'ahead.img')
        const run = remote(['--manifest', manifestUrl, '--key-parameter', parameter, '--target', target], {
          I2E_SHM_DIR: shm,
          FAKE_DELAY: '0.5'
        })
        expect(run.fails).toEqual([])
        expect(sha256File(target)).toBe(need(expected(bundle), 'image_sha256'))
        // Every part's fetch started before the first one ended: the fetches overlapped.
        const events = calls().filter((c) => /^(start|end) /.test(c))
        const parts = need(expected(bundle), 'part_files').split(' ')
        const firstEnd = events.findIndex((e) => e.startsWith('end '))
        expect(events.slice(0, firstEnd).sort()).toEqual(parts.map((p) => `start ${p}`).sort())
        expect(readdirSync(shm)).toEqual([])

        // A corrupt part is caught before its bytes are used, and named.
        const dir = upload()
        const last = parts.at(-1) as string
        const data = readFileSync(join(dir, last))
        data[7] = (data[7] as number) ^ 0x80
        writeFileSync(join(dir, last), data)
        const bad = remote(['--manifest', manifestUrl, '--key-parameter', parameter, '--target', target], {
          I2E_SHM_DIR: shm
        })
        expect(bad.status).not.toBe(0)
        expect(bad.fails).toEqual([
          expect.stringMatching(new RegExp(`^part ${last.replaceAll('.', '\\.')} digest mismatch`))
        ])
        expect(bad.results.digest).toBeUndefined()
        expect(readdirSync(shm)).toEqual([])
      } finally {
        rmSync(shm, { recursive: true, force: true })
      }
    }
  )

  const awsElsewhere = systemPath
    .split(':')
    .some((d) => spawnSync('test', ['-x', join(d, 'aws')]).status === 0)
  const test = awsElsewhere ? it.skip : it
  test(`no aws CLI on the helper: says which package to install${awsElsewhere ? ' (skipped: aws is installed in a system folder)' : ''}`, () => {
    const run = runConvert(
      ['--manifest', manifestUrl, '--key-parameter', parameter, '--target', join(tmp.dir, 'x.img')],
      { PATH: systemPath, I2E_SHM_DIR: tmp.shm }
    )
    expect(run.status).not.toBe(0)
    expect(run.fails).toEqual([
      expect.stringMatching(/^the aws CLI is not installed on .* install the package 'awscli'/)
    ])
  })
})
