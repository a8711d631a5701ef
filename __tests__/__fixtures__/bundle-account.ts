// A mocked AWS account for the bundle steps: a running instance-store instance online in SSM, a
// bucket in its region, and in-memory parameters, objects and images that the mocked calls change,
// so that tests can assert what exists after a run as well as which calls were made.
import { readFileSync } from 'node:fs'
import { EBSClient } from '@aws-sdk/client-ebs'
import { CloudWatchLogsClient, GetLogEventsCommand } from '@aws-sdk/client-cloudwatch-logs'
import {
  DeregisterImageCommand,
  DescribeImagesCommand,
  DescribeInstancesCommand,
  EC2Client,
  type Instance,
  RegisterImageCommand
} from '@aws-sdk/client-ec2'
import {
  DeleteObjectsCommand,
  GetBucketLocationCommand,
  GetBucketOwnershipControlsCommand,
  ListObjectsV2Command,
  S3Client
} from '@aws-sdk/client-s3'
import {
  DeleteParameterCommand,
  DescribeInstanceInformationCommand,
  GetCommandInvocationCommand,
  type PingStatus,
  PutParameterCommand,
  SendCommandCommand,
  SSMClient
} from '@aws-sdk/client-ssm'
import { mockClient } from 'aws-sdk-client-mock'
import type { Clients } from '../../src/aws/clients.js'
import type { RunContext } from '../../src/pipeline/context.js'
import { Ledger } from '../../src/pipeline/ledger.js'
import type { Logger } from '../../src/pipeline/runner.js'
import { readSettings, type Settings } from '../../src/settings.js'
import {
  type AccountMocks,
  BUCKET as FAKE_BUCKET,
  REGION as FAKE_REGION,
  FakeAccount,
  HELPER,
  MANIFEST_XML,
  mockAccount,
  serviceError
} from './aws-account.js'
import { CERT, KEY, reader } from './inputs.js'

export const ACCOUNT = '123456789012'
export const REGION = 'eu-west-1'
export const INSTANCE = 'i-0123456789abcdef0'
export const BUCKET = 'my-bundles'
export const PREFIX = 'builds/web'
export const MANIFEST_KEY = `${PREFIX}/image.manifest.xml`
export const MANIFEST_URL = `s3://${BUCKET}/${MANIFEST_KEY}`
export const PART_KEYS = [`${PREFIX}/image.part.00`, `${PREFIX}/image.part.01`]
export const NEW_IMAGE = 'ami-0aaaaaaaaaaaaaaa1'

export const bundleInputs: Record<string, string> = {
  mode: 'bundle',
  'source-instance-id': INSTANCE,
  's3-bucket': BUCKET,
  's3-prefix': PREFIX,
  region: REGION,
  'ami-name': 'web',
  'x509-certificate': CERT,
  'x509-private-key': KEY,
  'stop-services': 'jenkins redis-server',
  'bundle-exclude': '/var/cache/app'
}

export const awsError = (code: string, message = code): Error =>
  Object.assign(new Error(message), { name: code })

export const sourceInstance = (over: Partial<Instance> = {}): Instance => ({
  InstanceId: INSTANCE,
  State: { Name: 'running' },
  RootDeviceType: 'instance-store',
  RootDeviceName: '/dev/sda1',
  Architecture: 'x86_64',
  VirtualizationType: 'hvm',
  EnaSupport: false,
  ...over
})

/** What bundle.sh prints when it has uploaded the bundle. */
export const bundleStdout = (prefix = PREFIX): string =>
  [
    'checks passed',
    '::result ami_tools_version=1.5.19',
    '::result services_stopped=jenkins,redis-server',
    '::result services_restarted=jenkins,redis-server',
    '::result image_bytes=2147483648',
    '::result part_count=2',
    `::result image_location=${BUCKET}/${prefix}/image.manifest.xml`,
    `::result manifest_location=s3://${BUCKET}/${prefix}/image.manifest.xml`,
    ''
  ].join('\n')

export interface BundleOutcome {
  status?: string
  exitCode: number
  stdout: string
  /** Objects the (failed) upload left before it stopped. */
  uploaded?: string[]
}

export interface AccountOptions {
  instance?: Instance
  pingStatus?: string
  bucketRegion?: string | null
  ownership?: string
  /** Keys already in the bucket. */
  objects?: string[]
  bundle?: BundleOutcome
  /** DescribeImages states of the new image, in order; the last one repeats. */
  imageStates?: { State: string; StateReason?: { Message: string } }[]
}

