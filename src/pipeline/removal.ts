// What a remover is: each kind of resource the action records is removed by the file that creates
// it (the snapshot by convert/snapshot.ts, the volume by convert/volume.ts, …); resources.ts maps
// the ledger's kinds to those removers for the step runner's unwinding and for the post entry.
import type { Clients } from '../aws/clients.js'
import { errorCode } from '../errors.js'
import type { Resource } from './ledger.js'

export interface RemoveOptions {
  /** Seconds to wait for a detachment before deleting a volume. */
  detachTimeoutSeconds?: number
  /** Seconds to wait for a cancelled command to end before the next resource goes. */
  commandStopTimeoutSeconds?: number
  pollDelayMs?: number
  /** Progress of the removals that take a while (cleanup.sh on an instance). */
  log?: (message: string) => void
}

/** What every remover gets: the clients of the run (or of post) and the options above. */
export interface RemoveEnv extends RemoveOptions {
  clients: Clients
}

export interface Removal {
  /** Removes it; a resource already gone counts as removed. */
  remove: (r: Resource, env: RemoveEnv) => Promise<void>
  /** The AWS CLI command that removes it, for a person when the credentials have expired. */
  command: (r: Resource) => string
}

/** Codes that mean the resource is already gone: removing it again is success. */
const ALREADY_GONE = new Set([
  'InvalidVolume.NotFound',
  'InvalidSnapshot.NotFound',
  'InvalidAMIID.NotFound',
  'InvalidAMIID.Unavailable',
  'InvalidInstanceID.NotFound',
  'IncorrectState', // detaching a volume that is no longer attached
  'InvalidAttachment.NotFound',
  'ParameterNotFound',
  'InvalidCommandId',
  'InvalidInstanceId',
  'NoSuchBucket'
])

export async function tolerateGone(action: () => Promise<unknown>): Promise<void> {
  try {
    await action()
  } catch (err) {
    if (!ALREADY_GONE.has(errorCode(err) ?? '')) throw err
  }
}

/** Quotes a word for a shell command line only when it needs it. */
export const cliQuote = (s: string): string =>
  /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, "'\\''")}'`

/** `--region <region>` of a recorded resource. */
export const regionOf = (r: Resource): string => `--region ${cliQuote(r.region)}`
