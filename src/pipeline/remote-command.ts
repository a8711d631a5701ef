// The SSM commands a step sends to an instance (aws/remote-script.ts) and the undo journals they
// keep there: recorded in the ledger as the command reports them, and removed here.
import type { RemoteTracker } from '../aws/remote-script.js'
import type { Ledger } from './ledger.js'

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
