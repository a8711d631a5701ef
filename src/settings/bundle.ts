// Bundling the source instance (modes bundle, full): where the bundle goes (s3-bucket, s3-prefix)
// and how ec2-bundle-vol runs there.
import { BUCKET, type Form } from './forms.js'
import { Input } from './inputs.js'
import type { InputParser } from './parser.js'
import type { BundleSettings, IfBundleExists, Mode } from './types.js'

const BUCKET_NAME: Form = {
  pattern: BUCKET,
  accepted: 'an S3 bucket name (3-63 lowercase letters, digits, dots and hyphens)'
}
// What bundle.sh passes on to ec2-upload-bundle: letters, digits and / . _ - only.
const PREFIX: Form = {
  pattern: /^(?!\/)[A-Za-z0-9_./-]{1,900}(?<!\/)$/,
  accepted: "a key prefix without leading or trailing '/', of letters, digits and / . _ - only"
}
const SERVICES: Form = {
  pattern: /^[A-Za-z0-9@._:-]+$/,
  accepted: 'service names such as jenkins or redis-server'
}
// ec2-bundle-vol takes the excludes as one comma-separated argument: no white space.
const EXCLUDES: Form = {
  pattern: /^\/[^\0\s'"`$\\]*$/,
  accepted: "absolute paths without white space, quotes, '$', '`' or '\\' (exclude a parent folder instead)"
}

export interface BundleContext {
  mode?: Mode
  sourceInstanceId?: string
  now: Date
}

function defaultPrefix(instanceId: string | undefined, now: Date): string {
  const stamp = now.toISOString().replace(/[-:]/g, '').replace(/\..*$/, 'Z')
  return `instance-to-ebs/${instanceId ?? 'bundle'}/${stamp}`
}

function readPrefix(p: InputParser, context: BundleContext): string | undefined {
  const prefix = p.optional(Input.S3Prefix, PREFIX)
  // Tools that build URLs from the prefix may normalise '..', '.' and '//' away: refuse them.
  if (prefix?.split('/').some((segment) => segment === '' || segment === '.' || segment === '..'))
    p.problem(Input.S3Prefix, prefix, "a key prefix without empty, '.' or '..' segments (a/b/c)")
  if (context.mode === 'convert') return undefined
  return prefix ?? defaultPrefix(context.sourceInstanceId, context.now)
}

export function readBundle(p: InputParser, context: BundleContext): BundleSettings {
  return {
    bucket: p.optional(Input.S3Bucket, BUCKET_NAME),
    prefix: readPrefix(p, context),
    stopServices: p.list(Input.StopServices, SERVICES, true),
    exclude: p.list(Input.BundleExclude, EXCLUDES),
    installPrerequisites: p.boolean(Input.InstallPrerequisites, true),
    fixMenuLst: p.boolean(Input.FixMenuLst, false),
    ifExists: p.oneOf<IfBundleExists>(Input.IfBundleExists, ['fail', 'overwrite'], 'fail') ?? 'fail',
    keep: p.boolean(Input.KeepBundle, false)
  }
}
