// Volume and instance waits. Attachment means Attachments[].State == attached (the volume's own
// state says in-use before the device exists), detachment means no attachment is left.
import { DescribeVolumesCommand, type EC2Client, type Volume } from '@aws-sdk/client-ec2'
import { type PollResult, poll } from './poll.js'

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
  minDelayMs?: number
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
  maxDelayMs: number,
  decide: (volume: Volume) => PollResult<Volume>
): Promise<Volume> {
  return poll({
    what: `volume ${volumeId} ${what}`,
    timeoutSeconds: o.timeoutSeconds ?? 300,
    signal: o.signal,
    minDelayMs: o.minDelayMs ?? 2000,
    maxDelayMs,
    tolerate: EC2_NOT_YET_VISIBLE,
    onProgress: o.onProgress,
    check: async () => decide(await describeVolume(ec2, volumeId))
  })
}

export function waitForVolumeAvailable(
  ec2: EC2Client,
  volumeId: string,
  o: WaitOptions = {}
): Promise<Volume> {
  return pollVolume(ec2, volumeId, 'to become available', o, 15000, (v) => {
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
  return pollVolume(ec2, volumeId, `to attach to ${instanceId}`, o, 10000, (v) => {
    const a = v.Attachments?.find((x) => x.InstanceId === instanceId)
    if (a?.State === 'attached') return { done: true, value: v }
    return { done: false, progress: `attachment ${a?.State ?? 'not yet listed'}` }
  })
}

export function waitForDetachment(ec2: EC2Client, volumeId: string, o: WaitOptions = {}): Promise<Volume> {
  return pollVolume(ec2, volumeId, 'to detach', o, 10000, (v) => {
    const left = v.Attachments ?? []
    if (left.length === 0) return { done: true, value: v }
    return { done: false, progress: `attachment ${left.map((a) => a.State).join(', ')}` }
  })
}
