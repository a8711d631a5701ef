// The console reading of verify-boot: each sign of a failed boot found in real console lines, the
// most telling one named, and ordinary boots (also with nofail mounts that time out) not flagged.
import { describe, expect, it } from '@jest/globals'
import { consoleTail, decodeConsole, findBootFailure } from '../../../src/pipeline/verify/console.js'

const failures: [what: string, text: string, meaning: string][] = [
  [
    'a kernel panic',
    '[    2.1] Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)',
    'kernel panic'
  ],
  [
    'systemd emergency mode',
    'You are in emergency mode. After logging in, type "journalctl -xb"',
    'emergency mode'
  ],
  [
    'sysvinit maintenance prompt',
    'Give root password for maintenance\r\n(or type Control-D to continue):',
    'maintenance'
  ],
  [
    'an initramfs without its root device',
    'Gave up waiting for root device.  Common problems:',
    'never saw the root device'
  ],
  [
    'busybox initramfs',
    'ALERT!  /dev/disk/by-uuid/1234 does not exist.  Dropping to a shell!',
    'never saw the root device'
  ],
  [
    'an fstab line for a missing instance store (Ubuntu mountall)',
    'The disk drive for /mnt is not ready yet or not present.\r\nContinue to wait, or Press S to skip mounting or M for manual recovery',
    'missing'
  ],
  ['local-fs.target failing', '[DEPEND] Dependency failed for Local File Systems.', '/etc/fstab'],
  ['pv-grub without the kernel', '    Error 15: File not found', 'pv-grub'],
  ['grub rescue', 'error: no such partition.\ngrub rescue> ', 'GRUB']
]

describe('findBootFailure', () => {
  it.each(failures)('finds %s', (_what, text, meaning) => {
    const sign = findBootFailure(`Linux version 3.2.0-23-virtual\n${text}\nmore`)
    expect(sign?.meaning).toContain(meaning)
    expect(text).toContain(sign?.line.split(/\r?\n/)[0]?.slice(0, 20) ?? 'nothing')
  })

  it('names the panic rather than an earlier line that led to it', () => {
    const sign = findBootFailure(
      'VFS: Cannot open root device "xvda1" or unknown-block(0,0): error -6\nKernel panic - not syncing: VFS: Unable to mount root fs'
    )
    expect(sign).toEqual({
      line: 'Kernel panic - not syncing: VFS: Unable to mount root fs',
      meaning: 'kernel panic'
    })
  })

  it('sees through terminal escapes', () => {
    expect(findBootFailure('\u001b[0;1;31mYou are in emergency mode.\u001b[0m')?.meaning).toContain(
      'emergency'
    )
  })

  it('passes an ordinary boot, with a nofail mount that timed out', () => {
    const boot = [
      '[    0.000000] Linux version 5.10.0-26-cloud-amd64',
      '[  OK  ] Reached target Local File Systems (Pre).',
      '[ TIME ] Timed out waiting for device /dev/xvdb.',
      '[DEPEND] Dependency failed for /mnt.',
      '[  OK  ] Reached target Local File Systems.',
      '[  OK  ] Reached target Multi-User System.',
      'Debian GNU/Linux 11 ip-10-0-0-1 ttyS0',
      'ip-10-0-0-1 login: '
    ].join('\r\n')
    expect(findBootFailure(boot)).toBeUndefined()
    expect(findBootFailure('')).toBeUndefined()
  })
})

describe('consoleTail and decodeConsole', () => {
  it('keeps the last non-empty lines', () => {
    const text = Array.from({ length: 50 }, (_, i) => `line ${i}`).join('\n')
    expect(consoleTail(`${text}\n\n`, 30)).toEqual(Array.from({ length: 30 }, (_, i) => `line ${i + 20}`))
  })

  it('decodes base64 output and treats a missing one as empty', () => {
    expect(decodeConsole(Buffer.from('héllo\n').toString('base64'))).toBe('héllo\n')
    expect(decodeConsole(undefined)).toBe('')
  })
})
