// The fake account for the bundle steps and mode full: the convert fixture's FakeAccount
// (aws-account.ts) plus a running instance-store source online in SSM, a bucket in its region, a
// bundle.sh that "uploads" and an instance-store AMI registered from the manifest, so that tests
// can assert what exists after a run as well as which calls were made.
import { readFileSync } from 'node:fs'
import { EBSClient } from '@aws-sdk/client-ebs'
import { CloudWatchLogsClient, GetLogEventsCommand } from '@aws-sdk/client-cloudwatch-logs'
import { EC2Client, type Instance } from '@aws-sdk/client-ec2'
import { S3Client } from '@aws-sdk/client-s3'
import { SSMClient } from '@aws-sdk/client-ssm'
import { type AwsClientStub, mockClient } from 'aws-sdk-client-mock'
import type { Clients } from '../../src/aws/clients.js'
import type { RunContext } from '../../src/pipeline/context.js'
import { Ledger } from '../../src/pipeline/ledger.js'
import type { Logger } from '../../src/pipeline/runner.js'
import { readSettings, type Settings } from '../../src/settings/index.js'
import {
  type AccountMocks,
  REGION as FAKE_REGION,
  FakeAccount,
  HELPER,
  MANIFEST_XML,
  mockAccount
} from './aws-account.js'
import { serviceError } from './errors.js'
import { CERT, KEY, reader } from './inputs.js'

// biome-ignore lint/suspicious/noExplicitAny: inputs of many operations, read loosely by the fake
type In = Record<string, any>
type Out = Record<string, unknown>

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
  /** Objects the upload (or the failed upload, before it stopped) left in the bucket. */
  uploaded?: string[]
}

export interface AccountOptions {
  /** The source instance (default: sourceInstance()). */
  instance?: Instance
  /** How SSM sees the source ('unknown': not registered at all); default Online. */
  pingStatus?: string
  /** GetBucketLocation's LocationConstraint for the bucket (default: REGION). */
  bucketRegion?: string | null
  /** The bucket's Object Ownership (default: no ownership controls). */
  ownership?: string
  /** Keys already in the bucket. */
  objects?: string[]
  /** What bundle.sh prints, how it ends and what it uploads (default: the whole bundle under PREFIX). */
  bundle?: BundleOutcome
  /** DescribeImages states of the instance-store AMI the run registers, in order; the last one repeats. */
  imageStates?: { State: string; StateReason?: { Message: string } }[]
  /** The prefix whose keys bundleKeys() lists (default: PREFIX). */
  prefix?: string
}

/**
 * The fake account (aws-account.ts) plus what bundling needs: a running instance-store source
 * online in SSM, the bucket's location, ownership, listing and deletion, a bundle.sh that
 * "uploads" under the prefix, cleanup.sh that finds its journal undone, and RegisterImage of an
 * instance-store AMI from a manifest (NEW_IMAGE), which becomes available as imageStates say.
 */
export class BundleAccount extends FakeAccount {
  /** The bundle.sh commands sent, in order (their ids are cmd-1, cmd-2, …). */
  readonly sentCommands: { parameters: Record<string, string[]> }[] = []
  /** The cleanup.sh commands sent, in order (cleanup-1, …). */
  readonly cleanupCommands: { parameters: Record<string, string[]> }[] = []
  readonly options: AccountOptions
  private readonly storeImages = new Map<string, number>()
  private readonly cancelled = new Set<string>()

  constructor(options: AccountOptions = {}) {
    super()
    this.options = options
    const source = options.instance ?? sourceInstance()
    const id = source.InstanceId as string
    this.instances.set(id, { settle: 0, value: source })
    if (options.pingStatus !== 'unknown') this.ping.set(id, options.pingStatus ?? 'Online')
    this.initial.add(id)
    for (const key of options.objects ?? []) this.objects.set(`${BUCKET}/${key}`, '')
  }

  private get outcome(): BundleOutcome {
    return (
      this.options.bundle ?? { exitCode: 0, stdout: bundleStdout(), uploaded: [MANIFEST_KEY, ...PART_KEYS] }
    )
  }

  /** What an uploaded object holds (the bundle's content does not matter to the bundle steps). */
  protected uploadedBody(_key: string): string | Buffer {
    return ''
  }

