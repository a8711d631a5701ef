// One wait per EC2 thing: volume, attachment, detachment, snapshot, image. Attachment means
// Attachments[].State == attached (the volume's own state says in-use before the device exists),
// detachment means no attachment is left.
//
// Every wait asks once per WAIT_INTERVAL_MS, steadily: it sees that AWS has finished within that
// time and makes at most one call in it (a delay growing to 15-30 s added up to half a minute to
// every wait of a run). The SDK's own waiters start at 15 s (serviceDefaults minDelay: 15).
import {
  DescribeImagesCommand,
  DescribeSnapshotsCommand,
  DescribeVolumesCommand,
  type EC2Client,
  type Image,
  type Snapshot,
  type Volume
} from '@aws-sdk/client-ec2'
import { type PollOptions, type PollResult, poll } from './poll.js'

/** How often a wait asks: AWS's end is seen within this, with at most one call per this. */
export const WAIT_INTERVAL_MS = 5000

/** EC2 codes that mean "just created, not visible yet". */
export const EC2_NOT_YET_VISIBLE = [
  'InvalidVolume.NotFound',
  'InvalidSnapshot.NotFound',
  'InvalidAMIID.NotFound',
  'InvalidInstanceID.NotFound'
]

export interface WaitOptions {
  signal?: AbortSignal
  timeoutSeconds?: number
  onProgress?: (message: string) => void
  /** Milliseconds between calls; WAIT_INTERVAL_MS unless a test makes it small. */
  intervalMs?: number
  /** The clock, for tests that count calls on a fake one. */
  now?: () => number
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>
}

/** The poll options every wait shares: a steady interval, the signal, progress and the clock. */
export function steadily(
  o: WaitOptions
): Pick<PollOptions<unknown>, 'signal' | 'minDelayMs' | 'maxDelayMs' | 'onProgress' | 'now' | 'sleep'> {
  const every = o.intervalMs ?? WAIT_INTERVAL_MS
  return {
    signal: o.signal,
    minDelayMs: every,
    maxDelayMs: every,
    onProgress: o.onProgress,
    now: o.now,
    sleep: o.sleep
  }
}

async function describeVolume(ec2: EC2Client, volumeId: string): Promise<Volume> {
  const out = await ec2.send(new DescribeVolumesCommand({ VolumeIds: [volumeId] }))
  const volume = out.Volumes?.[0]
  if (!volume)
    throw Object.assign(new Error(`volume ${volumeId} not found`), { name: 'InvalidVolume.NotFound' })
  return volume
}

/** Polls one volume until decide() says done; options shared by every volume wait. */
function pollVolume(
  ec2: EC2Client,
  volumeId: string,
  what: string,
  o: WaitOptions,
  decide: (volume: Volume) => PollResult<Volume>
): Promise<Volume> {
  return poll({
    what: `volume ${volumeId} ${what}`,
    timeoutSeconds: o.timeoutSeconds ?? 300,
    ...steadily(o),
    tolerate: EC2_NOT_YET_VISIBLE,
    check: async () => decide(await describeVolume(ec2, volumeId))
  })
}

export function waitForVolumeAvailable(
  ec2: EC2Client,
  volumeId: string,
  o: WaitOptions = {}
): Promise<Volume> {
  return pollVolume(ec2, volumeId, 'to become available', o, (v) => {
    if (v.State === 'available') return { done: true, value: v }
    if (v.State === 'error' || v.State === 'deleted' || v.State === 'deleting')
      throw new Error(`volume ${volumeId} went to state '${v.State}' instead of 'available'`)
    return { done: false, progress: `state ${v.State}` }
  })
}

export function waitForAttachment(
  ec2: EC2Client,
  volumeId: string,
  instanceId: string,
  o: WaitOptions = {}
): Promise<Volume> {
  return pollVolume(ec2, volumeId, `to attach to ${instanceId}`, o, (v) => {
    const a = v.Attachments?.find((x) => x.InstanceId === instanceId)
    if (a?.State === 'attached') return { done: true, value: v }
    return { done: false, progress: `attachment ${a?.State ?? 'not yet listed'}` }
  })
}

export function waitForDetachment(ec2: EC2Client, volumeId: string, o: WaitOptions = {}): Promise<Volume> {
  return pollVolume(ec2, volumeId, 'to detach', o, (v) => {
    const left = v.Attachments ?? []
    if (left.length === 0) return { done: true, value: v }
    return { done: false, progress: `attachment ${left.map((a) => a.State).join(', ')}` }
  })
}

/**
 * Until the snapshot is completed, with its progress. The SDK's waitUntilSnapshotCompleted:
 * State "completed" is success, "error" is failure (its acceptors). `fix` ends the error message.
 */
export function waitForSnapshotCompleted(
  ec2: EC2Client,
  snapshotId: string,
  o: WaitOptions & { fix: string }
): Promise<Snapshot> {
  return poll({
    what: `snapshot ${snapshotId} to complete`,
    timeoutSeconds: o.timeoutSeconds ?? 7200,
    ...steadily(o),
    tolerate: ['InvalidSnapshot.NotFound'],
    check: async () => {
      const d = await ec2.send(new DescribeSnapshotsCommand({ SnapshotIds: [snapshotId] }))
      const snap = d.Snapshots?.[0]
      if (snap?.State === 'completed') return { done: true, value: snap }
      if (snap?.State === 'error')
        throw new Error(
          `Snapshot ${snapshotId} failed${snap.StateMessage ? `: ${snap.StateMessage}` : ''}; ${o.fix}`
        )
      return { done: false, progress: `${snap?.Progress || '0%'} done` }
    }
  })
}

/**
 * ImageState: "pending | available | invalid | deregistered | transient | failed | error |
 * disabled" (EC2 API reference, Image). The SDK's waitUntilImageAvailable: "available" is success,
 * "failed" is failure (its acceptors). Of the others, invalid, error, deregistered and disabled
 * never turn into available by themselves: they end the wait too. `fix` ends the error message.
 */
const IMAGE_FAILED = new Set(['failed', 'invalid', 'error', 'deregistered', 'disabled'])

export function waitForImageAvailable(
  ec2: EC2Client,
  imageId: string,
  o: WaitOptions & { what: string; fix: string }
): Promise<Image> {
  return poll({
    what: `${o.what} to become available`,
    timeoutSeconds: o.timeoutSeconds ?? 3600,
    ...steadily(o),
    tolerate: ['InvalidAMIID.NotFound'],
    check: async () => {
      const out = await ec2.send(new DescribeImagesCommand({ ImageIds: [imageId] }))
      const image = out.Images?.find((i) => i.ImageId === imageId)
      const state = image?.State
      if (state === 'available' && image) return { done: true, value: image }
      if (state && IMAGE_FAILED.has(state))
        throw new Error(
          `${o.what} went to state '${state}' instead of available${image?.StateReason?.Message ? `: ${image.StateReason.Message}` : ''}; ${o.fix}`
        )
      return { done: false, progress: state ?? 'not listed yet' }
    }
  })
}
