// Paravirtual in, hvm out, booted for real: a paravirtual-style Debian image (bare ext4, menu.lst,
// root=/dev/xvda1 on the kernel line and in fstab, no boot loader at all; tools/boot-images.sh, pv-xvda1.img)
// is bundled the way ec2-bundle-image does (bench/make-bundle.sh), converted by convert.sh
// --output-virtualization-type hvm onto a disk file, and booted in QEMU through SeaBIOS and the
// GRUB 2 that the conversion installed (no -kernel), from an NVMe disk as on Nitro. Controls: the
// same disk with the kernel's root= put back to the PV device path stops in the initramfs; with
// fstab put back, Debian 12's systemd still boots (it does not wait for fstab's "/" device: the
// root is mounted already), which the test states rather than hides.
// Run with `npm run test:boot` (software emulation: minutes).
import { spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals'
import {
  type BootImages,
  bootImages,
  bootPrerequisitesMissing,
  bootQemu,
  cachedBundle,
  catExt4File
} from './boot-harness.js'

const repo = (path: string) => fileURLToPath(new URL(`../../${path}`, import.meta.url))
const missing = bootPrerequisitesMissing(['grub-mkimage'])
const suite = missing.length === 0 ? describe : process.env.CI ? describe : describe.skip

const failures = [
  /Gave up waiting for root (file system )?device/,
  /ALERT! .* does not exist/,
  /You are in emergency mode/,
  /Kernel panic/,
  /Dependency failed for .*Local File Systems/
]

/** Boots a raw disk (NVMe, read-only through snapshot=on) with SeaBIOS and waits for the marker. */
const boot = (disk: string, marker: string, deadlineMs: number) =>
  bootQemu({ disk, nvme: true, marker, deadlineMs, failOn: failures })

const run = (cmd: string, args: string[], timeout = 30 * 60_000): string => {
  const out = spawnSync(cmd, args, { encoding: 'utf8', timeout, maxBuffer: 64 * 1024 * 1024 })
  if (out.status !== 0)
    throw new Error(`${cmd} ${args.join(' ')} failed (${out.status ?? out.signal}): ${out.stderr}`)
  return out.stdout
}

/** Replaces a file inside the partition at 1 MiB of `disk` (debugfs, through a loop device). */
function replaceInPartition(disk: string, path: string, text: string, scratch: string): void {
  const local = join(scratch, 'replacement')
  writeFileSync(local, text)
  const loop = run('losetup', ['-f', '--show', '-o', '1048576', disk]).trim()
  try {
    run('debugfs', ['-w', '-R', `rm ${path}`, loop])
    run('debugfs', ['-w', '-R', `write ${local} ${path}`, loop])
  } finally {
    spawnSync('losetup', ['-d', loop])
  }
}

function readInPartition(disk: string, path: string): string {
  const loop = run('losetup', ['-f', '--show', '-r', '-o', '1048576', disk]).trim()
  try {
    return catExt4File(loop, path)
  } finally {
    spawnSync('losetup', ['-d', loop])
  }
}

const BOOT_DEADLINE_MS = 10 * 60_000
let scratch = ''
let images: BootImages = {}
let converted = ''
const results: Record<string, string> = {}
let convertLog = ''

suite(`a paravirtual image made hvm boots through its own new boot loader${missing.length ? ` (needs ${missing.join(', ')})` : ''}`, () => {
  beforeAll(() => {
    if (missing.length) throw new Error(`the boot test needs ${missing.join(', ')}`)
    images = bootImages()
    scratch = mkdtempSync(join(tmpdir(), 'i2e-pv-to-hvm-'))
    // The project's bundler's bundle of the image, cached beside it (gzip -9 of the image takes minutes).
    const bundle = cachedBundle('pv-to-hvm', images.pv_xvda1_image ?? '').dir
    converted = join(scratch, 'hvm.img')
    const out = spawnSync(
      'bash',
      [
        repo('src/scripts/convert.sh'),
        ...['--manifest', join(bundle, 'image.manifest.xml'), '--key', join(bundle, 'key.pem')],
        ...['--target', converted, '--output-virtualization-type', 'hvm']
      ],
      { encoding: 'utf8', timeout: 20 * 60_000, env: { ...process.env, I2E_PARTITION_NODES: '0' } }
    )
    convertLog = out.stdout
    if (out.status !== 0) throw new Error(`convert.sh failed: ${out.stdout}\n${out.stderr}`)
    for (const line of out.stdout.split('\n')) {
      const m = /^::result ([^=]+)=(.*)$/.exec(line)
      if (m?.[1]) results[m[1]] = m[2] ?? ''
    }
  }, 45 * 60_000)

  afterAll(() => {
    if (scratch) rmSync(scratch, { recursive: true, force: true })
  })

  it('converts: the default kernel of menu.lst, root by UUID, drivers for Xen and Nitro, fstab rewritten', () => {
    expect(results).toMatchObject({
      digest: 'ok',
      partition_table: 'mbr',
      root_partition_offset_bytes: '1048576',
      hvm_kernel: `/boot/vmlinuz-${images.kernel}`,
      hvm_root: `UUID=${results.filesystem_uuid}`,
      hvm_fstab_rewritten: '1'
    })
    expect(results.hvm_families).toBe('xen,nitro')
    // Debian's cloud kernel: nvme built in, xen-blkfront and ena modules (the first in the initramfs).
    expect(['built-in', 'initramfs']).toContain(results.hvm_nvme)
    expect(results.hvm_xen_disk_driver).toMatch(/^xen-blkfront \((built-in|initramfs)\)$/)
    expect(['built-in', 'initramfs', 'module']).toContain(results.hvm_ena)
    expect(readInPartition(converted, '/etc/fstab')).toMatch(
      new RegExp(`^UUID=${results.filesystem_uuid}\\t/\\t`, 'm')
    )
    expect(convertLog).toMatch(/^-\/dev\/xvda1\t\/\t/m)
  })

  it(
    'boots from the disk alone (SeaBIOS → GRUB 2 in the MBR → the image kernel) to multi-user.target',
    async () => {
      const result = await boot(converted, images.pv_xvda1_marker ?? '', BOOT_DEADLINE_MS)
      console.info(`pv→hvm boot: ${result.outcome} after ${result.seconds} s`)
      if (result.outcome !== 'marker') console.error(result.tail)
      expect(result.outcome).toBe('marker')
    },
    BOOT_DEADLINE_MS + 60_000
  )

  it(
    'control: the kernel root= of the paravirtual layout (/dev/xvda1) stops the same disk in the initramfs',
    async () => {
      const disk = join(scratch, 'root-path.img')
      run('cp', ['--sparse=always', converted, disk])
      const config = readInPartition(disk, '/boot/grub/instance-to-ebs.cfg')
      expect(config).toContain(`root=UUID=${results.filesystem_uuid}`)
      replaceInPartition(
        disk,
        '/boot/grub/instance-to-ebs.cfg',
        config.replace(/root=UUID=\S+/, 'root=/dev/xvda1'),
        scratch
      )
      const result = await boot(disk, images.pv_xvda1_marker ?? '', BOOT_DEADLINE_MS)
      console.info(
        `control, root=/dev/xvda1: ${result.outcome}${result.matched ? ` ("${result.matched}")` : ''} after ${result.seconds} s`
      )
      expect(result.outcome).toBe('failure-line')
      expect(result.matched).toMatch(/Gave up waiting for root|does not exist/)
      rmSync(disk)
    },
    BOOT_DEADLINE_MS + 60_000
  )

  it(
    "control: fstab's root put back to /dev/xvda1 still boots on Debian 12 (systemd does not wait for the mounted root's device)",
    async () => {
      const disk = join(scratch, 'fstab-path.img')
      run('cp', ['--sparse=always', converted, disk])
      const original = readInPartition(disk, '/etc/fstab.instance-to-ebs.bak')
      expect(original).toMatch(/^\/dev\/xvda1\t\/\t/m)
      replaceInPartition(disk, '/etc/fstab', original, scratch)
      const result = await boot(disk, images.pv_xvda1_marker ?? '', BOOT_DEADLINE_MS)
      console.info(`control, fstab /dev/xvda1: ${result.outcome} after ${result.seconds} s`)
      expect(result.outcome).toBe('marker')
      rmSync(disk)
    },
    BOOT_DEADLINE_MS + 60_000
  )
})
