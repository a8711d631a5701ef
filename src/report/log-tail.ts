// Live output of a remote command: SSM sends the script's stdout to CloudWatch Logs when
// log-group is set (CloudWatchOutputConfig); we read the stream on every poll and print the new
// lines, so a long bundling shows its progress as it happens instead of at the end.
import {
  type CloudWatchLogsClient,
  GetLogEventsCommand,
  type GetLogEventsCommandOutput
} from '@aws-sdk/client-cloudwatch-logs'
import * as core from '@actions/core'
import { errorCode } from '../errors.js'
import { messageOf } from '../errors.js'

/** Where SSM's AWS-RunShellScript writes a command's stdout for one instance. */
export const stdoutStream = (commandId: string, instanceId: string): string =>
  `${commandId}/${instanceId}/aws-runShellScript/stdout`

/**
 * Printed before every remote line. Not whitespace: the runner trims leading whitespace and
 * would obey a remote line that looks like a workflow command (`::add-mask::`, `::error::`…).
 */
export const LINE_PREFIX = '│ '

/** Pages read per poll at most, so one poll never turns into a long download. */
const MAX_PAGES = 20

export interface LogTailOptions {
  logs: CloudWatchLogsClient
  logGroup: string
  instanceId: string
  print?: (line: string) => void
  warn?: (message: string) => void
}

/** runRemoteScript's onPoll, plus flush to read what arrived after the last poll. */
export type LogTail = ((commandId: string) => Promise<void>) & {
  flush: (commandId: string) => Promise<void>
}

export function createLogTail(o: LogTailOptions): LogTail {
  const print = o.print ?? ((line: string) => core.info(line))
  const warn = o.warn ?? ((message: string) => core.warning(message))
  const tokens = new Map<string, string | undefined>()
  const stopped = new Set<string>()

  const read = async (commandId: string): Promise<void> => {
    if (stopped.has(commandId)) return
    const stream = stdoutStream(commandId, o.instanceId)
    try {
      for (let page = 0; page < MAX_PAGES; page++) {
        const token = tokens.get(commandId)
        const out: GetLogEventsCommandOutput = await o.logs.send(
          new GetLogEventsCommand({
            logGroupName: o.logGroup,
            logStreamName: stream,
            startFromHead: true,
            nextToken: token
          })
        )
        for (const event of out.events ?? [])
          for (const line of (event.message ?? '').replace(/\n$/, '').split('\n'))
            print(`${LINE_PREFIX}${line}`)
        tokens.set(commandId, out.nextForwardToken ?? token)
        // The same token back means the end of the stream for now.
        if ((out.events ?? []).length === 0 || out.nextForwardToken === token) return
      }
    } catch (err) {
      // The stream appears with the first output; until then there is nothing to show.
      if (errorCode(err) === 'ResourceNotFoundException') return
      stopped.add(commandId)
      warn(
        `Cannot show the live output from log group ${o.logGroup} (${errorCode(err) ?? 'error'}: ${messageOf(err)}); ` +
          'the output still arrives when the command ends. The workflow role needs logs:GetLogEvents on the log group.'
      )
    }
  }
  return Object.assign(read, { flush: read })
}

/**
 * The runRemoteScript options for live output, to spread into its call:
 * `runRemoteScript({ ..., ...liveOutput(ctx, instanceId) })`. Empty when log-group is not set.
 */
export function liveOutput(
  ctx: { clients: { logs: CloudWatchLogsClient }; settings: { logGroup?: string } },
  instanceId: string
): { logGroup?: string; onPoll?: LogTail } {
  const onPoll = logTailFor(ctx.clients.logs, ctx.settings.logGroup, instanceId)
  return onPoll ? { logGroup: ctx.settings.logGroup, onPoll } : {}
}

/** The tail for a command on instanceId, or undefined when log-group is not set. */
export function logTailFor(
  logs: CloudWatchLogsClient,
  logGroup: string | undefined,
  instanceId: string
): LogTail | undefined {
  return logGroup ? createLogTail({ logs, logGroup, instanceId }) : undefined
}
