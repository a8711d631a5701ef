// Streams the bundle onto the attached volume with convert.sh on the helper (SSM Run Command);
// the run counts only when the script reports that the image digest matched.
import { runRemoteScript } from '../../aws/remote-script.js'
import { s3Url } from '../../aws/manifest.js'
import { liveOutput } from '../../report/log-tail.js'
import { type RunContext, required } from '../context.js'
import { keyParameterName } from '../key-parameter.js'
import type { Step } from '../runner.js'
import { convertState, proceeding } from './state.js'

export const writeImageStep: Step<RunContext> = {
  name: 'write image',
  enabled: proceeding,
  run: async (ctx) => {
    const s = convertState(ctx)
    const helper = required(s.helper, 'the helper')
    const volumeId = required(s.volumeId, 'the work volume')
    const device = required(s.device, 'the device name')
    const manifest = s3Url(required(s.manifest, 'the manifest location'))
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
        ctx.settings.region
      ],
      purpose: `write ${s.sourceImage?.ImageId ?? 'the bundle'} onto ${volumeId}`,
      timeoutMinutes: ctx.settings.timeoutMinutes,
      signal: ctx.signal,
      ledger: ctx.ledger,
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
          : 'the command output was cut by SSM; set log-group to keep all of it'
      )
    ctx.log.info(
      `wrote ${result.results.image_bytes ?? '?'} image bytes onto ${volumeId} (${result.results.bytes_written ?? '?'} written, zero blocks skipped); digest ok`
    )
  }
}
