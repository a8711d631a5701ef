// The pure parts of the boot harness (the boots themselves are in npm run test:boot).
import { describe, expect, it } from '@jest/globals'
import { type BootResult, describeBoot, lastLines, menuLstEntry } from './boot-harness.js'

// The menu.lst of the small-pv fixture (Ubuntu 14.04 style, tabs), as pv-grub reads it.
const ubuntu = [
  'default\t\t0',
  'timeout\t\t0',
  'hiddenmenu',
  '',
  'title\t\tUbuntu 14.04 LTS, kernel 3.13.0-24-generic',
  'root\t\t(hd0)',
  'kernel\t\t/boot/vmlinuz-3.13.0-24-generic root=LABEL=cloudimg-rootfs ro console=hvc0',
  'initrd\t\t/boot/initrd.img-3.13.0-24-generic'
].join('\n')

describe('menuLstEntry: what pv-grub boots', () => {
  it('reads kernel, initrd and command line of the default entry', () => {
    expect(menuLstEntry(ubuntu)).toEqual({
      kernel: '/boot/vmlinuz-3.13.0-24-generic',
      initrd: '/boot/initrd.img-3.13.0-24-generic',
      args: 'root=LABEL=cloudimg-rootfs ro console=hvc0'
    })
  })

  it('honours "default N" and entries without an initrd', () => {
    const menu = `default 1\ntitle old\nkernel /boot/vmlinuz-1 root=/dev/xvda1\ntitle new\nkernel /boot/vmlinuz-2 root=LABEL=x ro\n`
    expect(menuLstEntry(menu)).toEqual({ kernel: '/boot/vmlinuz-2', args: 'root=LABEL=x ro' })
  })

  it('refuses a menu without the default entry or without a kernel', () => {
    expect(() => menuLstEntry('default 2\ntitle only\nkernel /k\n')).toThrow(/no entry 2/)
    expect(() => menuLstEntry('title empty\nroot (hd0)\n')).toThrow(/names no kernel/)
  })
})

describe('describeBoot', () => {
  const result = (outcome: BootResult['outcome']): BootResult => ({
    outcome,
    seconds: 61.5,
    console: 'a\nb',
    tail: lastLines(Array.from({ length: 40 }, (_, i) => `line ${i}`).join('\n'))
  })

  it('prints the seconds, and the last 30 console lines only when the outcome is unexpected', () => {
    expect(describeBoot('hvm', result('marker'), 'marker')).toBe('hvm: marker after 61.5 s')
    const unexpected = describeBoot('hvm', result('deadline'), 'marker')
    expect(unexpected).toMatch(/^hvm: deadline after 61\.5 s\n--- last 30 console lines ---\nline 10\n/)
    expect(unexpected).toMatch(/line 39\n---$/)
    expect(unexpected).not.toMatch(/line 9\n/)
    expect(describeBoot('control', result('marker'), 'no marker')).toMatch(/last 30 console lines/)
  })
})
