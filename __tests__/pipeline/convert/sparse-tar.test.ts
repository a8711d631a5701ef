// The old-GNU sparse tar reader against GNU tar itself: generated sparse files (holes at the
// start, at the end, none, many runs for extended sparse headers, a size past 8 GiB for base-256
// numbers) archived with `tar -S` and read back, compared with what `tar -xO` extracts; and the
// real ec2-bundle-image fixtures decoded on the runner to the image they were made from.
import { spawnSync } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { createReadStream, mkdtempSync, openSync, readFileSync, rmSync, closeSync, writeSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals'
import { readTarImage, TarFormatError, tarNumber } from '../../../src/pipeline/convert/sparse-tar.js'

let dir: string
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'i2e-sparse-tar-'))
})
afterAll(() => rmSync(dir, { recursive: true, force: true }))

const run = (cmd: string, args: string[], cwd = dir): Buffer => {
  const out = spawnSync(cmd, args, { cwd, maxBuffer: 256 * 1024 * 1024 })
  if (out.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${out.stderr}`)
  return out.stdout
}

/** A sparse file of `size` bytes with random data at the given [offset, length] runs. */
function sparseFile(name: string, size: number, runs: [number, number][]): string {
  const path = join(dir, name)
  const fd = openSync(path, 'w')
  try {
    for (const [offset, length] of runs) writeSync(fd, randomBytes(length), 0, length, offset)
  } finally {
    closeSync(fd)
  }
  run('truncate', ['-s', String(size), path])
  return path
}

interface Read {
  sha256: string
  size: number
  stored: number
  sparse: boolean
  segments: number
}

/** Reads the member with readTarImage and hashes the image it describes, holes as zeros. */
async function readBack(tarPath: string, name: string, chunk = 64 * 1024): Promise<Read> {
  const hash = createHash('sha256')
  const zeros = Buffer.alloc(1024 * 1024)
  let at = 0
  const fill = (to: number): void => {
    while (at < to) {
      const n = Math.min(zeros.length, to - at)
      hash.update(zeros.subarray(0, n))
      at += n
    }
  }
  const gen = readTarImage(createReadStream(tarPath, { highWaterMark: chunk }), name)
  let segments = 0
  for (;;) {
    const next = await gen.next()
    if (next.done) {
      fill(next.value.size)
      return {
        sha256: hash.digest('hex'),
        size: next.value.size,
        stored: next.value.storedBytes,
        sparse: next.value.sparse,
        segments
      }
    }
    segments++
    expect(next.value.offset).toBeGreaterThanOrEqual(at)
    fill(next.value.offset)
    hash.update(next.value.data)
    at += next.value.data.length
  }
}

const MiB = 1024 * 1024
const gnuExtract = (tarPath: string, name: string): string =>
  createHash('sha256')
    .update(run('tar', ['-xOf', tarPath, name]))
    .digest('hex')

describe('readTarImage against GNU tar -S', () => {
  it.each<[string, number, [number, number][]]>([
    ['a hole at the start', 8 * MiB, [[5 * MiB + 4096, 3 * MiB - 4096]]],
    ['a hole at the end', 8 * MiB, [[0, 2 * MiB + 100]]],
    ['no hole', 3 * MiB + 512, [[0, 3 * MiB + 512]]],
    ['holes at both ends and data not on a block boundary', 9 * MiB + 123, [[MiB + 7, 1000]]],
    // 30 runs: more than the 4 in the header and the 21 of one extended sparse header.
    [
      '30 runs (two extended sparse headers)',
      64 * MiB,
      Array.from({ length: 30 }, (_, i) => [i * 2 * MiB + 512 * i, 4096 + i] as [number, number])
    ]
  ])('%s: the same bytes as tar -xO', async (label, size, runs) => {
    const name = label.replace(/[^a-z0-9]+/g, '-')
    sparseFile(name, size, runs)
    run('tar', ['-S', '-cf', `${name}.tar`, name])
    const got = await readBack(join(dir, `${name}.tar`), name)
    expect(got.size).toBe(size)
    expect(got.sha256).toBe(gnuExtract(join(dir, `${name}.tar`), name))
    expect(got.sha256).toBe(
      createHash('sha256')
        .update(readFileSync(join(dir, name)))
        .digest('hex')
    )
  })

  it('reads a member written as old GNU sparse (typeflag S, magic "ustar  ") and extended headers', async () => {
    const name = 'many-runs'
    sparseFile(
      name,
      40 * MiB,
      Array.from({ length: 26 }, (_, i) => [i * MiB + 1024, 2048] as [number, number])
    )
    run('tar', ['-S', '-cf', 'many.tar', name])
    const header = readFileSync(join(dir, 'many.tar')).subarray(0, 512)
    expect(String.fromCharCode(header[156] as number)).toBe('S')
    expect(header.subarray(257, 265).toString('latin1')).toBe('ustar  \0')
    expect(header[482]).toBe(1) // isextended: the map goes on after the header
    const got = await readBack(join(dir, 'many.tar'), name, 700) // odd chunks: records split across reads
    expect(got.sparse).toBe(true)
    expect(got.stored).toBeLessThan(40 * MiB)
    expect(got.sha256).toBe(gnuExtract(join(dir, 'many.tar'), name))
  })

  it('reads a 9 GiB image (sizes past 8 GiB are base-256 in the header)', async () => {
    const name = 'big'
    sparseFile(name, 9 * 1024 * MiB, [
      [0, 4096],
      [8 * 1024 * MiB + 12345, 70000]
    ])
    run('tar', ['-S', '-cf', 'big.tar', name])
    const gen = readTarImage(createReadStream(join(dir, 'big.tar')), name)
    const segments: { offset: number; length: number }[] = []
    let next = await gen.next()
    while (!next.done) {
      segments.push({ offset: next.value.offset, length: next.value.data.length })
      next = await gen.next()
    }
    expect(next.value.size).toBe(9 * 1024 * MiB)
    const last = segments.at(-1) as { offset: number; length: number }
    expect(last.offset + last.length).toBeGreaterThanOrEqual(8 * 1024 * MiB + 12345 + 70000)
  })

  it('reads a plain (non-sparse) member too, skipping other members', async () => {
    sparseFile('other', 1000, [[0, 1000]])
    sparseFile('plain', 5000, [[0, 5000]])
    run('tar', ['-cf', 'plain.tar', 'other', 'plain'])
    const got = await readBack(join(dir, 'plain.tar'), 'plain')
    expect(got.sparse).toBe(false)
    expect(got.sha256).toBe(gnuExtract(join(dir, 'plain.tar'), 'plain'))
  })

  it('fails on a damaged header, a truncated stream, and a missing member', async () => {
    sparseFile('t', MiB, [[0, 4096]])
    run('tar', ['-S', '-cf', 't.tar', 't'])
    const tar = readFileSync(join(dir, 't.tar'))
    const drain = async (bytes: Buffer, name = 't'): Promise<void> => {
      const gen = readTarImage(
        (async function* () {
          yield bytes
        })(),
        name
      )
      while (!(await gen.next()).done) {
        /* read on */
      }
    }
    const damaged = Buffer.from(tar)
    damaged[10] = 0x41
    await expect(drain(damaged)).rejects.toThrow(/checksum mismatch/)
    await expect(drain(tar.subarray(0, 1000))).rejects.toThrow(TarFormatError)
    await expect(drain(tar, 'nothere')).rejects.toThrow(/no member 'nothere'/)
  })

  it('parses octal and base-256 numbers', () => {
    expect(tarNumber(Buffer.from('00000001750\0'))).toBe(1000)
    const b = Buffer.alloc(12)
    b[0] = 0x80
    b.writeUIntBE(9 * 1024 ** 3, 6, 6)
    expect(tarNumber(b)).toBe(9 * 1024 ** 3)
    expect(() => tarNumber(Buffer.from('12x\0'))).toThrow(/bad octal/)
  })
})
