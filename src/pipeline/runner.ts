// Runs steps in order; on failure or cancellation unwinds the cleanups of the steps that ran,
// in reverse. Cleanup problems become warnings and never replace the original error.
import * as core from '@actions/core'
import { describeResource, type Ledger, type Resource } from './ledger.js'

export interface StepContext {
  ledger: Ledger
  signal: AbortSignal
}

export interface Step<C extends StepContext> {
  name: string
  /** Skipped (and not timed) when it returns false. */
  enabled?: (ctx: C) => boolean
  run: (ctx: C) => Promise<void>
  /** Extra undo work beyond removing the resources the step recorded. */
  cleanup?: (ctx: C, failed: boolean) => Promise<void>
}

export interface Logger {
  info(message: string): void
  warning(message: string): void
  group<T>(name: string, fn: () => Promise<T>): Promise<T>
}

export const actionsLogger: Logger = {
  info: (m) => core.info(m),
  warning: (m) => core.warning(m),
  group: (name, fn) => core.group(name, fn)
}

export type StepStatus = 'succeeded' | 'failed' | 'cancelled' | 'skipped' | 'not run'

export interface StepTiming {
  step: string
  status: StepStatus
  seconds: number
}

export interface CleanupReport {
  removed: string[]
  kept: string[]
  problems: string[]
  /** Set when a removal failed because the credentials expired: the error code. Nothing more is tried. */
  credentialsExpired?: string
}

/** Codes AWS answers with once the session has expired (EC2: RequestExpired; STS tokens: ExpiredToken…). */
const EXPIRED_CREDENTIALS = new Set([
  'ExpiredToken',
  'ExpiredTokenException',
  'RequestExpired',
  'TokenRefreshRequired'
])

const codeOf = (err: unknown): string | undefined =>
  (err as { Code?: string; code?: string; name?: string } | undefined)?.Code ??
  (err as { code?: string } | undefined)?.code ??
  (err as { name?: string } | undefined)?.name

export interface PipelineResult {
  ok: boolean
  error?: unknown
  failedStep?: string
  cancelled: boolean
  timings: StepTiming[]
  cleanup: CleanupReport
}

export type RemoveResource = (resource: Resource) => Promise<void>

export interface RunOptions {
  remove: RemoveResource
  log?: Logger
  now?: () => number
}

export class CancelledError extends Error {
  constructor(reason = 'the job was cancelled') {
    super(reason)
    this.name = 'CancelledError'
  }
}

export async function runPipeline<C extends StepContext>(
  steps: Step<C>[],
  ctx: C,
  options: RunOptions
): Promise<PipelineResult> {
  const log = options.log ?? actionsLogger
  const now = options.now ?? Date.now
  const timings: StepTiming[] = steps.map((s) => ({ step: s.name, status: 'not run', seconds: 0 }))
  const ran: Step<C>[] = []
  let error: unknown
  let failedStep: string | undefined

  for (const [index, step] of steps.entries()) {
    const timing = timings[index] as StepTiming
    if (ctx.signal.aborted) {
      error = new CancelledError()
      break
    }
    if (step.enabled && !step.enabled(ctx)) {
      timing.status = 'skipped'
      continue
    }
    ran.push(step)
    ctx.ledger.currentStep = step.name
    const started = now()
    try {
      await log.group(step.name, () => step.run(ctx))
      timing.status = 'succeeded'
    } catch (err) {
      error =
        ctx.signal.aborted && !(err instanceof CancelledError) ? new CancelledError(messageOf(err)) : err
      failedStep = step.name
      timing.status = ctx.signal.aborted ? 'cancelled' : 'failed'
    } finally {
      timing.seconds = (now() - started) / 1000
      log.info(`${step.name}: ${timing.status} in ${formatSeconds(timing.seconds)}`)
    }
    if (error !== undefined) break
  }

  const failed = error !== undefined
  const cleanup = await unwind(ran, ctx, failed, options.remove, log)
  return {
    ok: !failed,
    error,
    failedStep,
    cancelled: error instanceof CancelledError,
    timings,
    cleanup
  }
}

