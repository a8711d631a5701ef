// Attaches the work volume to the helper at a device name nothing else uses (/dev/sdf to
// /dev/sdp, as EC2 recommends for EBS), and waits for the attachment itself to be `attached`.
// The attachment is undone here too (detachForRemoval); the detach step undoes it on success.
import { AttachVolumeCommand, DetachVolumeCommand } from '@aws-sdk/client-ec2'
import { waitForAttachment, waitForDetachment } from '../../aws/ec2-wait.js'
import { describeInstance } from '../../aws/instances.js'
import { type RunContext, required, waitOptions } from '../context.js'
import { cliQuote, type Removal, type RemoveEnv, regionOf, tolerateGone } from '../removal.js'
import type { Step } from '../runner.js'
import { convertState, proceeding } from './state.js'

/** sdf, xvdf, xvdf1 and /dev/sdf all name the same slot: compare by letter. */
const slotOf = (device: string): string | undefined => /^(?:\/dev\/)?(?:sd|xvd)([a-z])\d*$/.exec(device)?.[1]

export function freeDevice(used: (string | undefined)[]): string | undefined {
  const taken = new Set(used.map((d) => (d ? slotOf(d) : undefined)))
  for (const letter of 'fghijklmnop') if (!taken.has(letter)) return `/dev/sd${letter}`
  return undefined
}

export const attachVolumeStep: Step<RunContext> = {
  name: 'attach volume',
  enabled: proceeding,
  run: async (ctx) => {
    const s = convertState(ctx)
    const helper = required(s.helper, 'the helper')
    const volumeId = required(s.volumeId, 'the work volume')
    const instance = await describeInstance(ctx.clients.ec2, helper.instanceId)
    const device = freeDevice((instance?.BlockDeviceMappings ?? []).map((b) => b.DeviceName))
    if (!device)
      throw new Error(
        `Helper ${helper.instanceId} has a volume at every device from /dev/sdf to /dev/sdp; detach some or use another helper`
      )
    await ctx.clients.ec2.send(
      new AttachVolumeCommand({ VolumeId: volumeId, InstanceId: helper.instanceId, Device: device })
    )
    ctx.ledger.record({
      kind: 'attachment',
      id: volumeId,
      removeOn: 'always',
      detail: { instanceId: helper.instanceId, device }
    })
    s.device = device
    ctx.log.info(`attaching ${volumeId} to ${helper.instanceId} as ${device}`)
    await waitForAttachment(ctx.clients.ec2, volumeId, helper.instanceId, waitOptions(ctx))
  }
}

/** Detaches a volume and waits until no attachment is left; already detached counts as done. */
export async function detachForRemoval(volumeId: string, instanceId: string | undefined, env: RemoveEnv) {
  // DetachVolume needs the instance id (and the emulator crashes without it).
  await tolerateGone(() =>
    env.clients.ec2.send(
      new DetachVolumeCommand({ VolumeId: volumeId, InstanceId: instanceId, Force: false })
    )
  )
  await tolerateGone(() =>
    waitForDetachment(env.clients.ec2, volumeId, {
      timeoutSeconds: env.detachTimeoutSeconds ?? 300,
      intervalMs: env.pollDelayMs
    })
  )
}

export const attachmentRemoval: Removal = {
  remove: (r, env) => detachForRemoval(r.id, r.detail?.instanceId, env),
  command: (r) =>
    `aws ec2 detach-volume ${regionOf(r)} --volume-id ${cliQuote(r.id)}${r.detail?.instanceId ? ` --instance-id ${cliQuote(r.detail.instanceId)}` : ''}`
}
