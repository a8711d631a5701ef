// Reads the disk image out of the tar stream ec2-bundle-image writes (`tar -S`): one member,
// usually an old-GNU sparse file (typeflag 'S', magic "ustar  "), whose header carries the first
// four (offset, length) pairs of its map, continued in extended sparse headers of 21 pairs each;
// the member's data is the mapped runs, back to back; everything else of the image is a hole.
// No npm tar library understands that member, hence this reader. Layout: GNU tar manual,
// "Old GNU Format" and "Sparse Files" (struct oldgnu_header, struct sparse, struct
// sparse_header in tar.h); numbers are octal or, when the first byte has its top bit set,
// base-256 big-endian (GNU tar writes sizes past 8 GiB that way).

export const TAR_BLOCK = 512

/** A run of image bytes at an offset; everything not covered by a segment is zeros. */
export interface ImageSegment {
  offset: number
  data: Buffer
}

export interface TarImageInfo {
  name: string
  /** The image's full size (the sparse member's realsize). */
  size: number
  sparse: boolean
  /** Bytes the member really stores (the mapped runs). */
  storedBytes: number
}

export class TarFormatError extends Error {
  override name = 'TarFormatError'
}

/** A tar number field: octal text, or base-256 when the first byte's top bit is set. */
export function tarNumber(field: Buffer): number {
  if (field.length > 0 && ((field[0] as number) & 0x80) !== 0) {
    if (((field[0] as number) & 0x40) !== 0)
      throw new TarFormatError('negative base-256 number in a tar header')
    let n = (field[0] as number) & 0x3f
    for (let i = 1; i < field.length; i++) n = n * 256 + (field[i] as number)
    if (!Number.isSafeInteger(n)) throw new TarFormatError('tar header number too large')
    return n
  }
  const text = field.toString('latin1').replace(/\0.*$/s, '').trim()
  if (text === '') return 0
  if (!/^[0-7]+$/.test(text)) throw new TarFormatError(`bad octal number '${text}' in a tar header`)
  return Number.parseInt(text, 8)
}

const cString = (b: Buffer): string => {
  const end = b.indexOf(0)
  return b.subarray(0, end < 0 ? b.length : end).toString('utf8')
}

function checkHeader(h: Buffer): void {
  const stored = tarNumber(h.subarray(148, 156))
  let sum = 0
  for (let i = 0; i < TAR_BLOCK; i++) sum += i >= 148 && i < 156 ? 32 : (h[i] as number)
  if (sum !== stored)
    throw new TarFormatError('tar header checksum mismatch: the stream is not a tar archive or is damaged')
}

/** Pairs of (offset, numbytes), 24 bytes each; an all-zero pair ends the list. */
function sparsePairs(b: Buffer, count: number): { offset: number; length: number }[] {
  const pairs: { offset: number; length: number }[] = []
  for (let i = 0; i < count; i++) {
    const at = i * 24
    if ((b[at] as number) === 0) break
    pairs.push({
      offset: tarNumber(b.subarray(at, at + 12)),
      length: tarNumber(b.subarray(at + 12, at + 24))
    })
  }
  return pairs
}

/** Pulls exact byte counts out of a chunked stream. */
class ByteReader {
  private chunks: Buffer[] = []
  private have = 0
  private done = false
  constructor(private readonly source: AsyncIterator<Buffer>) {}

  private async fill(n: number): Promise<boolean> {
    while (this.have < n && !this.done) {
      const next = await this.source.next()
      if (next.done) this.done = true
      else if (next.value.length > 0) {
        this.chunks.push(next.value)
        this.have += next.value.length
      }
    }
    return this.have >= n
  }

  /** Exactly n bytes, or undefined at a clean end of stream (no bytes left). */
  async exact(n: number): Promise<Buffer | undefined> {
    if (!(await this.fill(n))) {
      if (this.have === 0) return undefined
      throw new TarFormatError(`the tar stream ends in the middle of a record (${this.have} of ${n} bytes)`)
    }
    return this.take(n)
  }

  /** Up to max bytes (at least one), for streaming a member's data. */
  async some(max: number): Promise<Buffer> {
    if (!(await this.fill(1))) throw new TarFormatError('the tar stream ends inside the image member')
    return this.take(Math.min(max, this.have))
  }

