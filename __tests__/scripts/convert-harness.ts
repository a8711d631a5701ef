// Helpers for the convert.sh tests: the real bundles in fixtures/bundles (made by Amazon's
// ec2-bundle-image; see its README), their
// expected.txt facts, a runner for the real script, and tools to corrupt copies of a bundle.
import { spawnSync } from 'node:child_process'
import { createHash, sign } from 'node:crypto'
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync
} from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { testShell } from './test-shell.js'

export const script = fileURLToPath(new URL('../../src/scripts/convert.sh', import.meta.url))
export const scriptsDir = fileURLToPath(new URL('../../src/scripts/', import.meta.url))
export const bundlesDir = fileURLToPath(new URL('../../fixtures/bundles/', import.meta.url))

export type Expected = Record<string, string>

/** Every fixture bundle: the folders that hold an expected.txt. */
export function bundleNames(): string[] {
  return readdirSync(bundlesDir, { withFileTypes: true })
    .filter((entry) => entry.isDirectory() && existsSync(join(bundlesDir, entry.name, 'expected.txt')))
    .map((entry) => entry.name)
    .sort()
}

export function expected(bundle: string): Expected {
  const out: Expected = {}
  for (const line of readFileSync(join(bundlesDir, bundle, 'expected.txt'), 'utf8').split('\n')) {
    if (line.startsWith('#')) continue
    const at = line.indexOf('=')
    if (at > 0) out[line.slice(0, at)] = line.slice(at + 1)
  }
  return out
}

/** A value from expected.txt that must be there. */
export function need(facts: Expected, key: string): string {
  const value = facts[key]
  if (value === undefined) throw new Error(`expected.txt has no ${key}`)
  return value
}

export function needNumber(facts: Expected, key: string): number {
  const value = Number(need(facts, key))
  if (!Number.isSafeInteger(value)) throw new Error(`expected.txt ${key} is not a number`)
  return value
}

export interface Run {
  status: number | null
  stdout: string
  stderr: string
  results: Record<string, string>
  fails: string[]
}

export function runConvert(args: string[], env: Record<string, string> = {}, timeout = 120_000): Run {
  const result = spawnSync(testShell(), [script, ...args], {
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', LANG: 'C', ...env },
    encoding: 'utf8',
    timeout
  })
  const results: Record<string, string> = {}
  const fails: string[] = []
  for (const line of result.stdout.split('\n')) {
    const m = /^::result ([^=]+)=(.*)$/.exec(line)
    if (m?.[1]) results[m[1]] = m[2] ?? ''
    if (line.startsWith('::fail ')) fails.push(line.slice('::fail '.length))
  }
  return { status: result.status, stdout: result.stdout, stderr: result.stderr, results, fails }
}

/** The usual local arguments for a bundle folder. */
export function localArgs(dir: string, target: string, key = join(dir, 'test-key.pem')): string[] {
  return ['--manifest', join(dir, 'image.manifest.xml'), '--key', key, '--target', target]
}

export function sha256File(path: string, length?: number): string {
  const data = readFileSync(path)
  return createHash('sha256')
    .update(length === undefined ? data : data.subarray(0, length))
    .digest('hex')
}

export function sha256(data: string | Buffer): string {
  return createHash('sha256').update(data).digest('hex')
}

export interface Scratch {
  dir: string
  /** A private parent for the script's work directory (I2E_SHM_DIR), to prove it is removed. */
  shm: string
  cleanup: () => void
}

export function scratch(prefix = 'i2e-convert-test-'): Scratch {
  const dir = mkdtempSync(join(tmpdir(), prefix))
  const shm = join(dir, 'shm')
  mkdirSync(shm)
  return { dir, shm, cleanup: () => rmSync(dir, { recursive: true, force: true }) }
}

/** A writable copy of a fixture bundle. */
export function copyBundle(bundle: string, into: string): string {
  const dir = join(into, bundle)
  cpSync(join(bundlesDir, bundle), dir, { recursive: true })
  spawnSync('chmod', ['-R', 'u+w', dir])
  return dir
}

export function manifestOf(dir: string): string {
  return readFileSync(join(dir, 'image.manifest.xml'), 'utf8')
}

/**
 * Writes a manifest, re-signed with the bundle's test key the way ec2-bundle-image signs:
 * RSA-SHA1 over the exact machine_configuration element followed by the image element.
 */
export function writeSignedManifest(dir: string, xml: string): void {
  const signed = /<machine_configuration>.*<\/machine_configuration>/s.exec(xml)?.[0]
  const image = /<image>.*<\/image>/s.exec(xml)?.[0]
  if (!signed || !image) throw new Error('not a bundle manifest')
  const signature = sign(
    'sha1',
    Buffer.from(signed + image),
    readFileSync(join(dir, 'test-key.pem'))
  ).toString('hex')
  writeFileSync(
    join(dir, 'image.manifest.xml'),
    xml.replace(/<signature>[0-9a-f]*<\/signature>/, `<signature>${signature}</signature>`)
  )
}

/** A fresh RSA key that is not the bundle's. */
export function otherKey(dir: string): string {
  const path = join(dir, 'other-key.pem')
  const made = spawnSync('openssl', [
    'genpkey',
    '-algorithm',
    'RSA',
    '-pkeyopt',
    'rsa_keygen_bits:2048',
    '-out',
    path
  ])
  if (made.status !== 0) throw new Error(`openssl genpkey failed: ${made.stderr}`)
  return path
}

export function hasCommand(name: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${name}`]).status === 0
}

export function isRoot(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0
}

/** Runs a command that must succeed; returns its stdout. */
export function sh(cmd: string, args: string[], input?: string): string {
  const out = spawnSync(cmd, args, { encoding: 'utf8', input })
  if (out.status !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${out.status}): ${out.stderr}`)
  return out.stdout
}
