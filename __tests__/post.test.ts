import { describe, expect, it } from '@jest/globals'
import {
  DeleteSnapshotCommand,
  DeleteVolumeCommand,
  DeregisterImageCommand,
  DescribeVolumesCommand,
  DetachVolumeCommand,
  EC2Client,
  TerminateInstancesCommand
} from '@aws-sdk/client-ec2'
import {
  CancelCommandCommand,
  DeleteParameterCommand,
  GetCommandInvocationCommand,
  SSMClient
} from '@aws-sdk/client-ssm'
import { mockClient } from 'aws-sdk-client-mock'
import { Ledger } from '../src/pipeline/ledger.js'
import { post } from '../src/post.js'
import { runnerFiles, withEnv } from './__fixtures__/runner-files.js'
import { serviceError } from './__fixtures__/errors.js'

describe('post', () => {
  it('removes, from state alone and in reverse order, what a dead main process left', async () => {
    const files = runnerFiles()
    const ec2 = mockClient(EC2Client)
    const ssm = mockClient(SSMClient)
    const calls: string[] = []
    ec2.on(TerminateInstancesCommand).callsFake(async () => void calls.push('terminate i-00000001'))
    ec2.on(DetachVolumeCommand).callsFake(async () => void calls.push('detach vol-00000001'))
    ec2.on(DescribeVolumesCommand).resolves({ Volumes: [{ VolumeId: 'vol-00000001', Attachments: [] }] })
    ec2.on(DeleteVolumeCommand).callsFake(async () => void calls.push('delete vol-00000001'))
    ec2.on(DeleteSnapshotCommand).callsFake(async () => void calls.push('delete snap-00000001'))
    ec2.on(DeregisterImageCommand).callsFake(async () => void calls.push('deregister ami-00000001'))
    ssm.on(DeleteParameterCommand).callsFake(async () => void calls.push('delete parameter'))
    ssm.on(CancelCommandCommand).callsFake(async () => void calls.push('cancel command'))
    ssm.on(GetCommandInvocationCommand).resolves({ Status: 'Cancelled', StatusDetails: 'Cancelled' })

    // The main process records as it goes (through core.saveState into GITHUB_STATE), then dies.
    await withEnv({ ...files.env }, async () => {
      const ledger = new Ledger('eu-west-1')
      ledger.record({ kind: 'instance', id: 'i-00000001', removeOn: 'always' })
      ledger.record({ kind: 'parameter', id: '/instance-to-ebs/key', removeOn: 'always' })
      ledger.record({ kind: 'volume', id: 'vol-00000001', removeOn: 'always' })
      ledger.record({
        kind: 'attachment',
        id: 'vol-00000001',
        removeOn: 'always',
        detail: { instanceId: 'i-00000001' }
      })
      ledger.record({
        kind: 'command',
        id: 'cmd-1',
        removeOn: 'always',
        detail: { instanceId: 'i-00000001' }
      })
      ledger.record({ kind: 'snapshot', id: 'snap-00000001', removeOn: 'failure' })
      ledger.record({ kind: 'image', id: 'ami-00000001', removeOn: 'failure' })
    })
    const state = files.state()
    const stateEnv = Object.fromEntries(Object.entries(state).map(([k, v]) => [`STATE_${k}`, v]))

    const report = await withEnv(
      { ...stateEnv, GITHUB_STATE: files.env.GITHUB_STATE, STATE_region: 'eu-west-1' },
      () => post()
    )
    expect(calls).toEqual([
      'deregister ami-00000001',
      'delete snap-00000001',
      'cancel command',
      'detach vol-00000001',
      'delete vol-00000001',
      'delete parameter',
      'terminate i-00000001'
    ])
    expect(report.problems).toEqual([])
    expect(report.removed).toHaveLength(7)
    expect(ec2).toHaveReceivedCommandWith(DetachVolumeCommand, {
      VolumeId: 'vol-00000001',
      InstanceId: 'i-00000001'
    })
    // What post removed is forgotten in the state too.
    expect(JSON.parse(files.state().ledger as string)).toEqual([])
    ec2.restore()
    ssm.restore()
  })

  it('removes the volume and the key parameter only once the cancelled command has ended', async () => {
    const ec2 = mockClient(EC2Client)
    const ssm = mockClient(SSMClient)
    const calls: string[] = []
    ec2
      .on(DescribeVolumesCommand)
      .resolves({ Volumes: [{ VolumeId: 'vol-0123456789abcdef1', Attachments: [] }] })
    ec2.on(DetachVolumeCommand).callsFake(async () => void calls.push('detach vol-0123456789abcdef1'))
    ec2.on(DeleteVolumeCommand).callsFake(async () => void calls.push('delete vol-0123456789abcdef1'))
    ssm.on(DeleteParameterCommand).callsFake(async () => void calls.push('delete parameter'))
    ssm.on(CancelCommandCommand).callsFake(async () => void calls.push('cancel command'))
    // Not visible yet right after SendCommand, then still running after the first cancel.
    const answers = [
      serviceError('InvocationDoesNotExist'),
      { Status: 'InProgress', StatusDetails: 'Cancelling' },
      { Status: 'Cancelled', StatusDetails: 'Cancelled' }
    ]
    ssm.on(GetCommandInvocationCommand).callsFake(async () => {
      const answer = answers.shift()
      calls.push(`status ${answer instanceof Error ? answer.name : answer?.StatusDetails}`)
      if (answer instanceof Error) throw answer
      return answer
    })
    const ledger = JSON.stringify([
      { kind: 'parameter', id: '/instance-to-ebs/key', region: 'us-east-1', removeOn: 'always', step: 'key' },
      {
        kind: 'volume',
        id: 'vol-0123456789abcdef1',
        region: 'us-east-1',
        removeOn: 'always',
        step: 'volume'
      },
      {
        kind: 'attachment',
        id: 'vol-0123456789abcdef1',
        region: 'us-east-1',
        removeOn: 'always',
        step: 'attach',
        detail: { instanceId: 'i-0123456789abcdef1' }
      },
      {
        kind: 'command',
        id: 'cmd-1',
        region: 'us-east-1',
        removeOn: 'always',
        step: 'write',
        detail: { instanceId: 'i-0123456789abcdef1' }
      }
    ])
    const files = runnerFiles()
    const report = await withEnv({ STATE_ledger: ledger, GITHUB_STATE: files.env.GITHUB_STATE }, () => post())
    expect(report.problems).toEqual([])
    expect(calls).toEqual([
      'cancel command',
      'status InvocationDoesNotExist',
      'cancel command',
      'status Cancelling',
      'cancel command',
      'status Cancelled',
      'detach vol-0123456789abcdef1',
      'delete vol-0123456789abcdef1',
      'delete parameter'
    ])
    ec2.restore()
    ssm.restore()
  }, 30_000)

  it('does nothing, and calls nothing, when main left nothing behind', async () => {
    const ec2 = mockClient(EC2Client)
    const report = await withEnv({ STATE_ledger: '[]' }, () => post())
    expect(report.removed).toEqual([])
    expect(ec2.calls()).toHaveLength(0)
    ec2.restore()
  })

  it('treats an already removed resource as removed and warns about a real failure without throwing', async () => {
    const ec2 = mockClient(EC2Client)
    ec2.on(DeleteSnapshotCommand).rejects(serviceError('InvalidSnapshot.NotFound', 'gone'))
    ec2.on(DeregisterImageCommand).rejects(serviceError('UnauthorizedOperation', 'not yours'))
    const ledger = JSON.stringify([
      { kind: 'snapshot', id: 'snap-00000002', region: 'us-east-1', removeOn: 'failure', step: 'snapshot' },
      { kind: 'image', id: 'ami-00000002', region: 'us-east-1', removeOn: 'failure', step: 'register' }
    ])
    const files = runnerFiles()
    const report = await withEnv({ STATE_ledger: ledger, GITHUB_STATE: files.env.GITHUB_STATE }, () => post())
    expect(report.removed).toEqual(['snapshot snap-00000002'])
    expect(report.problems).toEqual(['could not remove image ami-00000002: not yours'])
    ec2.restore()
  })
})