/** Undo in reverse order; after success only temporary resources go and products are kept. */
async function unwind<C extends StepContext>(
  ran: Step<C>[],
  ctx: C,
  failed: boolean,
  remove: RemoveResource,
  log: Logger
): Promise<CleanupReport> {
  const report: CleanupReport = { removed: [], kept: [], problems: [] }
  const work = async (): Promise<void> => {
    for (const step of [...ran].reverse()) {
      if (step.cleanup) {
        try {
          await step.cleanup(ctx, failed)
        } catch (err) {
          const problem = `cleanup of step '${step.name}' failed: ${messageOf(err)}`
          report.problems.push(problem)
          log.warning(problem)
        }
      }
      const own = ctx.ledger.entries().filter((r) => r.step === step.name)
      for (const resource of [...own].reverse()) {
        if (!failed && resource.removeOn === 'failure') {
          ctx.ledger.forget(resource.kind, resource.id)
          report.kept.push(describeResource(resource))
          continue
        }
        await removeOne(resource, ctx.ledger, remove, report, log)
      }
    }
    // Anything recorded outside a step that ran (defensive: e.g. set-up) is unwound last.
    for (const resource of [...ctx.ledger.entries()].reverse()) {
      if (report.problems.some((p) => p.includes(describeResource(resource)))) continue
      if (!failed && resource.removeOn === 'failure') continue
      await removeOne(resource, ctx.ledger, remove, report, log)
    }
  }
  if (ran.length > 0 || ctx.ledger.entries().length > 0) await log.group('Cleanup', work)
  reportLeftAfterExpiry(ctx.ledger.entries(), report, log)
  return report
}

export async function removeOne(
  resource: Resource,
  ledger: Ledger,
  remove: RemoveResource,
  report: CleanupReport,
  log: Logger
): Promise<void> {
  const name = describeResource(resource)
  // Every further call would fail the same way: what is left is listed once, with its commands.
  if (report.credentialsExpired) return
  try {
    await remove(resource)
    ledger.forget(resource.kind, resource.id)
    report.removed.push(name)
    log.info(`removed ${name}`)
  } catch (err) {
    const code = codeOf(err)
    if (code && EXPIRED_CREDENTIALS.has(code)) {
      report.credentialsExpired = code
      const problem = `could not remove ${name}: the AWS credentials have expired (${code}); cleanup stops here`
      report.problems.push(problem)
      log.warning(problem)
      return
    }
    const problem = `could not remove ${name}: ${messageOf(err)}`
    report.problems.push(problem)
    log.warning(`${problem} (the post step will try again; remove it by hand if it stays)`)
  }
}

/** After expired credentials: each resource still recorded, with the AWS CLI command that removes it. */
export function reportLeftAfterExpiry(left: readonly Resource[], report: CleanupReport, log: Logger): void {
  if (!report.credentialsExpired || left.length === 0) return
  const lines = [...left].reverse().map((r) => `  ${describeResource(r)}: ${removalCommand(r)}`)
  const message = `The AWS credentials expired (${report.credentialsExpired}) during cleanup; ${left.length} resource(s) are left. With fresh credentials, remove them in this order:\n${lines.join('\n')}`
  report.problems.push(message)
  log.warning(message)
}

const shellQuote = (s: string): string => (/^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, "'\\''")}'`)

/** The AWS CLI command that removes one recorded resource. */
export function removalCommand(r: Resource): string {
  const region = `--region ${shellQuote(r.region)}`
  const id = shellQuote(r.id)
  switch (r.kind) {
    case 'instance':
      return `aws ec2 terminate-instances ${region} --instance-ids ${id}`
    case 'command':
      return `aws ssm cancel-command ${region} --command-id ${id}`
    case 'remote-undo':
      // The journal lives on the instance: only a command run there can undo what it records.
      return `on ${shellQuote(r.detail?.instanceId ?? 'the instance')}, as root: bash cleanup.sh --journal ${id} (src/scripts/cleanup.sh of this action, with common.sh beside it)`
    case 'attachment':
      return `aws ec2 detach-volume ${region} --volume-id ${id}${r.detail?.instanceId ? ` --instance-id ${shellQuote(r.detail.instanceId)}` : ''}`
    case 'volume':
      return `aws ec2 delete-volume ${region} --volume-id ${id}`
    case 'parameter':
      return `aws ssm delete-parameter ${region} --name ${id}`
    case 'snapshot':
      return `aws ec2 delete-snapshot ${region} --snapshot-id ${id}`
    case 'image':
      return `aws ec2 deregister-image ${region} --image-id ${id}`
    case 'bundle': {
      const m = /^(s3:\/\/.+\/)?([^/]+)\.manifest\.xml$/.exec(r.id)
      if (!m) return `aws s3 rm ${region} ${id}`
      const folder = m[1] ?? ''
      return `aws s3 rm ${region} ${shellQuote(folder)} --recursive --exclude '*' --include ${shellQuote(`${m[2]}.manifest.xml`)} --include ${shellQuote(`${m[2]}.part.*`)}`
    }
    case 'work-dir':
      return `on the runner: rm -rf ${id}`
  }
}

export function messageOf(err: unknown): string {
  if (err instanceof Error) return err.message
  return String(err)
}

export function formatSeconds(seconds: number): string {
  if (seconds < 60) return `${seconds.toFixed(1)} s`
  const m = Math.floor(seconds / 60)
  const s = Math.round(seconds % 60)
  return m < 60 ? `${m} min ${s} s` : `${Math.floor(m / 60)} h ${m % 60} min`
}
