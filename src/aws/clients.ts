// The one place AWS clients are built: default credential chain only, standard retries with
// a configurable attempt count, our user agent, and the SDK's own endpoint variables
// (AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_EC2, …) so tests can point them at an emulator.
import { CloudWatchLogsClient } from '@aws-sdk/client-cloudwatch-logs'
import { EBSClient } from '@aws-sdk/client-ebs'
import { EC2Client, type EC2ClientConfig } from '@aws-sdk/client-ec2'
import { S3Client } from '@aws-sdk/client-s3'
import { SSMClient } from '@aws-sdk/client-ssm'

export const USER_AGENT: [string, string] = ['instance-to-ebs', '0.1.0']

export interface Clients {
  region: string
  ec2: EC2Client
  /** EBS direct APIs (convert-on: runner). Its block writes retry on their own (snapshot-blocks.ts). */
  ebs: EBSClient
  ssm: SSMClient
  s3: S3Client
  logs: CloudWatchLogsClient
}

export interface ClientOptions {
  region: string
  maxAttempts: number
  env?: NodeJS.ProcessEnv
  /** Replaces the standard strategy built from maxAttempts (tests: the same strategy with a short backoff). */
  retryStrategy?: EC2ClientConfig['retryStrategy']
}

export function makeClients({
  region,
  maxAttempts,
  env = process.env,
  retryStrategy
}: ClientOptions): Clients {
  const common = {
    region,
    maxAttempts,
    retryMode: 'standard' as const,
    customUserAgent: [USER_AGENT],
    ...(retryStrategy ? { retryStrategy } : {})
  }
  // Path-style addressing only for local S3 emulators, which cannot serve bucket subdomains.
  const forcePathStyle = Boolean(env.AWS_ENDPOINT_URL_S3 ?? env.AWS_ENDPOINT_URL)
  const ebs = new EBSClient(common)
  unsignedBlockPayloads(ebs)
  return {
    region,
    ec2: new EC2Client(common),
    ebs,
    ssm: new SSMClient(common),
    s3: new S3Client({ ...common, forcePathStyle }),
    logs: new CloudWatchLogsClient(common)
  }
}

/**
 * "The block data that is transmitted is not signed as part of the Signature Version 4 signing
 * process. As a result, checksums are used to validate the integrity of the data" (EBS user
 * guide, "Use EBS direct APIs checksums"): PutSnapshotBlock carries its own SHA-256, so the
 * signer need not hash every 512 KiB body a second time.
 */
export function unsignedBlockPayloads(ebs: EBSClient): void {
  ebs.middlewareStack.add(
    (next, context) => async (args) => {
      const request = args.request as { headers?: Record<string, string> }
      if (context.commandName === 'PutSnapshotBlockCommand' && request.headers)
        request.headers['x-amz-content-sha256'] = 'UNSIGNED-PAYLOAD'
      return next(args)
    },
    { step: 'build', name: 'unsignedBlockPayloads' }
  )
}

export function destroyClients(clients: Clients): void {
  for (const c of [clients.ec2, clients.ebs, clients.ssm, clients.s3, clients.logs]) c.destroy()
}
