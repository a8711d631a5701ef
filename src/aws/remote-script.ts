// Runs one of our shell scripts on an instance with SSM Run Command (AWS-RunShellScript) and
// waits for it: tolerant of InvocationDoesNotExist right after sending, cancels the command when
// the job is cancelled, maps every terminal status to a clear message with the last lines of output.
import {
  CancelCommandCommand,
  GetCommandInvocationCommand,
  type GetCommandInvocationCommandOutput,
  SendCommandCommand,
  type SSMClient
} from '@aws-sdk/client-ssm'
import type { Ledger } from '../pipeline/ledger.js'
import { CancelledError } from '../pipeline/runner.js'
import { companions, type EntryScript, scripts } from '../scripts/index.js'
import { poll } from './poll.js'

/** SSM keeps the first 24,000 characters of stdout and 8,000 of stderr. */
export const SSM_STDOUT_LIMIT = 24000
export const SSM_STDERR_LIMIT = 8000

export interface RemoteScriptOptions {
  ssm: SSMClient
  instanceId: string
  script: EntryScript
  args: string[]
  /** What it does, for messages and the command's comment: "convert ami-1 onto vol-2". */
  purpose: string
  timeoutMinutes: number
  signal: AbortSignal
  ledger?: Ledger
  logGroup?: string
  onProgress?: (message: string) => void
  /** Called on every poll while the command runs (live log tailing). */
  onPoll?: (commandId: string) => Promise<void>
  pollDelayMs?: number
  heartbeatMs?: number
}

export interface RemoteScriptResult {
  commandId: string
  status: string
  exitCode: number
  stdout: string
  stderr: string
  results: Record<string, string>
  truncated: boolean
}

export class RemoteCommandError extends Error {
  constructor(
    message: string,
    readonly status: string,
    readonly exitCode: number,
    readonly output: string,
    readonly reason?: string
  ) {
    super(message)
    this.name = 'RemoteCommandError'
  }
}

