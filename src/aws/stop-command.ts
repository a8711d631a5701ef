// Stops one SSM command on one instance and waits until SSM says it has ended, so that whatever
// the command works on (the attached volume, the key parameter) is removed only after it stopped.
//
// CancelCommand: "Attempts to cancel the command specified by the Command ID. There is no guarantee
// that the command will be terminated and the underlying process stopped." (SSM API reference,
// CancelCommand). So the cancel is sent again while the invocation still shows a running status,
// and the wait ends only on a terminal one.
// Right after SendCommand an invocation may not be visible yet (GetCommandInvocation answers
// InvocationDoesNotExist: eventual consistency, boto/boto3#2701, aws/aws-cli#3546): a cleanup that
// runs that soon (post after a SIGKILL) must not take "not visible yet" for "gone".
import { CancelCommandCommand, GetCommandInvocationCommand, type SSMClient } from '@aws-sdk/client-ssm'
import { poll } from './poll.js'
import { errorCode } from '../errors.js'

/** GetCommandInvocation's Status values after which nothing runs any more (API_GetCommandInvocation). */
export const ENDED = new Set(['Success', 'Cancelled', 'TimedOut', 'Failed'])
/** Codes that say the command or its invocation is unknown: not visible yet, or gone. */
const UNKNOWN = new Set(['InvocationDoesNotExist', 'InvalidCommandId'])

export interface StopCommandOptions {
  /** How long to wait for the command to end. */
  timeoutSeconds?: number
  /** How long an invocation never seen may stay unknown before it counts as gone. */
  visibleWithinSeconds?: number
  minDelayMs?: number
  now?: () => number
}

/** Cancels the command and waits until its invocation on the instance has ended; the status it ended with. */
export async function stopCommand(
  ssm: SSMClient,
  commandId: string,
  instanceId: string,
  o: StopCommandOptions = {}
): Promise<string> {
  const now = o.now ?? Date.now
  const started = now()
  const visibleWithinMs = (o.visibleWithinSeconds ?? 60) * 1000
  let seen = false
  const cancel = async (): Promise<void> => {
    try {
      await ssm.send(new CancelCommandCommand({ CommandId: commandId, InstanceIds: [instanceId] }))
    } catch (err) {
      // Unknown yet (or already gone): the status below decides.
      if (!UNKNOWN.has(errorCode(err) ?? '')) throw err
    }
  }
  return poll<string>({
    what: `command ${commandId} on ${instanceId} to stop`,
    timeoutSeconds: o.timeoutSeconds ?? 300,
    minDelayMs: o.minDelayMs ?? 2000,
    maxDelayMs: 10000,
    now,
    check: async () => {
      await cancel()
      try {
        const out = await ssm.send(
          new GetCommandInvocationCommand({ CommandId: commandId, InstanceId: instanceId })
        )
        seen = true
        const status = out.Status ?? 'Pending'
        if (ENDED.has(status)) return { done: true, value: status }
        return { done: false, progress: out.StatusDetails ?? status }
      } catch (err) {
        if (!UNKNOWN.has(errorCode(err) ?? '')) throw err
        // Seen before and unknown now, or never seen for long: SSM no longer has it.
        if (seen || now() - started >= visibleWithinMs) return { done: true, value: 'gone' }
        return { done: false, progress: 'not visible yet' }
      }
    }
  })
}
