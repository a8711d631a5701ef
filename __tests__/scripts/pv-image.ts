// A synthetic paravirtual image for the hvm-conversion tests: a bare ext4 filesystem with a kernel
// file, its config, a gzip cpio initramfs holding the modules named, a GRUB legacy menu.lst whose
// default entry (1) names that kernel with root=/dev/xvda1, and an fstab with the paravirtual
// disk layout; bundled as ec2-bundle-image does (bench/make-bundle.sh). Not bootable: the boot
// test (__tests__/boot/pv-to-hvm.boot.ts) uses a real Debian image.
import { spawnSync } from 'node:child_process'
import { mkdirSync, writeFileSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { sh } from './convert-harness.js'

export const makeBundle = fileURLToPath(new URL('../../bench/make-bundle.sh', import.meta.url))
export const KERNEL = '5.10.0-i2e-test'

export interface ImageSpec {
  /** /boot/config-KERNEL lines. */
  config: string[]
  /** Module paths (under lib/modules/KERNEL/kernel/) inside the initramfs. */
  initramfs?: string[]
  /** Module paths installed on the root filesystem. */
  onDisk?: string[]
  fstab?: string
}

const MENU = `default 1
timeout 0

title old kernel, removed since
root (hd0)
kernel /boot/vmlinuz-4.4.0-gone root=LABEL=i2e-test-root ro console=hvc0
initrd /boot/initrd.img-4.4.0-gone

title Test Linux, kernel ${KERNEL}
root (hd0)
kernel /boot/vmlinuz-${KERNEL} root=/dev/xvda1 ro quiet console=hvc0 xencons=tty
initrd /boot/initrd.img-${KERNEL}
`

export const FSTAB = `# test image
/dev/xvda1\t/\text4\tdefaults\t0 1
/dev/sda2\t/mnt\tauto\tdefaults,nobootwait\t0 2
proc\t/proc\tproc\tdefaults\t0 0
`

/** A bare ext4 image with a kernel, its config, an initramfs and menu.lst, bundled; returns the bundle folder. */
export function bundlePvImage(into: string, name: string, spec: ImageSpec): string {
  const dir = join(into, name)
  const tree = join(dir, 'tree')
  const write = (path: string, text: string | Buffer) => {
    mkdirSync(dirname(join(tree, path)), { recursive: true })
    writeFileSync(join(tree, path), text)
  }
  write(`boot/vmlinuz-${KERNEL}`, Buffer.alloc(65536, 7))
  write(`boot/config-${KERNEL}`, `${spec.config.join('\n')}\n`)
  write('boot/grub/menu.lst', MENU)
  write('etc/fstab', spec.fstab ?? FSTAB)
  write('etc/hostname', `${name}\n`)
  for (const module of spec.onDisk ?? []) write(`lib/modules/${KERNEL}/kernel/${module}`, 'module')
  write(`lib/modules/${KERNEL}/modules.builtin`, '')
  const initrdTree = join(dir, 'initrd')
  mkdirSync(initrdTree, { recursive: true })
  for (const module of spec.initramfs ?? ['fs/ext4/ext4.ko']) {
    const path = join(initrdTree, 'lib/modules', KERNEL, 'kernel', module)
    mkdirSync(dirname(path), { recursive: true })
    writeFileSync(path, 'module')
  }
  const initrd = join(tree, 'boot', `initrd.img-${KERNEL}`)
  sh('sh', ['-c', `cd "${initrdTree}" && find . | cpio -o -H newc --quiet | gzip -c > "${initrd}"`])
  const image = join(dir, 'image.raw')
  sh('mkfs.ext4', ['-q', '-L', 'i2e-test-root', '-d', tree, image, '16M'])
  const made = spawnSync('bash', [makeBundle, join(dir, 'made'), '0', image], { encoding: 'utf8' })
  if (made.status !== 0) throw new Error(`make-bundle.sh failed: ${made.stderr}`)
  return join(dir, 'made', 'bundle')
}
