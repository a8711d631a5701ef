// The bundle's destination, checked from the runner before anything is made: the bucket exists in
// the action's region, accepts the aws-exec-read ACL ec2-upload-bundle sets, and the prefix is free.
import {
  GetBucketLocationCommand,
  GetBucketOwnershipControlsCommand,
  ListObjectsV2Command,
  type S3Client
} from '@aws-sdk/client-s3'
import { errorCode } from '../../errors.js'
import type { IfBundleExists } from '../../settings/index.js'
import type { Logger } from '../runner.js'
import { Input } from '../../settings/inputs.js'

/** LocationConstraint → region: none means us-east-1, 'EU' is the old name of eu-west-1. */
export function bucketRegion(constraint: string | undefined | null): string {
  if (constraint === undefined || constraint === null || constraint === '') return 'us-east-1'
  if (constraint === 'EU') return 'eu-west-1'
  return constraint
}

/** The region S3 names in a redirect, when it names one. */
function redirectRegion(err: unknown): string | undefined {
  const e = err as { $response?: { headers?: Record<string, string> }; Region?: unknown }
  const header = e.$response?.headers?.['x-amz-bucket-region']
  if (typeof header === 'string' && header !== '') return header
  return typeof e.Region === 'string' ? e.Region : undefined
}

export async function checkBucketRegion(s3: S3Client, bucket: string, region: string): Promise<void> {
  let actual: string
  try {
    const out = await s3.send(new GetBucketLocationCommand({ Bucket: bucket }))
    actual = bucketRegion(out.LocationConstraint)
  } catch (err) {
    const code = errorCode(err) ?? 'error'
    if (code === 'NoSuchBucket')
      throw new Error(
        `The bucket '${bucket}' (${Input.S3Bucket}) does not exist; create it in ${region} (aws s3 mb s3://${bucket} --region ${region}) or name an existing one`
      )
    if (code === 'AccessDenied' || code === 'Forbidden')
      throw new Error(
        `The action's credentials may not read the region of bucket '${bucket}' (s3:GetBucketLocation denied); allow s3:GetBucketLocation, s3:ListBucket and s3:DeleteObject on it, or check that the bucket belongs to this account`
      )
    if (code === 'PermanentRedirect' || code === 'AuthorizationHeaderMalformed') {
      const where = redirectRegion(err)
      throw wrongRegion(bucket, where ?? 'another region', region)
    }
    throw new Error(
      `Could not read the region of bucket '${bucket}' (${code}); check ${Input.S3Bucket} and the action's S3 permissions`
    )
  }
  if (actual !== region) throw wrongRegion(bucket, actual, region)
}

const wrongRegion = (bucket: string, actual: string, region: string): Error =>
  new Error(
    `The bucket '${bucket}' is in ${actual}, not in ${region} where the source instance runs; ec2-upload-bundle and RegisterImage need a bucket in the instance's region: use a bucket in ${region} (${Input.S3Bucket})`
  )

/** ec2-upload-bundle sets the aws-exec-read ACL so that EC2 may read the parts; ACL-less buckets refuse it. */
export async function checkBucketAcceptsAcls(s3: S3Client, bucket: string, log: Logger): Promise<void> {
  let ownership: string | undefined
  try {
    const out = await s3.send(new GetBucketOwnershipControlsCommand({ Bucket: bucket }))
    ownership = out.OwnershipControls?.Rules?.[0]?.ObjectOwnership
  } catch (err) {
    const code = errorCode(err) ?? 'error'
    if (code === 'OwnershipControlsNotFoundError') return // no controls: ACLs are accepted
    if (code === 'AccessDenied') {
      log.warning(
        `Could not read the Object Ownership of bucket '${bucket}' (s3:GetBucketOwnershipControls denied); if it is BucketOwnerEnforced the upload will fail on the aws-exec-read ACL`
      )
      return
    }
    throw new Error(
      `Could not read the Object Ownership of bucket '${bucket}' (${code}); check ${Input.S3Bucket} and the action's S3 permissions`
    )
  }
  if (ownership === 'BucketOwnerEnforced')
    throw new Error(
      `The bucket '${bucket}' has ACLs disabled (Object Ownership: BucketOwnerEnforced), so it refuses the aws-exec-read ACL that ec2-upload-bundle sets for EC2 to read the bundle. Change its Object Ownership to ObjectWriter or BucketOwnerPreferred: aws s3api put-bucket-ownership-controls --bucket ${bucket} --ownership-controls 'Rules=[{ObjectOwnership=BucketOwnerPreferred}]' (or in the console: bucket → Permissions → Object Ownership → ACLs enabled), or use another bucket`
    )
}

/** Manifests directly under the prefix: another bundle lives there. */
export async function existingManifests(s3: S3Client, bucket: string, prefix: string): Promise<string[]> {
  const found: string[] = []
  let token: string | undefined
  try {
    do {
      const page = await s3.send(
        new ListObjectsV2Command({
          Bucket: bucket,
          Prefix: `${prefix}/`,
          Delimiter: '/',
          ContinuationToken: token
        })
      )
      for (const o of page.Contents ?? []) if (o.Key?.endsWith('.manifest.xml')) found.push(o.Key)
      token = page.IsTruncated ? page.NextContinuationToken : undefined
    } while (token)
  } catch (err) {
    const code = errorCode(err) ?? 'error'
    throw new Error(
      `Could not list s3://${bucket}/${prefix}/ (${code}); allow s3:ListBucket on the bucket for the action's credentials (it is also needed to remove a failed upload)`
    )
  }
  return found
}

export async function checkPrefixFree(
  s3: S3Client,
  bucket: string,
  prefix: string,
  ifExists: IfBundleExists,
  log: Logger
): Promise<void> {
  const manifests = await existingManifests(s3, bucket, prefix)
  if (manifests.length === 0) return
  const first = `s3://${bucket}/${manifests[0]}`
  const more = manifests.length > 1 ? ` and ${manifests.length - 1} more` : ''
  if (ifExists === 'overwrite') {
    log.warning(
      `s3://${bucket}/${prefix}/ already holds a bundle (${first}${more}); ${Input.IfBundleExists}: overwrite replaces it, and if this run fails the bundle there is removed unless ${Input.KeepBundle} is true`
    )
    return
  }
  throw new Error(
    `s3://${bucket}/${prefix}/ already holds a bundle (${first}${more}); choose another ${Input.S3Prefix}, remove that bundle, or set ${Input.IfBundleExists}: overwrite`
  )
}
