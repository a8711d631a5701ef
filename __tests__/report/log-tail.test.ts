import { describe, expect, it } from '@jest/globals'
import { CloudWatchLogsClient, GetLogEventsCommand } from '@aws-sdk/client-cloudwatch-logs'
import { SendCommandCommand, GetCommandInvocationCommand, SSMClient } from '@aws-sdk/client-ssm'
import { mockClient } from 'aws-sdk-client-mock'
import { runRemoteScript } from '../../src/aws/remote-script.js'
import { createLogTail, liveOutput, logTailFor, stdoutStream } from '../../src/report/log-tail.js'
import { serviceError } from '../__fixtures__/errors.js'

const notFound = () => serviceError('ResourceNotFoundException', 'The specified log stream does not exist.')
const events = (...messages: string[]) => messages.map((message, i) => ({ message, timestamp: i }))

function setup() {
  const logs = mockClient(CloudWatchLogsClient)
  const printed: string[] = []
  const warnings: string[] = []
  const tail = createLogTail({
    logs: new CloudWatchLogsClient({ region: 'us-east-1' }),
    logGroup: '/i2e/runs',
    instanceId: 'i-0123456789abcdef0',
    print: (l) => printed.push(l),
    warn: (w) => warnings.push(w)
  })
  return { logs, printed, warnings, tail }
}

describe('createLogTail', () => {
  it('waits for the stream, then prints new lines from the head, following nextForwardToken', async () => {
    const { logs, printed, warnings, tail } = setup()
    logs
      .on(GetLogEventsCommand)
      .rejectsOnce(notFound())
      .resolvesOnce({ events: events('12:00:01 bundling /', '::result a=1\n'), nextForwardToken: 'f/2' })
      .resolvesOnce({ events: [], nextForwardToken: 'f/2' })
      .resolvesOnce({ events: events('12:05:00 uploading\n12:06:00 done'), nextForwardToken: 'f/3' })
      .resolvesOnce({ events: [], nextForwardToken: 'f/3' })
    await tail('cmd-1')
    expect(printed).toEqual([])
    await tail('cmd-1')
    await tail.flush('cmd-1')
    expect(printed).toEqual([
      '│ 12:00:01 bundling /',
      '│ ::result a=1',
      '│ 12:05:00 uploading',
      '│ 12:06:00 done'
    ])
    expect(warnings).toEqual([])
    const calls = logs.commandCalls(GetLogEventsCommand).map((c) => c.args[0].input)
    expect(calls[0]).toEqual({
      logGroupName: '/i2e/runs',
      logStreamName: 'cmd-1/i-0123456789abcdef0/aws-runShellScript/stdout',
      startFromHead: true,
      nextToken: undefined
    })
    expect(calls.map((c) => c.nextToken)).toEqual([undefined, undefined, 'f/2', 'f/2', 'f/3'])
  })

  it('keeps one position per command', async () => {
    const { logs, printed, tail } = setup()
    logs
      .on(GetLogEventsCommand)
      .callsFake((input: { logStreamName: string; nextToken?: string }) =>
        input.nextToken
          ? { events: [], nextForwardToken: input.nextToken }
          : { events: events(input.logStreamName.split('/')[0] as string), nextForwardToken: 'f/1' }
      )
    await tail('cmd-1')
    await tail('cmd-2')
    await tail('cmd-1')
    expect(printed).toEqual(['│ cmd-1', '│ cmd-2'])
  })

  it('stops with one warning, never an error, when it may not read the log group', async () => {
    const { logs, printed, warnings, tail } = setup()
    logs.on(GetLogEventsCommand).rejects(serviceError('AccessDeniedException', 'not authorized'))
    await tail('cmd-1')
    await tail('cmd-1')
    expect(printed).toEqual([])
    expect(warnings).toHaveLength(1)
    expect(warnings[0]).toContain('AccessDeniedException: not authorized')
    expect(warnings[0]).toContain('logs:GetLogEvents')
    expect(logs.commandCalls(GetLogEventsCommand)).toHaveLength(1)
  })

  it('reads at most 20 pages per poll', async () => {
    const { logs, tail } = setup()
    let n = 0
    logs.on(GetLogEventsCommand).callsFake(() => ({ events: events('x'), nextForwardToken: `f/${++n}` }))
    await tail('cmd-1')
    expect(logs.commandCalls(GetLogEventsCommand)).toHaveLength(20)
  })

  it('names the stream as SSM does', () => {
    expect(stdoutStream('c', 'i')).toBe('c/i/aws-runShellScript/stdout')
  })
})

describe('logTailFor', () => {
  it('tails only when log-group is set', () => {
    const logs = new CloudWatchLogsClient({ region: 'us-east-1' })
    expect(logTailFor(logs, undefined, 'i-1')).toBeUndefined()
    expect(typeof logTailFor(logs, '/g', 'i-1')).toBe('function')
  })

  it('gives runRemoteScript the log group and the tail, or nothing', () => {
    const logs = new CloudWatchLogsClient({ region: 'us-east-1' })
    expect(liveOutput({ clients: { logs }, settings: {} }, 'i-1')).toEqual({})
    const options = liveOutput({ clients: { logs }, settings: { logGroup: '/g' } }, 'i-1')
    expect(options.logGroup).toBe('/g')
    expect(typeof options.onPoll).toBe('function')
  })

  it('serves as runRemoteScript onPoll: lines appear while the command runs', async () => {
    const logs = mockClient(CloudWatchLogsClient)
    const ssm = mockClient(SSMClient)
    ssm.on(SendCommandCommand).resolves({ Command: { CommandId: 'cmd-9' } })
    ssm
      .on(GetCommandInvocationCommand)
      .resolvesOnce({ Status: 'InProgress', StatusDetails: 'InProgress' })
      .resolves({ Status: 'Success', StatusDetails: 'Success', ResponseCode: 0, StandardOutputContent: '' })
    logs
      .on(GetLogEventsCommand)
      .resolvesOnce({ events: events('halfway'), nextForwardToken: 'f/1' })
      .resolves({ events: [], nextForwardToken: 'f/1' })
    const printed: string[] = []
    const tail = createLogTail({
      logs: new CloudWatchLogsClient({ region: 'us-east-1' }),
      logGroup: '/g',
      instanceId: 'i-0123456789abcdef0',
      print: (l) => printed.push(l)
    })
    await runRemoteScript({
      ssm: new SSMClient({ region: 'us-east-1' }),
      instanceId: 'i-0123456789abcdef0',
      script: 'convert.sh',
      args: [],
      purpose: 'test',
      timeoutMinutes: 5,
      signal: new AbortController().signal,
      logGroup: '/g',
      onPoll: tail,
      pollDelayMs: 1
    })
    expect(printed).toEqual(['│ halfway'])
    expect(ssm.commandCalls(SendCommandCommand)[0]?.args[0].input.CloudWatchOutputConfig).toEqual({
      CloudWatchOutputEnabled: true,
      CloudWatchLogGroupName: '/g'
    })
  })
})
