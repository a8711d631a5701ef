// A small, stateful fake AWS account for the convert steps: an instance-store AMI whose bundle
// is in S3, a running EBS helper online in SSM, volumes that become available/attached/detached,
// snapshots that complete, images that become available, SSM commands that succeed with
// `::result digest=ok`. Tests inject faults per operation and read what is left behind.
//
// Two ways in: `mockAccount` answers through aws-sdk-client-mock (so the jest matchers work);
// `wireAccount` answers from inside each real client's middleware stack, below the SDK's retry
// middleware, so that throttling errors go through the SDK's own retry strategy.
import { createHash } from 'node:crypto'
import { readFileSync } from 'node:fs'
import * as ebs from '@aws-sdk/client-ebs'
import * as ec2 from '@aws-sdk/client-ec2'
import * as s3 from '@aws-sdk/client-s3'
import * as ssm from '@aws-sdk/client-ssm'
import { type AwsClientStub, type AwsStub, mockClient } from 'aws-sdk-client-mock'
import type { Clients } from '../../src/aws/clients.js'
import { enforceContract } from './contract.js'
import { serviceError } from './errors.js'

// biome-ignore lint/suspicious/noExplicitAny: inputs of many operations, read loosely by the fake
type In = Record<string, any>
type Out = Record<string, unknown>

export const REGION = 'us-east-1'
export const SOURCE_AMI = 'ami-0123456789abcdef0'
export const HELPER = 'i-0fedcba9876543210'
export const HELPER_ROOT = 'vol-0aaaaaaaaaaaaaaaa'
export const SUBNET = 'subnet-0123456789abcdef0'
export const BUCKET = 'my-bundles'
export const MANIFEST_KEY = 'legacy/image.manifest.xml'
export const AL2023_AMI = 'ami-0a1b2c3d4e5f60718'
export const MANIFEST_XML = readFileSync(
  new URL('../../fixtures/bundles/hvm-mbr/image.manifest.xml', import.meta.url),
  'utf8'
)

export { serviceError }

export type Fault = Error | ((input: In, nth: number) => Error | undefined)

interface Pending<T> {
  value: T
  /** Describes left before the next state. */
  settle: number
}

export class FakeAccount {
  images = new Map<string, Pending<ec2.Image>>()
  instances = new Map<string, Pending<ec2.Instance>>()
  ping = new Map<string, string>()
  subnets = new Map<string, string>([[SUBNET, 'us-east-1a']])
  volumes = new Map<string, Pending<ec2.Volume>>()
  snapshots = new Map<string, Pending<ec2.Snapshot>>()
  parameters = new Map<string, { Type: string; Value: string }>()
  objects = new Map<string, string | Buffer>()
  /** Snapshots written with the EBS direct APIs: their blocks, until and after CompleteSnapshot. */
  direct = new Map<
    string,
    { volumeSize: number; blocks: Map<number, Buffer>; completed: boolean; input: In }
  >()
  commands = new Map<string, { instanceId: string; polls: number; text: string; cancelled?: boolean }>()
  /** Operations whose DryRun answers UnauthorizedOperation. */
  denied = new Set<string>()
  /** What the remote script prints and how it ends. */
  commandOutcome: Out = {
    Status: 'Success',
    StatusDetails: 'Success',
    ResponseCode: 0,
    StandardOutputContent:
      'streaming 2 parts\n::result target=/dev/nvme1n1\n::result image_bytes=67108864\n::result bytes_written=16777216\n::result digest=ok\n::result kernel_version=3.2.0-23-virtual\n'
  }
  imageOutcome: 'available' | 'failed' = 'available'
  snapshotOutcome: 'completed' | 'error' = 'completed'
  /** Every Nth call to the account (all operations counted together) fails with RequestLimitExceeded (0: never). */
  throttleEvery = 0
  readonly calls: { op: string; input: In; throttled: boolean }[] = []
  /** What the run created, in order. */
  readonly created: { kind: 'instance' | 'volume' | 'snapshot' | 'image' | 'parameter'; id: string }[] = []
  private faults = new Map<string, { fault: Fault; times: number }>()
  private counts = new Map<string, number>()
  private seq = 0
  /** Ids that existed before the run: not leftovers. */
  protected readonly initial: Set<string>

