// Writes blocks into a pending snapshot with the EBS direct APIs: a bounded number of
// PutSnapshotBlock calls in flight (put() waits for a free slot, so the decoder upstream waits
// too), each with its own timeout and with retries and back-off on throttling, 5xx and timeouts;
// the per-block SHA-256 kept for CompleteSnapshot's aggregated checksum.
import { createHash } from 'node:crypto'
import { type EBSClient, PutSnapshotBlockCommand } from '@aws-sdk/client-ebs'
import { errorCode } from '../errors.js'
import { Input } from '../settings/inputs.js'

/** "The block size is 524288 bytes (512 KiB)" (EBS direct APIs, PutSnapshotBlock: BlockData/DataLength). */
export const SNAPSHOT_BLOCK_BYTES = 512 * 1024

/**
 * "You should always retry requests that receive server (5xx) error responses, and
 * ThrottlingException and RequestThrottledException client error responses" (EBS direct API
 * reference, PutSnapshotBlock and CompleteSnapshot). ResourceNotFoundException is retried too:
 * right after StartSnapshot the new snapshot may not be visible yet (coldsnap retries for the
 * same reason); a snapshot that never appears still fails after the last attempt.
 */
export function isRetryable(err: unknown): boolean {
  const code = errorCode(err) ?? ''
  if (
    [
      'ThrottlingException',
      'RequestThrottledException',
      'InternalServerException',
      'ResourceNotFoundException'
    ].includes(code)
  )
    return true
  if (code === 'TimeoutError' || code === 'RequestTimeout' || code === 'AbortError') return true
  const status = (err as { $metadata?: { httpStatusCode?: number } })?.$metadata?.httpStatusCode
  if (status !== undefined && status >= 500) return true
  const sys = (err as { code?: string })?.code
  return ['ECONNRESET', 'ECONNREFUSED', 'EPIPE', 'ETIMEDOUT', 'EAI_AGAIN'].includes(sys ?? '')
}

export interface BlockWriterOptions {
  ebs: EBSClient
  snapshotId: string
  /** Calls in flight at most. */
  concurrency: number
  /** The job's cancellation. */
  signal: AbortSignal
  /** Timeout of one PutSnapshotBlock call. */
  requestTimeoutMs?: number
  /** Attempts per block (the first included). */
  attempts?: number
  /** Back-off before attempt n (n ≥ 1): full jitter up to min(cap, base·2^n). */
  backoffBaseMs?: number
  backoffCapMs?: number
  sleep?: (ms: number, signal: AbortSignal) => Promise<void>
}

export interface BlockWriterTotals {
  /** Blocks of the snapshot written (each counted once, however often it was written). */
  blocksWritten: number
  /** Blocks written a second time (put with again: true). */
  blocksRewritten: number
  bytesSent: number
  retries: number
  /** Base64 SHA-256 over the blocks' SHA-256 digests in ascending block index (LINEAR aggregation). */
  checksum: string
}

const abortableSleep = (ms: number, signal: AbortSignal): Promise<void> =>
  new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason)
    const t = setTimeout(() => {
      signal.removeEventListener('abort', onAbort)
      resolve()
    }, ms)
    const onAbort = (): void => {
      clearTimeout(t)
      reject(signal.reason)
    }
    signal.addEventListener('abort', onAbort, { once: true })
  })

/**
 * The aggregated checksum CompleteSnapshot takes: "To generate the aggregated checksum using the
 * linear aggregation method, arrange the checksums for each written block in ascending order of
 * their block index, concatenate them to form a single string, and then generate the checksum on
 * the entire string using the SHA256 algorithm" (CompleteSnapshot, Checksum): the raw 32-byte
 * digests, as coldsnap (awslabs) computes it.
 */
export function linearChecksum(digests: Map<number, Buffer>): string {
  const hash = createHash('sha256')
  for (const index of [...digests.keys()].sort((a, b) => a - b)) hash.update(digests.get(index) as Buffer)
  return hash.digest('base64')
}

export class SnapshotBlockWriter {
  private readonly inFlight = new Set<Promise<void>>()
  private readonly digests = new Map<number, Buffer>()
  private rewritten = 0
  private failure: unknown
  private bytesSent = 0
  private retries = 0
  private readonly attempts: number
  private readonly sleep: (ms: number, signal: AbortSignal) => Promise<void>

