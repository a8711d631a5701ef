// The bundle, decoded on the runner in one pass: parts in manifest order (a few read ahead, each
// checked against its SHA-1 before a byte of it is used), AES-128-CBC decryption, gunzip, the
// SHA-1 of the whole tar stream, the sparse image member cut into 512 KiB snapshot blocks.
// Back-pressure all the way: nothing is read faster than the consumer takes blocks.
import { createDecipheriv, createHash } from 'node:crypto'
import { Readable } from 'node:stream'
import { createGunzip } from 'node:zlib'
import type { BundleSecrets } from '../../aws/bundle-crypto.js'
import { type ImageSegment, readTarImage, type TarImageInfo } from './sparse-tar.js'

/** EBS direct APIs: "The block size is 524288 bytes (512 KiB)" (PutSnapshotBlock, BlockData). */
export const EBS_BLOCK = 512 * 1024

export interface ImageBlock {
  index: number
  data: Buffer
}

export interface DecodeStats {
  /** Blocks of the image (its size rounded up to whole blocks). */
  blocks: number
  /** Blocks with data, handed on. */
  dataBlocks: number
  /** Blocks the bundle stored but that hold only zeros (not handed on). */
  zeroBlocks: number
  /** Bytes of the tar stream, and its SHA-1 once read to the end. */
  tarBytes: number
  tarSha1?: string
  image?: TarImageInfo
}

const isZero = (b: Buffer): boolean => {
  // Compare 8 bytes at a time where aligned: this runs over every stored byte of the image.
  const words = Math.floor(b.length / 8)
  const view = new BigUint64Array(b.buffer, b.byteOffset, b.byteOffset % 8 === 0 ? words : 0)
  for (let i = 0; i < view.length; i++) if (view[i] !== 0n) return false
  for (let i = view.length * 8; i < b.length; i++) if (b[i] !== 0) return false
  return true
}

/**
 * Where blocks' memory comes from: `take` gives EBS_BLOCK bytes of any content (cutBlocks zeroes
 * them), `give` takes back a block no longer used (decode-thread.ts recycles the blocks the uploads are done with:
 * a fresh 512 KiB allocation per block is external memory that makes V8 run full garbage
 * collections, tens of them per GiB, on a heap the AWS SDK makes large).
 */
export interface BlockMemory {
  take: () => Buffer
  give: (block: Buffer) => void
}

// Unpooled, so that each block is a whole ArrayBuffer that can move to another thread.
const freshBlocks: BlockMemory = { take: () => Buffer.allocUnsafeSlow(EBS_BLOCK), give: () => undefined }

/** Cuts segments into whole blocks; blocks no segment touches (holes) and all-zero blocks are left out. */
export async function* cutBlocks(
  segments: AsyncGenerator<ImageSegment, TarImageInfo>,
  stats: DecodeStats,
  memory: BlockMemory = freshBlocks
): AsyncGenerator<ImageBlock, TarImageInfo> {
  let current: { index: number; data: Buffer } | undefined
  const flush = function* (): Generator<ImageBlock> {
    if (!current) return
    if (isZero(current.data)) {
      stats.zeroBlocks++
      memory.give(current.data)
    } else {
      stats.dataBlocks++
      yield current
    }
    current = undefined
  }
  for (;;) {
    const next = await segments.next()
    if (next.done) {
      yield* flush()
      stats.blocks = Math.ceil(next.value.size / EBS_BLOCK)
      return next.value
    }
    let { offset, data } = next.value
    while (data.length > 0) {
      const index = Math.floor(offset / EBS_BLOCK)
      if (current && current.index !== index) yield* flush()
      // Zeroed: what no segment covers is a hole, and recycled memory still holds an earlier block.
      current ??= { index, data: memory.take().fill(0) }
      const within = offset - index * EBS_BLOCK
      const n = Math.min(data.length, EBS_BLOCK - within)
      data.copy(current.data, within, 0, n)
      offset += n
      data = data.subarray(n)
    }
  }
}

export class BundleIntegrityError extends Error {
  override name = 'BundleIntegrityError'
}

