// The benchmark's bundler (bench/make-bundle.sh) must write what ec2-bundle-image writes, or
// the benchmark measures something else: same manifest structure as the real fixtures, a
// GNU sparse tar member, and a bundle that convert.sh rebuilds exactly.
import { spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals'
import { bundleNames, bundlesDir, runConvert, type Scratch, scratch, sha256File } from './convert-harness.js'

const makeBundle = fileURLToPath(new URL('../../bench/make-bundle.sh', import.meta.url))

/** The manifest with every text and attribute value emptied and the part list cut to one. */
function skeleton(xml: string): string {
  return xml
    .replace(/>[^<]+</g, '><')
    .replace(/='[^']*'/g, "=''")
    .replace(/(<part index=''>.*?<\/part>)+/, '$1')
}

let tmp: Scratch
let facts: Record<string, string>
let bundle: string

beforeAll(() => {
  tmp = scratch('i2e-bench-bundler-')
  const made = spawnSync('bash', [makeBundle, tmp.dir, '64'], { encoding: 'utf8' })
  if (made.status !== 0) throw new Error(`make-bundle.sh failed: ${made.stderr}`)
  bundle = join(tmp.dir, 'bundle')
  facts = Object.fromEntries(
    readFileSync(join(tmp.dir, 'facts.env'), 'utf8')
      .trim()
      .split('\n')
      .map((line) => line.split('=') as [string, string])
  )
}, 60_000)
afterAll(() => tmp.cleanup())

describe('bench/make-bundle.sh', () => {
  it('writes a manifest shaped exactly like the ec2-bundle-image fixtures', () => {
    const ours = readFileSync(join(bundle, 'image.manifest.xml'), 'utf8')
    expect(ours.endsWith('</manifest>')).toBe(true)
    expect(ours).not.toMatch(/\n/)
    // The reference: the real bundles made by ec2-bundle-image, kept in fixtures/bundles.
    expect(bundleNames()).toEqual(expect.arrayContaining(['hvm-mbr', 'small-pv']))
    for (const name of bundleNames()) {
      const theirs = readFileSync(join(bundlesDir, name, 'image.manifest.xml'), 'utf8')
      expect(skeleton(ours)).toBe(skeleton(theirs))
    }
    expect(Number(facts.parts)).toBeGreaterThan(1)
    expect(ours).toContain(`<parts count='${facts.parts}'>`)
  })

  it('stores the image as a GNU old-style sparse member with extension headers', () => {
    const xml = readFileSync(join(bundle, 'image.manifest.xml'), 'utf8')
    const hex = (tag: string) => new RegExp(`<${tag}[^>]*>([0-9a-f]+)<`).exec(xml)?.[1] ?? ''
    const decrypt = (field: string) =>
      spawnSync('openssl', ['pkeyutl', '-decrypt', '-inkey', join(bundle, 'key.pem')], {
        input: Buffer.from(hex(field), 'hex')
      }).stdout.toString()
    const key = decrypt('user_encrypted_key')
    expect(key).toMatch(/^[0-9a-f]{32}$/)
    const parts = [...xml.matchAll(/<filename>([^<]+)</g)].map((m) => join(bundle, m[1] as string))
    const header = spawnSync(
      'bash',
      [
        '-c',
        'cat "$@" | openssl enc -d -aes-128-cbc -K "$KEY" -iv "$IV" 2>/dev/null | gzip -dc 2>/dev/null | head -c 512',
        'x',
        ...parts
      ],
      { env: { PATH: process.env.PATH, KEY: key, IV: decrypt('user_encrypted_iv') } }
    ).stdout
    expect(header.subarray(0, 6).toString()).toBe('image\0')
    expect(String.fromCharCode(header[156] as number)).toBe('S') // GNU sparse
    expect(header.subarray(257, 265).toString()).toBe('ustar  \0') // GNU magic
    expect(header[482]).toBe(1) // isextended: the sparse map continues
  })

  it('makes a bundle that convert.sh rebuilds byte for byte, writing only the data', () => {
    const target = join(tmp.dir, 'image.img')
    const run = runConvert(
      [
        '--manifest',
        join(bundle, 'image.manifest.xml'),
        '--key',
        join(bundle, 'key.pem'),
        '--target',
        target
      ],
      { I2E_SHM_DIR: tmp.shm }
    )
    expect(run.fails).toEqual([])
    expect(sha256File(target)).toBe(facts.image_sha256)
    expect(Number(run.results.image_bytes)).toBe(Number(facts.image_bytes))
    const written = Number(run.results.bytes_written)
    expect(written).toBeGreaterThanOrEqual(Number(facts.nonzero_bytes))
    expect(written).toBeLessThanOrEqual(Number(facts.nonzero_bytes) * 1.01)
  })
})
