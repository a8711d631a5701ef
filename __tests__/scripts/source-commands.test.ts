// What the scripts that run on SOURCE instances (bundle.sh and the files it sources) ask of
// the oldest hosts they target, Ubuntu 12.04 "precise": every external command and flag they
// use, each with why it is there. A script that starts using a command or flag not in this table
// fails here, so that somebody checks it against 12.04 before it reaches a user's machine.
//
// Ubuntu 12.04 (precise) versions: bash 4.2, coreutils 8.13 (no realpath: it came in 8.15),
// grep 2.10, sed 4.2.1, mawk 1.3.3 as awk, curl 7.22 (with OpenSSL 1.0.1: TLS 1.2), util-linux
// 2.20, tar 1.26, procps 3.2.8, unzip 6.0, upstart 1.5 (`service`, no systemd), ruby 1.8.7
// (1.9.3 as ruby1.9.1), grub-legacy 0.97. Ubuntu 14.04: bash 4.3, coreutils 8.21, ruby 1.9.3.
import { describe, expect, it } from '@jest/globals'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { companions } from '../../src/scripts/index.js'
import { scriptsDir } from './bundle-harness.js'
import { commandUses, definedFunctions } from './shell-scan.js'

/** bundle.sh and every shell file it sources (the list the action ships beside it). */
const SOURCE_SCRIPTS = [...companions['bundle.sh'].filter((f) => f.endsWith('.sh')), 'bundle.sh']
/** Functions that run their arguments as a command: run_tool NAME COMMAND ARGS… */
const RUNNERS = new Set(['run_tool'])

interface Row {
  flags: string[]
  /** Where it comes from on 12.04, and why the use is safe there. */
  why: string
}

const TABLE: Record<string, Row> = {
  awk: {
    flags: ['-v'],
    why: 'mawk 1.3.3 (12.04 default awk): -v, match()/RSTART/RLENGTH, printf %.1f are POSIX awk'
  },
  cat: { flags: [], why: 'coreutils 8.13' },
  chmod: { flags: [], why: 'coreutils 8.13: octal mode only' },
  cp: { flags: ['-p', '-R'], why: 'coreutils 8.13: POSIX -p and -R' },
  curl: {
    flags: [
      '-fsSL',
      '--retry',
      '-o',
      '-sf',
      '-X',
      '-H',
      '--connect-timeout',
      '--max-time',
      '--config',
      '-s',
      '-w'
    ],
    why: 'curl 7.22: --retry since 7.12.3, --config - (read from stdin) and -w %{http_code} long before; IMDSv2 is a plain PUT with a header; OpenSSL 1.0.1 speaks the TLS 1.2 S3 requires'
  },
  cut: { flags: ['-d', '-f1'], why: 'coreutils 8.13' },
  date: { flags: ['-u'], why: 'coreutils 8.13: -u and +FORMAT' },
  df: { flags: ['-P', '-k'], why: 'coreutils 8.13: POSIX output in KiB (no --output, which came in 8.21)' },
  dirname: { flags: [], why: 'coreutils 8.13' },
  'ec2-bundle-vol': {
    flags: ['--version', '-k', '-c', '-u', '-r', '-d', '-p', '-e', '--batch', '--no-filter'],
    why: 'ec2-ami-tools >= 1.5 (the pinned 1.5.19 when installed here); also -P, -B and --no-inherit through arrays; all in the EC2 user guide, ami-tools-commands'
  },
  'ec2-upload-bundle': {
    flags: ['-b', '-m', '--region', '--retry', '--batch'],
    why: 'ec2-ami-tools >= 1.5; --url through an array for regions missing from the tool map; credentials only through the environment and the RUBYOPT preload'
  },
  epmd: { flags: ['-daemon'], why: "Erlang's port mapper, only when the user names epmd in stop-services" },
  grep: {
    flags: ['-E', '-v', '-iE', '-q', '-rl', '--include', '-qiE', '-o', '-vxF'],
    why: 'grep 2.10: -E, -o, -r with --include (since 2.5.2), no -P; -v -x -F are POSIX (the undo journal)'
  },
  grub: { flags: ['--version'], why: 'grub-legacy 0.97 (grub-legacy-ec2), probed for hvm only' },
  head: { flags: ['-n'], why: 'coreutils 8.13' },
  hostname: { flags: [], why: 'hostname 3.06: no flag' },
  id: { flags: ['-u'], why: 'coreutils 8.13' },
  mkdir: { flags: ['-p'], why: 'coreutils 8.13' },
  mktemp: { flags: ['-d'], why: 'coreutils 8.13: -d with a XXXXXX template' },
  mv: { flags: ['-f'], why: 'coreutils 8.13: POSIX -f (the undo journal is rewritten, then renamed)' },
  pgrep: { flags: ['-x'], why: 'procps 3.2.8' },
  pkill: { flags: ['-x'], why: 'procps 3.2.8' },
  rm: { flags: ['-f', '-rf'], why: 'coreutils 8.13' },
  ruby: {
    flags: ['-ropenssl', '-e'],
    why: 'ruby 1.8.7/1.9.3 (the AMI tools need it): the openssl probe, and ssm-get-parameter.rb, written for 1.8.7'
  },
  sed: { flags: ['-i'], why: 'sed 4.2.1: -i (GNU) and s///g' },
  service: { flags: [], why: 'upstart 1.5 / sysvinit on 12.04 and 14.04: service NAME status|stop|start' },
  sha256sum: { flags: [], why: 'coreutils 8.13 (the AMI tools zip check)' },
  sort: { flags: ['-V', '-r'], why: 'coreutils 8.13: -V since 7.0' },
  systemctl: {
    flags: ['--quiet'],
    why: 'only where /run/systemd/system exists (15.04 and later): is-active --quiet, stop, start'
  },
  tail: { flags: ['-n'], why: 'coreutils 8.13' },
  tr: { flags: ['-d', '-dc'], why: 'coreutils 8.13' },
  unzip: { flags: ['-q', '-o', '-d'], why: 'unzip 6.0 (installed with the prerequisites when missing)' },
  'apt-get': {
    flags: ['-q', '-y'],
    why: 'apt 0.8.16: update, install -y -q; dnf/yum run through $PACKAGE_MANAGER'
  }
}