  constructor(private readonly o: BlockWriterOptions) {
    if (!Number.isInteger(o.concurrency) || o.concurrency < 1)
      throw new Error('internal error: concurrency must be ≥ 1')
    this.attempts = o.attempts ?? 10
    this.sleep = o.sleep ?? abortableSleep
  }

  /**
   * Sends one block (exactly SNAPSHOT_BLOCK_BYTES); resolves once it is in flight. Throws the first
   * failure. `sha256`, when given, is the block's digest already computed (by the decoder's thread).
   * A block is written once, unless `again` (after finish(): the first write has landed): "If the
   * specified block contains data, the existing data is overwritten" (PutSnapshotBlock), and the
   * aggregated checksum then covers the block's last data. `onSent` is called once the block has
   * been written (the caller may then reuse `data`), never after a failure: a request that timed
   * out may still be reading it.
   */
  async put(
    index: number,
    data: Buffer,
    o: { sha256?: Buffer; again?: boolean; onSent?: () => void } = {}
  ): Promise<void> {
    const { sha256, again = false, onSent } = o
    if (data.length !== SNAPSHOT_BLOCK_BYTES)
      throw new Error(`internal error: block ${index} is ${data.length} bytes, not ${SNAPSHOT_BLOCK_BYTES}`)
    if (this.digests.has(index)) {
      if (!again) throw new Error(`internal error: block ${index} written twice`)
      this.rewritten++
    }
    while (this.inFlight.size >= this.o.concurrency && this.failure === undefined)
      await Promise.race(this.inFlight)
    if (this.failure !== undefined) throw this.failure
    const digest = sha256 ?? createHash('sha256').update(data).digest()
    this.digests.set(index, digest)
    const job = this.send(index, data, digest.toString('base64'))
      .then(() => onSent?.())
      .catch((err) => {
        this.failure ??= err
      })
    const tracked = job.finally(() => this.inFlight.delete(tracked))
    this.inFlight.add(tracked)
  }

  /** Waits for every block; throws the first failure. */
  async finish(): Promise<BlockWriterTotals> {
    while (this.inFlight.size > 0) await Promise.race(this.inFlight)
    if (this.failure !== undefined) throw this.failure
    return {
      blocksWritten: this.digests.size,
      blocksRewritten: this.rewritten,
      bytesSent: this.bytesSent,
      retries: this.retries,
      checksum: linearChecksum(this.digests)
    }
  }

  /** The SHA-256 of what was last sent as block `index`, if it was sent. */
  digestOf(index: number): Buffer | undefined {
    return this.digests.get(index)
  }

  /** Lets calls in flight end (after a failure elsewhere) without reporting them. */
  async settle(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.race(this.inFlight)
  }

  private async send(index: number, data: Buffer, checksum: string): Promise<void> {
    const { ebs, snapshotId, signal } = this.o
    for (let attempt = 0; ; attempt++) {
      if (signal.aborted) throw signal.reason
      if (this.failure !== undefined) throw this.failure
      const timeout = AbortSignal.timeout(this.o.requestTimeoutMs ?? 60_000)
      try {
        await ebs.send(
          new PutSnapshotBlockCommand({
            SnapshotId: snapshotId,
            BlockIndex: index,
            BlockData: data,
            DataLength: data.length,
            Checksum: checksum,
            ChecksumAlgorithm: 'SHA256'
          }),
          { abortSignal: AbortSignal.any([signal, timeout]) }
        )
        this.bytesSent += data.length
        return
      } catch (err) {
        if (signal.aborted) throw signal.reason ?? err
        const retryable = timeout.aborted || isRetryable(err)
        if (!retryable || attempt + 1 >= this.attempts) {
          const code = timeout.aborted ? 'a timeout' : (errorCode(err) ?? (err as Error).message)
          throw new Error(
            `PutSnapshotBlock of block ${index} into ${snapshotId} failed after ${attempt + 1} attempt(s) (${code})${retryable ? `; the EBS direct API kept refusing: run again later or lower ${Input.UploadConcurrency}` : ''}`
          )
        }
        this.retries++
        const cap = Math.min(this.o.backoffCapMs ?? 20_000, (this.o.backoffBaseMs ?? 200) * 2 ** attempt)
        await this.sleep(Math.floor(Math.random() * cap) + 1, signal)
      }
    }
  }
}