  constructor() {
    this.images.set(SOURCE_AMI, {
      settle: 0,
      value: {
        ImageId: SOURCE_AMI,
        Name: 'legacy-web',
        State: 'available',
        OwnerId: '123456789012',
        RootDeviceType: 'instance-store',
        ImageLocation: `${BUCKET}/${MANIFEST_KEY}`,
        Architecture: 'x86_64',
        VirtualizationType: 'hvm',
        RootDeviceName: '/dev/sda1',
        EnaSupport: true,
        SriovNetSupport: 'simple',
        BlockDeviceMappings: []
      }
    })
    this.instances.set(HELPER, {
      settle: 0,
      value: {
        InstanceId: HELPER,
        State: { Name: 'running' },
        RootDeviceType: 'ebs',
        RootDeviceName: '/dev/xvda',
        Placement: { AvailabilityZone: 'us-east-1b' },
        BlockDeviceMappings: [{ DeviceName: '/dev/xvda', Ebs: { VolumeId: HELPER_ROOT } }]
      }
    })
    this.ping.set(HELPER, 'Online')
    this.volumes.set(HELPER_ROOT, {
      settle: 0,
      value: {
        VolumeId: HELPER_ROOT,
        State: 'in-use',
        Attachments: [{ InstanceId: HELPER, Device: '/dev/xvda', State: 'attached' }]
      }
    })
    this.objects.set(`${BUCKET}/${MANIFEST_KEY}`, MANIFEST_XML)
    this.objects.set(`${BUCKET}/legacy/image.part.0`, 'x'.repeat(10))
    this.objects.set(`${BUCKET}/legacy/image.part.1`, 'y'.repeat(5))
    this.initial = new Set([...this.images.keys(), ...this.instances.keys(), ...this.volumes.keys()])
  }

  /** The next `times` calls of `op` fail with the fault (a function may pass a call by returning undefined). */
  failOn(op: string, fault: Fault, times = 1): this {
    this.faults.set(op, { fault, times })
    return this
  }

  /** The real parts of the hvm-mbr fixture (whose manifest MANIFEST_XML is) in place of the placeholders. */
  withRealParts(): this {
    const dir = new URL('../../fixtures/bundles/hvm-mbr/', import.meta.url)
    for (const part of ['image.part.0', 'image.part.1'])
      this.objects.set(`${BUCKET}/legacy/${part}`, readFileSync(new URL(part, dir)))
    return this
  }

  /** Adds an own EBS AMI with a snapshot (for if-ami-exists). */
  addEbsImage(imageId: string, name: string, snapshotId: string): void {
    this.images.set(imageId, {
      settle: 0,
      value: {
        ImageId: imageId,
        Name: name,
        State: 'available',
        OwnerId: '123456789012',
        RootDeviceType: 'ebs',
        RootDeviceName: '/dev/sda1',
        BlockDeviceMappings: [{ DeviceName: '/dev/sda1', Ebs: { SnapshotId: snapshotId } }]
      }
    })
    this.snapshots.set(snapshotId, { settle: 0, value: { SnapshotId: snapshotId, State: 'completed' } })
    this.initial.add(imageId)
    this.initial.add(snapshotId)
  }

  /** Calls of an operation that reached the account (not throttled). */
  callsOf(op: string): In[] {
    return this.calls.filter((c) => c.op === op && !c.throttled).map((c) => c.input)
  }

  /** What this run created and did not remove: "kind id" strings. */
  leftovers(): string[] {
    const out: string[] = []
    for (const [id, i] of this.instances)
      if (!this.initial.has(id) && i.value.State?.Name !== 'terminated') out.push(`instance ${id}`)
    for (const id of this.volumes.keys()) if (!this.initial.has(id)) out.push(`volume ${id}`)
    for (const id of this.snapshots.keys()) if (!this.initial.has(id)) out.push(`snapshot ${id}`)
    for (const id of this.images.keys()) if (!this.initial.has(id)) out.push(`image ${id}`)
    for (const name of this.parameters.keys()) out.push(`parameter ${name}`)
    return out.sort()
  }