  /** The keys under the prefix, sorted. */
  bundleKeys(): string[] {
    const folder = `${BUCKET}/${this.options.prefix ?? PREFIX}/`
    return [...this.objects.keys()]
      .filter((k) => k.startsWith(folder))
      .map((k) => k.slice(BUCKET.length + 1))
      .sort()
  }

  override opDescribeInstances(i: In): Out {
    const out = super.opDescribeInstances(i) as { Reservations: { OwnerId?: string }[] }
    for (const r of out.Reservations) r.OwnerId = ACCOUNT
    return out
  }

  override opDescribeImages(i: In): Out {
    if (!i.ImageIds) {
      // "name - The name of the AMI": every image of that name, whatever its root device.
      const name = (i.Filters as { Name?: string; Values?: string[] }[] | undefined)?.find(
        (f) => f.Name === 'name'
      )?.Values?.[0]
      return { Images: [...this.images.values()].map((p) => p.value).filter((v) => v.Name === name) }
    }
    const states = this.options.imageStates ?? [{ State: 'pending' }, { State: 'available' }]
    return {
      Images: (i.ImageIds as string[]).flatMap((id) => {
        const n = this.storeImages.get(id)
        if (n === undefined) return (super.opDescribeImages({ ImageIds: [id] }) as { Images: Out[] }).Images
        this.storeImages.set(id, n + 1)
        return [{ ...this.images.get(id)?.value, ...states[Math.min(n, states.length - 1)] }]
      })
    }
  }

  override opRegisterImage(i: In): Out {
    if (!i.ImageLocation) return super.opRegisterImage(i) // the EBS AMI of a full run's convert
    for (const p of this.images.values())
      if (p.value.Name === i.Name)
        throw serviceError(
          'InvalidAMIName.Duplicate',
          `AMI name ${i.Name} is already in use by AMI ${p.value.ImageId}`
        )
    this.images.set(NEW_IMAGE, {
      settle: 0,
      value: {
        ImageId: NEW_IMAGE,
        Name: i.Name,
        State: 'pending',
        RootDeviceType: 'instance-store',
        RootDeviceName: i.RootDeviceName,
        ImageLocation: i.ImageLocation,
        Architecture: i.Architecture,
        VirtualizationType: i.VirtualizationType,
        EnaSupport: i.EnaSupport
      }
    })
    this.storeImages.set(NEW_IMAGE, 0)
    this.created.push({ kind: 'image', id: NEW_IMAGE })
    return { ImageId: NEW_IMAGE }
  }

  override opSendCommand(i: In): Out {
    const text = String(i.Parameters?.commands?.[0] ?? '')
    if (isCleanup(text)) {
      this.cleanupCommands.push({ parameters: i.Parameters ?? {} })
      return { Command: { CommandId: `cleanup-${this.cleanupCommands.length}` } }
    }
    if (!/bash "\$d\/bundle\.sh"/.test(text)) return super.opSendCommand(i) // a full run's convert
    this.sentCommands.push({ parameters: i.Parameters ?? {} })
    for (const key of this.outcome.uploaded ?? [])
      this.objects.set(`${BUCKET}/${key}`, this.uploadedBody(key))
    return { Command: { CommandId: `cmd-${this.sentCommands.length}` } }
  }

  override opGetCommandInvocation(i: In): Out {
    const id = String(i.CommandId)
    if (id.startsWith('cleanup-')) return { ...cleanupDone }
    if (!id.startsWith('cmd-')) return super.opGetCommandInvocation(i)
    if (this.cancelled.has(id)) return { Status: 'Cancelled', StatusDetails: 'Cancelled', ResponseCode: -1 }
    const { exitCode, status, stdout } = this.outcome
    const ok = exitCode === 0
    return {
      Status: ok ? 'Success' : 'Failed',
      StatusDetails: status ?? (ok ? 'Success' : 'Failed'),
      ResponseCode: exitCode,
      StandardOutputContent: stdout,
      StandardErrorContent: ''
    }
  }

  override opCancelCommand(i: In): Out {
    if (!String(i.CommandId).startsWith('cmd-')) return super.opCancelCommand(i)
    this.cancelled.add(String(i.CommandId))
    return {}
  }

  opGetBucketLocation(i: In): Out {
    if (i.Bucket !== BUCKET) throw serviceError('NoSuchBucket', 'The specified bucket does not exist', 404)
    return {
      LocationConstraint: this.options.bucketRegion === undefined ? REGION : this.options.bucketRegion
    }
  }

