// Reading a boot from its serial console: the signs of a boot that did not come up, each named,
// and the tail shown in the job summary. Pure functions, so the patterns are tested on real lines.

/** Lines that mean the system did not come up, with what each means, most telling first. */
const BOOT_FAILURES: [pattern: RegExp, meaning: string][] = [
  [/Kernel panic - not syncing/, 'kernel panic'],
  [/VFS: Unable to mount root fs/, 'the kernel could not mount the root filesystem'],
  [/Gave up waiting for root (?:file system )?device/, 'the initramfs never saw the root device'],
  [/ALERT! .* does not exist\. +Dropping to a shell/, 'the initramfs never saw the root device'],
  [/Cannot open root device/, 'the kernel could not open the root device'],
  [/Give root password for maintenance/, 'the boot stopped at a maintenance prompt'],
  [/\bemergency mode\b/i, 'the boot dropped to emergency mode'],
  // Not "Dependency failed for /mnt": with nofail systemd prints that too and boots on.
  [/Dependency failed for Local File Systems/, 'a filesystem in /etc/fstab could not be mounted'],
  // Ubuntu 12.04/14.04 mountall, waiting for an fstab device such as a missing instance store.
  [/The disk drive for .* is not ready yet or not present/, 'a device in /etc/fstab is missing'],
  [/UNEXPECTED INCONSISTENCY; RUN fsck MANUALLY/, 'fsck stopped the boot'],
  [/\bgrub rescue>/, 'GRUB could not find its files'],
  // pv-grub (GRUB legacy) errors, e.g. "Error 15: File not found" for a menu.lst kernel line.
  [/^\s*Error \d+: /, 'pv-grub could not load the kernel'],
  [/No bootable device/, 'the firmware found nothing to boot']
]

export interface BootFailureSign {
  line: string
  meaning: string
}

/** The console line that best shows a failed boot (a panic before its causes), if any. */
export function findBootFailure(consoleText: string): BootFailureSign | undefined {
  const lines = consoleLines(consoleText)
  for (const [pattern, meaning] of BOOT_FAILURES)
    for (const line of lines) if (pattern.test(line)) return { line: line.trim().slice(0, 300), meaning }
  return undefined
}

/** Console text as lines: CR LF and bare CR (progress redraws) split, terminal escapes removed. */
export function consoleLines(consoleText: string): string[] {
  return (
    consoleText
      // biome-ignore lint/suspicious/noControlCharactersInRegex: terminal escape sequences on a serial console
      .replace(/\u001b\[[0-9;?]*[A-Za-z]/g, '')
      .split(/\r\n|\r|\n/)
  )
}

/** The last `count` non-empty lines, for the job summary. */
export function consoleTail(consoleText: string, count = 30): string[] {
  return consoleLines(consoleText)
    .filter((l) => l.trim() !== '')
    .slice(-count)
}

/** GetConsoleOutput's Output: "The console output, base64-encoded." (EC2 API reference). */
export const decodeConsole = (output: string | undefined): string =>
  output ? Buffer.from(output, 'base64').toString('utf8') : ''
