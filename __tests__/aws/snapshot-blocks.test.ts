// The block writer's pieces that the runner-path tests do not isolate: the LINEAR aggregate as the
// EBS reference defines it, bounded concurrency, and block bodies sent unsigned (with their own SHA-256).
import { createHash } from 'node:crypto'
import { describe, expect, it } from '@jest/globals'
import { EBSClient, StartSnapshotCommand } from '@aws-sdk/client-ebs'
import { unsignedBlockPayloads } from '../../src/aws/clients.js'
import { linearChecksum, SNAPSHOT_BLOCK_BYTES, SnapshotBlockWriter } from '../../src/aws/snapshot-blocks.js'

/** An EBS client whose HTTP handler records each request and answers 201 after `hold` resolves. */
function recordingClient(hold: () => Promise<void> = async () => {}) {
  const seen: { path: string; headers: Record<string, string> }[] = []
  let inFlight = 0
  let maxInFlight = 0
  const ebs = new EBSClient({
    region: 'us-east-1',
    endpoint: 'http://127.0.0.1:9',
    credentials: { accessKeyId: 'a', secretAccessKey: 'b' },
    requestHandler: {
      handle: async (request: { path: string; headers: Record<string, string> }) => {
        seen.push({ path: request.path, headers: { ...request.headers } })
        inFlight++
        maxInFlight = Math.max(maxInFlight, inFlight)
        await hold()
        inFlight--
        const { Readable } = await import('node:stream')
        return { response: { statusCode: 201, headers: {}, body: Readable.from([Buffer.from('{}')]) } }
      }
    } as never
  })
  unsignedBlockPayloads(ebs)
  return { ebs, seen, max: () => maxInFlight }
}

describe('snapshot block writer', () => {
  it('aggregates the raw block digests in block order (LINEAR), whatever order they finished in', () => {
    const a = createHash('sha256').update('a').digest()
    const b = createHash('sha256').update('b').digest()
    const expected = createHash('sha256')
      .update(Buffer.concat([a, b]))
      .digest('base64')
    expect(
      linearChecksum(
        new Map([
          [7, b],
          [2, a]
        ])
      )
    ).toBe(expected)
    expect(
      linearChecksum(
        new Map([
          [2, b],
          [7, a]
        ])
      )
    ).not.toBe(expected)
  })

  it('keeps at most `concurrency` blocks in flight and sends them unsigned with their SHA-256', async () => {
    const { ebs, seen, max } = recordingClient(() => new Promise((r) => setTimeout(r, 5)))
    const writer = new SnapshotBlockWriter({
      ebs,
      snapshotId: 'snap-1',
      concurrency: 3,
      signal: new AbortController().signal
    })
    const block = Buffer.alloc(SNAPSHOT_BLOCK_BYTES, 1)
    for (let i = 0; i < 10; i++) await writer.put(i, block)
    const totals = await writer.finish()
    expect(totals.blocksWritten).toBe(10)
    expect(totals.bytesSent).toBe(10 * SNAPSHOT_BLOCK_BYTES)
    expect(max()).toBe(3)
    const puts = seen.filter((r) => r.path.includes('/blocks/'))
    expect(puts).toHaveLength(10)
    for (const p of puts) {
      expect(p.headers['x-amz-content-sha256']).toBe('UNSIGNED-PAYLOAD')
      expect(p.headers['x-amz-checksum']).toBe(createHash('sha256').update(block).digest('base64'))
    }
    ebs.destroy()
  })

  it('signs other EBS requests as usual', async () => {
    const { ebs, seen } = recordingClient()
    await ebs.send(new StartSnapshotCommand({ VolumeSize: 1 }))
    expect(seen[0]?.headers['x-amz-content-sha256']).not.toBe('UNSIGNED-PAYLOAD')
    ebs.destroy()
  })

  it('refuses a block of the wrong size', async () => {
    const { ebs } = recordingClient()
    const writer = new SnapshotBlockWriter({
      ebs,
      snapshotId: 'snap-1',
      concurrency: 1,
      signal: new AbortController().signal
    })
    await expect(writer.put(0, Buffer.alloc(100))).rejects.toThrow(/not 524288/)
    ebs.destroy()
  })
  it('hands a block back (onSent) only once its request has answered, never after a failure', async () => {
    let answer: (() => void) | undefined
    const held = new Promise<void>((r) => (answer = r))
    const { ebs } = recordingClient(() => held)
    const writer = new SnapshotBlockWriter({
      ebs,
      snapshotId: 'snap-1',
      concurrency: 2,
      signal: new AbortController().signal
    })
    const sent: number[] = []
    for (const i of [0, 1])
      await writer.put(i, Buffer.alloc(SNAPSHOT_BLOCK_BYTES, 1), { onSent: () => sent.push(i) })
    await new Promise((r) => setTimeout(r, 20))
    expect(sent).toEqual([]) // in flight: the caller must not reuse the memory yet
    answer?.()
    await writer.finish()
    expect(sent.sort()).toEqual([0, 1])
    ebs.destroy()

    const refusing = new EBSClient({
      region: 'us-east-1',
      endpoint: 'http://127.0.0.1:9',
      credentials: { accessKeyId: 'a', secretAccessKey: 'b' },
      maxAttempts: 1,
      requestHandler: {
        handle: async () => {
          const { Readable } = await import('node:stream')
          return {
            response: {
              statusCode: 400,
              headers: { 'x-amzn-errortype': 'ValidationException' },
              body: Readable.from([Buffer.from('{"Message":"no"}')])
            }
          }
        }
      } as never
    })
    const failing = new SnapshotBlockWriter({
      ebs: refusing,
      snapshotId: 'snap-1',
      concurrency: 1,
      signal: new AbortController().signal
    })
    let handedBack = false
    await failing.put(0, Buffer.alloc(SNAPSHOT_BLOCK_BYTES, 1), { onSent: () => (handedBack = true) })
    await expect(failing.finish()).rejects.toThrow(/ValidationException/)
    expect(handedBack).toBe(false)
    refusing.destroy()
  })
})