/** Commands the source scripts must not use, and why (the table must never list them). */
const REFUSED: Record<string, string> = {
  realpath: 'not in coreutils 8.13 (added in 8.15): use cd "$(dirname …)" && pwd',
  aws: 'a current AWS CLI does not install on 12.04/14.04 (v1 1.39+ needs Python 3.9): ssm-get-parameter.rb reads the key',
  xxd: 'part of vim-common, absent from minimal images: common.sh has hex_to_bin',
  jq: 'not in 12.04',
  python3: 'not on every 12.04 image; the scripts use bash and the Ruby the AMI tools need',
  timeout: 'present in coreutils 8.13 but unused: SSM executionTimeout bounds the run'
}

function scan(texts: string[]): Map<string, Set<string>> {
  const functions = definedFunctions(texts)
  const used = new Map<string, Set<string>>()
  for (const text of texts)
    for (const u of commandUses(text, functions, RUNNERS)) {
      if (u.command === '$') continue // run through a variable: apt-get/dnf/yum, init.d scripts, "$@"
      const flags = used.get(u.command) ?? new Set<string>()
      for (const f of u.flags) flags.add(f)
      used.set(u.command, flags)
    }
  return used
}

const sources = SOURCE_SCRIPTS.map((name) => readFileSync(join(scriptsDir, name), 'utf8'))

