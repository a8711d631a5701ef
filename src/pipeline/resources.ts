// How each kind of recorded resource is removed. Used by the step runner's unwinding and by
// the post entry, so a resource is removed the same way whoever removes it.
import {
  DeleteSnapshotCommand,
  DeleteVolumeCommand,
  DeregisterImageCommand,
  DescribeVolumesCommand,
  DetachVolumeCommand,
  TerminateInstancesCommand
} from '@aws-sdk/client-ec2'
import { DeleteObjectsCommand, ListObjectsV2Command } from '@aws-sdk/client-s3'
import { CancelCommandCommand, DeleteParameterCommand } from '@aws-sdk/client-ssm'
import { rmSync } from 'node:fs'
import { basename } from 'node:path'
import type { Clients } from '../aws/clients.js'
import { undoRemote } from '../aws/remote-script.js'
import { waitForDetachment } from '../aws/ec2-wait.js'
import { errorCode, poll } from '../aws/poll.js'
import { stopCommand } from '../aws/stop-command.js'
import type { Resource } from './ledger.js'

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

async function tolerateGone(action: () => Promise<unknown>): Promise<void> {
  try {
    await action()
  } catch (err) {
    if (!ALREADY_GONE.has(errorCode(err) ?? '')) throw err
  }
}

export interface RemoveOptions {
  /** Seconds to wait for a detachment before deleting a volume. */
  detachTimeoutSeconds?: number
  /** Seconds to wait for a cancelled command to end before the next resource goes. */
  commandStopTimeoutSeconds?: number
  pollDelayMs?: number
  /** Progress of the removals that take a while (cleanup.sh on an instance). */
  log?: (message: string) => void
}

export function resourceRemover(clients: Clients, options: RemoveOptions = {}) {
  const waitOpts = { timeoutSeconds: options.detachTimeoutSeconds ?? 300, minDelayMs: options.pollDelayMs }

  const detach = async (volumeId: string, instanceId: string | undefined): Promise<void> => {
    // DetachVolume needs the instance id (and the emulator crashes without it).
    await tolerateGone(() =>
      clients.ec2.send(new DetachVolumeCommand({ VolumeId: volumeId, InstanceId: instanceId, Force: false }))
    )
    await tolerateGone(() => waitForDetachment(clients.ec2, volumeId, waitOpts))
  }

  return async (r: Resource): Promise<void> => {
    switch (r.kind) {
      case 'command':
        // The volume and key parameter after it in the ledger go only once the command has ended.
        if (r.detail?.instanceId) {
          await stopCommand(clients.ssm, r.id, r.detail.instanceId, {
            timeoutSeconds: options.commandStopTimeoutSeconds,
            minDelayMs: options.pollDelayMs
          })
          return
        }
        await tolerateGone(() =>
          clients.ssm.send(
            new CancelCommandCommand({
              CommandId: r.id,
              InstanceIds: r.detail?.instanceId ? [r.detail.instanceId] : undefined
            })
          )
        )
        return
      case 'remote-undo':
        // A terminated instance has nothing left to undo (SendCommand: InvalidInstanceId).
        await tolerateGone(() =>
          undoRemote({
            ssm: clients.ssm,
            instanceId: r.detail?.instanceId ?? '',
            journal: r.id,
            pollDelayMs: options.pollDelayMs,
            onProgress: options.log
          })
        )
        return
      case 'attachment':
        await detach(r.id, r.detail?.instanceId)
        return
      case 'volume': {
        let attachedTo: string | undefined
        await tolerateGone(async () => {
          const out = await clients.ec2.send(new DescribeVolumesCommand({ VolumeIds: [r.id] }))
          attachedTo = out.Volumes?.[0]?.Attachments?.[0]?.InstanceId
        })
        if (attachedTo) await detach(r.id, attachedTo)
        await tolerateGone(() => clients.ec2.send(new DeleteVolumeCommand({ VolumeId: r.id })))
        return
      }
      case 'instance':
        await tolerateGone(() => clients.ec2.send(new TerminateInstancesCommand({ InstanceIds: [r.id] })))
        return
      case 'snapshot':
        // Removed right after its AMI: EC2 may still count it as in use for a moment.
        await tolerateGone(() =>
          poll({
            what: `snapshot ${r.id} to be released by its deregistered AMI`,
            timeoutSeconds: 120,
            minDelayMs: options.pollDelayMs,
            maxDelayMs: 10000,
            tolerate: ['InvalidSnapshot.InUse'],
            check: async () => {
              await clients.ec2.send(new DeleteSnapshotCommand({ SnapshotId: r.id }))
              return { done: true, value: undefined }
            }
          })
        )
        return
      case 'image':
        await tolerateGone(() => clients.ec2.send(new DeregisterImageCommand({ ImageId: r.id })))
        return
      case 'parameter':
        await tolerateGone(() => clients.ssm.send(new DeleteParameterCommand({ Name: r.id })))
        return
      case 'bundle':
        await removeBundle(clients, r)
        return
      case 'work-dir':
        removeWorkDir(r.id)
        return
    }
  }
}

/** The runner's image folder (a name mkdtemp gave under the runner's temp folder), and nothing else. */
export function removeWorkDir(path: string): void {
  if (!WORK_DIR_NAME.test(basename(path)))
    throw new Error(`refusing to remove ${path}: not an image folder of this action`)
  rmSync(path, { recursive: true, force: true })
}

/** The image folders' names: mkdtemp's six characters after the prefix. */
export const WORK_DIR_PREFIX = 'i2e-image-'
const WORK_DIR_NAME = /^i2e-image-[A-Za-z0-9]{6}$/

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
