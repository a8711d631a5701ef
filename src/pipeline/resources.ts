// The one map from a ledger kind to its remover, shared by the step runner's unwinding and the
// post entry, so a resource is removed the same way whoever removes it. Each remover lives in the
// file that creates its resource.
import type { Clients } from '../aws/clients.js'
import { bundleRemoval } from './bundle/remote-bundle.js'
import { attachmentRemoval } from './convert/attach.js'
import { workDirRemoval } from './convert/runner-image.js'
import { instanceRemoval } from './convert/helper.js'
import { imageRemoval } from './convert/register.js'
import { snapshotRemoval } from './convert/snapshot.js'
import { volumeRemoval } from './convert/volume.js'
import { parameterRemoval } from './key-parameter.js'
import type { Resource, ResourceKind } from './ledger.js'
import { commandRemoval, remoteUndoRemoval } from './remote-command.js'
import type { Removal, RemoveEnv, RemoveOptions } from './removal.js'
import type { RemoveResource } from './runner.js'

export type { RemoveOptions } from './removal.js'

/** Every kind the ledger knows, and where it is removed (the file that creates it). */
const REMOVALS: Record<ResourceKind, Removal> = {
  command: commandRemoval,
  'remote-undo': remoteUndoRemoval,
  attachment: attachmentRemoval,
  volume: volumeRemoval,
  instance: instanceRemoval,
  snapshot: snapshotRemoval,
  image: imageRemoval,
  parameter: parameterRemoval,
  bundle: bundleRemoval,
  'work-dir': workDirRemoval
}

/** Removes one recorded resource with these clients: the runner's `remove`, and post's. */
export function resourceRemover(clients: Clients, options: RemoveOptions = {}): RemoveResource {
  const env: RemoveEnv = { clients, ...options }
  return (r) => REMOVALS[r.kind].remove(r, env)
}

/** The AWS CLI command that removes one recorded resource. */
export const removalCommand = (r: Resource): string => REMOVALS[r.kind].command(r)
