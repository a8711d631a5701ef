// What a bundle's image is once converted with the fstab tidy, made here with the project's own
// scripts and no root: convert.sh onto a plain file (not finalized), then tidy-fstab.sh on it (the
// standalone form the runner path runs). Also the /etc/fstab files of an image, read with debugfs.
import { spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

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
