// Helpers for the bundle script tests: a throw-away machine root built from fixture files,
// small bash stand-ins on PATH that append their argv to one shared log, and a runner.
import { spawnSync } from 'node:child_process'
import {
  accessSync,
  chmodSync,
  constants,
  cpSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync
} from 'node:fs'
import { tmpdir } from 'node:os'
import { delimiter, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { testShell } from './test-shell.js'

export { testShell, useShell } from './test-shell.js'

export const scriptsDir = fileURLToPath(new URL('../../src/scripts/', import.meta.url))
export const fixturesDir = fileURLToPath(new URL('../__fixtures__/bundle/', import.meta.url))
/** The real hvm-mbr bundle made by ec2-bundle-image: the stand-in ec2-bundle-vol writes its manifest. */
export const realBundleDir = fileURLToPath(new URL('../../fixtures/bundles/hvm-mbr/', import.meta.url))

/** Field separator between recorded arguments (arguments never contain it). */
const SEP = '\u001f'

export interface Machine {
  dir: string
  /** What the scripts see as "/" (I2E_ROOT). */
  root: string
  /** Directory of stand-ins, first on PATH. */
  bin: string
  /** Every stand-in call, in order: one line per call. */
  log: string
  cleanup: () => void
}

/** A temp dir holding root/ (a copy of the fixture, if any), bin/ and the call log. */
export function makeMachine(fixture?: string): Machine {
  const dir = mkdtempSync(join(tmpdir(), 'i2e-bundle-'))
  const root = join(dir, 'root')
  const bin = join(dir, 'bin')
  mkdirSync(root, { recursive: true })
  mkdirSync(bin)
  if (fixture) cpSync(join(fixturesDir, fixture), root, { recursive: true })
  for (const sub of ['mnt', 'tmp', 'dev/shm', 'opt']) mkdirSync(join(root, sub), { recursive: true })
  const log = join(dir, 'calls.log')
  writeFileSync(log, '')
  return { dir, root, bin, log, cleanup: () => rmSync(dir, { recursive: true, force: true }) }
}

/**
 * Writes a stand-in command: it appends "name<SEP>arg<SEP>arg…" to the call log, then runs
 * `body` (bash, with "$@" intact). The log line is written first, so order is preserved.
 */
export function standIn(machine: Machine, name: string, body = 'exit 0'): void {
  const path = join(machine.bin, name)
  const script = [
    '#!/bin/bash',
    `{ printf '%s' ${quote(name)}; for a in "$@"; do printf '${SEP}%s' "$a"; done; printf '\\n'; } >> ${quote(machine.log)}`,
    body,
    ''
  ].join('\n')
  writeFileSync(path, script)
  chmodSync(path, 0o755)
}

/** The basic tools the scripts use, linked from this machine into a dir of their own. */
const basics = [
  'bash',
  'sh',
  'cat',
  'cp',
  'mv',
  'rm',
  'mkdir',
  'rmdir',
  'mktemp',
  'chmod',
  'ls',
  'sort',
  'head',
  'tail',
  'awk',
  'sed',
  'grep',
  'tr',
  'cut',
  'wc',
  'date',
  'dirname',
  'basename',
  'readlink',
  'stat',
  'touch',
  'find',
  'sleep',
  'env',
  'id',
  'hostname',
  'uname',
  'tee',
  'printf',
  'true',
  'false',
  'xargs',
  'cmp',
  'sha256sum'
]

/** PATH = stand-ins, then only the basic tools (so that e.g. the real curl or aws is never found). */
export function isolatedPath(machine: Machine): string {
  const sys = join(machine.dir, 'sysbin')
  mkdirSync(sys, { recursive: true })
  for (const tool of basics) {
    // the scripts' own "bash" is the shell under test
    const found = tool === 'bash' && testShell() !== 'bash' ? testShell() : which(tool)
    if (found) {
      try {
        symlinkSync(found, join(sys, tool))
      } catch {
        // already linked
      }
    }
  }
  return [machine.bin, sys].join(delimiter)
}

function which(tool: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    const candidate = join(dir, tool)
    try {
      accessSync(candidate, constants.X_OK)
      if (statSync(candidate).isFile()) return candidate
    } catch {
      // not here
    }
  }
  return undefined
}

export interface RunResult {
  status: number | null
  stdout: string
  stderr: string
}

export function runScript(script: string, args: string[], env: Record<string, string>): RunResult {
  const result = spawnSync(testShell(), [join(scriptsDir, script), ...args], {
    env: { HOME: '/nonexistent', LANG: 'C', ...env },
    encoding: 'utf8',
    timeout: 30_000
  })
  return { status: result.status, stdout: result.stdout, stderr: result.stderr }
}

