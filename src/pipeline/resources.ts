// The one map from a ledger kind to its remover, shared by the step runner's unwinding and the
// post entry, so a resource is removed the same way whoever removes it. Each remover lives in the
// file that creates its resource.
import { DeleteObjectsCommand, ListObjectsV2Command } from '@aws-sdk/client-s3'
import type { Clients } from '../aws/clients.js'
import { attachmentRemoval } from './convert/attach.js'
import { instanceRemoval } from './convert/helper.js'
import { imageRemoval } from './convert/register.js'
import { snapshotRemoval } from './convert/snapshot.js'
import { volumeRemoval } from './convert/volume.js'
import { parameterRemoval } from './key-parameter.js'
import type { Resource, ResourceKind } from './ledger.js'
import { commandRemoval, remoteUndoRemoval } from './remote-command.js'
import { cliQuote, type Removal, type RemoveEnv, type RemoveOptions, regionOf } from './removal.js'
import type { RemoveResource } from './runner.js'

export type { RemoveOptions } from './removal.js'

const bundleRemoval: Removal = {
  remove: (r, env) => removeBundle(env.clients, r),
  command: (r) => {
    const m = /^(s3:\/\/.+\/)?([^/]+)\.manifest\.xml$/.exec(r.id)
    if (!m) return `aws s3 rm ${regionOf(r)} ${cliQuote(r.id)}`
    const folder = m[1] ?? ''
    return `aws s3 rm ${regionOf(r)} ${cliQuote(folder)} --recursive --exclude '*' --include ${cliQuote(`${m[2]}.manifest.xml`)} --include ${cliQuote(`${m[2]}.part.*`)}`
  }
}

/** Deletes the objects of one bundle: r.id is s3://bucket/prefix/name.manifest.xml. */
async function removeBundle(clients: Clients, r: Resource): Promise<void> {
  const match = /^s3:\/\/([^/]+)\/(.+)\.manifest\.xml$/.exec(r.id)
  if (!match) throw new Error(`not a manifest location: ${r.id}`)
  const bucket = match[1] as string
  const stem = `${match[2]}.` // the manifest and its parts: name.manifest.xml, name.part.NN
  let token: string | undefined
  do {
    const page = await clients.s3.send(
      new ListObjectsV2Command({ Bucket: bucket, Prefix: stem, ContinuationToken: token })
    )
    const keys = (page.Contents ?? [])
      .map((o) => o.Key)
      .filter((k): k is string => k !== undefined && /\.(manifest\.xml|part\.\d+)$/.test(k))
    if (keys.length > 0) {
      const out = await clients.s3.send(
        new DeleteObjectsCommand({
          Bucket: bucket,
          Delete: { Objects: keys.map((Key) => ({ Key })), Quiet: true }
        })
      )
      if (out.Errors && out.Errors.length > 0)
        throw new Error(
          `S3 refused to delete ${out.Errors.length} object(s), first: ${out.Errors[0]?.Key} (${out.Errors[0]?.Code})`
        )
    }
    token = page.IsTruncated ? page.NextContinuationToken : undefined
  } while (token)
}

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
  bundle: bundleRemoval
}

/** Removes one recorded resource with these clients: the runner's `remove`, and post's. */
export function resourceRemover(clients: Clients, options: RemoveOptions = {}): RemoveResource {
  const env: RemoveEnv = { clients, ...options }
  return (r) => REMOVALS[r.kind].remove(r, env)
}

/** The AWS CLI command that removes one recorded resource. */
export const removalCommand = (r: Resource): string => REMOVALS[r.kind].command(r)