  private id(prefix: string): string {
    this.seq += 1
    return `${prefix}-0${this.seq.toString(16).padStart(16, '0')}`
  }

  async handle(op: string, input: In): Promise<Out> {
    const n = (this.counts.get(op) ?? 0) + 1
    this.counts.set(op, n)
    const throttled = this.throttleEvery > 0 && (this.calls.length + 1) % this.throttleEvery === 0
    this.calls.push({ op, input, throttled })
    if (throttled) throw serviceError('RequestLimitExceeded', 'Request limit exceeded.', 503)
    const f = this.faults.get(op)
    if (f && f.times > 0) {
      const err = typeof f.fault === 'function' ? f.fault(input, n) : f.fault
      if (err) {
        f.times -= 1
        throw err
      }
    }
    if (input.DryRun) {
      if (this.denied.has(op))
        throw serviceError('UnauthorizedOperation', 'You are not authorized to perform this operation.', 403)
      throw serviceError('DryRunOperation', 'Request would have succeeded, but DryRun flag is set.', 412)
    }
    const handler = (this as unknown as Record<string, (i: In) => Out>)[`op${op}`]
    if (!handler) throw new Error(`the fake account does not implement ${op}`)
    return handler.call(this, input)
  }

  // ---------------------------------------------------------------- EC2

  private settle<T>(p: Pending<T>, next: (v: T) => void): T {
    if (p.settle > 0) {
      p.settle -= 1
      if (p.settle === 0) next(p.value)
    }
    return p.value
  }

  opDescribeImages(i: In): Out {
    if (i.ImageIds) {
      const images = (i.ImageIds as string[]).map((id) => {
        const p = this.images.get(id)
        if (!p) throw serviceError('InvalidAMIID.NotFound', `The image id '[${id}]' does not exist`)
        return this.settle(p, (v) => {
          v.State = this.imageOutcome
          if (this.imageOutcome === 'failed')
            v.StateReason = { Code: 'Client.InvalidSnapshot', Message: 'the snapshot is not bootable' }
        })
      })
      return { Images: images }
    }
    const name = (i.Filters as ec2.Filter[] | undefined)?.find((f) => f.Name === 'name')?.Values?.[0]
    return {
      Images: [...this.images.values()]
        .map((p) => p.value)
        .filter((v) => v.Name === name && v.RootDeviceType === 'ebs')
    }
  }

  opDescribeInstances(i: In): Out {
    const found = (i.InstanceIds as string[]).map((id) => {
      const p = this.instances.get(id)
      if (!p) throw serviceError('InvalidInstanceID.NotFound', `The instance ID '${id}' does not exist`)
      return this.settle(p, (v) => {
        v.State = { Name: 'running' }
      })
    })
    return { Reservations: [{ Instances: found }] }
  }

  opDescribeSubnets(i: In): Out {
    const id = (i.SubnetIds as string[])[0] as string
    const az = this.subnets.get(id)
    if (!az) throw serviceError('InvalidSubnetID.NotFound', `The subnet ID '${id}' does not exist`)
    return { Subnets: [{ SubnetId: id, AvailabilityZone: az }] }
  }

  opRunInstances(i: In): Out {
    const id = this.id('i')
    const az = this.subnets.get(i.SubnetId) ?? 'us-east-1a'
    const instance: ec2.Instance = {
      InstanceId: id,
      State: { Name: 'pending' },
      RootDeviceType: 'ebs',
      RootDeviceName: '/dev/xvda',
      Placement: { AvailabilityZone: az },
      BlockDeviceMappings: [{ DeviceName: '/dev/xvda', Ebs: { VolumeId: 'vol-0bbbbbbbbbbbbbbbb' } }]
    }
    this.instances.set(id, { settle: 1, value: instance })
    this.created.push({ kind: 'instance', id })
    this.ping.set(id, 'ConnectionLost')
    return { Instances: [structuredClone(instance)] }
  }