  private take(n: number): Buffer {
    const first = this.chunks[0] as Buffer
    let out: Buffer
    if (first.length >= n) {
      out = first.subarray(0, n)
      if (first.length === n) this.chunks.shift()
      else this.chunks[0] = first.subarray(n)
    } else {
      out = Buffer.allocUnsafe(n)
      let at = 0
      while (at < n) {
        const c = this.chunks[0] as Buffer
        const k = Math.min(c.length, n - at)
        c.copy(out, at, 0, k)
        at += k
        if (k === c.length) this.chunks.shift()
        else this.chunks[0] = c.subarray(k)
      }
    }
    this.have -= n
    return out
  }

  async skip(n: number): Promise<void> {
    let left = n
    while (left > 0) left -= (await this.some(left)).length
  }

  /** Reads to the end (what follows the member still counts for the stream digest). */
  async drain(): Promise<void> {
    while (await this.fill(this.have + 1)) this.take(this.have)
    this.chunks = []
    this.have = 0
  }
}

const padded = (n: number): number => Math.ceil(n / TAR_BLOCK) * TAR_BLOCK

/**
 * Yields the named image member's data as segments in increasing offset order (holes omitted)
 * and returns its size. Reads the stream to its end. The image is the member called `name`
 * (the manifest's image name); other regular members are skipped.
 */
export async function* readTarImage(
  source: AsyncIterable<Buffer>,
  name: string,
  maxChunk = 1024 * 1024
): AsyncGenerator<ImageSegment, TarImageInfo> {
  const reader = new ByteReader(source[Symbol.asyncIterator]())
  let longName: string | undefined
  let found: TarImageInfo | undefined
  for (;;) {
    const header = await reader.exact(TAR_BLOCK)
    if (header === undefined || header.every((b) => b === 0)) break
    checkHeader(header)
    const type = String.fromCharCode(header[156] as number)
    const size = tarNumber(header.subarray(124, 136))
    const magic = header.subarray(257, 265).toString('latin1')
    if (type === 'L') {
      longName = cString((await reader.exact(padded(size))) as Buffer).slice(0, size)
      continue
    }
    const memberName = longName ?? cString(header.subarray(0, 100))
    longName = undefined
    const isImage = memberName === name || memberName === `./${name}`
    if (type === 'S') {
      if (magic !== 'ustar  \0') throw new TarFormatError('a sparse member without the old GNU magic')
      let map = sparsePairs(header.subarray(386, 482), 4)
      let extended = (header[482] as number) !== 0
      const realSize = tarNumber(header.subarray(483, 495))
      while (extended) {
        const ext = (await reader.exact(TAR_BLOCK)) as Buffer | undefined
        if (!ext) throw new TarFormatError('the tar stream ends inside a sparse map')
        map = map.concat(sparsePairs(ext, 21))
        extended = (ext[504] as number) !== 0
      }
      const stored = map.reduce((n, p) => n + p.length, 0)
      if (stored !== size)
        throw new TarFormatError(`sparse member '${memberName}' maps ${stored} bytes but stores ${size}`)
      let end = 0
      for (const p of map) {
        if (p.offset < end || p.offset + p.length > realSize)
          throw new TarFormatError(`sparse member '${memberName}' has an unordered or oversized map`)
        end = p.offset + p.length
      }
      if (!isImage || found) {
        await reader.skip(padded(size))
        continue
      }
      for (const p of map) {
        let at = 0
        while (at < p.length) {
          const data = await reader.some(Math.min(maxChunk, p.length - at))
          yield { offset: p.offset + at, data }
          at += data.length
        }
      }
      await reader.skip(padded(size) - size)
      found = { name: memberName, size: realSize, sparse: true, storedBytes: size }
    } else if ((type === '0' || type === '\0') && isImage && !found) {
      let at = 0
      while (at < size) {
        const data = await reader.some(Math.min(maxChunk, size - at))
        yield { offset: at, data }
        at += data.length
      }
      await reader.skip(padded(size) - size)
      found = { name: memberName, size, sparse: false, storedBytes: size }
    } else {
      await reader.skip(padded(size))
    }
  }
  await reader.drain()
  if (!found) throw new TarFormatError(`the tar stream holds no member '${name}'`)
  return found
}

// Why readTarImage is longer than 60 lines: it is one streaming state machine over the tar
// headers (GNU old-style sparse maps included); split, its state would travel between functions.
