// The SSM commands a step sends to an instance (aws/remote-script.ts) and the undo journals they
// keep there: recorded in the ledger as the command reports them, and removed here.
import { CancelCommandCommand } from '@aws-sdk/client-ssm'
import { type RemoteTracker, undoRemote } from '../aws/remote-script.js'
import { stopCommand } from '../aws/stop-command.js'
import type { Ledger } from './ledger.js'
import { cliQuote, type Removal, regionOf, tolerateGone } from './removal.js'

/** Keeps a command's journal and id in the ledger for as long as they may need undoing. */
export function ledgerTracker(ledger: Ledger, instanceId: string): RemoteTracker {
  const detail = { instanceId }
  return {
    journalStarted: (journal) =>
      ledger.record({ kind: 'remote-undo', id: journal, removeOn: 'always', detail }),
    journalClosed: (journal) => ledger.forget('remote-undo', journal),
    commandSent: (commandId) => ledger.record({ kind: 'command', id: commandId, removeOn: 'always', detail }),
    commandEnded: (commandId) => ledger.forget('command', commandId)
  }
}

/** A command that may still run: the volume and key parameter after it in the ledger go only once it has ended. */
export const commandRemoval: Removal = {
  remove: async (r, env) => {
    if (r.detail?.instanceId) {
      await stopCommand(env.clients.ssm, r.id, r.detail.instanceId, {
        timeoutSeconds: env.commandStopTimeoutSeconds,
        minDelayMs: env.pollDelayMs
      })
      return
    }
    await tolerateGone(() => env.clients.ssm.send(new CancelCommandCommand({ CommandId: r.id })))
  },
  command: (r) => `aws ssm cancel-command ${regionOf(r)} --command-id ${cliQuote(r.id)}`
}

/** The undo journal of a command that may have been killed: cleanup.sh is sent to undo what it lists. */
export const remoteUndoRemoval: Removal = {
  // A terminated instance has nothing left to undo (SendCommand: InvalidInstanceId).
  remove: (r, env) =>
    tolerateGone(() =>
      undoRemote({
        ssm: env.clients.ssm,
        instanceId: r.detail?.instanceId ?? '',
        journal: r.id,
        pollDelayMs: env.pollDelayMs,
        onProgress: env.log
      })
    ),
  // The journal lives on the instance: only a command run there can undo what it records.
  command: (r) =>
    `on ${cliQuote(r.detail?.instanceId ?? 'the instance')}, as root: bash cleanup.sh --journal ${cliQuote(r.id)} (src/scripts/cleanup.sh of this action, with common.sh beside it)`
}
