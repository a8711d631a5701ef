// What the steps of one run share: the settings, the clients, the ledger, and what earlier
// steps found or made for later ones.
import type { Clients } from '../aws/clients.js'
import type { WaitOptions } from '../aws/ec2-wait.js'
import type { Settings } from '../settings/index.js'
import type { Logger, StepContext } from './runner.js'

export type OutputName =
  | 'ami-id'
  | 'snapshot-id'
  | 'instance-store-ami-id'
  | 'manifest-location'
  | 'region'
  | 'boot-verified'

export interface RunContext extends StepContext {
  settings: Settings
  clients: Clients
  log: Logger
  /** Action outputs, set as steps produce them. */
  outputs: Partial<Record<OutputName, string>>
  /** Facts for the job summary (image facts, remote results), in the order found. */
  facts: Record<string, string>
  /** Values passed from step to step; each step documents what it reads and writes. */
  state: Record<string, unknown>
  /** Milliseconds between polls (tests make it small). */
  pollDelayMs: number
}

/** The state one family of steps keeps in ctx.state under its key, made on first use. */
export function stepState<T extends object>(ctx: RunContext, key: 'bundle' | 'convert'): T {
  ctx.state[key] ??= {}
  return ctx.state[key] as T
}

/** How every step waits: on the run's signal, at the run's poll interval, progress to the log. */
export const waitOptions = (ctx: RunContext): WaitOptions => ({
  signal: ctx.signal,
  intervalMs: ctx.pollDelayMs,
  onProgress: ctx.log.info
})

/** Fails loudly when a step runs without what an earlier step should have left. */
export function required<T>(value: T | undefined, what: string): T {
  if (value === undefined)
    throw new Error(`internal error: ${what} is not known yet (a step ran out of order)`)
  return value
}
