// The bundle decode (bundle-decode.ts) on a worker thread, so that on the runner's second core it
// runs beside the uploads: measured on a 2-core machine (bench/runner-path.mjs), decryption,
// gunzip, both SHA-1s, the tar reader and the per-block SHA-256 on the same thread as the
// PutSnapshotBlock calls (the SDK's request building, the HTTP writes, the garbage of 512 KiB
// bodies) left the uploads waiting for the decoder and the decoder waiting for the uploads.
// Same stream shape as decodeBundle: blocks in order, the image info returned, the stats filled
// in, the same errors. The main thread keeps the S3 reads (its clients, credentials and abort
// signal); parts travel to the worker and blocks back, both moved, not copied. A bounded window of
// blocks is in flight between the threads, so back-pressure still reaches the part reads.
// The worker runs the file this module is in: dist/index.js (ncc bundles every module into it, so
// index.ts starts main or post only on the main thread), or this module's .js built by tsc. From
// the TypeScript sources (jest) the worker loads them through a hook that transpiles them with the
// typescript devDependency. (ncc copies `new Worker(new URL('./x.js', import.meta.url))` as a raw
// asset, unbundled: hence this module's own URL.)
import { createRequire } from 'node:module'
import { isMainThread, parentPort, Worker, workerData } from 'node:worker_threads'
import type { BundleSecrets } from '../../aws/bundle-crypto.js'
import { TarFormatError, type TarImageInfo } from './sparse-tar.js'
import {
  type BlockMemory,
  BundleIntegrityError,
  type DecodeOptions,
  EBS_BLOCK,
  type DecodeStats,
  decodeBundle,
  type ImageBlock,
  newDecodeStats
} from './bundle-decode.js'

/** Blocks the worker may have decoded ahead of the consumer (512 KiB each). */
export const BLOCK_WINDOW = 8

/** A block with its SHA-256, computed on the worker (the SHA-256 PutSnapshotBlock carries). */
export interface DigestedBlock extends ImageBlock {
  sha256?: Buffer
  /**
   * Hands the block's memory back to the decoder, which fills it with a later block. `data` is
   * moved, not shared: it is empty (detached) afterwards, so a late use of it cannot send a
   * different block's bytes. Optional: a block never released is garbage collected.
   */
  release: () => void
}

type ToWorker =
  | { kind: 'part'; name: string; bytes: Uint8Array }
  | { kind: 'part-error'; name: string; message: string }
  | { kind: 'credit'; blocks: number }
  | { kind: 'recycle'; memory: ArrayBuffer }

type FromWorker =
  | { kind: 'read'; name: string }
  | { kind: 'block'; index: number; data: Uint8Array; sha256?: Uint8Array; stats: DecodeStats }
  | { kind: 'done'; image: TarImageInfo; stats: DecodeStats }
  | { kind: 'failed'; name: string; message: string; stats: DecodeStats }

interface WorkerInput {
  i2eDecodeWorker: true
  secrets: BundleSecrets
  key: Uint8Array
  iv: Uint8Array
  readAhead?: number
  digests: boolean
}

const ERRORS: Record<string, new (message: string) => Error> = {
  BundleIntegrityError,
  TarFormatError
}

/** The worker side: runs decodeBundle, asking the parent for parts and sending blocks back. */
async function runWorker(port: NonNullable<typeof parentPort>, input: WorkerInput): Promise<void> {
  const { createHash } = await import('node:crypto')
  const waiting = new Map<string, { resolve: (b: Uint8Array) => void; reject: (e: Error) => void }>()
  let credit = BLOCK_WINDOW
  let wake: (() => void) | undefined
  // Blocks' memory given back by the consumer, filled again with later blocks (see BlockMemory).
  const free: ArrayBuffer[] = []
  const memory: BlockMemory = {
    take: () => {
      const recycled = free.pop()
      return recycled ? Buffer.from(recycled) : Buffer.allocUnsafeSlow(EBS_BLOCK)
    },
    give: (block) => {
      if (block.byteOffset === 0 && block.buffer.byteLength === EBS_BLOCK)
        free.push(block.buffer as ArrayBuffer)
    }
  }
  port.on('message', (m: ToWorker) => {
    if (m.kind === 'recycle') {
      if (m.memory.byteLength === EBS_BLOCK) free.push(m.memory)
      return
    }
    if (m.kind === 'credit') {
      credit += m.blocks
      wake?.()
      return
    }
    const w = waiting.get(m.name)
    waiting.delete(m.name)
    if (m.kind === 'part') w?.resolve(m.bytes)
    else w?.reject(new Error(m.message))
  })
  const stats = newDecodeStats()
  const post = (m: FromWorker, transfer: ArrayBuffer[] = []): void => port.postMessage(m, transfer)
  try {
    const blocks = decodeBundle({
      secrets: input.secrets,
      key: Buffer.from(input.key),
      iv: Buffer.from(input.iv),
      readAhead: input.readAhead,
      stats,
      memory,
      readPart: (name) =>
        new Promise<Uint8Array>((resolve, reject) => {
          waiting.set(name, { resolve, reject })
          post({ kind: 'read', name })
        })
    })
    for (;;) {
      const next = await blocks.next()
      if (next.done) {
        post({ kind: 'done', image: next.value, stats })
        break
      }
      while (credit <= 0) await new Promise<void>((r) => (wake = r))
      credit--
      const { index, data } = next.value
      const sha256 = input.digests ? createHash('sha256').update(data).digest() : undefined
      // Blocks are whole 512 KiB ArrayBuffers (allocUnsafeSlow, never pooled, or recycled ones):
      // their memory can move.
      post({ kind: 'block', index, data, sha256, stats }, [data.buffer as ArrayBuffer])
    }
  } catch (err) {
    const e = err as Error
    post({ kind: 'failed', name: e?.name ?? 'Error', message: e?.message ?? String(err), stats })
  }
}