/** The recorded calls: [name, ...args] per line. */
export function calls(machine: Machine): string[][] {
  return readFileSync(machine.log, 'utf8')
    .split('\n')
    .filter((line) => line.length > 0)
    .map((line) => line.split(SEP))
}

/** `::result key=value` lines as a map (last one wins). */
export function results(stdout: string): Record<string, string> {
  const out: Record<string, string> = {}
  for (const line of stdout.split('\n')) {
    const m = /^::result ([^=]+)=(.*)$/.exec(line)
    if (m?.[1]) out[m[1]] = m[2] ?? ''
  }
  return out
}

export function failLines(stdout: string): string[] {
  return stdout.split('\n').filter((line) => line.startsWith('::fail '))
}

/** A stand-in df: POSIX output with sizes (KiB) chosen per path suffix. */
export function fakeDf(
  machine: Machine,
  sizes: { rootUsedKb: number; mntAvailKb: number; tmpAvailKb: number }
): void {
  standIn(
    machine,
    'df',
    [
      'for path; do :; done',
      'case $path in',
      `  */mnt|*/mnt/) used=0; avail=${sizes.mntAvailKb}; mp=/mnt ;;`,
      `  */tmp|*/tmp/) used=${sizes.rootUsedKb}; avail=${sizes.tmpAvailKb}; mp=/ ;;`,
      `  *) used=${sizes.rootUsedKb}; avail=${sizes.tmpAvailKb}; mp=/ ;;`,
      'esac',
      'echo "Filesystem 1024-blocks Used Available Capacity Mounted on"',
      'echo "/dev/xvda1 $((used + avail)) $used $avail 50% $mp"'
    ].join('\n')
  )
}

/**
 * A stand-in curl that serves IMDSv2 and the AMI tools download, from files in $FAKE:
 * imds-token (the token the PUT returns and the GETs must present), credentials.json or
 * credentials-N.json (the N-th read of the role's credentials), imdsv1 (present: IMDSv1 answers
 * 200, else 401), no-role (no instance profile), zip-tree (see the unzip stand-in).
 *
 * Like the real curl, it reads a `--config -` from stdin before it answers: curl "reads the entire
 * config file first, then performs" (Daniel Stenberg, curl-users, 2015-12), so the writer of the pipe
 * (bundle-aws.sh's `printf … | curl --config -`) never outlives its reader. A stand-in that
 * answers without reading lets a writer that is scheduled late die of SIGPIPE (exit 141), which
 * pipefail turns into a failed IMDS read: the cancel-undo e2e flake under CPU load.
 */
export function fakeImdsCurl(machine: Machine): void {
  standIn(
    machine,
    'curl',
    `method=GET out='' wcode='' url='' header=''
while (($#)); do
  case $1 in
  -X) method=$2; shift 2 ;;
  -o) out=$2; shift 2 ;;
  -w) wcode=1; shift 2 ;;
  -H) header+="$2"; shift 2 ;;
  --config) [[ $2 == - ]] && header+=$(cat); shift 2 ;;
  --connect-timeout | --max-time | --retry) shift 2 ;;
  -*) shift ;;
  *) url=$1; shift ;;
  esac
done
answer() { if [[ -n $out ]]; then cat > "$out"; else cat; fi; }
case $url in
*/latest/api/token) [[ $method == PUT ]] || exit 22; answer < "$FAKE/imds-token" ;;
*/latest/meta-data/) if [[ -f "$FAKE/imdsv1" ]]; then code=200; else code=401; fi; [[ -n $wcode ]] && printf %s "$code" ;;
*/latest/meta-data/iam/security-credentials/*)
  [[ $header == *"X-aws-ec2-metadata-token: $(cat "$FAKE/imds-token")"* ]] || exit 22
  role=\${url##*/security-credentials/}
  if [[ -z $role ]]; then [[ -f "$FAKE/no-role" ]] && exit 22; echo bundler-role
  elif [[ $role == bundler-role ]]; then
    n=$(($(cat "$FAKE/credential-reads" 2>/dev/null || echo 0) + 1)); echo "$n" > "$FAKE/credential-reads"
    f="$FAKE/credentials-$n.json"; [[ -f $f ]] || f="$FAKE/credentials.json"
    answer < "$f"
  else exit 22; fi ;;
*.zip) echo "zip" | answer ;;
*) exit 6 ;;
esac`
  )
}

function quote(s: string): string {
  return `'${s.replaceAll("'", "'\\''")}'`
}
