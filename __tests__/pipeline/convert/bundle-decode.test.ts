// The runner's decoder on the real ec2-bundle-image fixtures: the key unwrapped and the signature
// checked in Node, the image rebuilt from its non-zero 512 KiB blocks equal to the image the
// bundle was made from; and each kind of damage refused before anything could be completed.
import { createHash, generateKeyPairSync, sign } from 'node:crypto'
import { describe, expect, it } from '@jest/globals'
import {
  BundleKeyError,
  readBundleSecrets,
  unwrapBundleKey,
  verifyManifestSignature
} from '../../../src/aws/bundle-crypto.js'
import {
  type BlockMemory,
  BundleIntegrityError,
  type DecodeStats,
  decodeBundle,
  EBS_BLOCK,
  newDecodeStats
} from '../../../src/pipeline/convert/bundle-decode.js'
import { realBundle, realBundleNames } from '../../__fixtures__/real-bundles.js'

/** Decodes a bundle; returns the SHA-256 of the image rebuilt from the blocks, and the stats. */
async function decode(
  name: string,
  change: {
    manifest?: (xml: string) => string
    part?: (file: string, bytes: Buffer) => Buffer
    memory?: BlockMemory
  } = {}
): Promise<{ sha256: string; stats: DecodeStats }> {
  const b = realBundle(name)
  const secrets = readBundleSecrets(change.manifest ? change.manifest(b.manifest) : b.manifest)
  const { key, iv } = unwrapBundleKey(secrets, b.key)
  const stats = newDecodeStats()
  const hash = createHash('sha256')
  const zero = Buffer.alloc(EBS_BLOCK)
  let next = 0
  for await (const block of decodeBundle({
    secrets,
    key,
    iv,
    stats,
    readAhead: 2,
    memory: change.memory,
    readPart: async (file) => (change.part ? change.part(file, b.part(file)) : b.part(file))
  })) {
    expect(block.index).toBeGreaterThanOrEqual(next)
    for (; next < block.index; next++) hash.update(zero)
    hash.update(block.data)
    next++
  }
  const size = secrets.imageBytes
  for (; next * EBS_BLOCK < size; next++)
    hash.update(zero.subarray(0, Math.min(EBS_BLOCK, size - next * EBS_BLOCK)))
  return { sha256: hash.digest('hex'), stats }
}

describe.each(realBundleNames())('the %s fixture on the runner', (name) => {
  const b = realBundle(name)

  it('rebuilds the image byte for byte from its non-zero blocks; the tar digest matches', async () => {
    const { sha256, stats } = await decode(name)
    expect(sha256).toBe(b.facts.image_sha256)
    expect(stats.tarSha1).toBe(b.facts.manifest_image_digest_sha1)
    expect(stats.tarBytes).toBe(Number(b.facts.tar_stream_size_bytes))
    expect(stats.blocks).toBe(Math.ceil(Number(b.facts.image_size_bytes) / EBS_BLOCK))
    expect(stats.dataBlocks).toBeGreaterThan(0)
    expect(stats.dataBlocks + stats.zeroBlocks).toBeLessThan(stats.blocks) // holes never reach the cutter
  })

  it('rebuilds the same image in memory that held other bytes (recycled blocks are zeroed first)', async () => {
    let given = 0
    const dirty: BlockMemory = {
      take: () => Buffer.alloc(EBS_BLOCK, 0xa5),
      give: () => {
        given++
      }
    }
    const { sha256, stats } = await decode(name, { memory: dirty })
    expect(sha256).toBe(b.facts.image_sha256)
    expect(given).toBe(stats.zeroBlocks) // all-zero blocks go straight back
  })

  it('checks the signature with the certificate and with the private key', () => {
    const secrets = readBundleSecrets(b.manifest)
    expect(() => verifyManifestSignature(secrets, { certificatePem: b.cert })).not.toThrow()
    expect(() => verifyManifestSignature(secrets, { privateKeyPem: b.key })).not.toThrow()
    const changed = readBundleSecrets(b.manifest.replace(/<size>(\d+)<\/size>/, '<size>1$1</size>'))
    expect(() => verifyManifestSignature(changed, { certificatePem: b.cert })).toThrow(/signature mismatch/)
  })

  it('refuses a wrong private key although RSA decryption itself does not fail', () => {
    const secrets = readBundleSecrets(b.manifest)
    const other = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({
      type: 'pkcs8',
      format: 'pem'
    }) as string
    expect(() => unwrapBundleKey(secrets, other)).toThrow(BundleKeyError)
    expect(() => unwrapBundleKey(secrets, other)).toThrow(/wrong private key/)
    expect(() => unwrapBundleKey(secrets, 'not a key')).toThrow(/not a PEM RSA private key/)
    // A manifest signed by another key fails the signature check with the bundle's certificate.
    const resigned = b.manifest.replace(
      /<signature>[0-9a-f]+<\/signature>/,
      `<signature>${sign('sha1', Buffer.from(secrets.signedText), other).toString('hex')}</signature>`
    )
    expect(() => verifyManifestSignature(readBundleSecrets(resigned), { certificatePem: b.cert })).toThrow(
      /signature mismatch/
    )
  })

  it('refuses a corrupt part before decoding it', async () => {
    const corrupt = (file: string, bytes: Buffer): Buffer => {
      if (file !== 'image.part.0') return bytes
      const copy = Buffer.from(bytes)
      copy[1000] = (copy[1000] as number) ^ 1
      return copy
    }
    await expect(decode(name, { part: corrupt })).rejects.toThrow(/part image.part.0 digest mismatch/)
  })

  it('refuses a wrong image digest and a wrong size only after the last block', async () => {
    await expect(
      decode(name, {
        manifest: (xml) => xml.replace(/(<image>[\s\S]*?<digest[^>]*>)[0-9a-f]{40}/, `$1${'0'.repeat(40)}`)
      })
    ).rejects.toThrow(/differs from the manifest's image digest/)
    await expect(
      decode(name, { manifest: (xml) => xml.replace(/<size>(\d+)<\/size>/, '<size>1$1</size>') })
    ).rejects.toThrow(BundleIntegrityError)
  })

  it('refuses parts that decrypt with the wrong key material', async () => {
    // Parts consistent with their own digests, but not the bundle's ciphertext: decryption or gunzip fails.
    const swapped = (_file: string, bytes: Buffer): Buffer => Buffer.from(bytes).reverse()
    const manifestFor = (xml: string): string =>
      xml.replace(
        /<part index='(\d+)'><filename>([^<]+)<\/filename><digest algorithm='SHA1'>[0-9a-f]{40}/g,
        (_m, i, f) => {
          const d = createHash('sha1')
            .update(Buffer.from(b.part(f)).reverse())
            .digest('hex')
          return `<part index='${i}'><filename>${f}</filename><digest algorithm='SHA1'>${d}`
        }
      )
    await expect(decode(name, { manifest: manifestFor, part: swapped })).rejects.toThrow(
      /decryption failed|gunzip failed/
    )
  })
})
