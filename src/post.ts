// The post entry (post-if: always()): removes whatever the ledger in the runner's state says
// was created and not yet removed, e.g. after the main process was killed. Never fails the job.
import * as core from '@actions/core'
import { destroyClients, makeClients } from './aws/clients.js'
import { ATTEMPTS_STATE, LEDGER_STATE, Ledger, REGION_STATE } from './pipeline/ledger.js'
import { resourceRemover } from './pipeline/resources.js'
import { actionsLogger, type CleanupReport, removeOne, reportLeftAfterExpiry } from './pipeline/runner.js'
import { messageOf } from './errors.js'

export async function post(): Promise<CleanupReport> {
  const report: CleanupReport = { removed: [], kept: [], problems: [] }
  let ledger: Ledger
  try {
    ledger = Ledger.fromState(core.getState(LEDGER_STATE))
  } catch (err) {
    core.warning(
      `Could not read what the main step created (${messageOf(err)}); check for resources tagged instance-to-ebs.`
    )
    return report
  }
  const pending = [...ledger.entries()].reverse()
  if (pending.length === 0) {
    core.info('Nothing left to clean up.')
    return report
  }
  const region = core.getState(REGION_STATE) || ledger.region
  const clients = makeClients({ region, maxAttempts: Number(core.getState(ATTEMPTS_STATE)) || 8 })
  const remove = resourceRemover(clients, { log: (m) => core.info(m) })
  try {
    await core.group(`Cleaning up ${pending.length} resource(s) the main step left`, async () => {
      for (const resource of pending) await removeOne(resource, ledger, remove, report, actionsLogger)
    })
    reportLeftAfterExpiry(ledger.entries(), report, actionsLogger)
  } finally {
    destroyClients(clients)
  }
  return report
}
