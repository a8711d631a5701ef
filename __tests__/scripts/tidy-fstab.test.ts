// tidy-fstab.sh standalone (as the runner path runs it, no root) on small ext4 images made with
// mkfs.ext4 -d: the same bytes whatever the clock says, the original fstab kept as the backup
// inode, owner, mode and SELinux label carried to the new one, nothing written when nothing is
// removed, and a root that is not ext refused before anything changes.
import { spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals'

const script = new URL('../../src/scripts/tidy-fstab.sh', import.meta.url).pathname
const PATH = `${process.env.PATH ?? '/usr/bin:/bin'}:/usr/sbin:/sbin`
const FSTAB =
  'LABEL=root / ext4 defaults 0 1\n/dev/xvdb /mnt auto defaults 0 2\n# keep me\n/dev/sdc1 /data ext4 defaults 0 2\n'
const TIDIED = 'LABEL=root / ext4 defaults 0 1\n# keep me\n'
const LABEL = 'system_u:object_r:etc_t:s0'

let dir = ''
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'i2e-tidy-'))
})
afterAll(() => rmSync(dir, { recursive: true, force: true }))

const sha = (file: string) => createHash('sha256').update(readFileSync(file)).digest('hex')
const ok = (cmd: string, args: string[], env: Record<string, string> = {}) => {
  const r = spawnSync(cmd, args, { encoding: 'utf8', env: { PATH, LANG: 'C', ...env } })
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stdout}${r.stderr}`)
  return r.stdout
}
const debugfs = (image: string, request: string) =>
  spawnSync('debugfs', ['-R', request, image], { encoding: 'utf8' }).stdout

/** A bare ext4 image whose /etc/fstab is FSTAB (mode 0640, group 4, an SELinux label). */
function makeImage(name: string, fstab: string, extra: [string, string][] = []): string {
  const root = join(dir, `${name}.root`)
  for (const [path, text] of [['etc/fstab', fstab], ...extra] as [string, string][]) {
    mkdirSync(join(root, path, '..'), { recursive: true })
    writeFileSync(join(root, path), text)
  }
  const image = join(dir, `${name}.img`)
  ok('truncate', ['-s', '8M', image])
  ok('mkfs.ext4', ['-q', '-F', '-d', root, image], { E2FSPROGS_FAKE_TIME: '1600000000' })
  writeFileSync(join(dir, 'label'), `${LABEL}\0`)
  for (const request of [
    `ea_set -f ${join(dir, 'label')} /etc/fstab security.selinux`,
    'sif /etc/fstab mode 0100640',
    'sif /etc/fstab gid 4'
  ])
    ok('debugfs', ['-w', '-R', request, image], { E2FSPROGS_FAKE_TIME: '1600000000' })
  return image
}

function tidy(image: string, env: Record<string, string> = {}) {
  const r = spawnSync('bash', [script, '--image', image], {
    encoding: 'utf8',
    env: { PATH, LANG: 'C', ...env }
  })
  const results: Record<string, string> = {}
  for (const m of r.stdout.matchAll(/^::result ([^=]+)=(.*)$/gm)) results[m[1] as string] = m[2] as string
  return { status: r.status, stdout: r.stdout, results, fail: /^::fail (.*)$/m.exec(r.stdout)?.[1] }
}

const inode = (image: string, path: string) => /Inode: (\d+)/.exec(debugfs(image, `stat ${path}`))?.[1]

describe('tidy-fstab.sh --image (no root)', () => {
  it('gives the same bytes whatever the clock says, and a clean filesystem', () => {
    const original = makeImage('clock', FSTAB)
    const a = join(dir, 'clock-a.img')
    const b = join(dir, 'clock-b.img')
    copyFileSync(original, a)
    copyFileSync(original, b)
    // Two clocks 28 years apart: only the image's own times may reach the bytes.
    expect(tidy(a, { E2FSPROGS_FAKE_TIME: '1000000000' }).status).toBe(0)
    expect(tidy(b, { E2FSPROGS_FAKE_TIME: '1900000000' }).status).toBe(0)
    expect(sha(a)).toBe(sha(b))
    expect(sha(a)).not.toBe(sha(original))
    ok('e2fsck', ['-fn', a])
  })

  it('keeps the original as the backup and gives the new fstab its owner, mode and SELinux label', () => {
    const image = makeImage('attrs', FSTAB)
    const before = inode(image, '/etc/fstab')
    const run = tidy(image)
    expect(run.status).toBe(0)
    expect(run.results).toMatchObject({ fstab_removed: '2', fstab_backup: '/etc/fstab.instance-to-ebs.bak' })
    expect(debugfs(image, 'cat /etc/fstab')).toBe(TIDIED)
    expect(debugfs(image, 'cat /etc/fstab.instance-to-ebs.bak')).toBe(FSTAB)
    expect(inode(image, '/etc/fstab.instance-to-ebs.bak')).toBe(before)
    const stat = debugfs(image, 'stat /etc/fstab')
    expect(stat).toMatch(/Type: regular +Mode: +0640/)
    expect(stat).toMatch(/User: +0 +Group: +4/)
    expect(debugfs(image, 'ea_list /etc/fstab')).toContain(
      `security.selinux (${LABEL.length + 1}) = "${LABEL}\\000"`
    )
    expect(run.stdout).toMatch(/^-\/dev\/sdc1 \/data/m)
    ok('e2fsck', ['-fn', image])
  })

  it('replaces the backup an earlier conversion left', () => {
    const image = makeImage('again', FSTAB, [['etc/fstab.instance-to-ebs.bak', 'old backup\n']])
    expect(tidy(image).status).toBe(0)
    expect(debugfs(image, 'cat /etc/fstab.instance-to-ebs.bak')).toBe(FSTAB)
    ok('e2fsck', ['-fn', image])
  })

  it('writes nothing when there is nothing to remove, and still reports the facts', () => {
    const image = makeImage('clean', TIDIED, [
      ['boot/vmlinuz-6.1.0-9-amd64', 'k'],
      ['boot/vmlinuz-5.10.0-1-amd64', 'k'],
      ['boot/grub/grub.cfg', 'menuentry x {\n  linux /boot/vmlinuz-6.1.0-9-amd64 root=LABEL=root\n}\n'],
      ['boot/initrd.img-6.1.0-9-amd64', 'not an initramfs'],
      ['usr/lib/modules/6.1.0-9-amd64/modules.builtin', 'kernel/drivers/nvme/host/nvme.ko\n']
    ])
    // /lib -> usr/lib, as on merged-/usr systems: debugfs follows it.
    ok('debugfs', ['-w', '-R', 'symlink /lib usr/lib', image])
    const before = sha(image)
    const run = tidy(image)
    expect(run.status).toBe(0)
    expect(sha(image)).toBe(before)
    expect(run.results).toMatchObject({
      fstab_removed: '0',
      fstab_backup: 'none',
      partition_table: 'none',
      filesystem: 'ext4',
      kernel_version: '6.1.0-9-amd64',
      bootloader_config: '/boot/grub/grub.cfg',
      bootloader_kernel: '6.1.0-9-amd64',
      initramfs: '/boot/initrd.img-6.1.0-9-amd64',
      initramfs_nvme: 'yes'
    })
    expect(run.results.initramfs_note).toMatch(/nvme is built into the kernel/)
  })

  it('refuses a root filesystem that is not ext, changing nothing', () => {
    const image = join(dir, 'not-ext.img')
    ok('truncate', ['-s', '4M', image])
    writeFileSync(image, Buffer.from('XFSB'), { flag: 'r+' })
    const before = sha(image)
    const run = tidy(image)
    expect(run.status).toBe(3)
    expect(run.fail).toMatch(/not ext2\/3\/4: .*convert-on: helper/)
    expect(sha(image)).toBe(before)
  })
})
