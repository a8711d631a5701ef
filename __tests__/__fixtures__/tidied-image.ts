// What a bundle's image is once converted with the fstab tidy, made here with the project's own
// scripts and no root: convert.sh onto a plain file (not finalized), then tidy-fstab.sh on it (the
// standalone form the runner path runs). Also the /etc/fstab files of an image, read with debugfs.
import { spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'

const scriptsDir = new URL('../../src/scripts/', import.meta.url).pathname

const run = (args: string[]): string => {
  const r = spawnSync('bash', args, {
    encoding: 'utf8',
    env: { PATH: `${process.env.PATH ?? '/usr/bin:/bin'}:/usr/sbin:/sbin`, LANG: 'C' }
  })
  if (r.status !== 0) throw new Error(`${args.join(' ')} failed (${r.status}):\n${r.stdout}\n${r.stderr}`)
  return r.stdout
}

export const sha256 = (data: Buffer): string => createHash('sha256').update(data).digest('hex')

/** The SHA-256 of the bundle's image after the tidy, and tidy-fstab.sh's result lines. */
export function tidiedImage(
  manifest: string,
  key: string
): { sha256: string; results: Record<string, string> } {
  const dir = mkdtempSync(join(tmpdir(), 'i2e-tidied-'))
  try {
    const image = join(dir, 'image.raw')
    run([join(scriptsDir, 'convert.sh'), '--manifest', manifest, '--key', key, '--target', image])
    const out = run([join(scriptsDir, 'tidy-fstab.sh'), '--image', image])
    const results: Record<string, string> = {}
    for (const m of out.matchAll(/^::result ([^=]+)=(.*)$/gm)) results[m[1] as string] = m[2] as string
    return { sha256: sha256(readFileSync(image)), results }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

const canLoop = (): boolean =>
  process.getuid?.() === 0 && spawnSync('losetup', ['-f'], { encoding: 'utf8' }).status === 0

/**
 * The SHA-256 of what the helper path writes onto its volume: as root, convert.sh --finalize on a
 * file (finalized through a loop device, exactly as a volume is); elsewhere tidiedImage's way.
 */
export function helperPathSha256(manifest: string, key: string): string {
  if (!canLoop()) return tidiedImage(manifest, key).sha256
  const dir = mkdtempSync(join(tmpdir(), 'i2e-helper-path-'))
  try {
    const image = join(dir, 'volume.img')
    const out = run([
      join(scriptsDir, 'convert.sh'),
      '--manifest',
      manifest,
      '--key',
      key,
      '--target',
      image,
      '--finalize'
    ])
    if (!/^::result fstab_removed=/m.test(out))
      throw new Error(`convert.sh --finalize did not finalize:\n${out}`)
    return sha256(readFileSync(image))
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

/** A file of an ext filesystem in IMAGE (at byte OFFSET), read with debugfs; undefined when absent. */
export function extFile(image: string, offset: number, path: string): string | undefined {
  const r = spawnSync('debugfs', ['-R', `cat ${path}`, `${image}?offset=${offset}`], { encoding: 'utf8' })
  if (/File not found/.test(r.stderr)) return undefined
  return r.stdout
}

/** FSTAB's lines less those for instance-store disks that the tidy must remove (the fixtures' ones). */
export const withoutInstanceStore = (fstab: string): string =>
  fstab
    .split('\n')
    .filter((l) => !/^\/dev\/xvdb\s/.test(l))
    .join('\n')

/** The /etc/fstab of makeInstanceStoreBundle's image, and what is left of it after the tidy. */
export const GENERATED_FSTAB = [
  '# /etc/fstab: static file system information.',
  'LABEL=gen-root / ext4 defaults,noatime 0 1',
  '/dev/sdb /mnt auto defaults,nobootwait 0 2',
  '/dev/xvdc1\t/media/ephemeral1\text3\tdefaults\t0\t0',
  'ephemeral0 /data auto defaults 0 2',
  '/dev/xvdb /mnt auto defaults,nofail,comment=cloudconfig 0 2',
  'UUID=0b7c3b2a-1111-4222-8333-444455556666 /srv xfs defaults,nofail 0 2',
  '/dev/xvdf /backup ext4 defaults,nofail 0 2',
  'proc /proc proc defaults 0 0',
  ''
].join('\n')
export const GENERATED_FSTAB_TIDIED = GENERATED_FSTAB.split('\n')
  .filter((l) => !/^(\/dev\/sdb|\/dev\/xvdc1|ephemeral0|\/dev\/xvdb) /.test(l.replace(/\t/g, ' ')))
  .join('\n')
export const GENERATED_KERNEL = '5.10.0-i2e-test'
export const GENERATED_SELINUX_LABEL = 'system_u:object_r:etc_t:s0'

/**
 * A bundle (bench/make-bundle.sh, the project's bundler) of a small bare ext4 filesystem made
 * without root (mkfs.ext4 -d) whose /etc/fstab holds four instance-store lines of the kinds the
 * tidy knows, lines it must keep, and an SELinux label; a kernel whose modules.builtin has nvme
 * and ena. Times are fixed, so the image is the same on every run. Returns the bundle folder
 * (image.manifest.xml, image.part.N, key.pem).
 */
export function makeInstanceStoreBundle(dir: string): string {
  const root = join(dir, 'root')
  const files: [string, string][] = [
    ['etc/fstab', GENERATED_FSTAB],
    ['etc/hostname', 'generated\n'],
    [`boot/vmlinuz-${GENERATED_KERNEL}`, 'not a kernel\n'],
    [
      'boot/grub/grub.cfg',
      `menuentry 'gen' {\n  linux /boot/vmlinuz-${GENERATED_KERNEL} root=LABEL=gen-root ro\n}\n`
    ],
    [
      `lib/modules/${GENERATED_KERNEL}/modules.builtin`,
      'kernel/drivers/nvme/host/nvme.ko\nkernel/drivers/net/ethernet/amazon/ena/ena.ko\n'
    ]
  ]
  for (const [path, text] of files) {
    mkdirSync(dirname(join(root, path)), { recursive: true })
    writeFileSync(join(root, path), text)
  }
  const image = join(dir, 'image.raw')
  const env = { ...process.env, E2FSPROGS_FAKE_TIME: '1700000000', SOURCE_DATE_EPOCH: '1700000000' }
  const mk = (cmd: string, args: string[]) => {
    const r = spawnSync(cmd, args, { encoding: 'utf8', env })
    if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed:\n${r.stdout}\n${r.stderr}`)
  }
  for (const [path] of files) mk('touch', ['-h', '-d', '@1700000000', join(root, path)])
  mk('truncate', ['-s', '24M', image])
  mk('mkfs.ext4', [
    '-q',
    '-F',
    '-L',
    'gen-root',
    '-U',
    '8f1e3f3c-5d6b-4c1a-9e2f-0a1b2c3d4e5f',
    '-E',
    'hash_seed=2b5c2a39-1d8e-4d5f-8a3b-6c7d8e9f0a1b',
    '-d',
    root,
    image
  ])
  writeFileSync(join(dir, 'label'), `${GENERATED_SELINUX_LABEL}\0`)
  mk('debugfs', ['-w', '-R', `ea_set -f ${join(dir, 'label')} /etc/fstab security.selinux`, image])
  mk('bash', [new URL('../../bench/make-bundle.sh', import.meta.url).pathname, join(dir, 'made'), '0', image])
  return join(dir, 'made', 'bundle')
}

/** The names of an inode's extended attributes in an ext image (debugfs ea_list). */
export function extXattrs(image: string, offset: number, path: string): string {
  return spawnSync('debugfs', ['-R', `ea_list ${path}`, `${image}?offset=${offset}`], { encoding: 'utf8' })
    .stdout
}