  opTerminateInstances(i: In): Out {
    for (const id of i.InstanceIds as string[]) {
      const p = this.instances.get(id)
      if (!p) throw serviceError('InvalidInstanceID.NotFound', `The instance ID '${id}' does not exist`)
      p.value.State = { Name: 'terminated' }
      this.ping.delete(id)
    }
    return {}
  }

  opCreateVolume(i: In): Out {
    const id = this.id('vol')
    this.created.push({ kind: 'volume', id })
    this.volumes.set(id, {
      settle: 1,
      value: {
        VolumeId: id,
        State: 'creating',
        Size: i.Size,
        AvailabilityZone: i.AvailabilityZone,
        Attachments: []
      }
    })
    return { VolumeId: id, State: 'creating' }
  }

  private volume(id: string): Pending<ec2.Volume> {
    const p = this.volumes.get(id)
    if (!p) throw serviceError('InvalidVolume.NotFound', `The volume '${id}' does not exist.`)
    return p
  }

  opDescribeVolumes(i: In): Out {
    const volumes = (i.VolumeIds as string[]).map((id) => {
      const p = this.volume(id)
      const v = this.settle(p, (v) => {
        if (v.State === 'creating') v.State = 'available'
      })
      const a = v.Attachments?.[0]
      if (a?.State === 'attaching') a.State = 'attached'
      else if (a?.State === 'detaching') {
        v.Attachments = []
        v.State = 'available'
        const inst = this.instances.get(a.InstanceId as string)?.value
        if (inst) inst.BlockDeviceMappings = inst.BlockDeviceMappings?.filter((b) => b.Ebs?.VolumeId !== id)
        return structuredClone({ ...v, Attachments: [{ ...a }] })
      }
      return structuredClone(v)
    })
    return { Volumes: volumes }
  }

  opAttachVolume(i: In): Out {
    const v = this.volume(i.VolumeId).value
    if (v.State !== 'available') throw serviceError('IncorrectState', `vol ${i.VolumeId} is not 'available'`)
    const inst = this.instances.get(i.InstanceId)?.value
    if (!inst)
      throw serviceError('InvalidInstanceID.NotFound', `The instance ID '${i.InstanceId}' does not exist`)
    if (inst.BlockDeviceMappings?.some((b) => b.DeviceName === i.Device))
      throw serviceError(
        'InvalidParameterValue',
        `Invalid value '${i.Device}' for unixDevice. Attachment point ${i.Device} is already in use`
      )
    v.State = 'in-use'
    v.Attachments = [{ InstanceId: i.InstanceId, Device: i.Device, State: 'attaching', VolumeId: i.VolumeId }]
    inst.BlockDeviceMappings = [
      ...(inst.BlockDeviceMappings ?? []),
      { DeviceName: i.Device, Ebs: { VolumeId: i.VolumeId } }
    ]
    return { State: 'attaching' }
  }

  opDetachVolume(i: In): Out {
    const v = this.volume(i.VolumeId).value
    const a = v.Attachments?.[0]
    if (!a) throw serviceError('IncorrectState', `Volume '${i.VolumeId}' is in the 'available' state.`)
    a.State = 'detaching'
    return { State: 'detaching' }
  }

  opDeleteVolume(i: In): Out {
    const v = this.volume(i.VolumeId).value
    if ((v.Attachments ?? []).length > 0)
      throw serviceError('VolumeInUse', `Volume ${i.VolumeId} is currently attached`)
    this.volumes.delete(i.VolumeId)
    return {}
  }

  opCreateSnapshot(i: In): Out {
    this.volume(i.VolumeId)
    const id = this.id('snap')
    this.created.push({ kind: 'snapshot', id })
    this.snapshots.set(id, {
      settle: 2,
      value: { SnapshotId: id, VolumeId: i.VolumeId, State: 'pending', Progress: '' }
    })
    return { SnapshotId: id, State: 'pending' }
  }

