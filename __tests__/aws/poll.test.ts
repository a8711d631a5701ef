import { describe, expect, it } from '@jest/globals'
import { poll, PollTimeoutError } from '../../src/aws/poll.js'
import { CancelledError } from '../../src/errors.js'
import { serviceError } from '../__fixtures__/errors.js'

/** A fake clock: sleeping advances it, so tests are instant and exact. */
function fakeClock() {
  let t = 0
  const delays: number[] = []
  return {
    now: () => t,
    delays,
    sleep: async (ms: number, signal?: AbortSignal) => {
      if (signal?.aborted) throw new CancelledError()
      delays.push(ms)
      t += ms
    }
  }
}

describe('poll', () => {
  it('returns the value once done, with a delay that grows from small and is capped', async () => {
    const clock = fakeClock()
    let n = 0
    const value = await poll({
      what: 'thing',
      timeoutSeconds: 600,
      minDelayMs: 1000,
      maxDelayMs: 3000,
      check: async () => (++n === 6 ? { done: true, value: 'ready' } : { done: false }),
      ...clock
    })
    expect(value).toBe('ready')
    expect(clock.delays).toEqual([1000, 1500, 2250, 3000, 3000])
  })

  it('times out at the deadline with the last progress in the message', async () => {
    const clock = fakeClock()
    const attempt = poll({
      what: 'snapshot snap-1 to complete',
      timeoutSeconds: 10,
      minDelayMs: 4000,
      check: async () => ({ done: false, progress: '42%' }),
      ...clock
    })
    await expect(attempt).rejects.toThrow(new PollTimeoutError('snapshot snap-1 to complete', 10, '42%'))
    await expect(attempt).rejects.toThrow(
      'timed out after 10 s waiting for snapshot snap-1 to complete (last seen: 42%)'
    )
    expect(clock.now()).toBe(10000)
  })

  it('tolerates the listed not-yet-visible errors and throws others at once', async () => {
    const clock = fakeClock()
    let n = 0
    const notYet = serviceError('InvocationDoesNotExist', 'no such invocation')
    await expect(
      poll({
        what: 'x',
        timeoutSeconds: 60,
        tolerate: ['InvocationDoesNotExist'],
        check: async () => {
          if (++n < 3) throw notYet
          return { done: true, value: n }
        },
        ...clock
      })
    ).resolves.toBe(3)
    const denied = serviceError('AccessDeniedException', 'denied')
    await expect(
      poll({
        what: 'x',
        timeoutSeconds: 60,
        tolerate: ['InvocationDoesNotExist'],
        check: async () => Promise.reject(denied),
        ...clock
      })
    ).rejects.toBe(denied)
  })

  it('reports progress when it changes', async () => {
    const clock = fakeClock()
    const lines: string[] = []
    const seq = ['0%', '0%', '50%', '100%']
    let i = 0
    await poll({
      what: 'snapshot',
      timeoutSeconds: 600,
      minDelayMs: 1000,
      maxDelayMs: 1000,
      onProgress: (m) => lines.push(m),
      check: async () => (i < seq.length ? { done: false, progress: seq[i++] } : { done: true, value: 1 }),
      ...clock
    })
    expect(lines).toEqual(['snapshot: 0% (0 s)', 'snapshot: 50% (2 s)', 'snapshot: 100% (3 s)'])
  })

  it('stops when aborted', async () => {
    const controller = new AbortController()
    const attempt = poll({
      what: 'x',
      timeoutSeconds: 600,
      minDelayMs: 5,
      signal: controller.signal,
      check: async () => {
        controller.abort()
        return { done: false }
      }
    })
    await expect(attempt).rejects.toBeInstanceOf(CancelledError)
  })
})
