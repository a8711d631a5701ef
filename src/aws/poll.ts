// One waiting function for everything: a deadline, a delay that starts small and is capped,
// an abort signal, progress lines, and tolerance for AWS's eventual consistency.
import { CancelledError, errorCode } from '../errors.js'

export type PollResult<T> = { done: true; value: T } | { done: false; progress?: string }

export interface PollOptions<T> {
  /** What is awaited, for messages: "volume vol-1 to attach". */
  what: string
  check: () => Promise<PollResult<T>>
  timeoutSeconds: number
  signal?: AbortSignal
  minDelayMs?: number
  maxDelayMs?: number
  /** Error names/codes meaning "not visible yet" (e.g. InvocationDoesNotExist): retried, not thrown. */
  tolerate?: string[]
  onProgress?: (message: string) => void
  /** Report progress when it changes, and at least this often. */
  progressEveryMs?: number
  now?: () => number
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>
}

export class PollTimeoutError extends Error {
  constructor(
    readonly what: string,
    readonly seconds: number,
    readonly lastProgress?: string
  ) {
    super(
      `timed out after ${seconds} s waiting for ${what}${lastProgress ? ` (last seen: ${lastProgress})` : ''}`
    )
    this.name = 'PollTimeoutError'
  }
}

export const sleep = (ms: number, signal?: AbortSignal): Promise<void> =>
  new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(new CancelledError())
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort)
      resolve()
    }, ms)
    const onAbort = (): void => {
      clearTimeout(timer)
      reject(new CancelledError())
    }
    signal?.addEventListener('abort', onAbort, { once: true })
  })

export async function poll<T>(options: PollOptions<T>): Promise<T> {
  const now = options.now ?? Date.now
  const wait = options.sleep ?? sleep
  const minDelay = options.minDelayMs ?? 2000
  const maxDelay = Math.max(minDelay, options.maxDelayMs ?? 30000)
  const progressEvery = options.progressEveryMs ?? 60000
  const tolerate = new Set(options.tolerate ?? [])
  const start = now()
  const deadline = start + options.timeoutSeconds * 1000
  let delay = minDelay
  let lastProgress: string | undefined
  let lastReport = start

  for (;;) {
    if (options.signal?.aborted) throw new CancelledError()
    let result: PollResult<T> | undefined
    try {
      result = await options.check()
    } catch (err) {
      const code = errorCode(err)
      if (code === undefined || !tolerate.has(code)) throw err
      result = { done: false, progress: `not visible yet (${code})` }
    }
    if (result.done) return result.value
    const t = now()
    if (
      result.progress !== undefined &&
      (result.progress !== lastProgress || t - lastReport >= progressEvery)
    ) {
      const elapsed = Math.round((t - start) / 1000)
      options.onProgress?.(`${options.what}: ${result.progress} (${elapsed} s)`)
      lastReport = t
    }
    lastProgress = result.progress ?? lastProgress
    if (t >= deadline) throw new PollTimeoutError(options.what, options.timeoutSeconds, lastProgress)
    await wait(Math.min(delay, Math.max(0, deadline - t)), options.signal)
    delay = Math.min(maxDelay, Math.round(delay * 1.5))
  }
}