  opDescribeSnapshots(i: In): Out {
    const snaps = (i.SnapshotIds as string[]).map((id) => {
      const p = this.snapshots.get(id)
      if (!p) throw serviceError('InvalidSnapshot.NotFound', `The snapshot '${id}' does not exist.`)
      if (p.settle === 2) p.value.Progress = '40%'
      return structuredClone(
        this.settle(p, (v) => {
          v.State = this.snapshotOutcome
          v.Progress = this.snapshotOutcome === 'completed' ? '100%' : '40%'
          if (this.snapshotOutcome === 'error') v.StateMessage = 'internal error copying blocks'
        })
      )
    })
    return { Snapshots: snaps }
  }

  opDeleteSnapshot(i: In): Out {
    this.direct.delete(i.SnapshotId)
    if (!this.snapshots.delete(i.SnapshotId))
      throw serviceError('InvalidSnapshot.NotFound', `The snapshot '${i.SnapshotId}' does not exist.`)
    return {}
  }

  opRegisterImage(i: In): Out {
    for (const p of this.images.values())
      if (p.value.Name === i.Name && p.value.RootDeviceType === 'ebs')
        throw serviceError(
          'InvalidAMIName.Duplicate',
          `AMI name ${i.Name} is already in use by AMI ${p.value.ImageId}`
        )
    const id = this.id('ami')
    this.created.push({ kind: 'image', id })
    this.images.set(id, {
      settle: 1,
      value: {
        ImageId: id,
        Name: i.Name,
        State: 'pending',
        RootDeviceType: 'ebs',
        RootDeviceName: i.RootDeviceName,
        BlockDeviceMappings: i.BlockDeviceMappings
      }
    })
    return { ImageId: id }
  }

  opDeregisterImage(i: In): Out {
    if (!this.images.delete(i.ImageId))
      throw serviceError('InvalidAMIID.NotFound', `The image id '[${i.ImageId}]' does not exist`)
    return {}
  }

  // ---------------------------------------------------------------- SSM

  opDescribeInstanceInformation(i: In): Out {
    const id = (i.Filters as { Values: string[] }[])[0]?.Values[0] as string
    const status = this.ping.get(id)
    // A freshly launched instance registers after one look.
    if (
      status === 'ConnectionLost' &&
      !this.initial.has(id) &&
      this.instances.get(id)?.value.State?.Name === 'running'
    )
      this.ping.set(id, 'Online')
    return { InstanceInformationList: status ? [{ InstanceId: id, PingStatus: status }] : [] }
  }

  opGetParameter(i: In): Out {
    if (String(i.Name).startsWith('/aws/service/ami-amazon-linux-latest/'))
      return { Parameter: { Name: i.Name, Value: AL2023_AMI } }
    const p = this.parameters.get(i.Name)
    if (!p) throw serviceError('ParameterNotFound', `Parameter ${i.Name} not found.`)
    return { Parameter: { Name: i.Name, ...p } }
  }

  opPutParameter(i: In): Out {
    if (this.parameters.has(i.Name) && !i.Overwrite)
      throw serviceError('ParameterAlreadyExists', 'The parameter already exists.')
    this.parameters.set(i.Name, { Type: i.Type, Value: i.Value })
    this.created.push({ kind: 'parameter', id: i.Name })
    return { Version: 1 }
  }

  opDeleteParameter(i: In): Out {
    if (!this.parameters.delete(i.Name))
      throw serviceError('ParameterNotFound', `Parameter ${i.Name} not found.`)
    return {}
  }

  opDescribeParameters(i: In): Out {
    const name = i.ParameterFilters?.[0]?.Values?.[0]
    const p = this.parameters.get(name)
    return { Parameters: p ? [{ Name: name, Type: p.Type }] : [] }
  }

