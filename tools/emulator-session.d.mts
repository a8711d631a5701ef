// Types for tools/emulator-session.mjs (used by the demo as JavaScript, by the e2e tests as TypeScript).
import type { ChildProcess } from 'node:child_process'
import type { EC2Client } from '@aws-sdk/client-ec2'
import type { S3Client } from '@aws-sdk/client-s3'
import type { SSMClient } from '@aws-sdk/client-ssm'

export const REPO: string
export const DIST_INDEX: string
export const FIXTURE_DIR: string
export const REGION: string
export const ZONE: string
export const ACCOUNT: string
export const CREDENTIALS: { accessKeyId: string; secretAccessKey: string }
export const HELPER_AMI_ID: string

export interface MotoAmi {
  ami_id: string
  name: string
  image_location?: string
  [key: string]: unknown
}

export function instanceStoreAmi(options: { amiId: string; name: string; imageLocation: string }): MotoAmi
export function helperAmi(): MotoAmi
export function actionDefaults(): Record<string, string>
export function waitUntil(
  test: () => boolean | Promise<boolean>,
  options?: { timeoutMs?: number; everyMs?: number }
): Promise<boolean>

export interface LedgerEntry {
  kind: string
  id: string
  region: string
  removeOn: string
  step: string
  detail?: Record<string, string>
}

export interface ActionResult {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
}

export type Entry = 'main' | 'post'

export class RunnerStep {
  readonly inputs: Record<string, string>
  readonly dir: string
  readonly files: { GITHUB_STATE: string; GITHUB_OUTPUT: string; GITHUB_STEP_SUMMARY: string }
  extraEnv: Record<string, string>
  state(): Record<string, string>
  outputs(): Record<string, string>
  summary(): string
  ledger(): LedgerEntry[]
  env(entry: Entry): Record<string, string>
  start(entry?: Entry, options?: { echo?: boolean }): { child: ChildProcess; done: Promise<ActionResult> }
  run(entry?: Entry, options?: { echo?: boolean }): Promise<ActionResult>
}

export interface Inventory {
  volumes: { id: string; state: string; tagged: boolean; attachedTo: string[] }[]
  snapshots: string[]
  images: string[]
  parameters: string[]
  instances: string[]
}

export interface ProxyReport {
  violations: { operation: string; rule: string; message: string }[]
  checked: Record<string, number>
  served: {
    notFound: string[]
    creating: string[]
    attaching: string[]
    snapshotPending: string[]
    imagePending: string[]
  }
}

export interface BootScenario {
  /** One answer per DescribeInstanceStatus; the last repeats. */
  statuses?: { instance: string; system: string }[]
  console?: string
}

export interface Ec2BootStandin {
  url: string
  calls: { action: string; instanceId: string; latest?: boolean }[]
  setScenario(amiName: string, scenario?: BootScenario): void
  close(): Promise<void>
}

export class EmulatorSession {
  constructor(options?: { amis?: MotoAmi[]; log?: (line: string) => void; bootStandin?: boolean })
  /** Set by start() when the session was made with bootStandin: true. */
  bootStandin?: Ec2BootStandin
  readonly dir: string
  motoUrl: string
  /** Untagged volumes are moto's own (StartSnapshot makes one); set in sessions that run only convert-on: runner. */
  ebsDirectOnly?: boolean
  standinUrl: string
  standinLog: string
  /** The contract proxy (tools/aws-proxy.mjs) the action talks to. */
  proxyUrl: string
  proxyLog: string
  proxyReport(): Promise<ProxyReport>
  loopDevices: boolean
  ec2: EC2Client
  s3: S3Client
  /** SSM straight to moto (parameters); ssmViaStandin goes through the stand-in like the action. */
  ssm: SSMClient
  ssmViaStandin: SSMClient
  awsEnv(): Record<string, string>
  start(): Promise<void>
  uploadBundle(options: {
    bucket: string
    prefix: string
    fixtureDir?: string
    corrupt?: string
  }): Promise<{ imageLocation: string; parts: string[] }>
  launchHelper(): Promise<{ instanceId: string; rootVolumeIds: string[]; rootDeviceName?: string }>
  inventory(): Promise<Inventory>
  static added(before: Inventory, after: Inventory): Inventory
  step(inputs: Record<string, string>): RunnerStep
  stop(): Promise<void>
}