export interface DecodeOptions {
  secrets: BundleSecrets
  key: Buffer
  iv: Buffer
  /** The bytes of one part, by file name. */
  readPart: (name: string) => Promise<Uint8Array>
  /** Parts fetched ahead of the one being decoded (each is up to 10 MB in memory). */
  readAhead?: number
  stats: DecodeStats
  /** Blocks' memory (fresh allocations when not given). */
  memory?: BlockMemory
}

/** The parts in order, each verified; up to readAhead downloads in flight. */
async function* verifiedParts(options: DecodeOptions): AsyncGenerator<Buffer> {
  const { parts } = options.secrets
  const ahead = Math.max(1, options.readAhead ?? 4)
  const pending: Promise<Uint8Array>[] = []
  let next = 0
  const fetchMore = (): void => {
    while (pending.length < ahead && next < parts.length) {
      const p = options.readPart((parts[next] as { name: string }).name)
      p.catch(() => undefined) // reported when its turn comes
      pending.push(p)
      next++
    }
  }
  for (const part of parts) {
    fetchMore()
    const bytes = Buffer.from(await (pending.shift() as Promise<Uint8Array>))
    const sha1 = createHash('sha1').update(bytes).digest('hex')
    if (sha1 !== part.sha1)
      throw new BundleIntegrityError(
        `part ${part.name} digest mismatch (SHA-1 ${sha1}, the manifest says ${part.sha1}): the part is corrupt, truncated or from another bundle; upload it again`
      )
    yield bytes
  }
}

/** Decrypts and gunzips; wraps the stages' errors into one-line reasons. */
async function* tarStream(options: DecodeOptions): AsyncGenerator<Buffer> {
  const decipher = createDecipheriv('aes-128-cbc', options.key, options.iv)
  const gunzip = createGunzip()
  const encrypted = Readable.from(verifiedParts(options), { objectMode: false })
  let stage = 'decryption'
  decipher.on('error', () => undefined)
  encrypted.on('error', (err) => gunzip.destroy(err))
  decipher.on('error', (err) => gunzip.destroy(err))
  encrypted.pipe(decipher)
  decipher.on('data', () => {
    stage = 'gunzip'
  })
  decipher.pipe(gunzip)
  const hash = createHash('sha1')
  try {
    for await (const chunk of gunzip as AsyncIterable<Buffer>) {
      hash.update(chunk)
      options.stats.tarBytes += chunk.length
      yield chunk
    }
  } catch (err) {
    if (err instanceof BundleIntegrityError) throw err
    const message = (err as Error).message
    if (/bad decrypt|wrong final block length/i.test(message))
      throw new BundleIntegrityError(
        `decryption failed (${message}): the parts do not form the complete encrypted bundle`
      )
    throw new BundleIntegrityError(
      stage === 'gunzip' || /header|gzip|unexpected end|incorrect/i.test(message)
        ? `gunzip failed (${message}): the decrypted bundle is not a complete gzip stream`
        : `reading the bundle failed: ${message}`
    )
  } finally {
    encrypted.destroy()
  }
  options.stats.tarSha1 = hash.digest('hex')
}

/**
 * The image's non-zero blocks, in order. Throws (after the last block, at the latest) unless the
 * tar stream's SHA-1 equals the manifest's digest and the image has the manifest's size: the
 * caller must not complete anything before this generator has returned.
 */
export async function* decodeBundle(options: DecodeOptions): AsyncGenerator<ImageBlock, TarImageInfo> {
  const { secrets, stats } = options
  const image = yield* cutBlocks(readTarImage(tarStream(options), secrets.imageName), stats, options.memory)
  stats.image = image
  if (stats.tarSha1 !== secrets.digest)
    throw new BundleIntegrityError(
      `the decrypted tar stream's SHA-1 ${stats.tarSha1} differs from the manifest's image digest ${secrets.digest}: the bundle is corrupt; bundle the image again`
    )
  if (image.size !== secrets.imageBytes)
    throw new BundleIntegrityError(
      `the manifest's image size ${secrets.imageBytes} differs from the image in the bundle (${image.size} bytes): the manifest does not belong to these parts`
    )
  return image
}

export const newDecodeStats = (): DecodeStats => ({ blocks: 0, dataBlocks: 0, zeroBlocks: 0, tarBytes: 0 })
