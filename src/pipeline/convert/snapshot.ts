// Snapshots the written volume, printing its progress; the snapshot is a product of the run,
// removed only if the run fails (removeSnapshot, below: also for the snapshots of a replaced AMI).
import { CreateSnapshotCommand, DeleteSnapshotCommand, type EC2Client } from '@aws-sdk/client-ec2'
import { poll } from '../../aws/poll.js'
import { waitForSnapshotCompleted } from '../../aws/ec2-wait.js'
import { type RunContext, required, waitOptions } from '../context.js'
import { cliQuote, type Removal, regionOf, tolerateGone } from '../removal.js'
import type { Step } from '../runner.js'
import { convertState, proceeding } from './state.js'
import { tagSpec } from '../tags.js'

export const snapshotStep: Step<RunContext> = {
  name: 'snapshot',
  enabled: proceeding,
  run: async (ctx) => {
    const s = convertState(ctx)
    const volumeId = required(s.volumeId, 'the work volume')
    const name = required(s.amiName, 'the AMI name')
    const source =
      s.sourceImage?.ImageId ?? (s.manifest ? `s3://${s.manifest.bucket}/${s.manifest.key}` : 'a bundle')
    const out = await ctx.clients.ec2.send(
      new CreateSnapshotCommand({
        VolumeId: volumeId,
        Description: `instance-to-ebs: root of ${name}, converted from ${source}`.slice(0, 255),
        TagSpecifications: tagSpec(ctx, 'snapshot', name)
      })
    )
    const snapshotId = required(out.SnapshotId, 'the id of the new snapshot')
    ctx.ledger.record({ kind: 'snapshot', id: snapshotId, removeOn: 'failure' })
    s.snapshotId = snapshotId
    ctx.log.info(`snapshot ${snapshotId} of ${volumeId} started`)
    await waitForSnapshot(ctx, snapshotId)
    ctx.log.info(`snapshot ${snapshotId} completed`)
  }
}

/** Waits until the snapshot is completed, printing its progress. */
export async function waitForSnapshot(ctx: RunContext, snapshotId: string): Promise<void> {
  await waitForSnapshotCompleted(ctx.clients.ec2, snapshotId, {
    ...waitOptions(ctx),
    timeoutSeconds: Math.max(120, ctx.settings.timeoutMinutes) * 60,
    fix: 'run again (nothing of it is kept)'
  })
}

/**
 * Deletes a snapshot; already gone counts as deleted. Right after DeregisterImage EC2 may still
 * count it as in use by that AMI for a moment (InvalidSnapshot.InUse): that code is retried.
 */
export async function removeSnapshot(
  ec2: EC2Client,
  snapshotId: string,
  o: { pollDelayMs?: number; signal?: AbortSignal } = {}
): Promise<void> {
  await tolerateGone(() =>
    poll({
      what: `snapshot ${snapshotId} to be released by its deregistered AMI`,
      timeoutSeconds: 300,
      signal: o.signal,
      minDelayMs: o.pollDelayMs,
      maxDelayMs: Math.max(o.pollDelayMs ?? 0, 10000),
      tolerate: ['InvalidSnapshot.InUse'],
      check: async () => {
        await ec2.send(new DeleteSnapshotCommand({ SnapshotId: snapshotId }))
        return { done: true, value: undefined }
      }
    })
  )
}

export const snapshotRemoval: Removal = {
  remove: (r, env) => removeSnapshot(env.clients.ec2, r.id, { pollDelayMs: env.pollDelayMs }),
  command: (r) => `aws ec2 delete-snapshot ${regionOf(r)} --snapshot-id ${cliQuote(r.id)}`
}
