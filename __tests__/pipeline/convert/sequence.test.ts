// The whole convert sequence against a fake account: success, a failure injected at every step
// that creates something (each leaving nothing behind), and the preflight refusals.
import { afterEach, beforeEach, describe, expect, it } from '@jest/globals'
import {
  AttachVolumeCommand,
  CreateVolumeCommand,
  DeleteSnapshotCommand,
  DeleteVolumeCommand,
  DeregisterImageCommand,
  RegisterImageCommand,
  RunInstancesCommand,
  TerminateInstancesCommand
} from '@aws-sdk/client-ec2'
import { DeleteParameterCommand, PutParameterCommand } from '@aws-sdk/client-ssm'
import {
  type AccountMocks,
  AL2023_AMI,
  BUCKET,
  FakeAccount,
  type Fault,
  HELPER,
  MANIFEST_KEY,
  MANIFEST_XML,
  mockAccount,
  SOURCE_AMI,
  serviceError
} from '../../__fixtures__/aws-account.js'
import { convertWithHelper, convertWithLaunch, runConvert } from '../../__fixtures__/convert-run.js'
import { KEY } from '../../__fixtures__/inputs.js'

let account: FakeAccount
let mocks: AccountMocks

beforeEach(() => {
  account = new FakeAccount()
  mocks = mockAccount(account)
})
afterEach(() => mocks.restore())

/** A fault for the real call only, not for preflight's DryRun probe of the same operation. */
const real =
  (err: Error): Fault =>
  (input) =>
    input.DryRun ? undefined : err

const CREATING = [
  'RunInstances',
  'CreateVolume',
  'AttachVolume',
  'PutParameter',
  'SendCommand',
  'CreateSnapshot',
  'RegisterImage'
]

function expectNothingCreated(): void {
  for (const op of CREATING) expect(account.callsOf(op).filter((i) => !i.DryRun)).toEqual([])
  expect(account.leftovers()).toEqual([])
}

/** Every resource the run created was removed with the call that removes it. */
function expectAllRemoved(): void {
  for (const { kind, id } of account.created) {
    switch (kind) {
      case 'instance':
        expect(mocks.ec2).toHaveReceivedCommandWith(TerminateInstancesCommand, { InstanceIds: [id] })
        break
      case 'volume':
        expect(mocks.ec2).toHaveReceivedCommandWith(DeleteVolumeCommand, { VolumeId: id })
        break
      case 'parameter':
        expect(mocks.ssm).toHaveReceivedCommandWith(DeleteParameterCommand, { Name: id })
        break
      case 'snapshot':
        expect(mocks.ec2).toHaveReceivedCommandWith(DeleteSnapshotCommand, { SnapshotId: id })
        break
      case 'image':
        expect(mocks.ec2).toHaveReceivedCommandWith(DeregisterImageCommand, { ImageId: id })
        break
    }
  }
  expect(account.leftovers()).toEqual([])
}

