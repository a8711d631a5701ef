// The pre-bundle checks of bundle-checks.sh, run for real against fixture files
// (I2E_ROOT points the script at a copy of a fixture machine).
import { afterEach, describe, expect, it } from '@jest/globals'
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import {
  failLines,
  fakeDf,
  fixturesDir,
  isolatedPath,
  type Machine,
  makeMachine,
  results,
  runScript
} from './bundle-harness.js'

const GiB = 1024 * 1024 // in KiB

let machine: Machine | undefined
afterEach(() => machine?.cleanup())

function check(
  fixture: string,
  args: string[],
  df = { rootUsedKb: 2 * GiB, mntAvailKb: 100 * GiB, tmpAvailKb: 5 * GiB }
) {
  machine = makeMachine(fixture)
  fakeDf(machine, df)
  const run = () =>
    runScript('bundle-checks.sh', args, {
      I2E_ROOT: machine?.root ?? '',
      PATH: isolatedPath(machine as Machine)
    })
  return { machine, run }
}

const menuLst = (m: Machine) => readFileSync(join(m.root, 'boot/grub/menu.lst'), 'utf8')
const kernelLines = (text: string) => text.split('\n').filter((l) => /^\s*kernel\s/.test(l))

describe('menu.lst against /proc/cmdline', () => {
  it('reports the differences of the default entry and changes nothing', () => {
    const { machine, run } = check('precise-hvm', ['--check', 'menu-lst'])
    const out = run()
    expect(out.status).toBe(0)
    const r = results(out.stdout)
    expect(r.cmdline_matches_menu_lst).toBe('no')
    expect(r.menu_lst_differences).toBe(
      'console=ttyS0 (menu.lst: console=hvc0); xen_emul_unplug=unnecessary (missing in menu.lst)'
    )
    expect(menuLst(machine)).toBe(readFileSync(join(fixturesDir, 'precise-hvm/boot/grub/menu.lst'), 'utf8'))
    expect(readdirSync(join(machine.root, 'boot/grub'))).toEqual(['menu.lst'])
  })

  it('says yes when the running kernel got the arguments of the default entry', () => {
    const { run } = check('precise-pv', ['--check', 'menu-lst'])
    const out = run()
    expect(out.status).toBe(0)
    expect(results(out.stdout).cmdline_matches_menu_lst).toBe('yes')
    expect(results(out.stdout).menu_lst_differences).toBeUndefined()
  })

  it('compares the entry named by "default", not the first one', () => {
    const { machine, run } = check('precise-pv', ['--check', 'menu-lst'])
    const file = join(machine.root, 'boot/grub/menu.lst')
    writeFileSync(file, menuLst(machine).replace(/^default\t\t0$/m, 'default\t\t1'))
    const out = run()
    // entry 1 is the recovery entry: "root=LABEL=cloudimg-rootfs ro single", no console
    expect(results(out.stdout).cmdline_matches_menu_lst).toBe('no')
    expect(results(out.stdout).menu_lst_differences).toBe('console=hvc0 (missing in menu.lst)')
  })

  // Empty lists everywhere: before bash 4.4 (Ubuntu 12.04, 14.04) "${a[@]}" of an empty array
  // under set -u ends the script without a ::fail line (run again by the old-shell suites).
  it('an empty kernel command line and kernel lines without arguments: compared and fixed', () => {
    const { machine, run } = check('precise-pv', ['--check', 'menu-lst', '--fix-menu-lst'])
    writeFileSync(join(machine.root, 'proc/cmdline'), '\n')
    const file = join(machine.root, 'boot/grub/menu.lst')
    writeFileSync(file, menuLst(machine).replace(/^(kernel\t\t\S+).*$/gm, '$1'))
    const out = run()
    expect(out.stderr).toBe('')
    expect(out.status).toBe(0)
    expect(results(out.stdout).cmdline_matches_menu_lst).toBe('yes')
    const withArgs = menuLst(machine).replace(/^(kernel\t\t\S+).*$/gm, '$1 root=LABEL=x')
    writeFileSync(file, withArgs)
    writeFileSync(join(machine.root, 'proc/cmdline'), 'root=LABEL=x quiet\n')
    const fixed = run()
    expect(fixed.stderr).toBe('')
    expect(results(fixed.stdout).menu_lst_differences).toBe('quiet (missing in menu.lst)')
    expect(kernelLines(menuLst(machine))).toEqual([
      'kernel\t\t/boot/vmlinuz-3.2.0-54-virtual root=LABEL=x quiet',
      'kernel\t\t/boot/vmlinuz-3.2.0-54-virtual root=LABEL=x quiet',
      'kernel\t\t/boot/memtest86+.bin root=LABEL=x'
    ])
  })

  it('with --fix-menu-lst rewrites the Linux kernel lines, keeps a backup, and then matches', () => {
    const { machine, run } = check('precise-hvm', ['--check', 'menu-lst', '--fix-menu-lst'])
    const original = menuLst(machine)
    const out = run()
    expect(out.status).toBe(0)
    const r = results(out.stdout)
    expect(r.cmdline_matches_menu_lst).toBe('no')
    expect(r.menu_lst_fixed).toBe('yes')

    const fixed = menuLst(machine)
    expect(kernelLines(fixed)).toEqual([
      'kernel\t\t/boot/vmlinuz-3.2.0-54-virtual root=LABEL=cloudimg-rootfs ro console=ttyS0 xen_emul_unplug=unnecessary',
      'kernel\t\t/boot/vmlinuz-3.2.0-54-virtual root=LABEL=cloudimg-rootfs single ro console=ttyS0 xen_emul_unplug=unnecessary',
      'kernel\t\t/boot/memtest86+.bin'
    ])
    // everything but the kernel lines is byte for byte the same
    const notKernel = (text: string) => text.split('\n').filter((l) => !/^\s*kernel\s/.test(l))
    expect(notKernel(fixed)).toEqual(notKernel(original))

    const backup = r.menu_lst_backup ?? ''
    expect(backup.startsWith(join(machine.root, 'boot/grub/menu.lst.'))).toBe(true)
    expect(readFileSync(backup, 'utf8')).toBe(original)

    const again = run()
    expect(results(again.stdout).cmdline_matches_menu_lst).toBe('yes')
  })

  it('refuses a machine without a GRUB legacy config, saying why', () => {
    const { machine, run } = check('precise-hvm', ['--check', 'menu-lst'])
    rmSync(join(machine.root, 'boot/grub/menu.lst'))
    const out = run()
    expect(out.status).toBe(4)
    expect(failLines(out.stdout)).toHaveLength(1)
    expect(failLines(out.stdout)[0]).toMatch(/menu\.lst.*would not boot/)
  })
})