  opSendCommand(i: In): Out {
    const instanceId = (i.InstanceIds as string[])[0] as string
    if (this.ping.get(instanceId) !== 'Online')
      throw serviceError('InvalidInstanceId', 'Instances not in a valid state for account')
    this.seq += 1
    const id = `0000000${this.seq}-cmd`
    this.commands.set(id, { instanceId, polls: 0, text: i.Parameters.commands[0] })
    return { Command: { CommandId: id } }
  }

  opGetCommandInvocation(i: In): Out {
    const c = this.commands.get(i.CommandId)
    if (!c) throw serviceError('InvocationDoesNotExist', 'InvocationDoesNotExist')
    c.polls += 1
    if (c.cancelled) return { Status: 'Cancelled', StatusDetails: 'Cancelled', ResponseCode: -1 }
    if (c.polls === 1) return { Status: 'InProgress', StatusDetails: 'InProgress', ResponseCode: -1 }
    // cleanup.sh, sent after a command that did not succeed: its journal undone, nothing left.
    if (/bash "\$d\/cleanup\.sh"/.test(c.text))
      return {
        Status: 'Success',
        StatusDetails: 'Success',
        ResponseCode: 0,
        StandardOutputContent: '::result left=\n'
      }
    return { ...this.commandOutcome }
  }

  opCancelCommand(i: In): Out {
    const c = this.commands.get(i.CommandId)
    if (!c) throw serviceError('InvalidCommandId', 'Invalid command id.')
    c.cancelled = true
    return {}
  }

  // ---------------------------------------------------------------- S3

  opGetObject(i: In): Out {
    const body = this.objects.get(`${i.Bucket}/${i.Key}`)
    if (body === undefined) throw serviceError('NoSuchKey', 'The specified key does not exist.', 404)
    return {
      Body: {
        transformToString: async () => body.toString(),
        transformToByteArray: async () => new Uint8Array(Buffer.from(body))
      }
    }
  }

  opHeadObject(i: In): Out {
    const body = this.objects.get(`${i.Bucket}/${i.Key}`)
    if (body === undefined) throw serviceError('NotFound', 'Not Found', 404)
    return { ContentLength: body.length }
  }
}

// ---------------------------------------------------------------- EBS direct APIs (as strict as the reference)

/** "The block size is 524288 bytes (512 KiB)" (EBS direct APIs, PutSnapshotBlock). */
const EBS_BLOCK = 524288

function ebsValidation(message: string): Error {
  return serviceError('ValidationException', message, 400)
}