describe('convert: success', () => {
  it('with a given helper: writes, snapshots, registers, sets the outputs, and keeps only the AMI and its snapshot', async () => {
    const { result, ctx, lines } = await runConvert(convertWithHelper)
    expect(result.error).toBeUndefined()
    expect(result.ok).toBe(true)
    const [parameter, volume, snapshot, image] = account.created
    expect(account.created.map((c) => c.kind)).toEqual(['parameter', 'volume', 'snapshot', 'image'])
    expect(ctx.outputs).toEqual({
      'ami-id': image?.id,
      'snapshot-id': snapshot?.id,
      'instance-store-ami-id': SOURCE_AMI,
      'manifest-location': `s3://${BUCKET}/${MANIFEST_KEY}`,
      region: 'us-east-1'
    })
    expect(account.leftovers()).toEqual([`image ${image?.id}`, `snapshot ${snapshot?.id}`])
    expect(ctx.ledger.entries()).toEqual([])
    expect(result.cleanup.kept.sort()).toEqual([`image ${image?.id}`, `snapshot ${snapshot?.id}`])

    // The temporary parameter and the volume went; the given helper stays.
    expect(mocks.ssm).toHaveReceivedCommandWith(DeleteParameterCommand, {
      Name: '/instance-to-ebs/4242-1-a1b2c3d4/x509-key'
    })
    expect(mocks.ec2).toHaveReceivedCommandWith(DeleteVolumeCommand, { VolumeId: volume?.id ?? '' })
    expect(mocks.ec2).not.toHaveReceivedCommand(TerminateInstancesCommand)
    expect(parameter?.id).toBe('/instance-to-ebs/4242-1-a1b2c3d4/x509-key')

    // The key went into a SecureString, never into the command.
    expect(mocks.ssm).toHaveReceivedCommandWith(PutParameterCommand, {
      Name: '/instance-to-ebs/4242-1-a1b2c3d4/x509-key',
      Type: 'SecureString',
      Value: KEY
    })
    const command = account.callsOf('SendCommand')[0]?.Parameters.commands[0] as string
    expect(command).toContain(
      `'--manifest' 's3://${BUCKET}/${MANIFEST_KEY}' '--key-parameter' '/instance-to-ebs/4242-1-a1b2c3d4/x509-key' '--volume-id' '${volume?.id}' '--device' '/dev/sdf' '--region' 'us-east-1'`
    )
    expect(command).not.toContain('SECRETKEYLINE')
    expect(lines.join('\n')).not.toContain('SECRETKEYLINE')

    expect(mocks.ec2).toHaveReceivedCommandWith(CreateVolumeCommand, {
      AvailabilityZone: 'us-east-1b',
      Size: 1,
      VolumeType: 'gp3'
    })
    expect(mocks.ec2).toHaveReceivedCommandWith(AttachVolumeCommand, {
      InstanceId: HELPER,
      Device: '/dev/sdf'
    })
    const register = account.callsOf('RegisterImage').find((i) => !i.DryRun)
    expect(register).toMatchObject({
      Name: 'legacy-web-ebs',
      Architecture: 'x86_64',
      RootDeviceName: '/dev/sda1',
      VirtualizationType: 'hvm',
      EnaSupport: true,
      SriovNetSupport: 'simple',
      BlockDeviceMappings: [
        {
          DeviceName: '/dev/sda1',
          Ebs: { SnapshotId: snapshot?.id, VolumeType: 'gp3', DeleteOnTermination: true, VolumeSize: 1 }
        }
      ]
    })
    expect(register?.KernelId).toBeUndefined()
    // RegisterImage tags only the image; the snapshot is tagged when it is made.
    expect(register?.TagSpecifications.map((t: { ResourceType: string }) => t.ResourceType)).toEqual([
      'image'
    ])
    expect(
      account
        .callsOf('CreateSnapshot')[0]
        ?.TagSpecifications.map((t: { ResourceType: string }) => t.ResourceType)
    ).toEqual(['snapshot'])
    expect(ctx.facts).toMatchObject({ digest: 'ok', image_bytes: '67108864', architecture: 'x86_64' })
    expect(lines.some((l) => l.startsWith(`snapshot ${snapshot?.id} to complete: 40% done`))).toBe(true)
  })

  it('with a launched helper: IMDSv2, profile, subnet, latest AL2023; terminated afterwards', async () => {
    const { result, ctx } = await runConvert(convertWithLaunch)
    expect(result.error).toBeUndefined()
    const instance = account.created.find((c) => c.kind === 'instance')?.id as string
    expect(mocks.ec2).toHaveReceivedCommandWith(RunInstancesCommand, {
      ImageId: AL2023_AMI,
      InstanceType: 't3.small',
      SubnetId: 'subnet-0123456789abcdef0',
      IamInstanceProfile: { Name: 'instance-to-ebs-helper' },
      MetadataOptions: { HttpTokens: 'required', HttpEndpoint: 'enabled' }
    })
    const run = account.callsOf('RunInstances').find((i) => !i.DryRun)
    expect(run?.TagSpecifications[0].Tags).toEqual([
      { Key: 'team', Value: 'platform' },
      { Key: 'Name', Value: 'instance-to-ebs helper' },
      { Key: 'instance-to-ebs:run', Value: '4242-1-a1b2c3d4' }
    ])
    expect(mocks.ec2).toHaveReceivedCommandWith(CreateVolumeCommand, { AvailabilityZone: 'us-east-1a' })
    expect(mocks.ec2).toHaveReceivedCommandWith(TerminateInstancesCommand, { InstanceIds: [instance] })
    expect(account.leftovers()).toEqual([
      `image ${ctx.outputs['ami-id']}`,
      `snapshot ${ctx.outputs['snapshot-id']}`
    ])
  })
})

