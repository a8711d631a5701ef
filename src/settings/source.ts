// What to convert and how: source-instance-id, source-ami-id or manifest-location, the mode they
// imply (or mode), and the region.
import { AMI_ID, BUCKET, INSTANCE_ID, REGION } from './forms.js'
import { Input } from './inputs.js'
import { type InputParser, required } from './parser.js'
import type { Mode, S3Location, Source } from './types.js'

export interface SourceAndMode {
  source: Source
  /** mode, or the one the source implies; undefined when neither says (a problem then). */
  mode?: Mode
  region: string
}

const MANIFEST_SUFFIX = '.manifest.xml'

function readManifest(p: InputParser): S3Location | undefined {
  const value = p.raw(Input.ManifestLocation)
  if (value === '') return undefined
  const match = /^s3:\/\/([^/]+)\/(.+)$/.exec(value)
  if (!match || !BUCKET.test(match[1] ?? '') || !(match[2] ?? '').endsWith(MANIFEST_SUFFIX)) {
    p.problem(
      Input.ManifestLocation,
      value,
      `s3://bucket/prefix/name${MANIFEST_SUFFIX} with a valid bucket name`
    )
    return undefined
  }
  return { bucket: match[1] as string, key: match[2] as string }
}

/** The mode given, or the one the source implies (a source that is set, even if invalid). */
function readMode(p: InputParser): Mode | undefined {
  const explicit = p.oneOf<Mode>(Input.Mode, ['bundle', 'convert', 'full'])
  if (explicit !== undefined) return explicit
  if (p.given(Input.SourceInstanceId)) return 'full'
  if (p.given(Input.SourceAmiId) || p.given(Input.ManifestLocation)) return 'convert'
  return undefined
}

function readRegion(p: InputParser, env: NodeJS.ProcessEnv): string {
  const accepted = 'a region name such as us-east-1'
  const given = p.optional(Input.Region, { pattern: REGION, accepted })
  if (p.given(Input.Region)) return given ?? env.AWS_REGION ?? env.AWS_DEFAULT_REGION ?? ''
  const region = env.AWS_REGION ?? env.AWS_DEFAULT_REGION ?? ''
  if (region === '')
    p.add(
      Input.Region,
      required(
        Input.Region,
        'when neither AWS_REGION nor AWS_DEFAULT_REGION is set (aws-actions/configure-aws-credentials sets them)'
      )
    )
  else if (!REGION.test(region))
    p.problem(Input.Region, region, `${accepted} (taken from AWS_REGION/AWS_DEFAULT_REGION)`)
  return region
}

export function readSourceAndMode(p: InputParser, env: NodeJS.ProcessEnv): SourceAndMode {
  const source: Source = {
    instanceId: p.optional(Input.SourceInstanceId, INSTANCE_ID),
    amiId: p.optional(Input.SourceAmiId, AMI_ID),
    manifest: readManifest(p)
  }
  return { source, mode: readMode(p), region: readRegion(p, env) }
}
