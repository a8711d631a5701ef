// Boot harness for the QEMU boot tests (reusable: any test that must show a disk boots).
// - bootImages(): the cached bootable Debian images from tools/boot-images.sh (built once).
// - bootQemu(): boots a raw disk (virtio, or NVMe as on Nitro) in qemu-system-x86_64 (TCG)
//   through SeaBIOS and the disk's own boot loader, or with -kernel/-initrd/-append (the way
//   pv-grub boots a paravirtual image), and waits for a marker line on the serial console, a
//   failure line, or a deadline.
// - menuLstEntry() / readExt4File(): what pv-grub would load, read out of a filesystem image.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { existsSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'

export const bootImagesScript = fileURLToPath(new URL('../../tools/boot-images.sh', import.meta.url))
export const makeBundleScript = fileURLToPath(new URL('../../bench/make-bundle.sh', import.meta.url))

export type BootImages = Record<string, string>

/** The commands the boot tests need (and `extra` ones); empty when all are there (and we are root). */
export function bootPrerequisitesMissing(extra: string[] = []): string[] {
  const needed = ['qemu-system-x86_64', 'debootstrap', 'debugfs', 'losetup', 'mkfs.ext4', 'sfdisk', ...extra]
  const missing = needed.filter(
    (cmd) =>
      spawnSync('sh', ['-c', `PATH=$PATH:/usr/sbin:/sbin command -v ${cmd}`], { stdio: 'ignore' }).status !==
      0
  )
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) missing.push('root')
  return missing
}

/** Builds the images if this machine has none for the current script yet; returns images.env. */
export function bootImages(timeoutMs = 30 * 60_000): BootImages {
  const run = spawnSync('bash', [bootImagesScript], {
    encoding: 'utf8',
    timeout: timeoutMs,
    stdio: ['ignore', 'pipe', 'inherit']
  })
  if (run.status !== 0) {
    throw new Error(`tools/boot-images.sh failed (${run.status ?? run.signal}); see its messages above`)
  }
  const env: BootImages = {}
  for (const line of run.stdout.split('\n')) {
    const at = line.indexOf('=')
    if (at > 0) env[line.slice(0, at)] = line.slice(at + 1)
  }
  for (const key of [
    'hvm_image',
    'hvm_marker',
    'pv_image',
    'pv_marker',
    'pv_label',
    'pv_xvda1_image',
    'pv_xvda1_marker'
  ]) {
    if (!env[key]) throw new Error(`tools/boot-images.sh printed no ${key}`)
  }
  return env
}

/**
 * A bundle of IMAGE made by the project's bundler (bench/make-bundle.sh), cached beside the
 * image and keyed by the bundler's own hash: gzip -9 of a few hundred MiB takes minutes on a
 * busy machine, and the bundle only changes with the image or the bundler. Returns the folder
 * with image.manifest.xml, the parts and key.pem.
 */
export function cachedBundle(name: string, image: string): { dir: string; made: boolean } {
  const key = createHash('sha256').update(readFileSync(makeBundleScript)).digest('hex').slice(0, 16)
  const home = join(dirname(image), `bundles-${key}`, name)
  const dir = join(home, 'bundle')
  if (existsSync(join(home, '.complete'))) return { dir, made: false }
  const building = `${home}.building-${process.pid}`
  rmSync(building, { recursive: true, force: true })
  const run = spawnSync('bash', [makeBundleScript, building, '1', image], { encoding: 'utf8' })
  if (run.status !== 0) {
    rmSync(building, { recursive: true, force: true })
    throw new Error(`bench/make-bundle.sh failed for ${image}: ${run.stderr}`)
  }
  writeFileSync(join(building, '.complete'), '')
  rmSync(home, { recursive: true, force: true })
  renameSync(building, home)
  return { dir, made: true }
}

/** Lines on the console that mean the boot has stopped short of multi-user.target. */
export const bootFailureLines: RegExp[] = [
  /You are in emergency mode/,
  /Give root password for maintenance/,
  /Cannot open access to console, the root account is locked/,
  /Dependency failed for .*Local File Systems/,
  /Kernel panic/,
  /Gave up waiting for root (file system )?device/,
  /Welcome to .*emergency/i
]

export interface BootOptions {
  /** Raw disk image, attached as a virtio disk (never changed: qemu's snapshot=on). */
  disk: string
  /** Attach the disk as an NVMe device, as Nitro instances see their EBS volumes (default virtio). */
  nvme?: boolean
  /** Boot this kernel directly (pv-grub style) instead of the disk's boot loader. */
  kernel?: string
  initrd?: string
  append?: string
  marker: string
  /** Give up after this long without the marker or a failure line. */
  deadlineMs: number
  /** Stop at the first of these lines (default: bootFailureLines). */
  failOn?: RegExp[]
  /** Whole console output is written here when given. */
  consoleLog?: string
  memoryMiB?: number
}

export interface BootResult {
  outcome: 'marker' | 'failure-line' | 'deadline' | 'exited'
  seconds: number
  /** The failure line seen (outcome failure-line). */
  matched?: string
  /** Console output, escape sequences removed. */
  console: string
  /** The last 30 console lines. */
  tail: string
  exitCode?: number | null
}

// biome-ignore lint/suspicious/noControlCharactersInRegex: terminal escape sequences on the console
const escapes = /\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]|\r/g

