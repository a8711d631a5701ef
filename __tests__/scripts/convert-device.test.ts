// convert.sh on block devices (loop devices): finalize (partition table, fsck, fstab, facts),
// finding a volume by its NVMe serial, and the refusals that protect a device in use.
import { spawnSync } from 'node:child_process'
import { mkdirSync, mkdtempSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals'
import {
  bundlesDir,
  type Expected,
  expected,
  hasCommand,
  isRoot,
  localArgs,
  need,
  needNumber,
  runConvert,
  type Scratch,
  scratch,
  sh,
  sha256,
  sha256File
} from './convert-harness.js'

const makeBundle = fileURLToPath(new URL('../../bench/make-bundle.sh', import.meta.url))
const missing = ['losetup', 'sfdisk', 'e2fsck', 'debugfs', 'mount', 'mkfs.ext4', 'blkid'].filter(
  (c) => !hasCommand(c)
)
const why = !isRoot() ? 'needs root' : missing.length ? `needs ${missing.join(', ')}` : ''
const canLoop = why === '' && spawnSync('losetup', ['-f']).status === 0
const describeLoop = canLoop ? describe : describe.skip
const skipNote = canLoop ? '' : ` (skipped: ${why || 'no free loop device'})`

let tmp: Scratch
const loops: string[] = []
const mounts: string[] = []

beforeAll(() => {
  tmp = scratch('i2e-convert-dev-')
})
afterAll(() => {
  for (const dir of mounts) spawnSync('umount', [dir])
  for (const loop of loops.reverse()) spawnSync('losetup', ['-d', loop])
  tmp.cleanup()
})

/** A loop device over a new file of `bytes` (sparse zeros unless `fill` is given). */
function loopDevice(name: string, bytes: number, fill?: Buffer): string {
  const file = join(tmp.dir, `${name}.disk`)
  if (fill) writeFileSync(file, fill)
  sh('truncate', ['-s', String(bytes), file])
  const loop = sh('losetup', ['-f', '--show', file]).trim()
  loops.push(loop)
  return loop
}

/** The test's own view of a partition: a loop device at its offset (read-only). */
function partitionView(device: string, offset: number): string {
  const loop = sh('losetup', ['-f', '--show', '-r', '-o', String(offset), device]).trim()
  loops.push(loop)
  return loop
}

function debugfs(device: string, request: string): string {
  return spawnSync('debugfs', ['-R', request, device], { encoding: 'utf8' }).stdout
}

const env = (extra: Record<string, string> = {}) => ({ I2E_SHM_DIR: tmp.shm, ...extra })

/** What the image itself says, read with debugfs: the facts the result lines must report. */
function imageFacts(fs: string, facts: Expected) {
  const boot = debugfs(fs, 'ls -p /boot')
  const kernels = [...boot.matchAll(/\/vmlinuz-([^/]+)\//g)].map((m) => m[1])
  const initrds = [...boot.matchAll(/\/(initrd\.img-[^/]+|initramfs-[^/]+\.img)\//g)]
  const menu = debugfs(fs, 'cat /boot/grub/menu.lst')
  expect(sha256(menu)).toBe(need(facts, 'boot_grub_menu_lst_sha256'))
  return {
    kernel: kernels.length ? kernels.sort().pop() : 'none',
    hasInitramfs: initrds.length > 0,
    bootKernel: /^\s*kernel\s+\S*vmlinuz-(\S+)/m.exec(menu)?.[1]
  }
}

function checkFinalized(bundle: string, device: string, run: ReturnType<typeof runConvert>): void {
  const facts = expected(bundle)
  expect(run.fails).toEqual([])
  expect(run.status).toBe(0)
  const r = run.results
  expect(r.target).toBe(device)
  expect(r.digest).toBe('ok')
  expect(Number(r.image_bytes)).toBe(needNumber(facts, 'image_size_bytes'))
  expect(r.partition_table).toBe(facts.partition_table ?? 'none')
  const offset = needNumber(facts, 'filesystem_offset_bytes')
  expect(Number(r.root_partition_offset_bytes)).toBe(offset)
  expect(r.root_partition).toBe(offset === 0 ? 'none' : '1')
  expect(r.filesystem).toBe(need(facts, 'filesystem_type'))
  expect(r.filesystem_label).toBe(need(facts, 'filesystem_label'))
  expect(r.filesystem_uuid).toBe(need(facts, 'filesystem_uuid'))

  if (facts.partition_table === 'mbr') {
    const table = sh('sfdisk', ['-d', device])
    expect(table).toMatch(/^label: dos$/m)
    expect(table).toMatch(
      new RegExp(
        `start=\\s*${need(facts, 'partition1_start_sector')}, size=\\s*${need(facts, 'partition1_size_sectors')}, type=${need(facts, 'partition1_type')}, bootable`
      )
    )
  }
  const fs = offset === 0 ? device : partitionView(device, offset)
  const fsck = spawnSync('e2fsck', ['-fn', fs], { encoding: 'utf8' })
  expect(fsck.status).toBe(0)

  expect(sha256(debugfs(fs, 'cat /etc/hostname'))).toBe(need(facts, 'etc_hostname_sha256'))
  const fstab = debugfs(fs, 'cat /etc/fstab')
  const backup = debugfs(fs, 'cat /etc/fstab.instance-to-ebs.bak')
  expect(sha256(backup)).toBe(need(facts, 'etc_fstab_sha256'))
  expect(backup).toMatch(/^\/dev\/xvdb\s+\/mnt\s/m)
  expect(fstab).not.toMatch(/xvdb/)
  expect(fstab).toMatch(/^LABEL=cloudimg-rootfs\s+\/\s+ext4/m)
  expect(fstab.split('\n').length).toBe(backup.split('\n').length - 1)
  expect(r.fstab_removed).toBe('1')
  expect(r.fstab_backup).toBe('/etc/fstab.instance-to-ebs.bak')
  expect(run.stdout).toMatch(/^-\/dev\/xvdb\s+\/mnt/m) // the diff

  const image = imageFacts(fs, facts)
  expect(r.kernel_version).toBe(image.kernel)
  expect(r.bootloader_config).toBe('/boot/grub/menu.lst')
  expect(r.bootloader_kernel).toBe(image.bootKernel)
  expect(image.hasInitramfs).toBe(false)
  expect(r.initramfs).toBe('none')
  expect(r.initramfs_nvme).toBe('unknown')
  expect(r.initramfs_ena).toBe('unknown')
  expect(r.initramfs_note).toMatch(/no initramfs in \/boot/)

  // Nothing left mounted or attached by the script.
  expect(sh('findmnt', ['-rn', '-o', 'TARGET']).includes('i2e-root')).toBe(false)
  expect(scriptLoopsOver(device)).toEqual([])
  expect(readdirSync(tmp.shm)).toEqual([])
}

/** Loop devices the script itself attached over `device` (ours are in `loops`). */
function scriptLoopsOver(device: string): string[] {
  return sh('losetup', ['--list', '-n', '-O', 'NAME', '-j', device])
    .split('\n')
    .map((s) => s.trim())
    .filter((s) => s && !loops.includes(s))
}

describeLoop(`convert.sh onto a loop device${skipNote}`, () => {
  it('hvm-mbr: partition table visible, fsck clean, fstab cleaned with backup, facts reported', () => {
    const bundle = 'hvm-mbr'
    const size = needNumber(expected(bundle), 'image_size_bytes')
    const device = loopDevice('hvm', size + 8 * 1048576)
    const run = runConvert(localArgs(join(bundlesDir, bundle), device), env())
    checkFinalized(bundle, device, run)
  })

  it('hvm-mbr without partition nodes: falls back to a loop at the partition offset, detached after', () => {
    const bundle = 'hvm-mbr'
    const size = needNumber(expected(bundle), 'image_size_bytes')
    const device = loopDevice('hvm-fallback', size)
    const run = runConvert(localArgs(join(bundlesDir, bundle), device), env({ I2E_PARTITION_NODES: '0' }))
    expect(run.stdout).toMatch(
      new RegExp(`root filesystem: ext4 on /dev/loop\\d+ \\(partition 1, offset ${1048576}\\)`)
    )
    checkFinalized(bundle, device, run)
  })

  it('small-pv: a bare filesystem, no partition table', () => {
    const bundle = 'small-pv'
    const size = needNumber(expected(bundle), 'image_size_bytes')
    const device = loopDevice('pv', size)
    const run = runConvert(localArgs(join(bundlesDir, bundle), device), env())
    checkFinalized(bundle, device, run)
  })

  it('--no-finalize leaves the image byte for byte as bundled', () => {
    const bundle = 'hvm-mbr'
    const facts = expected(bundle)
    const size = needNumber(facts, 'image_size_bytes')
    const device = loopDevice('raw', size + 1048576)
    const run = runConvert([...localArgs(join(bundlesDir, bundle), device), '--no-finalize'], env())
    expect(run.status).toBe(0)
    expect(run.results.partition_table).toBeUndefined()
    expect(sha256File(device, size)).toBe(need(facts, 'image_sha256'))
    expect(Number(run.results.bytes_written)).toBeLessThan(size / 2)
  })

  it('a device that holds data is refused (zero blocks are skipped); --write-zeros rebuilds it exactly', () => {
    const bundle = 'small-pv'
    const facts = expected(bundle)
    const size = needNumber(facts, 'image_size_bytes')
    const device = loopDevice('garbage', size, Buffer.alloc(size, 0x5a))
    const refused = runConvert(localArgs(join(bundlesDir, bundle), device), env())
    expect(refused.status).not.toBe(0)
    expect(refused.fails).toEqual([
      expect.stringMatching(/is not blank .*new empty volume, or run with --write-zeros/)
    ])
    expect(refused.results.digest).toBeUndefined()

    const run = runConvert(
      [...localArgs(join(bundlesDir, bundle), device), '--write-zeros', '--no-finalize'],
      env()
    )
    expect(run.status).toBe(0)
    expect(sha256File(device, size)).toBe(need(facts, 'image_sha256'))
    expect(Number(run.results.bytes_written)).toBe(size)
  })

  it('a device that is too small is refused before anything is written', () => {
    const bundle = 'small-pv'
    const size = needNumber(expected(bundle), 'image_size_bytes')
    const device = loopDevice('small', size / 2)
    const run = runConvert(localArgs(join(bundlesDir, bundle), device), env())
    expect(run.status).not.toBe(0)
    expect(run.fails).toEqual([
      expect.stringMatching(new RegExp(`is too small: ${size / 2} bytes, the image needs ${size}`))
    ])
  })

  it('a mounted device is refused', () => {
    const bundle = 'small-pv'
    const size = needNumber(expected(bundle), 'image_size_bytes')
    const device = loopDevice('mounted', size)
    expect(runConvert(localArgs(join(bundlesDir, bundle), device), env()).status).toBe(0)
    const dir = mkdtempSync(join(tmp.dir, 'mnt-'))
    sh('mount', ['-o', 'ro', device, dir])
    mounts.push(dir)
    const run = runConvert(localArgs(join(bundlesDir, bundle), device), env())
    sh('umount', [dir])
    mounts.pop()
    expect(run.status).not.toBe(0)
    expect(run.fails).toEqual([
      expect.stringMatching(new RegExp(`target ${device} is in use \\(${device} on ${dir}\\)`))
    ])
  })
})

describeLoop(`convert.sh on a GPT disk of our own making${skipNote}`, () => {
  const kernel = '5.10.0-1-amd64'
  const fstab = [
    '# /dev/xvdb used to be here',
    'UUID=0b6e4c1a-0000-4000-8000-000000000001 / ext4 defaults 0 1',
    '/dev/sdb /media/ephemeral0 auto defaults,nofail,comment=cloudconfig 0 2',
    'LABEL=ephemeral1 /mnt/eph1 ext4 defaults 0 0',
    '/dev/xvdc1\t/data\text4\tdefaults\t0 0',
    '/dev/xvdf /srv ext4 defaults,nofail 0 2',
    'tmpfs /tmp tmpfs defaults 0 0'
  ]
  const kept = [fstab[0], fstab[1], fstab[5], fstab[6]]

  it('finds the Linux partition after a BIOS boot partition, cleans fstab, reads kernel and drivers', () => {
    const dir = join(tmp.dir, 'gpt')
    const tree = join(dir, 'tree')
    for (const sub of ['etc', 'boot/grub', `lib/modules/${kernel}`])
      mkdirSync(join(tree, sub), { recursive: true })
    writeFileSync(join(tree, 'etc/fstab'), `${fstab.join('\n')}\n`)
    writeFileSync(join(tree, 'etc/hostname'), 'gpt-test\n')
    writeFileSync(join(tree, `boot/vmlinuz-${kernel}`), 'kernel')
    writeFileSync(join(tree, 'boot/vmlinuz-5.4.0-9-generic'), 'older kernel')
    writeFileSync(join(tree, `boot/initrd.img-${kernel}`), 'not a real initramfs')
    writeFileSync(
      join(tree, 'boot/grub/grub.cfg'),
      `menuentry 'x' {\n  linux /boot/vmlinuz-${kernel} root=LABEL=gpt-root ro\n}\n`
    )
    writeFileSync(join(tree, `lib/modules/${kernel}/modules.builtin`), 'kernel/drivers/nvme/host/nvme.ko\n')
    const disk = join(dir, 'disk.img')
    const fs = join(dir, 'fs.img')
    const start = 4096
    const size = 64 * 1048576
    sh('truncate', ['-s', String(size), disk])
    sh(
      'sfdisk',
      ['-q', disk],
      'label: gpt\nstart=2048, size=2048, type=21686148-6449-6E6F-744E-656564454649\nstart=4096, size=122880, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4\n'
    )
    sh('mkfs.ext4', ['-q', '-F', '-L', 'gpt-root', '-d', tree, fs, '61440k'])
    sh('dd', [`if=${fs}`, `of=${disk}`, 'bs=512', `seek=${start}`, 'conv=notrunc,sparse', 'status=none'])
    const made = spawnSync('bash', [makeBundle, join(dir, 'b'), '0', disk], { encoding: 'utf8' })
    expect(made.stderr).toBe('')
    const bundle = join(dir, 'b', 'bundle')
    const fsUuid = sh('blkid', ['-p', '-o', 'value', '-s', 'UUID', fs]).trim()

    const device = loopDevice('gpt', size)
    const run = runConvert(
      [
        '--manifest',
        join(bundle, 'image.manifest.xml'),
        '--key',
        join(bundle, 'key.pem'),
        '--target',
        device
      ],
      env()
    )
    expect(run.fails).toEqual([])
    const r = run.results
    expect(r.partition_table).toBe('gpt')
    expect(r.root_partition).toBe('2')
    expect(Number(r.root_partition_offset_bytes)).toBe(start * 512)
    expect(r.filesystem).toBe('ext4')
    expect(r.filesystem_label).toBe('gpt-root')
    expect(r.filesystem_uuid).toBe(fsUuid)
    expect(r.kernel_version).toBe(kernel)
    expect(r.bootloader_config).toBe('/boot/grub/grub.cfg')
    expect(r.bootloader_kernel).toBe(kernel)
    expect(r.initramfs).toBe(`/boot/initrd.img-${kernel}`)
    expect(r.initramfs_nvme).toBe('yes') // built into the kernel (modules.builtin)
    expect(r.initramfs_note).toMatch(/nvme is built into the kernel/)
    if (!hasCommand('lsinitramfs') && !hasCommand('lsinitrd')) {
      expect(r.initramfs_ena).toBe('unknown')
      expect(r.initramfs_note).toMatch(/neither lsinitramfs .* nor lsinitrd/)
    }
    expect(r.fstab_removed).toBe('3')
    const view = partitionView(device, start * 512)
    expect(spawnSync('e2fsck', ['-fn', view]).status).toBe(0)
    expect(debugfs(view, 'cat /etc/fstab')).toBe(`${kept.join('\n')}\n`)
    expect(debugfs(view, 'cat /etc/fstab.instance-to-ebs.bak')).toBe(`${fstab.join('\n')}\n`)
    expect(sh('sfdisk', ['-d', device])).toMatch(/^label: gpt$/m)
  })
})

describeLoop(`convert.sh --volume-id finds the attached volume${skipNote}`, () => {
  const volume = 'vol-0123456789abcdef0'
  const serial = 'vol0123456789abcdef0'
  const empty = () => {
    const dir = mkdtempSync(join(tmp.dir, 'empty-'))
    return dir
  }
  const args = (device: string[]) => [
    '--manifest',
    join(bundlesDir, 'small-pv', 'image.manifest.xml'),
    '--key',
    join(bundlesDir, 'small-pv', 'test-key.pem'),
    '--volume-id',
    volume,
    ...device,
    '--no-finalize'
  ]
  const size = () => needNumber(expected('small-pv'), 'image_size_bytes')

  it('by the NVMe serial in sysfs', () => {
    const device = loopDevice('serial', size())
    const sys = join(tmp.dir, 'sys')
    mkdirSync(join(sys, 'block', device.replace('/dev/', ''), 'device'), { recursive: true })
    writeFileSync(join(sys, 'block', device.replace('/dev/', ''), 'device', 'serial'), `${serial}      \n`)
    const run = runConvert(args([]), env({ I2E_SYS_ROOT: sys, I2E_BYID_DIR: empty() }))
    expect(run.fails).toEqual([])
    expect(run.results.target).toBe(device)
    expect(sha256File(device, size())).toBe(need(expected('small-pv'), 'image_sha256'))
  })

  it('by the /dev/disk/by-id link', () => {
    const device = loopDevice('byid', size())
    const byid = join(tmp.dir, 'by-id')
    mkdirSync(byid)
    symlinkSync(device, join(byid, `nvme-Amazon_Elastic_Block_Store_${serial}`))
    const run = runConvert(args([]), env({ I2E_SYS_ROOT: empty(), I2E_BYID_DIR: byid }))
    expect(run.fails).toEqual([])
    expect(run.results.target).toBe(device)
  })

  it('on Xen, by the attached device name (/dev/sdf appears as /dev/xvdf)', () => {
    const device = loopDevice('xen', size())
    const dev = join(tmp.dir, 'dev')
    mkdirSync(dev)
    symlinkSync(device, join(dev, 'xvdf'))
    const run = runConvert(
      args(['--device', '/dev/sdf']),
      env({ I2E_SYS_ROOT: empty(), I2E_BYID_DIR: empty(), I2E_DEV_DIR: dev })
    )
    expect(run.fails).toEqual([])
    expect(run.results.target).toBe(device)
  })

  it('fails clearly when the volume does not appear, never guessing a device', () => {
    const run = runConvert(
      args(['--device', '/dev/sdg']),
      env({
        I2E_SYS_ROOT: empty(),
        I2E_BYID_DIR: empty(),
        I2E_DEV_DIR: empty(),
        I2E_DEVICE_WAIT_SECONDS: '1'
      })
    )
    expect(run.status).not.toBe(0)
    expect(run.fails).toEqual([
      expect.stringMatching(
        new RegExp(`volume ${volume} did not appear on this instance within 1s .*serial ${serial}.*/dev/sdg`)
      )
    ])
    expect(run.results.target).toBeUndefined()
  })
})