describe('convert: a failure at every step that creates something leaves nothing behind', () => {
  const cases: [string, string, (a: FakeAccount) => void, RegExp, string][] = [
    [
      'launch helper',
      'helper',
      (a) =>
        a.failOn(
          'RunInstances',
          real(
            serviceError(
              'InsufficientInstanceCapacity',
              'We currently do not have sufficient t3.small capacity'
            )
          )
        ),
      /sufficient t3\.small capacity/,
      ''
    ],
    [
      'helper never running',
      'helper',
      (a) =>
        a.failOn(
          'DescribeInstances',
          (input) => {
            const p = a.instances.get(input.InstanceIds[0])
            if (p && p.value.InstanceId !== HELPER) {
              p.value.State = { Name: 'terminated' }
              p.settle = 0
            }
            return undefined
          },
          99
        ),
      /went to 'terminated' instead of 'running'/,
      'instance'
    ],
    [
      'key parameter',
      'key parameter',
      (a) =>
        a.failOn(
          'PutParameter',
          serviceError('AccessDeniedException', 'not authorized to perform: ssm:PutParameter')
        ),
      /allow ssm:PutParameter/,
      'instance'
    ],
    [
      'create volume',
      'create volume',
      (a) =>
        a.failOn(
          'CreateVolume',
          real(serviceError('VolumeLimitExceeded', 'You have exceeded your maximum gp3 storage limit'))
        ),
      /maximum gp3 storage limit/,
      'instance parameter'
    ],
    [
      'attach volume',
      'attach volume',
      (a) => a.failOn('AttachVolume', real(serviceError('IncorrectState', 'vol is not available'))),
      /vol is not available/,
      'instance parameter volume'
    ],
    [
      'remote write',
      'write image',
      (a) => {
        a.commandOutcome = {
          Status: 'Failed',
          StatusDetails: 'Failed',
          ResponseCode: 1,
          StandardOutputContent: 'streaming\n::fail part image.part.1: digest mismatch\n'
        }
      },
      /The command to write ami-0123456789abcdef0 onto vol-\w+ on i-\w+ failed: part image\.part\.1: digest mismatch/,
      'instance parameter volume'
    ],
    [
      'remote write without digest',
      'write image',
      (a) => {
        a.commandOutcome = {
          Status: 'Success',
          StatusDetails: 'Success',
          ResponseCode: 0,
          StandardOutputContent: '::result image_bytes=1\n'
        }
      },
      /without confirming the image digest/,
      'instance parameter volume'
    ],
    [
      'detach volume',
      'detach volume',
      (a) => a.failOn('DetachVolume', serviceError('InternalError', 'An internal error has occurred', 500)),
      /internal error/,
      'instance parameter volume'
    ],
    [
      'snapshot',
      'snapshot',
      (a) =>
        a.failOn(
          'CreateSnapshot',
          real(serviceError('SnapshotLimitExceeded', 'The maximum number of snapshots has been reached'))
        ),
      /maximum number of snapshots/,
      'instance parameter volume'
    ],
    [
      'snapshot error state',
      'snapshot',
      (a) => {
        a.snapshotOutcome = 'error'
      },
      /Snapshot snap-\w+ failed: internal error copying blocks; run again/,
      'instance parameter volume snapshot'
    ],
    [
      'register',
      'register',
      (a) =>
        a.failOn('RegisterImage', real(serviceError('InvalidParameterValue', 'Invalid root device name'))),
      /Invalid root device name/,
      'instance parameter volume snapshot'
    ],
    [
      'wait available',
      'register',
      (a) => {
        a.imageOutcome = 'failed'
      },
      /AMI ami-\w+ went to state 'failed' instead of available: the snapshot is not bootable; check the image facts/,
      'instance parameter volume snapshot image'
    ]
  ]

  it.each(cases)('%s', async (_label, step, inject, message, created) => {
    inject(account)
    const { result, ctx, warnings } = await runConvert(convertWithLaunch)
    expect(result.ok).toBe(false)
    expect(result.failedStep).toBe(step)
    expect(String((result.error as Error).message)).toMatch(message)
    expect(String((result.error as Error).message)).not.toContain('\n')
    expect(account.created.map((c) => c.kind).join(' ')).toBe(created)
    expectAllRemoved()
    expect(ctx.ledger.entries()).toEqual([])
    expect(result.cleanup.problems).toEqual([])
    expect(warnings).toEqual([])
  })

  it('removes the snapshot and the AMI of a failed run', async () => {
    account.imageOutcome = 'failed'
    await runConvert(convertWithHelper)
    expect(account.created.map((c) => c.kind)).toEqual(['parameter', 'volume', 'snapshot', 'image'])
    expectAllRemoved()
  })
})