export function bundleAccount(o: AccountOptions = {}) {
  const ec2 = mockClient(EC2Client)
  const ssm = mockClient(SSMClient)
  const s3 = mockClient(S3Client)
  const logs = mockClient(CloudWatchLogsClient)
  logs.on(GetLogEventsCommand).resolves({ events: [], nextForwardToken: 'f/end' })
  const parameters = new Map<string, string>()
  const objects = new Set<string>(o.objects ?? [])
  const images = new Map<string, { name: string; location: string; state: number }>()
  const states = o.imageStates ?? [{ State: 'pending' }, { State: 'available' }]
  const outcome: BundleOutcome = o.bundle ?? {
    exitCode: 0,
    stdout: bundleStdout(),
    uploaded: [MANIFEST_KEY, ...PART_KEYS]
  }
  const sentCommands: { parameters: Record<string, string[]> }[] = []
  const cleanupCommands: { parameters: Record<string, string[]> }[] = []

  ec2.on(DescribeInstancesCommand).callsFake((input: { InstanceIds?: string[] }) => {
    const instance = o.instance ?? sourceInstance()
    if (!input.InstanceIds?.includes(instance.InstanceId as string))
      throw awsError(
        'InvalidInstanceID.NotFound',
        `The instance ID '${input.InstanceIds?.[0]}' does not exist`
      )
    return { Reservations: [{ OwnerId: ACCOUNT, Instances: [instance] }] }
  })
  ec2
    .on(DescribeImagesCommand)
    .callsFake((input: { ImageIds?: string[]; Filters?: { Values?: string[] }[] }) => {
      if (input.ImageIds) {
        const found = input.ImageIds.flatMap((id) => {
          const image = images.get(id)
          if (!image) return []
          const state = states[Math.min(image.state, states.length - 1)] as (typeof states)[number]
          image.state++
          return [{ ImageId: id, Name: image.name, ImageLocation: image.location, ...state }]
        })
        return { Images: found }
      }
      const name = input.Filters?.[0]?.Values?.[0]
      return {
        Images: [...images.entries()]
          .filter(([, i]) => i.name === name)
          .map(([id, i]) => ({ ImageId: id, Name: i.name }))
      }
    })
  ec2
    .on(RegisterImageCommand)
    .callsFake((input: { DryRun?: boolean; Name?: string; ImageLocation?: string }) => {
      if (input.DryRun)
        throw awsError('DryRunOperation', 'Request would have succeeded, but DryRun flag is set.')
      images.set(NEW_IMAGE, { name: input.Name as string, location: input.ImageLocation as string, state: 0 })
      return { ImageId: NEW_IMAGE }
    })
  ec2.on(DeregisterImageCommand).callsFake((input: { ImageId?: string }) => {
    if (!images.delete(input.ImageId as string)) throw awsError('InvalidAMIID.NotFound')
    return {}
  })

  ssm.on(DescribeInstanceInformationCommand).resolves({
    InstanceInformationList:
      o.pingStatus === 'unknown'
        ? []
        : [{ InstanceId: INSTANCE, PingStatus: (o.pingStatus ?? 'Online') as PingStatus }]
  })
  ssm.on(PutParameterCommand).callsFake((input: { Name?: string; Value?: string }) => {
    if (parameters.has(input.Name as string)) throw awsError('ParameterAlreadyExists')
    parameters.set(input.Name as string, input.Value as string)
    return { Version: 1, Tier: 'Standard' }
  })
  ssm.on(DeleteParameterCommand).callsFake((input: { Name?: string }) => {
    if (!parameters.delete(input.Name as string)) throw awsError('ParameterNotFound')
    return {}
  })
  ssm.on(SendCommandCommand).callsFake((input: { Parameters?: Record<string, string[]> }) => {
    // cleanup.sh, sent after a command that did not succeed, always finds its journal undone.
    if (isCleanup(input.Parameters?.commands?.[0])) {
      cleanupCommands.push({ parameters: input.Parameters ?? {} })
      return { Command: { CommandId: `cleanup-${cleanupCommands.length}` } }
    }
    sentCommands.push({ parameters: input.Parameters ?? {} })
    for (const key of outcome.uploaded ?? []) objects.add(key)
    return { Command: { CommandId: `cmd-${sentCommands.length}` } }
  })
  ssm.on(GetCommandInvocationCommand).callsFake((input: { CommandId?: string }) => {
    if (input.CommandId?.startsWith('cleanup-')) return cleanupDone
    const ok = outcome.exitCode === 0
    return {
      Status: ok ? 'Success' : 'Failed',
      StatusDetails: outcome.status ?? (ok ? 'Success' : 'Failed'),
      ResponseCode: outcome.exitCode,
      StandardOutputContent: outcome.stdout,
      StandardErrorContent: ''
    }
  })

  s3.on(GetBucketLocationCommand).callsFake((input: { Bucket?: string }) => {
    if (input.Bucket !== BUCKET) throw awsError('NoSuchBucket', 'The specified bucket does not exist')
    return { LocationConstraint: o.bucketRegion === undefined ? REGION : o.bucketRegion }
  })
  s3.on(GetBucketOwnershipControlsCommand).callsFake(() => {
    if (!o.ownership) throw awsError('OwnershipControlsNotFoundError')
    return { OwnershipControls: { Rules: [{ ObjectOwnership: o.ownership }] } }
  })
  s3.on(ListObjectsV2Command).callsFake((input: { Prefix?: string; Delimiter?: string }) => {
    const prefix = input.Prefix ?? ''
    const keys = [...objects]
      .filter((k) => k.startsWith(prefix))
      .filter((k) => !input.Delimiter || !k.slice(prefix.length).includes(input.Delimiter))
      .sort()
    return { Contents: keys.map((Key) => ({ Key })), IsTruncated: false }
  })
  s3.on(DeleteObjectsCommand).callsFake((input: { Delete?: { Objects?: { Key?: string }[] } }) => {
    for (const { Key } of input.Delete?.Objects ?? []) objects.delete(Key as string)
    return { Deleted: input.Delete?.Objects }
  })

  const clients: Clients = {
    region: REGION,
    ec2: new EC2Client({ region: REGION }),
    ebs: new EBSClient({ region: REGION }),
    ssm: new SSMClient({ region: REGION }),
    s3: new S3Client({ region: REGION }),
    logs: new CloudWatchLogsClient({ region: REGION })
  }
  return { ec2, ssm, s3, logs, parameters, objects, images, sentCommands, cleanupCommands, clients }
}