  opGetBucketOwnershipControls(): Out {
    if (!this.options.ownership)
      throw serviceError(
        'OwnershipControlsNotFoundError',
        'The bucket ownership controls were not found',
        404
      )
    return { OwnershipControls: { Rules: [{ ObjectOwnership: this.options.ownership }] } }
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
    const objects = (i.Delete?.Objects ?? []) as { Key: string }[]
    for (const { Key } of objects) this.objects.delete(`${i.Bucket}/${Key}`)
    return { Deleted: objects }
  }
}

const BUNDLE_S3_OPS = ['GetBucketLocation', 'GetBucketOwnershipControls', 'ListObjectsV2', 'DeleteObjects']

export interface BundleMocks extends AccountMocks {
  logs: AwsClientStub<CloudWatchLogsClient>
}

/** mockAccount, plus the S3 calls of the bundle steps and a CloudWatch Logs with no output yet. */
export function mockBundleAccount(account: BundleAccount): BundleMocks {
  const mocks = mockAccount(account, { s3: BUNDLE_S3_OPS })
  const logs = mockClient(CloudWatchLogsClient)
  logs.on(GetLogEventsCommand).resolves({ events: [], nextForwardToken: 'f/end' })
  return {
    ...mocks,
    logs,
    restore: () => {
      mocks.restore()
      logs.restore()
    }
  }
}

export interface MockedBundle {
  account: BundleAccount
  mocks: BundleMocks
  clients: Clients
}

/** A BundleAccount answering through aws-sdk-client-mock, and clients in its region for the steps. */
export function bundleAccount(options: AccountOptions = {}): MockedBundle {
  const account = new BundleAccount(options)
  const mocks = mockBundleAccount(account)
  const clients: Clients = {
    region: REGION,
    ec2: new EC2Client({ region: REGION }),
    ebs: new EBSClient({ region: REGION }),
    ssm: new SSMClient({ region: REGION }),
    s3: new S3Client({ region: REGION }),
    logs: new CloudWatchLogsClient({ region: REGION })
  }
  return { account, mocks, clients }
}

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

/** The source instance of a full run, in the convert fixture's account and region (us-east-1). */
export const FULL_SOURCE = 'i-0abcdefabcdefabcd'
export const FULL_PREFIX = 'builds/full'

export const fullInputs: Record<string, string> = {
  mode: 'full',
  'source-instance-id': FULL_SOURCE,
  'helper-instance-id': HELPER,
  's3-bucket': BUCKET,
  's3-prefix': FULL_PREFIX,
  region: FAKE_REGION,
  'ami-name': 'web',
  'x509-certificate': CERT,
  'x509-private-key': KEY
}

const FULL_BUNDLE = ['image.manifest.xml', 'image.part.0', 'image.part.1'].map((k) => `${FULL_PREFIX}/${k}`)

/**
 * The bundle account of a full run: the source in the convert fixture's region, whose bundle.sh
 * "uploads" the convert fixture's bundle (its manifest and placeholder parts) under FULL_PREFIX.
 */
export class FullAccount extends BundleAccount {
  /** bundle.sh "uploads" the real hvm-mbr parts (for a convert half that reads them: convert-on: runner). */
  realParts = false

  constructor() {
    super({
      instance: sourceInstance({ InstanceId: FULL_SOURCE, Placement: { AvailabilityZone: 'us-east-1a' } }),
      bucketRegion: null,
      prefix: FULL_PREFIX,
      bundle: {
        exitCode: 0,
        stdout: [
          '::result part_count=2',
          `::result image_location=${BUCKET}/${FULL_PREFIX}/image.manifest.xml`,
          `::result manifest_location=s3://${BUCKET}/${FULL_PREFIX}/image.manifest.xml`,
          ''
        ].join('\n'),
        uploaded: FULL_BUNDLE
      }
    })
  }

  protected override uploadedBody(key: string): string | Buffer {
    if (key.endsWith('.manifest.xml')) return MANIFEST_XML
    const n = key.endsWith('.part.0') ? 0 : 1
    if (this.realParts)
      return readFileSync(new URL(`../../fixtures/bundles/hvm-mbr/image.part.${n}`, import.meta.url))
    return n === 0 ? 'x'.repeat(10) : 'y'.repeat(5)
  }
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
