// cleanup.sh, run for real on journals written as bundle.sh and convert.sh write them: what is left
// of the killed command is killed (only that), the journal is undone last line first, and a line
// that cannot be undone stays. Under this machine's bash and, when built (see the brief: cache
// under ~/.cache/instance-to-ebs/shells), bash 4.2 and 4.3 of Ubuntu 12.04 and 14.04.
import { afterEach, describe, expect, it } from '@jest/globals'
import { type ChildProcess, spawn, spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs'
import { homedir } from 'node:os'
import { join } from 'node:path'
import { type Machine, makeMachine, results, scriptsDir, standIn } from './bundle-harness.js'

const cache = join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'instance-to-ebs', 'shells')
const oldBash = (version: string): string | undefined => {
  const dir = existsSync(cache) ? readdirSync(cache).find((d) => d.startsWith(`bash-${version}-`)) : undefined
  return dir && existsSync(join(cache, dir, 'bash')) ? join(cache, dir, 'bash') : undefined
}
const shells: [string, string][] = [['bash', 'bash']]
for (const v of ['4.2', '4.3']) {
  const found = oldBash(v)
  if (found) shells.push([`bash ${v}`, found])
  else console.warn(`cleanup.sh: bash ${v} is not built in ${cache}: not run under it`)
}

let machine: Machine | undefined
const children: ChildProcess[] = []
afterEach(() => {
  for (const c of children.splice(0)) if (c.exitCode === null) c.kill('SIGKILL')
  machine?.cleanup()
})

/** Running, and not a zombie waiting for this test to reap it (a killed child is one until then). */
const alive = (pid: number | undefined): boolean => {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z'
  } catch {
    return false
  }
}

function setup() {
  machine = makeMachine()
  const fake = join(machine.dir, 'fake')
  mkdirSync(fake)
  writeFileSync(join(fake, 'running'), '')
  standIn(machine, 'systemctl', `[[ $1 == start && $2 != broken ]] && echo "$2" >> "$FAKE/running"`)
  standIn(machine, 'epmd', 'echo epmd >> "$FAKE/running"')
  const journal = join(machine.dir, 'run-1.journal')
  return { machine, fake, journal }
}

function cleanup(shell: string, s: ReturnType<typeof setup>) {
  return spawnSync(shell, [join(scriptsDir, 'cleanup.sh'), '--journal', s.journal], {
    env: { PATH: `${s.machine.bin}:${process.env.PATH}`, FAKE: s.fake, LANG: 'C' },
    encoding: 'utf8',
    timeout: 60_000
  })
}

/** A process that looks like part of the killed command (or not): marker and group as asked. */
function leftover(marker: string | undefined, ownGroup: boolean): ChildProcess {
  const child = spawn('sleep', ['300'], {
    env: marker ? { I2E_RUN: marker } : {},
    detached: ownGroup,
    stdio: 'ignore'
  })
  children.push(child)
  return child
}

describe.each(shells)('cleanup.sh under %s', (_name, shell) => {
  it('kills what is left of the command, starts the services again in reverse order, removes the folders', async () => {
    const s = setup()
    const keys = join(s.machine.root, 'dev/shm/i2e-keys.abc')
    const bundle = join(s.machine.root, 'mnt/i2e-bundle.def')
    mkdirSync(keys, { recursive: true })
    mkdirSync(bundle, { recursive: true })
    writeFileSync(join(keys, 'pk.pem'), 'secret')
    const ours = leftover('run-1', true) // the command's group: ec2-bundle-vol and the like
    const daemon = leftover('run-1', true) // started again by the script: its own group
    const stranger = leftover('run-2', false)
    const group = ours.pid
    // the daemon leads another group; a second member of ours:
    const sibling = spawn('sh', ['-c', 'exec sleep 300'], { env: { I2E_RUN: 'run-1' }, stdio: 'ignore' })
    children.push(sibling)
    writeFileSync(
      s.journal,
      [
        `group ${group}`,
        `dir ${keys}`,
        `dir ${bundle}`,
        'service systemctl jenkins',
        'service epmd epmd',
        'service systemctl redis-server',
        ''
      ].join('\n')
    )
    const out = cleanup(shell, s)
    expect([out.status, out.stderr]).toEqual([0, ''])
    expect(alive(ours.pid)).toBe(false)
    expect(alive(daemon.pid)).toBe(true) // marker, but not the command's process group
    expect(alive(stranger.pid)).toBe(true)
    expect(alive(sibling.pid)).toBe(true) // not in the group either (this test's group)
    expect(readFileSync(join(s.fake, 'running'), 'utf8')).toBe('redis-server\nepmd\njenkins\n')
    expect(existsSync(keys) || existsSync(bundle)).toBe(false)
    expect(existsSync(s.journal)).toBe(false)
    expect(results(out.stdout)).toMatchObject({
      killed: String(ours.pid),
      services_restarted: 'redis-server,epmd,jenkins',
      removed: `${bundle},${keys}`,
      left: ''
    })
  })

  it('keeps what it could not undo in the journal and says so', () => {
    const s = setup()
    writeFileSync(s.journal, 'service systemctl broken\nservice systemctl jenkins\n')
    const out = cleanup(shell, s)
    expect(out.status).toBe(1)
    expect(out.stdout).toContain('::fail could not undo: service systemctl broken')
    expect(results(out.stdout).services_not_restarted).toBe('broken')
    expect(readFileSync(s.journal, 'utf8')).toBe('service systemctl broken\n')
    // a second run tries only that one again
    expect(readFileSync(join(s.fake, 'running'), 'utf8')).toBe('jenkins\n')
  })

  it('has nothing to do when the script ended by itself (no journal)', () => {
    const s = setup()
    const out = cleanup(shell, s)
    expect(out.status).toBe(0)
    expect(out.stdout).toContain('nothing to undo')
  })

  // Mounting needs root.
  ;(process.getuid?.() === 0 ? it : it.skip)(
    'unmounts what is mounted under a folder (ec2-bundle-vol image mount) before removing it',
    () => {
      const s = setup()
      const bundle = join(s.machine.root, 'mnt/i2e-bundle.x')
      const mnt = join(bundle, 'img mnt')
      mkdirSync(mnt, { recursive: true })
      expect(spawnSync('mount', ['-t', 'tmpfs', 'none', mnt]).status).toBe(0)
      writeFileSync(s.journal, `dir ${bundle}\n`)
      const out = cleanup(shell, s)
      expect([out.status, results(out.stdout).unmounted]).toEqual([0, mnt])
      expect(existsSync(bundle)).toBe(false)
    }
  )
})