describe('convert: preflight refuses before anything is created', () => {
  it('dry run: checks everything, creates nothing, says so', async () => {
    const { result, lines } = await runConvert({ ...convertWithLaunch, 'dry-run': 'true' })
    expect(result.ok).toBe(true)
    expect(lines).toContain('dry run: everything checked, nothing created')
    expectNothingCreated()
    // Permission was proven with DryRun calls.
    for (const op of ['RunInstances', 'CreateVolume', 'AttachVolume', 'CreateSnapshot', 'RegisterImage'])
      expect(account.callsOf(op).map((i) => i.DryRun)).toEqual([true])
    expect(result.timings.filter((t) => t.status === 'skipped').map((t) => t.step)).toEqual([
      'helper',
      'key parameter',
      'create volume',
      'attach volume',
      'write image',
      'detach volume',
      'snapshot',
      'register'
    ])
  })

  it('a helper offline in SSM: explains how to fix it', async () => {
    account.ping.set(HELPER, 'ConnectionLost')
    const { result } = await runConvert(convertWithHelper)
    expect(result.failedStep).toBe('preflight')
    expect((result.error as Error).message).toMatch(
      /Helper instance i-0fedcba9876543210 is ConnectionLost in SSM.*AmazonSSMManagedInstanceCore/
    )
    expectNothingCreated()
  })

  it('a stopped or instance-store helper', async () => {
    const helper = account.instances.get(HELPER)?.value
    if (helper) helper.RootDeviceType = 'instance-store'
    const { result } = await runConvert(convertWithHelper)
    expect((result.error as Error).message).toMatch(/instance-store-backed; the helper must be EBS-backed/)
    expectNothingCreated()
  })

  it('a part missing in S3', async () => {
    account.objects.delete(`${BUCKET}/legacy/image.part.1`)
    const { result } = await runConvert(convertWithHelper)
    expect(result.failedStep).toBe('preflight source')
    expect((result.error as Error).message).toMatch(
      /1 of 2 bundle parts beside s3:\/\/my-bundles\/legacy\/image\.manifest\.xml cannot be read: image\.part\.1 \(missing\)/
    )
    expectNothingCreated()
  })

  it('a source that is already EBS-backed', async () => {
    const source = account.images.get(SOURCE_AMI)?.value
    if (source) source.RootDeviceType = 'ebs'
    const { result } = await runConvert(convertWithHelper)
    expect((result.error as Error).message).toMatch(/already EBS-backed; there is nothing to convert/)
    expectNothingCreated()
  })

  it('no permission to create the volume: names the IAM action', async () => {
    account.denied.add('CreateVolume')
    const { result } = await runConvert(convertWithHelper)
    expect((result.error as Error).message).toMatch(/not allowed to call ec2:CreateVolume/)
    expectNothingCreated()
  })

  it('volume-size smaller than the image', async () => {
    account.objects.set(
      `${BUCKET}/${MANIFEST_KEY}`,
      MANIFEST_XML.replace('<size>67108864</size>', '<size>5368709121</size>')
    )
    const { result } = await runConvert({ ...convertWithHelper, 'volume-size': '5' })
    expect((result.error as Error).message).toMatch(
      /'volume-size' 5 GiB is smaller than the image \(5368709121 bytes = 6 GiB\); set it to 6 or more/
    )
    expectNothingCreated()
  })

  it('volume-size larger than the image is used', async () => {
    const { result } = await runConvert({ ...convertWithHelper, 'volume-size': '20' })
    expect(result.ok).toBe(true)
    expect(mocks.ec2).toHaveReceivedCommandWith(CreateVolumeCommand, { Size: 20 })
  })
})

