// Streams the bundle onto the attached volume with convert.sh on the helper (SSM Run Command);
// the run counts only when the script reports that the image digest matched.
import { runRemoteScript } from '../../aws/remote-script.js'
import { s3Url } from '../../aws/manifest.js'
import { liveOutput } from '../../report/log-tail.js'
import { type RunContext, required } from '../context.js'
import { ledgerTracker } from '../remote-command.js'
import { keyParameterName } from '../key-parameter.js'
import type { Step } from '../runner.js'
import { convertState, type ImageFacts, proceeding } from './state.js'
import { Input } from '../../settings/inputs.js'

/**
 * ENA support of an image made hvm: registered only when its kernel has the ena driver. "ENA ...
 * requires the ENA module in the image plus the enaSupport attribute" (EC2 User Guide, enhanced
 * networking with ENA); an AMI with the attribute but no driver starts on Nitro without a network.
 */
function decideEnaSupport(ctx: RunContext, facts: ImageFacts, results: Record<string, string>): void {
  const ena = results.hvm_ena
  const present = ena === 'built-in' || ena === 'initramfs' || ena === 'module'
  if (ctx.settings.ami.enaSupport === undefined) {
    facts.enaSupport = present
    ctx.facts['ENA support'] = String(present)
    ctx.log.info(
      present
        ? `ENA support: on (the kernel's ena driver is ${ena})`
        : 'ENA support: off (the kernel has no ena driver): the AMI boots on Xen families (t2, m4, c4…), not on Nitro'
    )
  } else if (ctx.settings.ami.enaSupport && !present)
    ctx.log.warning(
      `${Input.EnaSupport}: true, but the image's kernel has no ena driver (${ena ?? 'not checked'}): on Nitro families the instance will have no network`
    )
}

export const writeImageStep: Step<RunContext> = {
  name: 'write image',
  enabled: proceeding,
  run: async (ctx) => {
    const s = convertState(ctx)
    const helper = required(s.helper, 'the helper')
    const volumeId = required(s.volumeId, 'the work volume')
    const device = required(s.device, 'the device name')
    const manifest = s3Url(required(s.manifest, 'the manifest location'))
    const facts = required(s.facts, 'the image facts')
    const result = await runRemoteScript({
      ssm: ctx.clients.ssm,
      instanceId: helper.instanceId,
      script: 'convert.sh',
      args: [
        '--manifest',
        manifest,
        '--key-parameter',
        keyParameterName(ctx),
        '--volume-id',
        volumeId,
        '--device',
        device,
        '--region',
        ctx.settings.region,
        ...(facts.toHvm ? ['--output-virtualization-type', 'hvm'] : [])
      ],
      purpose: `write ${s.sourceImage?.ImageId ?? 'the bundle'} onto ${volumeId}`,
      timeoutMinutes: ctx.settings.timeoutMinutes,
      signal: ctx.signal,
      tracker: ledgerTracker(ctx.ledger, helper.instanceId),
      ...liveOutput(ctx, helper.instanceId),
      onProgress: ctx.log.info,
      pollDelayMs: ctx.pollDelayMs
    })
    for (const [key, value] of Object.entries(result.results)) ctx.facts[key] = value
    if (result.results.digest !== 'ok')
      throw new Error(
        `convert.sh on ${helper.instanceId} finished without confirming the image digest (no '::result digest=ok'); the volume is not trusted: check the command output (command ${result.commandId})`
      )
    if (result.truncated)
      ctx.log.info(
        ctx.settings.logGroup
          ? `the command output was cut by SSM; all of it is in log group ${ctx.settings.logGroup}`
          : `the command output was cut by SSM; set ${Input.LogGroup} to keep all of it`
      )
    if (facts.toHvm) decideEnaSupport(ctx, facts, result.results)
    ctx.log.info(
      `wrote ${result.results.image_bytes ?? '?'} image bytes onto ${volumeId} (${result.results.bytes_written ?? '?'} written, zero blocks skipped); digest ok`
    )
  }
}
