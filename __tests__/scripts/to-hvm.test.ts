// convert.sh --output-virtualization-type hvm (to-hvm.sh): a paravirtual image, a bare
// filesystem, comes out as an MBR disk with GRUB 2 booting menu.lst's default kernel, fstab's
// root by UUID, and a verdict on the families that can boot it; images that no hvm family can
// boot are refused. Synthetic images (a kernel file, its config, an initramfs of module names)
// are bundled with bench/make-bundle.sh; the real small-pv fixture names a kernel it lacks.
// Booting a converted image for real is __tests__/boot/pv-to-hvm.test.ts.
import { spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals'
import { bytesAt } from '../__fixtures__/e2e-setup.js'
import {
  bundlesDir,
  hasCommand,
  isRoot,
  localArgs,
  runConvert,
  type Scratch,
  scratch,
  sh
} from './convert-harness.js'
import { bundlePvImage, FSTAB, KERNEL, makeBundle } from './pv-image.js'

const GRUB_DIR = '/usr/lib/grub/i386-pc'
const missing = [
  'losetup',
  'sfdisk',
  'debugfs',
  'mount',
  'mkfs.ext4',
  'blkid',
  'cpio',
  'grub-mkimage'
].filter((c) => !hasCommand(c))
if (!existsSync(join(GRUB_DIR, 'boot.img'))) missing.push('grub-pc-bin')
const why = !isRoot() ? 'needs root' : missing.length ? `needs ${missing.join(', ')}` : ''
const suite = why === '' ? describe : describe.skip

let tmp: Scratch
const loops: string[] = []

beforeAll(() => {
  tmp = scratch('i2e-to-hvm-')
})
afterAll(() => {
  for (const loop of loops.reverse()) spawnSync('losetup', ['-d', loop])
  tmp?.cleanup()
})

/** A loop device over a new sparse file of `bytes`. */
function loopDevice(name: string, bytes: number): { loop: string; file: string } {
  const file = join(tmp.dir, `${name}.disk`)
  sh('truncate', ['-s', String(bytes), file])
  const loop = sh('losetup', ['-f', '--show', file]).trim()
  loops.push(loop)
  return { loop, file }
}

/** Loop devices still attached to `file` (the script must leave none). */
const attachedTo = (file: string): string => sh('losetup', ['-j', file]).trim()

/** A file inside the ext4 partition at 1 MiB of `disk`, read with debugfs through a read-only view. */
function fileInPartition(disk: string, path: string): string {
  const view = sh('losetup', ['-f', '--show', '-r', '-o', '1048576', disk]).trim()
  try {
    return sh('debugfs', ['-R', `cat ${path}`, view])
  } finally {
    spawnSync('losetup', ['-d', view])
  }
}

const hvmArgs = (bundle: string, target: string) => [
  ...localArgs(bundle, target, join(bundle, 'key.pem')),
  '--output-virtualization-type',
  'hvm'
]

suite(`convert.sh --output-virtualization-type hvm${why ? ` (skipped: ${why})` : ''}`, () => {
  it('makes a paravirtual image an MBR disk with GRUB 2 booting the default kernel, root by UUID', () => {
    const bundle = bundlePvImage(tmp.dir, 'drivers', {
      config: ['CONFIG_XEN_BLKDEV_FRONTEND=m', 'CONFIG_BLK_DEV_NVME=m', 'CONFIG_ENA_ETHERNET=m'],
      initramfs: ['drivers/block/xen-blkfront.ko', 'drivers/nvme/host/nvme.ko'],
      onDisk: ['drivers/net/ethernet/amazon/ena/ena.ko']
    })
    const { loop, file } = loopDevice('drivers', 64 * 1024 * 1024)
    const run = runConvert(hvmArgs(bundle, loop), {}, 180_000)
    if (run.status !== 0) console.error(run.stdout, run.stderr)
    expect(run.fails).toEqual([])
    expect(run.status).toBe(0)
    const uuid = run.results.filesystem_uuid ?? ''
    expect(uuid).toMatch(/^[0-9a-f-]{36}$/)
    expect(run.results).toMatchObject({
      digest: 'ok',
      partition_table: 'mbr',
      root_partition: '1',
      root_partition_offset_bytes: '1048576',
      hvm_kernel: `/boot/vmlinuz-${KERNEL}`, // entry 1, the default; entry 0's kernel is gone
      hvm_initrd: `/boot/initrd.img-${KERNEL}`,
      hvm_root: `UUID=${uuid}`,
      hvm_xen_disk_driver: 'xen-blkfront (initramfs)',
      hvm_nvme: 'initramfs',
      hvm_ena: 'module',
      hvm_families: 'xen,nitro',
      hvm_fstab_rewritten: '2'
    })

    // MBR: GRUB's boot code, then one bootable Linux partition from sector 2048.
    const grubBoot = readFileSync(join(GRUB_DIR, 'boot.img'))
    expect(bytesAt(file, 0, 440).equals(grubBoot.subarray(0, 440))).toBe(true)
    expect(bytesAt(file, 510, 2).toString('hex')).toBe('55aa')
    const entry = bytesAt(file, 446, 16)
    expect({ boot: entry[0], type: entry[4], start: entry.readUInt32LE(8) }).toEqual({
      boot: 0x80,
      type: 0x83,
      start: 2048
    })
    // core.img at sector 1: it starts with GRUB's diskboot.img.
    const diskboot = readFileSync(join(GRUB_DIR, 'diskboot.img'))
    expect(bytesAt(file, 512, 256).equals(diskboot.subarray(0, 256))).toBe(true)

    const config = fileInPartition(file, '/boot/grub/instance-to-ebs.cfg')
    expect(config).toContain(
      `linux /boot/vmlinuz-${KERNEL} ro quiet root=UUID=${uuid} console=tty0 console=ttyS0\n`
    )
    expect(config).toContain(`initrd /boot/initrd.img-${KERNEL}\n`)
    expect(config).not.toMatch(/hvc0|xencons|xvda/)

    const fstab = fileInPartition(file, '/etc/fstab')
    expect(fstab).toContain(`UUID=${uuid}\t/\text4\tdefaults\t0 1`)
    expect(fstab).not.toMatch(/\/dev\/(xvda1|sda2)/)
    expect(fstab).toContain('proc\t/proc')
    expect(fileInPartition(file, '/etc/fstab.instance-to-ebs.bak')).toBe(FSTAB)
    expect(run.stdout).toMatch(/^-\/dev\/xvda1\t\/\t/m) // the diff is in the log
    // Only the test's own loop device: the script's partition mappings are gone.
    expect(attachedTo(file).split('\n')).toEqual([expect.stringContaining(loop)])
  }, 240_000)

  it('says which families boot a kernel with only the emulated IDE driver: Xen, not Nitro', () => {
    const bundle = bundlePvImage(tmp.dir, 'ata-only', {
      config: ['CONFIG_ATA_PIIX=y', 'CONFIG_BLK_DEV_NVME=m', '# CONFIG_ENA_ETHERNET is not set']
    })
    const { loop } = loopDevice('ata-only', 64 * 1024 * 1024)
    const run = runConvert(hvmArgs(bundle, loop), {}, 180_000)
    expect(run.fails).toEqual([])
    expect(run.results).toMatchObject({
      hvm_xen_disk_driver: 'ata_piix (built-in)',
      hvm_nvme: 'no',
      hvm_ena: 'no',
      hvm_families: 'xen'
    })
  }, 240_000)

  it('refuses a kernel with no disk driver an hvm instance boots from, and leaves no loop device', () => {
    const bundle = bundlePvImage(tmp.dir, 'no-driver', {
      config: [
        'CONFIG_XEN_BLKDEV_FRONTEND=m',
        '# CONFIG_ATA_PIIX is not set',
        '# CONFIG_BLK_DEV_NVME is not set'
      ]
    })
    const { loop, file } = loopDevice('no-driver', 64 * 1024 * 1024)
    const run = runConvert(hvmArgs(bundle, loop), {}, 180_000)
    expect(run.status).not.toBe(0)
    expect(run.fails).toHaveLength(1)
    expect(run.fails[0]).toMatch(
      /^cannot make this image hvm: kernel 5\.10\.0-i2e-test has no disk driver an hvm instance boots from.*xen-blkfront: no, ata_piix: no, nvme: no.*linux-image-virtual.*keep the result paravirtual/
    )
    expect(run.results.hvm_bootloader).toBeUndefined()
    expect(attachedTo(file).split('\n')).toEqual([expect.stringContaining(loop)])
  }, 240_000)

  it('refuses a classic Xen (xenlinux) kernel, which boots only paravirtualized', () => {
    const bundle = bundlePvImage(tmp.dir, 'xenlinux', {
      config: ['CONFIG_X86_64_XEN=y', 'CONFIG_XEN_BLKDEV_FRONTEND=y']
    })
    const { loop } = loopDevice('xenlinux', 64 * 1024 * 1024)
    const run = runConvert(hvmArgs(bundle, loop), {}, 180_000)
    expect(run.status).not.toBe(0)
    expect(run.fails[0]).toMatch(/classic Xen \(xenlinux\) kernel.*linux-image-virtual/)
  }, 240_000)

  it('refuses an image whose filesystem GRUB 2 and the helper cannot both read', () => {
    const dir = join(tmp.dir, 'swap')
    mkdirSync(dir)
    const image = join(dir, 'image.raw')
    sh('truncate', ['-s', '16M', image])
    sh('mkswap', ['-q', image])
    const made = spawnSync('bash', [makeBundle, join(dir, 'made'), '0', image], { encoding: 'utf8' })
    expect(made.status).toBe(0)
    const bundle = join(dir, 'made', 'bundle')
    const target = join(dir, 'disk.img')
    const run = runConvert(hvmArgs(bundle, target), {}, 180_000)
    expect(run.status).not.toBe(0)
    expect(run.fails).toEqual([
      'cannot make this image hvm: its filesystem is swap, and only ext2/3/4, xfs and btrfs can be mounted here and read by GRUB 2; what would work: keep the result paravirtual (output-virtualization-type empty)'
    ])
    expect(attachedTo(target)).toBe('')
  }, 240_000)

  it('refuses the real small-pv bundle: its menu.lst names a kernel the image does not have', () => {
    const dir = join(bundlesDir, 'small-pv')
    const target = join(tmp.dir, 'small-pv.img')
    const run = runConvert(
      [...localArgs(dir, target), '--output-virtualization-type', 'hvm'],
      { I2E_PARTITION_NODES: '0' },
      180_000
    )
    expect(run.status).not.toBe(0)
    expect(run.fails).toEqual([
      'cannot make this image hvm: /boot/grub/menu.lst names kernel /boot/vmlinuz-3.13.0-24-generic as default (entry 0), and the image has no such file (kernels in /boot: none); what would work: point the default entry at an installed kernel on the source and bundle again, or keep the result paravirtual'
    ])
    expect(attachedTo(target)).toBe('')
  }, 240_000)

  it('refuses before reading anything when the helper has no GRUB 2 for BIOS, with the install command', () => {
    const dir = join(bundlesDir, 'small-pv')
    const target = join(tmp.dir, 'no-grub.img')
    const run = runConvert([...localArgs(dir, target), '--output-virtualization-type', 'hvm'], {
      I2E_GRUB_MODULES: join(tmp.dir, 'no-such-folder')
    })
    expect(run.status).not.toBe(0)
    expect(run.fails[0]).toMatch(
      /no i386-pc modules with boot\.img.*dnf install -y grub2-tools grub2-pc-modules/
    )
    expect(run.stdout).not.toMatch(/manifest:/) // refused before the manifest was read
    expect(existsSync(target)).toBe(false)
  })

  it('lists the flag in --help and refuses an unknown virtualization type', () => {
    const help = spawnSync(
      'bash',
      [fileURLToPath(new URL('../../src/scripts/convert.sh', import.meta.url)), '--help'],
      {
        encoding: 'utf8'
      }
    )
    expect(help.status).toBe(0)
    expect(help.stdout).toContain('[--output-virtualization-type hvm|paravirtual]')
    const bad = runConvert([
      '--manifest',
      'm',
      '--key',
      'k',
      '--target',
      't',
      '--output-virtualization-type',
      'pv'
    ])
    expect(bad.status).toBe(2)
    expect(bad.fails[0]).toMatch(/--output-virtualization-type 'pv' is not hvm or paravirtual/)
  })
})
