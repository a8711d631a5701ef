// Does a converted image boot? Real Debian images (tools/boot-images.sh), bundled with the
// project's bundler, converted by convert.sh as the helper runs it, booted in QEMU (TCG):
// - hvm: onto a loop device (a volume, as on the helper), then SeaBIOS and the disk's own GRUB;
// - paravirtual: onto a file with --finalize (the README's `npm run unbundle` way), then as
//   pv-grub does it: kernel, initrd and command line from the converted image's menu.lst.
// Each passes when its marker (printed once multi-user.target is reached) is on the console.
// The controls boot the same images unconverted: their /dev/xvdb line in /etc/fstab must stop
// the boot, or the conversion's fstab tidy is not what made the converted ones boot.
import { spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals'
import { runConvert, sh } from '../scripts/convert-harness.js'
import {
  type BootImages,
  type BootResult,
  bootImages,
  bootPrerequisitesMissing,
  bootQemu,
  cachedBundle,
  catExt4File,
  describeBoot,
  menuLstEntry,
  readExt4File
} from './boot-harness.js'

const bootDeadlineMs = 10 * 60_000 // a TCG boot takes about a minute; a loaded machine, more
const missing = bootPrerequisitesMissing()
const ci = process.env.CI === 'true'
if (missing.length && !ci) {
  process.stderr.write(
    `\n*** BOOT TESTS SKIPPED: missing ${missing.join(', ')} (under CI=true this fails) ***\n\n`
  )
}
const describeBoot_ = missing.length && !ci ? describe.skip : describe

let images: BootImages
let tmp = ''
const loops: string[] = []
const timings: string[] = []

/** IMAGE bundled by bench/make-bundle.sh (cached: see cachedBundle); the bundle folder. */
function bundle(name: string, image: string): string {
  const started = Date.now()
  const { dir, made } = cachedBundle(name, image)
  const seconds = Math.round((Date.now() - started) / 1000)
  timings.push(`${name}: ${made ? `bundled in ${seconds} s` : 'bundle from the cache'}`)
  return dir
}

function convert(bundleDir: string, target: string, extra: string[] = []) {
  const started = Date.now()
  const run = runConvert(
    [
      '--manifest',
      join(bundleDir, 'image.manifest.xml'),
      '--key',
      join(bundleDir, 'key.pem'),
      '--target',
      target,
      ...extra
    ],
    { I2E_SHM_DIR: tmp },
    15 * 60_000
  )
  if (run.status !== 0) process.stderr.write(`convert.sh failed:\n${run.stdout}\n${run.stderr}\n`)
  expect(run.fails).toEqual([])
  expect(run.status).toBe(0)
  timings.push(`convert onto ${target}: ${Math.round((Date.now() - started) / 1000)} s`)
  return run.results
}

async function boot(
  name: string,
  expected: 'marker' | 'no marker',
  options: Parameters<typeof bootQemu>[0]
): Promise<BootResult> {
  const result = await bootQemu({ ...options, consoleLog: join(tmp, `${name}.console.log`) })
  const line = describeBoot(name, result, expected)
  timings.push(line.split('\n')[0] ?? line)
  process.stderr.write(`${line}\n`)
  return result
}

/** The control: an unconverted image must not reach its marker, and must stop on /dev/xvdb. */
function expectStoppedOnFstab(result: BootResult): void {
  expect(result.outcome).not.toBe('marker')
  expect(['failure-line', 'deadline']).toContain(result.outcome)
  // systemd names the unit it waits on or gave up on: the instance-store line's device.
  expect(result.console).toMatch(/xvdb/)
}

/** pv-grub's view of a filesystem image: kernel and initrd named by menu.lst, copied out. */
function pvGrubLoad(fsImage: string, name: string) {
  const entry = menuLstEntry(catExt4File(fsImage, '/boot/grub/menu.lst'))
  const kernel = join(tmp, `${name}.vmlinuz`)
  readExt4File(fsImage, entry.kernel, kernel)
  const out: { kernel: string; initrd?: string; append: string } = { kernel, append: entry.args }
  if (entry.initrd) {
    out.initrd = join(tmp, `${name}.initrd`)
    readExt4File(fsImage, entry.initrd, out.initrd)
  }
  return out
}

describeBoot_('converted images boot in QEMU', () => {
  beforeAll(() => {
    if (missing.length) throw new Error(`the boot tests need ${missing.join(', ')}`)
    tmp = mkdtempSync(join(tmpdir(), 'i2e-boot-'))
    const started = Date.now()
    images = bootImages()
    timings.push(`boot images ready in ${Math.round((Date.now() - started) / 1000)} s (key ${images.key})`)
  })

  afterAll(() => {
    for (const loop of loops) spawnSync('losetup', ['-d', loop])
    if (tmp) rmSync(tmp, { recursive: true, force: true })
    if (timings.length) process.stderr.write(`\nboot suite:\n  ${timings.join('\n  ')}\n\n`)
  })

  it('hvm: converted onto a volume, it boots through its own MBR and GRUB to multi-user.target', async () => {
    const bundleDir = bundle('hvm', images.hvm_image as string)
    const disk = join(tmp, 'hvm-volume.img')
    sh('truncate', ['-s', String(statSync(images.hvm_image as string).size), disk])
    const loop = sh('losetup', ['-f', '--show', disk]).trim()
    loops.push(loop)
    const results = convert(bundleDir, loop)
    expect(results.partition_table).toBe('mbr')
    expect(results.filesystem_label).toBe(images.hvm_label)
    expect(results.fstab_removed).toBe('1')
    sh('losetup', ['-d', loop])
    loops.splice(loops.indexOf(loop), 1)

    const result = await boot('hvm converted', 'marker', {
      disk,
      marker: images.hvm_marker as string,
      deadlineMs: bootDeadlineMs
    })
    expect(result.outcome).toBe('marker')
  })

  it('hvm control: the unconverted disk stops on its /dev/xvdb fstab line', async () => {
    const result = await boot('hvm control (unconverted)', 'no marker', {
      disk: images.hvm_image as string,
      marker: images.hvm_marker as string,
      deadlineMs: bootDeadlineMs
    })
    expectStoppedOnFstab(result)
  })

  it('paravirtual: converted onto a file with --finalize, it boots as pv-grub would to multi-user.target', async () => {
    const bundleDir = bundle('pv', images.pv_image as string)
    const file = join(tmp, 'pv-converted.img')
    const results = convert(bundleDir, file, ['--finalize'])
    expect(results.partition_table).toBe('none')
    expect(results.filesystem_label).toBe(images.pv_label)
    expect(results.bootloader_config).toBe('/boot/grub/menu.lst')
    expect(results.fstab_removed).toBe('1')

    const load = pvGrubLoad(file, 'pv-converted')
    expect(load.append).toContain(`root=LABEL=${images.pv_label}`)
    const result = await boot('paravirtual converted', 'marker', {
      disk: file,
      ...load,
      marker: images.pv_marker as string,
      deadlineMs: bootDeadlineMs
    })
    expect(result.outcome).toBe('marker')
  })

  it('paravirtual control: the unconverted filesystem stops on its /dev/xvdb fstab line', async () => {
    const load = pvGrubLoad(images.pv_image as string, 'pv-control')
    const result = await boot('paravirtual control (unconverted)', 'no marker', {
      disk: images.pv_image as string,
      ...load,
      marker: images.pv_marker as string,
      deadlineMs: bootDeadlineMs
    })
    expectStoppedOnFstab(result)
  })
})