export type BundleAccount = ReturnType<typeof bundleAccount>

export interface TestLog extends Logger {
  lines: string[]
  warnings: string[]
}

export function testLog(): TestLog {
  const lines: string[] = []
  const warnings: string[] = []
  return {
    lines,
    warnings,
    info: (m) => {
      lines.push(m)
    },
    warning: (m) => {
      warnings.push(m)
      lines.push(`warning: ${m}`)
    },
    group: (_name, fn) => fn()
  }
}

export function bundleSettings(over: Record<string, string> = {}): Settings {
  return readSettings(reader({ ...bundleInputs, ...over }), {
    env: {},
    now: new Date('2026-11-24T19:00:00Z')
  })
}

export function runContext(settings: Settings, clients: Clients, log: TestLog = testLog()): RunContext {
  return {
    settings,
    clients,
    log,
    ledger: new Ledger(settings.region, [], () => {}),
    signal: new AbortController().signal,
    outputs: { region: settings.region },
    facts: {},
    state: { runId: 'test-run' },
    pollDelayMs: 1
  }
}

// ---------------------------------------------------------------- full mode

// biome-ignore lint/suspicious/noExplicitAny: inputs of many operations, read loosely by the fake
type In = Record<string, any>
type Out = Record<string, unknown>

/** The source instance of a full run, in the convert fixture's account and region (us-east-1). */
export const FULL_SOURCE = 'i-0abcdefabcdefabcd'
export const FULL_PREFIX = 'builds/full'

export const fullInputs: Record<string, string> = {
  mode: 'full',
  'source-instance-id': FULL_SOURCE,
  'helper-instance-id': HELPER,
  's3-bucket': FAKE_BUCKET,
  's3-prefix': FULL_PREFIX,
  region: FAKE_REGION,
  'ami-name': 'web',
  'x509-certificate': CERT,
  'x509-private-key': KEY
}

/**
 * The convert fixture's account plus what bundling needs: a running instance-store source online
 * in SSM, the bucket's location, ownership, listing and deletion, a bundle.sh that "uploads" the
 * fixture bundle under the prefix, and RegisterImage of an instance-store AMI from a manifest.
 */
export class FullAccount extends FakeAccount {
  bundleOutcome: { ResponseCode: number; stdout: string } = {
    ResponseCode: 0,
    stdout: [
      '::result part_count=2',
      `::result image_location=${FAKE_BUCKET}/${FULL_PREFIX}/image.manifest.xml`,
      `::result manifest_location=s3://${FAKE_BUCKET}/${FULL_PREFIX}/image.manifest.xml`,
      ''
    ].join('\n')
  }
  private readonly bundleCommands = new Set<string>()
  /** bundle.sh "uploads" the real hvm-mbr parts (for a convert half that reads them: convert-on: runner). */
  realParts = false

  constructor() {
    super()
    this.instances.set(FULL_SOURCE, {
      settle: 0,
      value: sourceInstance({ InstanceId: FULL_SOURCE, Placement: { AvailabilityZone: 'us-east-1a' } })
    })
    this.ping.set(FULL_SOURCE, 'Online')
    // Existed before the run: not a leftover.
    ;(this as unknown as { initial: Set<string> }).initial.add(FULL_SOURCE)
  }

