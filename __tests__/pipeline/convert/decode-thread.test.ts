// The decoder on its worker thread (what runner-write.ts uses) against the in-thread decoder on the
// real fixtures: the same blocks, the same stats, each block's SHA-256 computed on the worker; the
// same error, of the same kind, for a damaged part; a worker that dies (out of memory) ends the
// stream with an error instead of hanging or ending it as if the image were complete.
import { createHash } from 'node:crypto'
import { describe, expect, it } from '@jest/globals'
import { readBundleSecrets, unwrapBundleKey } from '../../../src/aws/bundle-crypto.js'
import {
  BundleIntegrityError,
  decodeBundle,
  newDecodeStats
} from '../../../src/pipeline/convert/bundle-decode.js'
import {
  BLOCK_WINDOW,
  decodeBundleOffThread,
  runningDecodeWorkers,
  type ThreadDecodeOptions
} from '../../../src/pipeline/convert/decode-thread.js'
import { realBundle } from '../../__fixtures__/real-bundles.js'

const b = realBundle('hvm-mbr')

function options(change: Partial<ThreadDecodeOptions> = {}): ThreadDecodeOptions {
  const secrets = readBundleSecrets(b.manifest)
  const { key, iv } = unwrapBundleKey(secrets, b.key)
  return {
    secrets,
    key,
    iv,
    stats: newDecodeStats(),
    readAhead: 2,
    readPart: async (f) => b.part(f),
    ...change
  }
}

const sha = (data: Buffer): string => createHash('sha256').update(data).digest('hex')

describe('the decoder on a worker thread', () => {
  it('yields the blocks the in-thread decoder yields, with their SHA-256, and the same stats', async () => {
    const here = options()
    const expected: { index: number; sha256: string }[] = []
    for await (const block of decodeBundle(here))
      expected.push({ index: block.index, sha256: sha(block.data) })
    expect(expected.length).toBeGreaterThan(BLOCK_WINDOW) // the window is exercised

    const there = options({ digests: true })
    const got: { index: number; sha256: string }[] = []
    const stream = decodeBundleOffThread(there)
    for (;;) {
      const next = await stream.next()
      if (next.done) {
        expect(next.value.size).toBe(Number(b.facts.image_size_bytes))
        break
      }
      const block = next.value
      expect(block.data.length).toBe(524288)
      expect(block.sha256?.toString('hex')).toBe(sha(block.data))
      got.push({ index: block.index, sha256: sha(block.data) })
    }
    expect(got).toEqual(expected)
    expect(there.stats).toEqual(here.stats)
    expect(there.stats.tarSha1).toBe(b.facts.manifest_image_digest_sha1)
  })

  it('fills released blocks again with later ones: the same blocks, and a released block is moved away', async () => {
    const expected: string[] = []
    for await (const block of decodeBundle(options())) expected.push(`${block.index}:${sha(block.data)}`)
    const got: string[] = []
    for await (const block of decodeBundleOffThread(options({ digests: true }))) {
      got.push(`${block.index}:${sha(block.data)}`)
      block.release()
      expect(block.data.length).toBe(0) // detached: its memory is the decoder's again
      block.release() // a second release is harmless
    }
    // (That recycled memory is zeroed before use is shown by bundle-decode.test.ts.)
    expect(got).toEqual(expected)
  })

  it('throws the in-thread error, of the same kind, for a corrupt part', async () => {
    const damaged = (f: string): Buffer => {
      const bytes = Buffer.from(b.part(f))
      if (f.endsWith('.part.1')) bytes[100] = (bytes[100] as number) ^ 1
      return bytes
    }
    const inThread = decodeBundle(options({ readPart: async (f) => damaged(f) }))
    const here = await (async () => {
      for await (const _ of inThread);
    })().catch((e: Error) => e)
    const offThread = decodeBundleOffThread(options({ readPart: async (f) => damaged(f) }))
    const there = await (async () => {
      for await (const _ of offThread);
    })().catch((e: Error) => e)
    expect(here).toBeInstanceOf(BundleIntegrityError)
    expect(there).toBeInstanceOf(BundleIntegrityError)
    expect((there as Error).message).toBe((here as Error).message)
  })

  it('passes a failed part read on as the stream error', async () => {
    const stream = decodeBundleOffThread(
      options({
        readPart: async () => {
          throw new Error('Could not read s3://b/k (AccessDenied)')
        }
      })
    )
    await expect(
      (async () => {
        for await (const _ of stream);
      })()
    ).rejects.toThrow(/AccessDenied/)
  })

  it('ends with an error when the worker dies mid-stream, never as a complete image', async () => {
    const o = options()
    const stream = decodeBundleOffThread(o)
    const first = await stream.next()
    expect(first.done).toBe(false)
    expect(runningDecodeWorkers.size).toBe(1)
    for (const worker of runningDecodeWorkers) await worker.terminate()
    await expect(
      (async () => {
        for (;;) if ((await stream.next()).done) return 'complete'
      })()
    ).rejects.toThrow(/bundle decoder's worker thread stopped \(exit code 1\) before the end of the image/)
    expect(o.stats.tarSha1).toBeUndefined()
    expect(runningDecodeWorkers.size).toBe(0)
  })
})