Object.assign(FakeAccount.prototype, {
  opStartSnapshot(this: FakeAccount, i: In): Out {
    // "VolumeSize: The size of the volume, in GiB. The maximum size is 65536 GiB (64 TiB)." Required.
    if (!Number.isInteger(i.VolumeSize) || i.VolumeSize < 1 || i.VolumeSize > 65536)
      throw ebsValidation('VolumeSize must be 1-65536 GiB')
    // "Timeout ... Valid Range: Minimum value of 10. Maximum value of 4320."
    if (i.Timeout !== undefined && (i.Timeout < 10 || i.Timeout > 4320))
      throw ebsValidation('Timeout must be 10-4320')
    // "ClientToken ... Length Constraints: Maximum length of 255."
    if (i.ClientToken !== undefined && String(i.ClientToken).length > 255)
      throw ebsValidation('ClientToken too long')
    // "KmsKeyArn: The Amazon Resource Name (ARN) of the Key Management Service (KMS) key to be used to
    // encrypt the snapshot." An id or alias is not an ARN of a key.
    if (i.KmsKeyArn !== undefined && !/^arn:aws[a-z-]*:kms:[^:]+:\d{12}:key\/.+$/.test(i.KmsKeyArn))
      throw ebsValidation('KmsKeyArn is not the ARN of a KMS key')
    for (const [id, d] of this.direct)
      if (i.ClientToken !== undefined && d.input.ClientToken === i.ClientToken)
        return { SnapshotId: id, Status: 'pending', BlockSize: EBS_BLOCK, VolumeSize: d.volumeSize }
    const id = (this as unknown as { id(p: string): string }).id('snap')
    this.created.push({ kind: 'snapshot', id })
    this.snapshots.set(id, {
      settle: Number.POSITIVE_INFINITY,
      value: { SnapshotId: id, State: 'pending', Progress: '', VolumeSize: i.VolumeSize, Tags: i.Tags }
    })
    this.direct.set(id, { volumeSize: i.VolumeSize, blocks: new Map(), completed: false, input: i })
    return { SnapshotId: id, Status: 'pending', BlockSize: EBS_BLOCK, VolumeSize: i.VolumeSize }
  },
  opPutSnapshotBlock(this: FakeAccount, i: In): Out {
    const d = this.direct.get(i.SnapshotId)
    if (!d) throw serviceError('ResourceNotFoundException', `snapshot ${i.SnapshotId} not found`, 404)
    if (d.completed) throw ebsValidation('the snapshot is completed: no more blocks can be written')
    const data = Buffer.from(i.BlockData as Uint8Array)
    // "DataLength: The size of the data to write to the block, in bytes. Currently, the only supported size is 524288 bytes."
    if (i.DataLength !== EBS_BLOCK || data.length !== EBS_BLOCK)
      throw ebsValidation('DataLength must be 524288')
    // "BlockIndex: The block index of the block in which to write the data."; within the volume size.
    if (
      !Number.isInteger(i.BlockIndex) ||
      i.BlockIndex < 0 ||
      i.BlockIndex >= (d.volumeSize * 1024 ** 3) / EBS_BLOCK
    )
      throw ebsValidation(`BlockIndex ${i.BlockIndex} is outside the volume`)
    // "ChecksumAlgorithm ... Valid Values: SHA256"; "The checksum that you provide is validated against a
    // checksum generated by Amazon EBS ... If the checksums do not correspond, the request fails."
    if (i.ChecksumAlgorithm !== 'SHA256') throw ebsValidation('ChecksumAlgorithm must be SHA256')
    if (createHash('sha256').update(data).digest('base64') !== i.Checksum)
      throw ebsValidation('checksum mismatch')
    // "If the specified block contains data, the existing data is overwritten" (PutSnapshotBlock).
    d.blocks.set(i.BlockIndex, data)
    return { Checksum: i.Checksum, ChecksumAlgorithm: 'SHA256' }
  },
  opCompleteSnapshot(this: FakeAccount, i: In): Out {
    const d = this.direct.get(i.SnapshotId)
    if (!d) throw serviceError('ResourceNotFoundException', `snapshot ${i.SnapshotId} not found`, 404)
    // "ChangedBlocksCount: The number of blocks that were written to the snapshot."
    if (i.ChangedBlocksCount !== d.blocks.size)
      throw ebsValidation(
        `ChangedBlocksCount ${i.ChangedBlocksCount} but ${d.blocks.size} blocks were written`
      )
    // "To generate the aggregated checksum using the linear aggregation method, arrange the checksums for each
    // written block in ascending order of their block index, concatenate them ... SHA256" (CompleteSnapshot).
    if (i.Checksum !== undefined) {
      if (i.ChecksumAlgorithm !== 'SHA256' || i.ChecksumAggregationMethod !== 'LINEAR')
        throw ebsValidation('Checksum needs ChecksumAlgorithm SHA256 and ChecksumAggregationMethod LINEAR')
      const h = createHash('sha256')
      for (const index of [...d.blocks.keys()].sort((a, b) => a - b))
        h.update(
          createHash('sha256')
            .update(d.blocks.get(index) as Buffer)
            .digest()
        )
      if (h.digest('base64') !== i.Checksum) throw ebsValidation('aggregated checksum mismatch')
    }
    d.completed = true
    const snap = this.snapshots.get(i.SnapshotId)
    if (snap) snap.settle = 1
    return { Status: 'completed' }
  }
})