const shellQuote = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`

/** The command text: writes the script and its companions into a private folder and runs it with bash. */
export function buildCommand(script: EntryScript, args: string[]): string {
  const files = [...companions[script], script]
  const lines = ['set -u', 'd=$(mktemp -d /tmp/instance-to-ebs.XXXXXX)', `trap 'rm -rf "$d"' EXIT`]
  for (const name of files) {
    const body = scripts[name]()
    const marker = `I2E_EOF_${name.replace(/\W/g, '_')}`
    if (body.includes(marker)) throw new Error(`${name} contains its own heredoc marker ${marker}`)
    lines.push(`cat > "$d/${name}" <<'${marker}'`, body.replace(/\n$/, ''), marker)
  }
  lines.push(`bash "$d/${script}" ${args.map(shellQuote).join(' ')}`)
  return `${lines.join('\n')}\n`
}

export function parseResults(stdout: string): { results: Record<string, string>; reason?: string } {
  const results: Record<string, string> = {}
  let reason: string | undefined
  for (const line of stdout.split('\n')) {
    const r = /^::result ([A-Za-z0-9_.-]+)=(.*)$/.exec(line)
    if (r) results[r[1] as string] = r[2] as string
    const f = /^::fail (.*)$/.exec(line)
    if (f) reason = f[1]
  }
  return { results, reason }
}

const lastLines = (text: string, n: number): string =>
  text
    .split('\n')
    .filter((l) => l.trim() !== '' && !l.startsWith('::result '))
    .slice(-n)
    .join('\n')

/** The terminal outcomes, by StatusDetails (finer than Status). */
const TERMINAL: Record<string, string> = {
  Success: 'succeeded',
  Failed: 'failed',
  Cancelled: 'was cancelled',
  TimedOut: 'timed out',
  ExecutionTimedOut: 'ran longer than timeout-minutes and was stopped',
  DeliveryTimedOut:
    'was never delivered: the SSM agent did not pick it up in time (is the instance online in SSM?)',
  Undeliverable: 'could not be delivered: the instance is not known to SSM or was terminated',
  Terminated: 'was terminated on the instance',
  InvalidPlatform: 'does not run on this platform (AWS-RunShellScript needs Linux)',
  AccessDenied: 'was refused: the SSM agent is not allowed to run it (check the instance profile)'
}

export async function runRemoteScript(o: RemoteScriptOptions): Promise<RemoteScriptResult> {
  const executionSeconds = o.timeoutMinutes * 60
  const sent = await o.ssm.send(
    new SendCommandCommand({
      DocumentName: 'AWS-RunShellScript',
      InstanceIds: [o.instanceId],
      Comment: `instance-to-ebs: ${o.purpose}`.slice(0, 100),
      TimeoutSeconds: 600,
      Parameters: {
        commands: [buildCommand(o.script, o.args)],
        executionTimeout: [String(executionSeconds)]
      },
      CloudWatchOutputConfig: o.logGroup
        ? { CloudWatchOutputEnabled: true, CloudWatchLogGroupName: o.logGroup }
        : undefined
    })
  )
  const commandId = sent.Command?.CommandId
  if (!commandId) throw new Error(`SSM accepted the command to ${o.purpose} but returned no command id`)
  o.ledger?.record({
    kind: 'command',
    id: commandId,
    removeOn: 'always',
    detail: { instanceId: o.instanceId }
  })
  o.onProgress?.(`sent command ${commandId} to ${o.instanceId}: ${o.purpose}`)

  const started = Date.now()
  let lastHeartbeat = started
  const heartbeatMs = o.heartbeatMs ?? 60000
  let invocation: GetCommandInvocationCommandOutput
  try {
    invocation = await poll<GetCommandInvocationCommandOutput>({
      what: `the command to ${o.purpose} on ${o.instanceId}`,
      // Delivery may take up to TimeoutSeconds, then the script its execution timeout.
      timeoutSeconds: 600 + executionSeconds + 120,
      signal: o.signal,
      minDelayMs: o.pollDelayMs ?? 3000,
      maxDelayMs: Math.max(o.pollDelayMs ?? 3000, 20000),
      tolerate: ['InvocationDoesNotExist'],
      check: async () => {
        if (o.onPoll) await o.onPoll(commandId)
        const out = await o.ssm.send(
          new GetCommandInvocationCommand({ CommandId: commandId, InstanceId: o.instanceId })
        )
        const detail = out.StatusDetails ?? out.Status ?? 'Pending'
        if (
          detail in TERMINAL ||
          out.Status === 'Success' ||
          out.Status === 'Failed' ||
          out.Status === 'Cancelled' ||
          out.Status === 'TimedOut'
        )
          return { done: true, value: out }
        const now = Date.now()
        if (now - lastHeartbeat >= heartbeatMs) {
          lastHeartbeat = now
          o.onProgress?.(
            `still running on ${o.instanceId} (${detail}, ${Math.round((now - started) / 60000)} min)`
          )
        }
        return { done: false }
      }
    })
  } catch (err) {
    await finalPoll(o, commandId)
    if (err instanceof CancelledError || o.signal.aborted) {
      await cancel(o, commandId)
      throw new CancelledError(
        `the job was cancelled while the command to ${o.purpose} ran; the command was cancelled`
      )
    }
    throw err
  }
  o.ledger?.forget('command', commandId)
  await finalPoll(o, commandId)

  const stdout = invocation.StandardOutputContent ?? ''
  const stderr = invocation.StandardErrorContent ?? ''
  const truncated = stdout.length >= SSM_STDOUT_LIMIT - 100 || stderr.length >= SSM_STDERR_LIMIT - 100
  const { results, reason } = parseResults(stdout)
  const status = invocation.StatusDetails ?? invocation.Status ?? 'Unknown'
  const exitCode = invocation.ResponseCode ?? -1
  if (status === 'Success' && exitCode === 0)
    return { commandId, status, exitCode, stdout, stderr, results, truncated }

  const where = truncated
    ? o.logGroup
      ? ` The output was cut by SSM; all of it is in log group ${o.logGroup}, stream ${commandId}/${o.instanceId}/aws-runShellScript/stdout.`
      : ' The output was cut by SSM (it keeps 24,000 characters); set log-group to keep all of it in CloudWatch Logs.'
    : ''
  const outcome = TERMINAL[status] ?? `ended with status ${status}`
  const because = reason ? `: ${reason}` : exitCode > 0 ? ` (exit code ${exitCode})` : ''
  const tail = lastLines(`${stdout}\n${stderr}`, 10)
  throw new RemoteCommandError(
    `The command to ${o.purpose} on ${o.instanceId} ${outcome}${because}.${where}${tail && !reason ? `\nLast lines:\n${tail}` : ''}`,
    status,
    exitCode,
    `${stdout}\n${stderr}`,
    reason
  )
}

/** Once more after the command ended, so live output written after the last poll is shown too. */
async function finalPoll(o: RemoteScriptOptions, commandId: string): Promise<void> {
  try {
    await o.onPoll?.(commandId)
  } catch {
    // Live output is a convenience; the command's own result decides the outcome.
  }
}

/**
 * Cancels at once; the command stays in the ledger, so the cleanup waits until it has really ended
 * before it removes what the command works on (a cancel is not guaranteed to stop it).
 */
async function cancel(o: RemoteScriptOptions, commandId: string): Promise<void> {
  try {
    await o.ssm.send(new CancelCommandCommand({ CommandId: commandId, InstanceIds: [o.instanceId] }))
  } catch {
    // The cleanup and the post entry cancel again.
  }
}
