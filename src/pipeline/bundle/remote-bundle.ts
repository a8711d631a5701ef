// Runs bundle.sh on the source instance: ec2-bundle-vol, then ec2-upload-bundle to the bucket.
// The bundle is recorded before the command is sent, because a failed upload may leave parts;
// its objects are deleted by bundleRemoval, below.
import { DeleteObjectsCommand, ListObjectsV2Command } from '@aws-sdk/client-s3'
import type { Clients } from '../../aws/clients.js'
import { RemoteCommandError, runRemoteScript } from '../../aws/remote-script.js'
import { hintFor } from '../../report/hints.js'
import { createLogTail } from '../../report/log-tail.js'
import { type RunContext, required } from '../context.js'
import { ledgerTracker } from '../remote-command.js'
import { cliQuote, type Removal, regionOf } from '../removal.js'
import type { Step } from '../runner.js'
import type { Resource } from '../ledger.js'
import { keyParameterName } from '../key-parameter.js'
import { certificateParameterName } from './key-material.js'
import { BUNDLE_NAME, bundleState, changing } from './state.js'
import { Input } from '../../settings/inputs.js'

/** bundle.sh's command line (see the header of src/scripts/bundle.sh). */
export function bundleArgs(ctx: RunContext): string[] {
  const s = bundleState(ctx)
  const facts = required(s.facts, 'the image facts')
  const b = ctx.settings.bundle
  const args = ['--virtualization-type', facts.virtualizationType, '--architecture', facts.architecture]
  if (facts.virtualizationType === 'hvm') args.push('--root-device-name', facts.rootDeviceName)
  args.push(
    '--account-id',
    required(s.accountId, 'the account id'),
    '--bucket',
    required(s.bucket, 'the bucket'),
    '--prefix',
    required(s.prefix, 'the prefix'),
    '--region',
    ctx.settings.region,
    '--cert-parameter',
    required(certificateParameterName(ctx), 'the certificate parameter'),
    '--key-parameter',
    keyParameterName(ctx),
    '--bundle-name',
    BUNDLE_NAME,
    '--install-prerequisites',
    String(b.installPrerequisites)
  )
  if (b.stopServices.length > 0) args.push('--stop-services', b.stopServices.join(' '))
  if (b.exclude.length > 0) args.push('--exclude', b.exclude.join(' '))
  if (b.fixMenuLst) args.push('--fix-menu-lst')
  return args
}

// The step's run is longer than 60 lines: recording the bundle, the live log and the command's
// outcome are one sequence whose order (record before send) is the point.
export const bundleVolume: Step<RunContext> = {
  name: 'bundle and upload',
  enabled: changing,
  run: async (ctx) => {
    const s = bundleState(ctx)
    const instanceId = required(ctx.settings.source.instanceId, Input.SourceInstanceId)
    const manifestUrl = required(s.manifestUrl, 'the manifest location')
    const args = bundleArgs(ctx)
    if (ctx.settings.bundle.keep)
      ctx.log.info(
        `${Input.KeepBundle}: the objects under ${manifestUrl.replace(/[^/]+$/, '')} stay even if the run fails`
      )
    // With keep-bundle nothing may remove the objects, not even the post entry: they are not recorded.
    else ctx.ledger.record({ kind: 'bundle', id: manifestUrl, removeOn: 'failure' })
    // With log-group, bundle.sh's progress is shown while it runs (an hour is long to wait blind).
    const logGroup = ctx.settings.logGroup
    const tail = logGroup
      ? createLogTail({
          logs: ctx.clients.logs,
          logGroup,
          instanceId,
          print: (line) => ctx.log.info(line),
          warn: (m) => ctx.log.warning(m)
        })
      : undefined
    let result: Awaited<ReturnType<typeof runRemoteScript>>
    try {
      result = await runRemoteScript({
        ssm: ctx.clients.ssm,
        instanceId,
        script: 'bundle.sh',
        args,
        purpose: `bundle ${instanceId} to ${manifestUrl}`,
        timeoutMinutes: ctx.settings.timeoutMinutes,
        signal: ctx.signal,
        tracker: ledgerTracker(ctx.ledger, instanceId),
        logGroup: ctx.settings.logGroup,
        onProgress: (m) => ctx.log.info(m),
        onPoll: tail,
        pollDelayMs: ctx.pollDelayMs
      })
    } catch (err) {
      // The fix itself is added once, to the run's last line (report/failure.ts); the cause goes here.
      if (err instanceof RemoteCommandError) {
        const hint = hintFor(`${err.message}\n${err.output}`)
        if (hint) ctx.log.info(`Likely cause: ${hint.problem}`)
      }
      throw err
    }
    for (const key of [
      'ami_tools_version',
      'image_bytes',
      'part_count',
      'services_restarted',
      'menu_lst_differences'
    ])
      if (result.results[key]) ctx.facts[`bundle ${key.replace(/_/g, ' ')}`] = result.results[key] as string
    if (result.results.services_not_restarted)
      ctx.log.warning(
        `bundle.sh could not start these services again on ${instanceId}: ${result.results.services_not_restarted}; start them by hand`
      )
    const location = result.results.image_location
    if (!location)
      throw new Error(
        `bundle.sh finished on ${instanceId} without reporting image_location; see its output above`
      )
    if (`s3://${location}` !== manifestUrl)
      throw new Error(
        `bundle.sh uploaded to s3://${location}, not to ${manifestUrl} as asked; check bundle.sh's arguments`
      )
    s.imageLocation = location
    ctx.log.info(`bundle uploaded: ${manifestUrl}`)
  }
}

export const bundleRemoval: Removal = {
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