describe('convert: if-ami-exists', () => {
  beforeEach(() => account.addEbsImage('ami-0cccccccccccccccc', 'legacy-web-ebs', 'snap-0cccccccccccccccc'))

  it('fail (the default): says which input decides', async () => {
    const { result } = await runConvert(convertWithHelper)
    expect((result.error as Error).message).toBe(
      "An AMI named 'legacy-web-ebs' already exists (ami-0cccccccccccccccc); set 'if-ami-exists' to reuse or replace, or choose another 'ami-name'"
    )
    expectNothingCreated()
  })

  it('reuse: the existing AMI is the result and nothing is made', async () => {
    const { result, ctx } = await runConvert({ ...convertWithHelper, 'if-ami-exists': 'reuse' })
    expect(result.ok).toBe(true)
    expect(ctx.outputs).toMatchObject({
      'ami-id': 'ami-0cccccccccccccccc',
      'snapshot-id': 'snap-0cccccccccccccccc',
      'instance-store-ami-id': SOURCE_AMI
    })
    expectNothingCreated()
  })

  it('replace without permission to deregister the old AMI: refused before anything is made', async () => {
    account.denied.add('DeregisterImage')
    const { result } = await runConvert({ ...convertWithHelper, 'if-ami-exists': 'replace' })
    expect((result.error as Error).message).toMatch(
      /not allowed to call ec2:DeregisterImage on ami-0cccccccccccccccc/
    )
    expectNothingCreated()
    expect(account.images.has('ami-0cccccccccccccccc')).toBe(true)
  })

  it('replace: the old AMI and its snapshot go, the new one takes the name', async () => {
    const { result, ctx } = await runConvert({ ...convertWithHelper, 'if-ami-exists': 'replace' })
    expect(result.error).toBeUndefined()
    expect(mocks.ec2).toHaveReceivedCommandWith(DeregisterImageCommand, { ImageId: 'ami-0cccccccccccccccc' })
    expect(mocks.ec2).toHaveReceivedCommandWith(DeleteSnapshotCommand, {
      SnapshotId: 'snap-0cccccccccccccccc'
    })
    expect(mocks.ec2).toHaveReceivedCommandWith(RegisterImageCommand, { Name: 'legacy-web-ebs' })
    expect(account.images.has('ami-0cccccccccccccccc')).toBe(false)
    expect(account.leftovers()).toEqual([
      `image ${ctx.outputs['ami-id']}`,
      `snapshot ${ctx.outputs['snapshot-id']}`
    ])
  })
})
