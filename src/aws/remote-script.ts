// Runs one of our shell scripts on an instance with SSM Run Command (AWS-RunShellScript) and
// waits for it: tolerant of InvocationDoesNotExist right after sending, cancels the command when
// the job is cancelled, maps every terminal status to a clear message with the last lines of output.
//
// SSM ends a cancelled or timed-out command with SIGKILL of its whole process group
// (amazon-ssm-agent agent/executers/executers_unix.go:42-53): the script's exit trap never runs.
// So every script but cleanup.sh keeps an undo journal on the instance (src/scripts/common.sh),
// reported to the caller's tracker before the command is sent (the pipeline records it in its
// ledger: src/pipeline/remote-command.ts); unless the command succeeds, the step's unwinding (or
// the post step) sends cleanup.sh, which undoes what the journal still lists.
//
// Why this file is longer than 300 lines: the command text, the wait for it, the meaning of every
// terminal status and the undo of a killed command are one protocol with SSM; split, each part
// would have to know the others' journal and status rules.
import { randomUUID } from 'node:crypto'
import { gzipSync } from 'node:zlib'
import {
  CancelCommandCommand,
  GetCommandInvocationCommand,
  type GetCommandInvocationCommandOutput,
  SendCommandCommand,
  type SendCommandCommandOutput,
  type SSMClient
} from '@aws-sdk/client-ssm'
import { CancelledError } from '../errors.js'
import { companions, type EntryScript, scripts } from '../scripts/index.js'
import { poll } from './poll.js'
import { Input } from '../settings/inputs.js'

/** SSM keeps the first 24,000 characters of stdout and 8,000 of stderr. */
export const SSM_STDOUT_LIMIT = 24000
export const SSM_STDERR_LIMIT = 8000
/**
 * SendCommand fails with MaxDocumentSizeExceeded: "The size limit of a document is 64 KB"
 * (API_SendCommand, Errors). The command text travels in the document's parameters.
 */
export const SSM_DOCUMENT_LIMIT = 64 * 1024

/** Where the undo journals live on an instance: /var/tmp survives a reboot, like the bundle in /mnt. */
export const JOURNAL_DIR = '/var/tmp/instance-to-ebs'

/**
 * What a command leaves behind that must be undone if the runner dies, told to the caller at each
 * change so that it can keep its own record (the pipeline keeps it in the ledger).
 */
export interface RemoteTracker {
  /** Before the command is sent: the undo journal the script will keep on the instance. */
  journalStarted(journal: string): void
  /** Nothing is left to undo: the command was never sent, or it succeeded (the script undid its changes). */
  journalClosed(journal: string): void
  /** The command was sent and may be running. */
  commandSent(commandId: string): void
  /** The command has ended: nothing of it runs any more. */
  commandEnded(commandId: string): void
}