  override opDescribeInstances(i: In): Out {
    const out = super.opDescribeInstances(i) as { Reservations: { OwnerId?: string }[] }
    for (const r of out.Reservations) r.OwnerId = ACCOUNT
    return out
  }

  override opSendCommand(i: In): Out {
    const out = super.opSendCommand(i) as { Command: { CommandId: string } }
    const text = String(i.Parameters.commands[0])
    if (/bash "\$d\/bundle\.sh"/.test(text)) {
      this.bundleCommands.add(out.Command.CommandId)
      if (this.bundleOutcome.ResponseCode === 0) {
        this.objects.set(`${FAKE_BUCKET}/${FULL_PREFIX}/image.manifest.xml`, MANIFEST_XML)
        for (const [n, fake] of ['x'.repeat(10), 'y'.repeat(5)].entries())
          this.objects.set(
            `${FAKE_BUCKET}/${FULL_PREFIX}/image.part.${n}`,
            this.realParts
              ? readFileSync(new URL(`../../fixtures/bundles/hvm-mbr/image.part.${n}`, import.meta.url))
              : fake
          )
      }
    }
    return out
  }

  override opGetCommandInvocation(i: In): Out {
    if (!this.bundleCommands.has(i.CommandId)) return super.opGetCommandInvocation(i)
    const ok = this.bundleOutcome.ResponseCode === 0
    return {
      Status: ok ? 'Success' : 'Failed',
      StatusDetails: ok ? 'Success' : 'Failed',
      ResponseCode: this.bundleOutcome.ResponseCode,
      StandardOutputContent: this.bundleOutcome.stdout
    }
  }

  override opRegisterImage(i: In): Out {
    if (!i.ImageLocation) return super.opRegisterImage(i)
    const out = super.opRegisterImage({ ...i, Name: `${i.Name} (registering)` }) as { ImageId: string }
    const image = this.images.get(out.ImageId)?.value as Record<string, unknown>
    Object.assign(image, {
      Name: i.Name,
      RootDeviceType: 'instance-store',
      ImageLocation: i.ImageLocation,
      Architecture: i.Architecture,
      VirtualizationType: i.VirtualizationType,
      EnaSupport: i.EnaSupport
    })
    return out
  }

  opGetBucketLocation(i: In): Out {
    if (i.Bucket !== FAKE_BUCKET)
      throw serviceError('NoSuchBucket', 'The specified bucket does not exist', 404)
    return { LocationConstraint: undefined }
  }

  opGetBucketOwnershipControls(): Out {
    throw serviceError('OwnershipControlsNotFoundError', 'The bucket ownership controls were not found', 404)
  }

  opListObjectsV2(i: In): Out {
    const prefix = `${i.Bucket}/${i.Prefix ?? ''}`
    const keys = [...this.objects.keys()]
      .filter((k) => k.startsWith(prefix))
      .filter((k) => !i.Delimiter || !k.slice(prefix.length).includes(i.Delimiter))
      .map((k) => k.slice(String(i.Bucket).length + 1))
      .sort()
    return { Contents: keys.map((Key) => ({ Key })), IsTruncated: false }
  }

  opDeleteObjects(i: In): Out {
    for (const { Key } of i.Delete.Objects as { Key: string }[]) this.objects.delete(`${i.Bucket}/${Key}`)
    return {}
  }

  /** Keys under the full run's prefix. */
  bundleKeys(): string[] {
    return [...this.objects.keys()].filter((k) => k.startsWith(`${FAKE_BUCKET}/${FULL_PREFIX}/`)).sort()
  }
}

/** Mocks every client with the full account, including the S3 calls the bundle steps make. */
export function mockFullAccount(account: FullAccount): AccountMocks {
  const mocks = mockAccount(account)
  mocks.s3.on(GetBucketLocationCommand).callsFake((i: In) => account.handle('GetBucketLocation', i))
  mocks.s3
    .on(GetBucketOwnershipControlsCommand)
    .callsFake((i: In) => account.handle('GetBucketOwnershipControls', i))
  mocks.s3.on(ListObjectsV2Command).callsFake((i: In) => account.handle('ListObjectsV2', i))
  mocks.s3.on(DeleteObjectsCommand).callsFake((i: In) => account.handle('DeleteObjects', i))
  return mocks
}

/** Whether a command text runs cleanup.sh (the second command after a cancel or a timeout). */
export const isCleanup = (text: string | undefined): boolean => /bash "\$d\/cleanup\.sh"/.test(text ?? '')

/** How a mocked SSM answers cleanup.sh: done, nothing left. */
export const cleanupDone = {
  Status: 'Success',
  StatusDetails: 'Success',
  ResponseCode: 0,
  StandardOutputContent: '::result services_restarted=jenkins\n::result left=\n'
}