describe('the commands of the source-instance scripts, against Ubuntu 12.04', () => {
  const used = scan(sources)

  it('uses only commands and flags in the table', () => {
    const unknown: string[] = []
    for (const [command, flags] of used) {
      const row = TABLE[command]
      if (!row) unknown.push(`${command} (not in the table)`)
      else for (const f of flags) if (!row.flags.includes(f)) unknown.push(`${command} ${f}`)
    }
    expect(unknown).toEqual([])
  })

  it('lists nothing the scripts no longer use', () => {
    const stale: string[] = []
    for (const [command, row] of Object.entries(TABLE)) {
      const flags = used.get(command)
      if (!flags) stale.push(command)
      else for (const f of row.flags) if (!flags.has(f)) stale.push(`${command} ${f}`)
    }
    expect(stale).toEqual([])
  })

  it('never lists a refused command', () => {
    for (const command of Object.keys(REFUSED)) expect(TABLE[command]).toBeUndefined()
  })

  it('would catch a script that starts using realpath, the aws CLI or a new flag', () => {
    const extra = [
      'f() { local d; d=$(realpath "$1"); }',
      'if aws ssm get-parameter --name "$n" >"$f"; then :; fi',
      'x=$(df --output=avail "$d" | tail -n 1)',
      'run_tool zip unzip -Z "$zip"'
    ].join('\n')
    const seen = scan([...sources, extra])
    expect(seen.has('realpath')).toBe(true)
    expect(seen.get('aws')).toEqual(new Set(['--name']))
    expect(seen.get('df')?.has('--output')).toBe(true)
    expect(seen.get('unzip')?.has('-Z')).toBe(true)
  })

  it('reads through quotes, heredocs, case patterns, tests and runners', () => {
    const text = [
      'cat >"$f" <<\'EOF\'',
      'realpath inside a heredoc is text',
      'EOF',
      'case $x in',
      '  realpath) echo "realpath in a string" ;;',
      'esac',
      "[[ $(id -u) == 0 ]] || echo 'jq in quotes'",
      'a=(--flag realpath)',
      'DEBIAN_FRONTEND=x run_tool log-name apt-get install -y "$p"'
    ].join('\n')
    const seen = scan([text])
    expect([...seen.keys()].sort()).toEqual(['apt-get', 'cat', 'id'])
    expect(seen.get('apt-get')).toEqual(new Set(['-y']))
  })
})

describe('bash features of the source-instance scripts, against bash 4.2', () => {
  const code = sources.map((t) =>
    t
      .split('\n')
      .filter((l) => !/^\s*#/.test(l))
      .join('\n')
  )

  // Before 4.4, "${a[@]}" and "${a[*]}" of an empty array under set -u are "unbound variable",
  // which ends the script without its ::fail line. ${#a[@]} is safe.
  it('guards every array expansion of an array that may be empty (the a[@]+ form)', () => {
    const unguarded: string[] = []
    for (const text of code) {
      const guardsRemoved = text
        .replace(/\$\{(\w+)\[([@*])\]\+"?\$\{\1\[\2\][^}]*\}"?\}/g, '')
        .replace(/\$\{(\w+)\[([@*])\]\+\$\{\1\[\2\][^}]*\}\}/g, '')
      for (const m of guardsRemoved.matchAll(/\$\{\w+\[[@*]\][^}]*\}/g)) unguarded.push(m[0])
    }
    expect(unguarded).toEqual([])
  })

  it('uses nothing newer than bash 4.2', () => {
    const newer: Record<string, RegExp> = {
      'negative subscripts (4.3)': /\$\{\w+\[-\d+\]\}/,
      'declare -n / local -n (4.3)': /\b(declare|local|typeset)\s+-\w*n/,
      'wait -n (4.3)': /\bwait\s+-n\b/,
      '${var@Q} transformations (4.4)': /\$\{\w+(\[[^\]]*\])?@[QEPAaKku]\}/,
      'mapfile/readarray -d (4.4)': /\b(mapfile|readarray)\b[^\n]*\s-d\b/,
      'inherit_errexit (4.4)': /inherit_errexit/,
      'EPOCHSECONDS/EPOCHREALTIME/SRANDOM (5.0+)': /\$\{?(EPOCHSECONDS|EPOCHREALTIME|SRANDOM)\b/,
      '[[ -v array[index] ]] (4.3)': /-v\s+\w+\[/
    }
    const found: string[] = []
    for (const text of code)
      for (const [what, re] of Object.entries(newer)) if (re.test(text)) found.push(what)
    expect(found).toEqual([])
  })
})
