// What the steps of one run share: the settings, the clients, the ledger, and what earlier
// steps found or made for later ones.
import type { Clients } from '../aws/clients.js'
import type { Settings } from '../settings.js'
import type { Logger, StepContext } from './runner.js'

export type OutputName = 'ami-id' | 'snapshot-id' | 'instance-store-ami-id' | 'manifest-location' | 'region'

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
