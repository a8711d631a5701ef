import { describe, expect, it } from '@jest/globals'
import { CancelCommandCommand, GetCommandInvocationCommand, SSMClient } from '@aws-sdk/client-ssm'
import { mockClient } from 'aws-sdk-client-mock'
import { PollTimeoutError } from '../../src/aws/poll.js'
import { stopCommand } from '../../src/aws/stop-command.js'
import { serviceError } from '../__fixtures__/errors.js'

const error = (name: string) => serviceError(name)
const client = () => new SSMClient({ region: 'us-east-1' })

/** GetCommandInvocation answers these in turn (an Error is thrown), the last one from then on. */
function statuses(...answers: (string | Error)[]) {
  const ssm = mockClient(SSMClient)
  const seen: string[] = []
  ssm.on(CancelCommandCommand).callsFake(async () => void seen.push('cancel'))
  let i = 0
  ssm.on(GetCommandInvocationCommand).callsFake(async () => {
    const answer = answers[Math.min(i++, answers.length - 1)] as string | Error
    seen.push(answer instanceof Error ? answer.name : answer)
    if (answer instanceof Error) throw answer
    return { Status: answer, StatusDetails: answer === 'InProgress' && i > 1 ? 'Cancelling' : answer }
  })
  return { ssm, seen }
}

describe('stopCommand', () => {
  it('cancels again while the command still runs and returns only once it has ended', async () => {
    const { ssm, seen } = statuses('InProgress', 'InProgress', 'Cancelled')
    await expect(stopCommand(client(), 'cmd-1', 'i-1', { minDelayMs: 1 })).resolves.toBe('Cancelled')
    expect(seen).toEqual(['cancel', 'InProgress', 'cancel', 'InProgress', 'cancel', 'Cancelled'])
    expect(ssm).toHaveReceivedCommandWith(CancelCommandCommand, { CommandId: 'cmd-1', InstanceIds: ['i-1'] })
    ssm.restore()
  })

  it('does not take an invocation that is not visible yet for one that is gone', async () => {
    const { ssm, seen } = statuses(
      error('InvocationDoesNotExist'),
      error('InvocationDoesNotExist'),
      'Pending',
      'Cancelled'
    )
    // The cancel itself may not know the command yet either.
    ssm.on(CancelCommandCommand).rejectsOnce(error('InvalidCommandId')).resolves({})
    await expect(stopCommand(client(), 'cmd-1', 'i-1', { minDelayMs: 1 })).resolves.toBe('Cancelled')
    expect(seen).toEqual(['InvocationDoesNotExist', 'InvocationDoesNotExist', 'Pending', 'Cancelled'])
    expect(ssm).toHaveReceivedCommandTimes(CancelCommandCommand, 4)
    ssm.restore()
  })

  it('counts a command never seen within visibleWithinSeconds, or unknown after it was seen, as gone', async () => {
    let t = 0
    const never = statuses(error('InvocationDoesNotExist'))
    const now = () => (t += 400)
    await expect(
      stopCommand(client(), 'cmd-1', 'i-1', { minDelayMs: 1, visibleWithinSeconds: 2, now })
    ).resolves.toBe('gone')
    expect(never.seen.filter((s) => s !== 'cancel').length).toBeGreaterThan(1) // it did wait
    never.ssm.restore()

    const vanished = statuses('InProgress', error('InvalidCommandId'))
    await expect(stopCommand(client(), 'cmd-1', 'i-1', { minDelayMs: 1 })).resolves.toBe('gone')
    vanished.ssm.restore()
  })

  it('gives up with the last status it saw when the command does not end in time', async () => {
    const { ssm } = statuses('InProgress')
    const stopped = stopCommand(client(), 'cmd-1', 'i-1', { minDelayMs: 1, timeoutSeconds: 0.05 })
    await expect(stopped).rejects.toBeInstanceOf(PollTimeoutError)
    await expect(stopped).rejects.toThrow(/command cmd-1 on i-1 to stop.*Cancelling/)
    ssm.restore()
  })

  it('lets other errors through', async () => {
    const { ssm } = statuses(error('AccessDeniedException'))
    await expect(stopCommand(client(), 'cmd-1', 'i-1', { minDelayMs: 1 })).rejects.toThrow(
      'AccessDeniedException'
    )
    ssm.restore()
  })
})
