// Read settings → build clients → run the pipeline → outputs and summary.
import * as core from '@actions/core'
import { destroyClients, makeClients } from './aws/clients.js'
import { checkCredentialLifetime } from './aws/credentials.js'
import type { RunContext } from './pipeline/context.js'
import { ATTEMPTS_STATE, Ledger, REGION_STATE } from './pipeline/ledger.js'
import { planSteps } from './pipeline/plan.js'
import { resourceRemover } from './pipeline/resources.js'
import { actionsLogger, type PipelineResult, runPipeline } from './pipeline/runner.js'
import { messageOf } from './errors.js'
import { failureLine } from './report/failure.js'
import { writeSummary } from './report/summary.js'
import { readPollDelayMs, readSettings, SettingsError } from './settings/index.js'

export interface MainOptions {
  /** Aborted on SIGINT/SIGTERM by the entry point. */
  signal?: AbortSignal
  pollDelayMs?: number
}

export async function main(options: MainOptions = {}): Promise<PipelineResult | undefined> {
  let settings: ReturnType<typeof readSettings>
  let pollDelayMs: number
  try {
    settings = readSettings()
    pollDelayMs = options.pollDelayMs ?? readPollDelayMs() ?? 5000
  } catch (err) {
    core.setFailed(
      err instanceof SettingsError ? err.message : `Could not read the inputs: ${messageOf(err)}`
    )
    return undefined
  }

  core.saveState(REGION_STATE, settings.region)
  core.saveState(ATTEMPTS_STATE, String(settings.maxAttempts))
  const clients = makeClients({ region: settings.region, maxAttempts: settings.maxAttempts })
  const ctx: RunContext = {
    settings,
    clients,
    log: actionsLogger,
    ledger: new Ledger(settings.region),
    signal: options.signal ?? new AbortController().signal,
    outputs: { region: settings.region, 'boot-verified': 'skipped' },
    facts: {},
    state: {},
    pollDelayMs
  }
  try {
    await checkCredentialLifetime(clients, settings)
    const result = await runPipeline(planSteps(settings), ctx, {
      remove: resourceRemover(clients, {
        pollDelayMs: ctx.pollDelayMs,
        log: (m) => ctx.log.info(m)
      })
    })
    for (const [name, value] of Object.entries(ctx.outputs))
      if (value !== undefined) core.setOutput(name, value)
    await writeSummary(settings, ctx, result)
    if (!result.ok) core.setFailed(failureLine(result))
    return result
  } finally {
    destroyClients(clients)
  }
}
