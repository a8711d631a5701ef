// The bundle manifest (ec2-ami-tools, version 2007-10-10): where it is, what it says (image size,
// part names), and whether every part can be read, checked from the runner before anything is made.
import { GetObjectCommand, HeadObjectCommand, type S3Client } from '@aws-sdk/client-s3'
import type { S3Location } from '../settings/index.js'
import { errorCode } from '../errors.js'

export interface BundleManifest {
  version: string
  /** Bytes of the disk image the bundle rebuilds. */
  imageBytes: number
  /** Part file names, in manifest order, relative to the manifest's folder. */
  parts: string[]
  architecture?: string
  /** The manifest text as read (readManifest only), for the signature check on the runner. */
  xml?: string
}

export const s3Url = (l: S3Location): string => `s3://${l.bucket}/${l.key}`

/** An instance-store AMI's ImageLocation is `bucket/prefix/name.manifest.xml`. */
export function manifestFromImageLocation(imageLocation: string): S3Location | undefined {
  const match = /^([^/]+)\/(.+\.manifest\.xml)$/.exec(imageLocation.trim())
  return match ? { bucket: match[1] as string, key: match[2] as string } : undefined
}

/** The key of a part beside its manifest. */
export const partKey = (manifest: S3Location, part: string): string => {
  const slash = manifest.key.lastIndexOf('/')
  return slash < 0 ? part : `${manifest.key.slice(0, slash + 1)}${part}`
}

const unescapeXml = (s: string): string =>
  s
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&quot;/g, '"')
    .replace(/&apos;/g, "'")
    .replace(/&amp;/g, '&')

const SUPPORTED_VERSIONS = new Set(['3', '2007-08-29', '2007-10-10'])

/** Reads the fields the action needs; throws naming what is missing. */
export function parseManifest(xml: string, where = 'the manifest'): BundleManifest {
  const version = /<version>([^<]+)<\/version>/.exec(xml)?.[1]?.trim()
  const image = /<image>([\s\S]*)<\/image>/.exec(xml)?.[1]
  const size = image ? /<size>\s*(\d+)\s*<\/size>/.exec(image)?.[1] : undefined
  const partsBlock = image ? /<parts\b[^>]*>([\s\S]*?)<\/parts>/.exec(image)?.[1] : undefined
  if (!version || !image || !size || partsBlock === undefined)
    throw new Error(
      `${where} is not an ec2-ami-tools bundle manifest (no version, image size or parts); give the .manifest.xml that ec2-bundle-vol/ec2-upload-bundle wrote`
    )
  if (!SUPPORTED_VERSIONS.has(version))
    throw new Error(
      `${where} has manifest version ${version}; only ec2-ami-tools versions 3, 2007-08-29 and 2007-10-10 are understood`
    )
  const parts = [...partsBlock.matchAll(/<filename>([^<]+)<\/filename>/g)].map((m) =>
    unescapeXml((m[1] as string).trim())
  )
  if (parts.length === 0) throw new Error(`${where} lists no parts; bundle the image again`)
  const bad = parts.find((p) => p.includes('/') || p === '..' || p === '.')
  if (bad) throw new Error(`${where} names a part '${bad}' outside its folder; bundle the image again`)
  const architecture = /<machine_configuration>[\s\S]*?<architecture>([^<]+)<\/architecture>/.exec(xml)?.[1]
  return { version, imageBytes: Number(size), parts, architecture: architecture?.trim() }
}

const s3Fix = (l: S3Location): string =>
  `check the location and that the action's role may s3:GetObject on arn:aws:s3:::${l.bucket}/*`

/** GetObject the manifest and parse it. */
export async function readManifest(s3: S3Client, location: S3Location): Promise<BundleManifest> {
  const url = s3Url(location)
  let text: string
  try {
    const out = await s3.send(new GetObjectCommand({ Bucket: location.bucket, Key: location.key }))
    text = (await out.Body?.transformToString('utf8')) ?? ''
  } catch (err) {
    const code = errorCode(err) ?? 'error'
    if (code === 'NoSuchKey' || code === 'NotFound')
      throw new Error(`The manifest ${url} does not exist; ${s3Fix(location)}`)
    if (code === 'NoSuchBucket')
      throw new Error(`The bucket of the manifest ${url} does not exist; ${s3Fix(location)}`)
    throw new Error(`Could not read the manifest ${url} (${code}); ${s3Fix(location)}`)
  }
  return { ...parseManifest(text, `the manifest ${url}`), xml: text }
}

/** HeadObject every part (a few at a time); throws naming the missing or unreadable ones. */
export async function checkParts(s3: S3Client, manifest: S3Location, parts: string[]): Promise<number> {
  const problems: string[] = []
  let total = 0
  const queue = [...parts]
  const worker = async (): Promise<void> => {
    for (let part = queue.shift(); part !== undefined; part = queue.shift()) {
      const key = partKey(manifest, part)
      try {
        const head = await s3.send(new HeadObjectCommand({ Bucket: manifest.bucket, Key: key }))
        total += head.ContentLength ?? 0
      } catch (err) {
        const code = errorCode(err) ?? 'error'
        problems.push(`${part} (${code === 'NotFound' || code === 'NoSuchKey' ? 'missing' : code})`)
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(8, parts.length) }, worker))
  if (problems.length > 0) {
    const shown = problems.slice(0, 3).join(', ')
    const more = problems.length > 3 ? ` and ${problems.length - 3} more` : ''
    throw new Error(
      `${problems.length} of ${parts.length} bundle parts beside ${s3Url(manifest)} cannot be read: ${shown}${more}; upload the bundle again (ec2-upload-bundle) or ${s3Fix(manifest)}`
    )
  }
  return total
}