if (!isMainThread && parentPort && (workerData as WorkerInput | undefined)?.i2eDecodeWorker)
  await runWorker(parentPort, workerData as WorkerInput)

/** Loads TypeScript sources in a worker: `.js` specifiers resolved to `.ts`, `.ts` transpiled. */
const SOURCES_BOOTSTRAP = `
const { registerHooks } = require('node:module')
const { readFileSync } = require('node:fs')
const { fileURLToPath } = require('node:url')
const { workerData } = require('node:worker_threads')
const ts = require(workerData.typescript)
registerHooks({
  resolve(specifier, context, next) {
    try {
      return next(specifier, context)
    } catch (err) {
      if (specifier.startsWith('.') && specifier.endsWith('.js')) return next(specifier.slice(0, -3) + '.ts', context)
      throw err
    }
  },
  load(url, context, next) {
    if (!url.startsWith('file:') || !url.endsWith('.ts')) return next(url, context)
    const fileName = fileURLToPath(url)
    const out = ts.transpileModule(readFileSync(fileName, 'utf8'), {
      fileName,
      compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 }
    })
    return { format: 'module', source: out.outputText, shortCircuit: true }
  }
})
import(workerData.entry)
`

function startWorker(input: WorkerInput): Worker {
  // Read at run time (not a constant webpack could rewrite): the bundle's or the built module's URL.
  const self = String(import.meta.url)
  if (!self.endsWith('.ts')) return new Worker(new URL(self), { workerData: input })
  const typescript = createRequire(self).resolve('typescript')
  return new Worker(SOURCES_BOOTSTRAP, { eval: true, workerData: { ...input, entry: self, typescript } })
}

const running = new Set<Worker>()
/** The decoder threads now running (tests end one abruptly, as a crash would). */
export const runningDecodeWorkers: ReadonlySet<Worker> = running

export interface ThreadDecodeOptions extends DecodeOptions {
  /** Compute each block's SHA-256 on the worker too (the block writer would otherwise). */
  digests?: boolean
}

/**
 * decodeBundle on a worker thread: the same blocks, the same checks and errors. A worker that
 * dies (out of memory, a crash) ends the stream with an error; the worker is stopped whenever the
 * consumer stops early.
 */
export async function* decodeBundleOffThread(
  options: ThreadDecodeOptions
): AsyncGenerator<DigestedBlock, TarImageInfo> {
  const input: WorkerInput = {
    i2eDecodeWorker: true,
    secrets: options.secrets,
    key: options.key,
    iv: options.iv,
    readAhead: options.readAhead,
    digests: options.digests ?? false
  }
  const worker = startWorker(input)
  running.add(worker)
  const queue: FromWorker[] = []
  let ended: Error | undefined
  let wake: (() => void) | undefined
  const notify = (): void => {
    wake?.()
    wake = undefined
  }
  worker.on('message', (m: FromWorker) => {
    if (m.kind === 'read') {
      options.readPart(m.name).then(
        (bytes) => {
          // Move the part's memory to the worker when it is the whole of its buffer; copy otherwise.
          const own =
            bytes.byteOffset === 0 && bytes.byteLength === bytes.buffer.byteLength
              ? bytes
              : new Uint8Array(bytes)
          worker.postMessage({ kind: 'part', name: m.name, bytes: own } satisfies ToWorker, [
            own.buffer as ArrayBuffer
          ])
        },
        (err: Error) =>
          worker.postMessage({ kind: 'part-error', name: m.name, message: err.message } satisfies ToWorker)
      )
      return
    }
    queue.push(m)
    notify()
  })
  worker.on('error', (err) => {
    ended ??= new Error(`the bundle decoder's worker thread failed: ${err.message}`)
    notify()
  })
  worker.on('exit', (code) => {
    ended ??= new Error(
      `the bundle decoder's worker thread stopped (exit code ${code}) before the end of the image`
    )
    notify()
  })
  try {
    for (;;) {
      const m = queue.shift()
      if (!m) {
        if (ended) throw ended
        await new Promise<void>((r) => (wake = r))
        continue
      }
      if (m.kind === 'read') continue
      Object.assign(options.stats, m.stats)
      if (m.kind === 'failed') {
        const Kind = ERRORS[m.name] ?? Error
        throw new Kind(m.message)
      }
      if (m.kind === 'done') return m.image
      const data = Buffer.from(m.data.buffer, m.data.byteOffset, m.data.byteLength)
      const sha256 = m.sha256
        ? Buffer.from(m.sha256.buffer, m.sha256.byteOffset, m.sha256.byteLength)
        : undefined
      let released = false
      const release = (): void => {
        if (released) return
        released = true
        worker.postMessage({ kind: 'recycle', memory: m.data.buffer as ArrayBuffer } satisfies ToWorker, [
          m.data.buffer as ArrayBuffer
        ])
      }
      yield { index: m.index, data, sha256, release }
      worker.postMessage({ kind: 'credit', blocks: 1 } satisfies ToWorker)
    }
  } finally {
    running.delete(worker)
    await worker.terminate()
  }
}

export { newDecodeStats }