export function lastLines(text: string, count = 30): string {
  return text.split('\n').slice(-count).join('\n')
}

/** Boots in qemu-system-x86_64 -nographic under TCG and waits for the marker. */
export function bootQemu(options: BootOptions): Promise<BootResult> {
  const failOn = options.failOn ?? bootFailureLines
  const args = [
    '-nographic',
    '-monitor',
    'none',
    '-accel',
    'tcg',
    '-machine',
    'pc',
    '-m',
    String(options.memoryMiB ?? 1024),
    '-smp',
    '1',
    '-no-reboot',
    '-nic',
    'none',
    '-drive',
    `file=${options.disk},format=raw,if=${options.nvme ? 'none,id=root' : 'virtio'},snapshot=on`
  ]
  if (options.nvme) args.push('-device', 'nvme,drive=root,serial=vol0i2e')
  if (!options.kernel) args.push('-boot', 'order=c')
  else {
    args.push('-kernel', options.kernel)
    if (options.initrd) args.push('-initrd', options.initrd)
    if (options.append) args.push('-append', options.append)
  }
  const started = Date.now()
  const child: ChildProcess = spawn('qemu-system-x86_64', args, { stdio: ['ignore', 'pipe', 'pipe'] })
  let raw = ''
  return new Promise<BootResult>((resolve) => {
    let done = false
    const finish = (outcome: BootResult['outcome'], matched?: string, exitCode?: number | null) => {
      if (done) return
      done = true
      clearTimeout(timer)
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL')
      const text = raw.replace(escapes, '')
      if (options.consoleLog) writeFileSync(options.consoleLog, text)
      const result: BootResult = {
        outcome,
        seconds: Math.round((Date.now() - started) / 100) / 10,
        console: text,
        tail: lastLines(text.trimEnd())
      }
      if (matched !== undefined) result.matched = matched
      if (exitCode !== undefined) result.exitCode = exitCode
      // Resolve only once qemu is gone, so no emulator outlives its test.
      if (child.exitCode !== null || child.signalCode !== null) resolve(result)
      else child.once('exit', () => resolve(result))
    }
    const timer = setTimeout(() => finish('deadline'), options.deadlineMs)
    const watch = (chunk: string) => {
      raw += chunk
      const text = raw.replace(escapes, '')
      if (text.includes(options.marker)) return finish('marker')
      for (const pattern of failOn) {
        const m = pattern.exec(text)
        if (m) return finish('failure-line', m[0])
      }
    }
    child.stdout?.setEncoding('utf8').on('data', watch)
    child.stderr?.setEncoding('utf8').on('data', watch)
    child.on('exit', (code) => finish('exited', undefined, code))
    child.on('error', (err) => {
      raw += `\n[qemu could not start: ${err.message}]\n`
      finish('exited', undefined, null)
    })
  })
}

/** One line per boot for the log: what happened after how long; the console tail when unexpected. */
export function describeBoot(name: string, result: BootResult, expected: 'marker' | 'no marker'): string {
  const head = `${name}: ${result.outcome}${result.matched ? ` ("${result.matched}")` : ''} after ${result.seconds} s`
  const asExpected = (result.outcome === 'marker') === (expected === 'marker')
  return asExpected ? head : `${head}\n--- last 30 console lines ---\n${result.tail}\n---`
}

export interface MenuEntry {
  kernel: string
  initrd?: string
  args: string
}

/** The default entry of a GRUB legacy menu.lst, as pv-grub picks it (`default N`, else the first). */
export function menuLstEntry(menu: string): MenuEntry {
  const wanted = Number(/^\s*default\s+(\d+)/m.exec(menu)?.[1] ?? 0)
  const entries = menu.split(/^\s*title\b.*$/m).slice(1)
  const entry = entries[wanted]
  if (entry === undefined) throw new Error(`menu.lst has no entry ${wanted}`)
  const kernel = /^\s*kernel\s+(\S+)\s*(.*)$/m.exec(entry)
  if (!kernel?.[1]) throw new Error(`menu.lst entry ${wanted} names no kernel`)
  const out: MenuEntry = { kernel: kernel[1], args: (kernel[2] ?? '').trim() }
  const initrd = /^\s*initrd\s+(\S+)/m.exec(entry)?.[1]
  if (initrd) out.initrd = initrd
  return out
}

/** Copies PATH out of an ext2/3/4 filesystem image (or device) into DEST with debugfs. */
export function readExt4File(filesystem: string, path: string, dest: string): void {
  const run = spawnSync('debugfs', ['-R', `dump -p ${path} ${dest}`, filesystem], { encoding: 'utf8' })
  // debugfs exits 0 even when the file is missing; it says so on stderr.
  if (run.status !== 0 || /not found|File not found|Could not/i.test(run.stderr)) {
    throw new Error(`debugfs could not read ${path} from ${filesystem}: ${run.stderr.trim()}`)
  }
}

export function catExt4File(filesystem: string, path: string): string {
  const run = spawnSync('debugfs', ['-R', `cat ${path}`, filesystem], { encoding: 'utf8' })
  if (run.status !== 0 || /not found|Could not/i.test(run.stderr)) {
    throw new Error(`debugfs could not read ${path} from ${filesystem}: ${run.stderr.trim()}`)
  }
  return run.stdout
}