export interface RemoteScriptOptions {
  ssm: SSMClient
  instanceId: string
  script: EntryScript
  args: string[]
  /** What it does, for messages and the command's comment: "convert ami-1 onto vol-2". */
  purpose: string
  timeoutMinutes: number
  signal: AbortSignal
  /** Told of the journal and the command id; without it the script keeps no undo journal. */
  tracker?: RemoteTracker
  logGroup?: string
  onProgress?: (message: string) => void
  /** Called on every poll while the command runs (live log tailing). */
  onPoll?: (commandId: string) => Promise<void>
  pollDelayMs?: number
  heartbeatMs?: number
  /** Seconds SSM may take to deliver the command (SendCommand TimeoutSeconds, 30 or more); 600. */
  deliverySeconds?: number
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

/**
 * The command text: writes the script and its companions into a private folder and runs it with
 * bash. The agent runs it with `sh -c` (dash on Ubuntu and Debian), so it is plain POSIX sh. With a
 * journal it first starts the undo journal: the process group SSM would kill (/proc/$$/stat field
 * 5: pid (comm) state ppid pgrp) and the folder, and marks every process of the run with I2E_RUN
 * so that cleanup.sh finds what survived.
 */
export function buildCommand(script: EntryScript, args: string[], journal?: string): string {
  const files = [...companions[script], script]
  const lines = ['set -u']
  if (journal) {
    const run = journal.replace(/^.*\//, '').replace(/\.journal$/, '')
    lines.push(
      `export I2E_JOURNAL=${shellQuote(journal)} I2E_RUN=${shellQuote(run)}`,
      `mkdir -p ${JOURNAL_DIR} && chmod 700 ${JOURNAL_DIR} || exit 1`,
      'read -r _ _ _ _ g _ < /proc/$$/stat && echo "group $g" >> "$I2E_JOURNAL" || exit 1'
    )
  }
  lines.push('d=$(mktemp -d /tmp/instance-to-ebs.XXXXXX) || exit 1')
  if (journal) lines.push('echo "dir $d" >> "$I2E_JOURNAL"')
  lines.push(`trap 'rm -rf "$d"' EXIT`)
  // The scripts travel gzip'd and base64'd: as plain text convert.sh and its companions pass the
  // SendCommand document limit ("The size limit of a document is 64 KB", MaxDocumentSizeExceeded).
  // base64 -d (coreutils since 6.0) and gunzip are on every target, Ubuntu 12.04 included. Under
  // dash there is no pipefail: an empty file is the sign that decoding failed.
  for (const name of files) {
    const packed = gzipSync(scripts[name](), { level: 9 }).toString('base64')
    const marker = `I2E_EOF_${name.replace(/\W/g, '_')}`
    lines.push(
      `base64 -d <<'${marker}' | gunzip -c > "$d/${name}"`,
      ...(packed.match(/.{1,76}/g) ?? []),
      marker,
      `[ -s "$d/${name}" ] || { echo "::fail could not unpack ${name} (base64, gunzip)"; exit 1; }`
    )
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
  ExecutionTimedOut: `ran longer than ${Input.TimeoutMinutes} and was stopped`,
  DeliveryTimedOut:
    'was never delivered: the SSM agent did not pick it up in time (is the instance online in SSM?)',
  Undeliverable: 'could not be delivered: the instance is not known to SSM or was terminated',
  Terminated: 'was terminated on the instance',
  InvalidPlatform: 'does not run on this platform (AWS-RunShellScript needs Linux)',
  AccessDenied: 'was refused: the SSM agent is not allowed to run it (check the instance profile)'
}

/**
 * Longer than 60 lines because the order matters and is read top to bottom: journal before send,
 * command id right after it, the wait, the cancel on abort, then the verdict from the output.
 */
export async function runRemoteScript(o: RemoteScriptOptions): Promise<RemoteScriptResult> {
  const executionSeconds = o.timeoutMinutes * 60
  const deliverySeconds = o.deliverySeconds ?? 600
  // Recorded before it is sent: the post step must undo a command the runner did not see end.
  const journal =
    o.script !== 'cleanup.sh' && o.tracker ? `${JOURNAL_DIR}/${randomUUID()}.journal` : undefined
  if (journal) o.tracker?.journalStarted(journal)
  let sent: SendCommandCommandOutput
  try {
    sent = await o.ssm.send(
      new SendCommandCommand({
        DocumentName: 'AWS-RunShellScript',
        InstanceIds: [o.instanceId],
        Comment: `instance-to-ebs: ${o.purpose}`.slice(0, 100),
        TimeoutSeconds: deliverySeconds,
        Parameters: {
          commands: [buildCommand(o.script, o.args, journal)],
          executionTimeout: [String(executionSeconds)]
        },
        CloudWatchOutputConfig: o.logGroup
          ? { CloudWatchOutputEnabled: true, CloudWatchLogGroupName: o.logGroup }
          : undefined
      })
    )
  } catch (err) {
    if (journal) o.tracker?.journalClosed(journal) // never sent: nothing to undo
    throw err
  }
  const commandId = sent.Command?.CommandId
  if (!commandId) throw new Error(`SSM accepted the command to ${o.purpose} but returned no command id`)
  o.tracker?.commandSent(commandId)
  o.onProgress?.(`sent command ${commandId} to ${o.instanceId}: ${o.purpose}`)

  const started = Date.now()
  let lastHeartbeat = started
  const heartbeatMs = o.heartbeatMs ?? 60000
  let invocation: GetCommandInvocationCommandOutput
  try {
    invocation = await poll<GetCommandInvocationCommandOutput>({
      what: `the command to ${o.purpose} on ${o.instanceId}`,
      // Delivery may take up to TimeoutSeconds, then the script its execution timeout.
      timeoutSeconds: deliverySeconds + executionSeconds + 120,
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
  o.tracker?.commandEnded(commandId)
  await finalPoll(o, commandId)

  const stdout = invocation.StandardOutputContent ?? ''
  const stderr = invocation.StandardErrorContent ?? ''
  const truncated = stdout.length >= SSM_STDOUT_LIMIT - 100 || stderr.length >= SSM_STDERR_LIMIT - 100
  const { results, reason } = parseResults(stdout)
  const status = invocation.StatusDetails ?? invocation.Status ?? 'Unknown'
  const exitCode = invocation.ResponseCode ?? -1
  if (status === 'Success' && exitCode === 0) {
    if (journal) o.tracker?.journalClosed(journal) // the script undid its own changes
    return { commandId, status, exitCode, stdout, stderr, results, truncated }
  }

  const where = truncated
    ? o.logGroup
      ? ` The output was cut by SSM; all of it is in log group ${o.logGroup}, stream ${commandId}/${o.instanceId}/aws-runShellScript/stdout.`
      : ` The output was cut by SSM (it keeps 24,000 characters); set ${Input.LogGroup} to keep all of it in CloudWatch Logs.`
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
 * Cancels at once; the command stays with the tracker, so the cleanup waits until it has really ended
 * before it removes what the command works on (a cancel is not guaranteed to stop it).
 */
async function cancel(o: RemoteScriptOptions, commandId: string): Promise<void> {
  try {
    await o.ssm.send(new CancelCommandCommand({ CommandId: commandId, InstanceIds: [o.instanceId] }))
  } catch {
    // The cleanup and the post entry cancel again.
  }
}

export interface UndoOptions {
  ssm: SSMClient
  instanceId: string
  /** The journal the killed command kept (the 'remote-undo' resource's id). */
  journal: string
  pollDelayMs?: number
  onProgress?: (message: string) => void
}

/**
 * Sends cleanup.sh to undo what a killed command left on its instance (services stopped, key
 * material, a bundle, mounts, loop devices); a short command with a short delivery deadline, so
 * that the post step does not wait long on an instance that no longer answers. Returns its results.
 */
export async function undoRemote(o: UndoOptions): Promise<Record<string, string>> {
  const result = await runRemoteScript({
    ssm: o.ssm,
    instanceId: o.instanceId,
    script: 'cleanup.sh',
    args: ['--journal', o.journal],
    purpose: `undo what a stopped command left on ${o.instanceId}`,
    timeoutMinutes: 10,
    deliverySeconds: 120,
    signal: new AbortController().signal,
    pollDelayMs: o.pollDelayMs,
    onProgress: o.onProgress
  })
  const r = result.results
  const did = [
    r.killed && `killed ${r.killed}`,
    r.services_restarted && `started ${r.services_restarted} again`,
    r.unmounted && `unmounted ${r.unmounted}`,
    r.detached && `detached ${r.detached}`,
    r.removed && `removed ${r.removed}`
  ].filter(Boolean)
  o.onProgress?.(`on ${o.instanceId}: ${did.length > 0 ? did.join('; ') : 'nothing was left to undo'}`)
  if (r.services_not_restarted)
    throw new Error(
      `could not start ${r.services_not_restarted} again on ${o.instanceId}: start them by hand`
    )
  return r
}