describe('EFI partition in /etc/fstab', () => {
  it('refuses an fstab that mounts /boot/efi and explains why', () => {
    const { run } = check('trusty-efi', ['--check', 'efi'])
    const out = run()
    expect(out.status).toBe(4)
    const fail = failLines(out.stdout)
    expect(fail).toHaveLength(1)
    expect(fail[0]).toMatch(/LABEL=UEFI on \/boot\/efi/)
    expect(fail[0]).toMatch(/GRUB legacy/)
    expect(fail[0]).toMatch(/comment out/)
  })

  it('accepts the same fstab with the EFI line commented out (AWS procedure for Ubuntu 14.04+)', () => {
    const { run } = check('trusty-efi-commented', ['--check', 'efi'])
    const out = run()
    expect(out.status).toBe(0)
    expect(results(out.stdout).efi_partition).toBe('none')
  })

  it('accepts an fstab without EFI', () => {
    const { run } = check('precise-hvm', ['--check', 'efi'])
    expect(run().status).toBe(0)
  })
})

describe('free space at the bundle destination', () => {
  it('picks /mnt (the instance-store scratch disk) when it has three times the used size free', () => {
    const { machine, run } = check('precise-hvm', ['--check', 'space'])
    const out = run()
    expect(out.status).toBe(0)
    const r = results(out.stdout)
    expect(r.bundle_destination).toBe(join(machine.root, 'mnt'))
    expect(r.root_used_bytes).toBe(String(2 * GiB * 1024))
    expect(r.space_needed_bytes).toBe(String(6 * GiB * 1024))
  })

  it('falls back to /tmp when /mnt is too small', () => {
    const { machine, run } = check('precise-hvm', ['--check', 'space'], {
      rootUsedKb: 1 * GiB,
      mntAvailKb: 2 * GiB,
      tmpAvailKb: 4 * GiB
    })
    const out = run()
    expect(out.status).toBe(0)
    expect(results(out.stdout).bundle_destination).toBe(join(machine.root, 'tmp'))
  })

  it('fails saying how much is needed when nothing has room', () => {
    const { run } = check('precise-hvm', ['--check', 'space'], {
      rootUsedKb: 3 * GiB,
      mntAvailKb: 4 * GiB,
      tmpAvailKb: 1 * GiB
    })
    const out = run()
    expect(out.status).toBe(5)
    const fail = failLines(out.stdout)
    expect(fail).toHaveLength(1)
    expect(fail[0]).toMatch(/not enough free space/)
    expect(fail[0]).toMatch(/9\.0 GiB/)
    expect(fail[0]).toMatch(/\/mnt has 4\.0 GiB/)
  })

  it('uses an explicit destination when it has room, and refuses one that does not exist', () => {
    const { machine, run } = check('precise-hvm', ['--check', 'space', '--destination', '/will-be-replaced'])
    const ok = runScript(
      'bundle-checks.sh',
      ['--check', 'space', '--destination', join(machine.root, 'mnt')],
      {
        I2E_ROOT: machine.root,
        PATH: isolatedPath(machine)
      }
    )
    expect(ok.status).toBe(0)
    expect(results(ok.stdout).bundle_destination).toBe(join(machine.root, 'mnt'))

    const missing = run()
    expect(missing.status).toBe(5)
    expect(failLines(missing.stdout)[0]).toMatch(/\/will-be-replaced does not exist/)
    expect(existsSync('/will-be-replaced')).toBe(false)
  })
})

describe('all checks together (the --check-only run bundle.sh does first)', () => {
  it('stops at the EFI refusal before looking further', () => {
    const { run } = check('trusty-efi', [])
    const out = run()
    expect(out.status).toBe(4)
    expect(results(out.stdout).cmdline_matches_menu_lst).toBeUndefined()
  })

  it('reports every check of a good machine', () => {
    const { run } = check('precise-pv', [])
    const out = run()
    expect(out.status).toBe(0)
    expect(Object.keys(results(out.stdout))).toEqual(
      expect.arrayContaining(['efi_partition', 'cmdline_matches_menu_lst', 'bundle_destination'])
    )
  })
})
