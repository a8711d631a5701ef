import { describe, expect, it } from '@jest/globals'
import { Ledger, type Resource } from '../../src/pipeline/ledger.js'
import { type Logger, runPipeline, type Step, type StepContext } from '../../src/pipeline/runner.js'
import { CancelledError } from '../../src/errors.js'

interface TestCtx extends StepContext {
  events: string[]
}

const quietLog = (warnings: string[] = []): Logger => ({
  info: () => {},
  warning: (m) => {
    warnings.push(m)
  },
  group: (_name, fn) => fn()
})

/** n steps; step i records resource r<i> (a product when i is even) and logs its run. */
function makeSteps(n: number, failAt?: number): Step<TestCtx>[] {
  return Array.from({ length: n }, (_, k) => {
    const i = k + 1
    return {
      name: `step${i}`,
      run: async (ctx: TestCtx) => {
        ctx.events.push(`run ${i}`)
        ctx.ledger.record({ kind: 'volume', id: `r${i}`, removeOn: i % 2 === 0 ? 'failure' : 'always' })
        if (i === failAt) throw new Error(`step ${i} broke`)
      }
    }
  })
}

function setup() {
  const saved: string[] = []
  const removed: string[] = []
  const ctx: TestCtx = {
    ledger: new Ledger('us-east-1', [], (json) => saved.push(json)),
    signal: new AbortController().signal,
    events: []
  }
  const remove = async (r: Resource) => {
    removed.push(r.id)
    ctx.events.push(`remove ${r.id}`)
  }
  return { ctx, saved, removed, remove }
}

describe('runPipeline', () => {
  it('runs every step and after success removes only temporary resources, keeping products', async () => {
    const { ctx, remove, removed } = setup()
    const result = await runPipeline(makeSteps(4), ctx, { remove, log: quietLog() })
    expect(result.ok).toBe(true)
    expect(result.timings.map((t) => t.status)).toEqual(['succeeded', 'succeeded', 'succeeded', 'succeeded'])
    expect(removed).toEqual(['r3', 'r1'])
    expect(result.cleanup.kept).toEqual(['volume r4', 'volume r2'])
    expect(ctx.ledger.entries()).toEqual([])
  })

  it.each([1, 2, 3, 4, 5])('failure in step %i of 5 unwinds the steps that ran, in reverse', async (k) => {
    const { ctx, remove } = setup()
    const result = await runPipeline(makeSteps(5, k), ctx, { remove, log: quietLog() })
    expect(result.ok).toBe(false)
    expect(result.failedStep).toBe(`step${k}`)
    expect((result.error as Error).message).toBe(`step ${k} broke`)
    const expected: string[] = []
    for (let i = 1; i <= k; i++) expected.push(`run ${i}`)
    for (let i = k; i >= 1; i--) expected.push(`remove r${i}`)
    expect(ctx.events).toEqual(expected)
    expect(result.timings.slice(k).every((t) => t.status === 'not run')).toBe(true)
    expect(ctx.ledger.entries()).toEqual([])
  })

  it('turns failing removals into warnings and keeps the original error', async () => {
    const { ctx, remove } = setup()
    const steps = makeSteps(3, 3)
    const failingRemove = async (r: Resource) => {
      if (r.id === 'r1') throw new Error('AccessDenied')
      if (r.id === 'r2') throw new Error('cannot undo 2')
      await remove(r)
    }
    const warnings: string[] = []
    const result = await runPipeline(steps, ctx, { remove: failingRemove, log: quietLog(warnings) })
    expect((result.error as Error).message).toBe('step 3 broke')
    expect(warnings).toEqual([
      'could not remove volume r2: cannot undo 2 (the post step will try again; remove it by hand if it stays)',
      'could not remove volume r1: AccessDenied (the post step will try again; remove it by hand if it stays)'
    ])
    expect(result.cleanup.removed).toEqual(['volume r3'])
    // What could not be removed stays in the ledger for the post step.
    expect(ctx.ledger.entries().map((r) => r.id)).toEqual(['r1', 'r2'])
  })

  it('a cancel signal during a step stops it and unwinds', async () => {
    const { ctx, remove } = setup()
    const controller = new AbortController()
    ctx.signal = controller.signal
    const steps: Step<TestCtx>[] = [
      ...makeSteps(2),
      {
        name: 'long wait',
        run: (c) =>
          new Promise((_resolve, reject) => {
            c.ledger.record({ kind: 'snapshot', id: 'snap', removeOn: 'failure' })
            c.signal.addEventListener('abort', () => reject(new CancelledError()))
            setTimeout(() => controller.abort(), 10)
          })
      },
      ...makeSteps(1).map((s) => ({ ...s, name: 'never' }))
    ]
    const result = await runPipeline(steps, ctx, { remove, log: quietLog() })
    expect(result.cancelled).toBe(true)
    expect(result.failedStep).toBe('long wait')
    expect(result.timings.map((t) => t.status)).toEqual(['succeeded', 'succeeded', 'cancelled', 'not run'])
    expect(ctx.events).toEqual(['run 1', 'run 2', 'remove snap', 'remove r2', 'remove r1'])
  })

  it('does not start when already cancelled', async () => {
    const { ctx, remove } = setup()
    const controller = new AbortController()
    controller.abort()
    ctx.signal = controller.signal
    const result = await runPipeline(makeSteps(2), ctx, { remove, log: quietLog() })
    expect(result.cancelled).toBe(true)
    expect(ctx.events).toEqual([])
  })

  it('skips disabled steps without timing them', async () => {
    const { ctx, remove } = setup()
    const steps = makeSteps(2)
    ;(steps[0] as Step<TestCtx>).enabled = () => false
    const result = await runPipeline(steps, ctx, { remove, log: quietLog() })
    expect(result.timings.map((t) => t.status)).toEqual(['skipped', 'succeeded'])
    expect(ctx.events[0]).toBe('run 2')
  })

  it('measures each step with the clock it is given', async () => {
    const { ctx, remove } = setup()
    let t = 0
    const result = await runPipeline(makeSteps(2), ctx, { remove, log: quietLog(), now: () => (t += 1500) })
    expect(result.timings.map((x) => x.seconds)).toEqual([1.5, 1.5])
  })

  it('writes every resource to state the moment it is recorded', async () => {
    const { ctx, saved, remove } = setup()
    await runPipeline(makeSteps(2, 2), ctx, { remove, log: quietLog() })
    const states = saved.map((s) => (JSON.parse(s) as Resource[]).map((r) => r.id))
    expect(states.slice(0, 2)).toEqual([['r1'], ['r1', 'r2']])
    expect(states.at(-1)).toEqual([])
    expect(JSON.parse(saved[0] as string)[0]).toEqual({
      kind: 'volume',
      id: 'r1',
      removeOn: 'always',
      region: 'us-east-1',
      step: 'step1'
    })
  })
})