/** The image a direct snapshot holds, as ListSnapshotBlocks/GetSnapshotBlock would give it (holes as zeros). */
export function directSnapshotImage(account: FakeAccount, snapshotId: string, bytes: number): Buffer {
  const d = account.direct.get(snapshotId)
  if (!d) throw new Error(`no direct snapshot ${snapshotId}`)
  const image = Buffer.alloc(Math.ceil(bytes / EBS_BLOCK) * EBS_BLOCK)
  for (const [index, data] of d.blocks) data.copy(image, index * EBS_BLOCK)
  return image.subarray(0, bytes)
}

const EBS_OPS = ['StartSnapshot', 'PutSnapshotBlock', 'CompleteSnapshot']

const EC2_OPS = [
  'DescribeImages',
  'DescribeInstances',
  'DescribeSubnets',
  'RunInstances',
  'TerminateInstances',
  'CreateVolume',
  'DescribeVolumes',
  'AttachVolume',
  'DetachVolume',
  'DeleteVolume',
  'CreateSnapshot',
  'DescribeSnapshots',
  'DeleteSnapshot',
  'RegisterImage',
  'DeregisterImage'
]
const SSM_OPS = [
  'DescribeInstanceInformation',
  'GetParameter',
  'PutParameter',
  'DeleteParameter',
  'DescribeParameters',
  'SendCommand',
  'GetCommandInvocation',
  'CancelCommand'
]
const S3_OPS = ['GetObject', 'HeadObject']

export interface AccountMocks {
  ec2: AwsClientStub<ec2.EC2Client>
  ssm: AwsClientStub<ssm.SSMClient>
  s3: AwsClientStub<s3.S3Client>
  ebs: AwsClientStub<ebs.EBSClient>
  restore: () => void
}

/** Operations of a subclass's own, per service, to answer besides the ones every account has. */
export interface ExtraOps {
  ec2?: string[]
  s3?: string[]
}

/** Answers every client of the four services through aws-sdk-client-mock. Restore after the test. */
export function mockAccount(account: FakeAccount, extra: ExtraOps = {}): AccountMocks {
  // biome-ignore lint/suspicious/noExplicitAny: the SDK modules are indexed by command name
  const wire = (mock: AwsStub<any, any, any>, module: Record<string, any>, ops: string[]) => {
    mock.onAnyCommand().rejects(new Error('the fake account was sent an unexpected command'))
    for (const op of ops) mock.on(module[`${op}Command`]).callsFake((input: In) => account.handle(op, input))
  }
  const mocks = {
    ec2: mockClient(ec2.EC2Client),
    ssm: mockClient(ssm.SSMClient),
    s3: mockClient(s3.S3Client),
    ebs: mockClient(ebs.EBSClient)
  }
  wire(mocks.ec2, ec2, [...EC2_OPS, ...(extra.ec2 ?? [])])
  wire(mocks.ebs, ebs, EBS_OPS)
  wire(mocks.ssm, ssm, SSM_OPS)
  wire(mocks.s3, s3, [...S3_OPS, ...(extra.s3 ?? [])])
  return {
    ...(mocks as unknown as Omit<AccountMocks, 'restore'>),
    restore: () => {
      mocks.ec2.restore()
      mocks.ssm.restore()
      mocks.s3.restore()
      mocks.ebs.restore()
    }
  }
}

/**
 * Answers from inside each real client, below the retry middleware: every request is built,
 * signed and retried by the SDK as usual, only the HTTP exchange is replaced by the account.
 */
export function wireAccount(clients: Clients, account: FakeAccount): void {
  const middleware =
    (_next: unknown, context: { commandName?: string }) => async (args: { input: object }) => {
      const op = String(context.commandName).replace(/Command$/, '')
      const refused = enforceContract(op, args.input)
      if (refused) throw refused
      const output = await account.handle(op, args.input as In)
      return {
        output: { $metadata: {}, ...output },
        response: { statusCode: 200, headers: {}, body: undefined }
      }
    }
  for (const client of [clients.ec2, clients.ebs, clients.ssm, clients.s3])
    (client.middlewareStack as unknown as { add(m: unknown, o: object): void }).add(middleware, {
      step: 'deserialize',
      priority: 'high',
      name: 'fakeAccount'
    })
}
