// The only module that reads the action's inputs. Everything else receives a Settings.
import * as core from '@actions/core'

export type Mode = 'bundle' | 'convert' | 'full'
export type VirtualizationType = 'hvm' | 'paravirtual'
export type Architecture = 'x86_64' | 'i386' | 'arm64'
export type VolumeType = 'gp3' | 'gp2' | 'io1' | 'io2' | 'standard'
export type BootMode = 'legacy-bios' | 'uefi' | 'uefi-preferred'
export type IfAmiExists = 'fail' | 'reuse' | 'replace'
export type IfBundleExists = 'fail' | 'overwrite'
/** Where the image is written: onto a volume by a helper instance, or into a snapshot by the runner (EBS direct APIs). */
export type ConvertOn = 'helper' | 'runner'
export type VerifyBootFailure = 'deregister' | 'keep'

export interface S3Location {
  bucket: string
  key: string
}

export interface Tag {
  Key: string
  Value: string
}

/** Key material: a value from a secret (delivered through a temporary SecureString) or a parameter name. */
export type KeyMaterial = { kind: 'value'; pem: string } | { kind: 'parameter'; name: string }

export interface HelperLaunch {
  amiId?: string
  instanceType: string
  subnetId: string
  securityGroupIds: string[]
  instanceProfile: string
}

/** verify-boot: launch the new AMI once and judge its boot (src/pipeline/verify/). */
export interface VerifyBoot {
  enabled: boolean
  /** In order of preference; empty means "chosen from the image facts". */
  instanceTypes: string[]
  /** Undefined: the helper's subnet (and then its security groups). */
  subnetId?: string
  securityGroupIds: string[]
  onFailure: VerifyBootFailure
}

export interface Settings {
  mode: Mode
  region: string
  source: { instanceId?: string; amiId?: string; manifest?: S3Location }
  convertOn: ConvertOn
  /** PutSnapshotBlock calls in flight at most (convert-on: runner). */
  uploadConcurrency: number
  helper: { instanceId?: string; launch?: HelperLaunch }
  bundle: {
    bucket?: string
    prefix?: string
    stopServices: string[]
    exclude: string[]
    installPrerequisites: boolean
    fixMenuLst: boolean
    ifExists: IfBundleExists
    keep: boolean
  }
  /** Inputs that override what is detected from the source; undefined means "detect". */
  image: {
    virtualizationType?: VirtualizationType
    /** The virtualization type of the EBS AMI (convert, full); undefined means "as the source". */
    outputVirtualizationType?: VirtualizationType
    rootDeviceName?: string
    architecture?: Architecture
    kernelId?: string
    ramdiskId?: string
  }
  ami: {
    name?: string
    description?: string
    tags: Tag[]
    volumeType: VolumeType
    volumeSizeGiB?: number
    encrypted: boolean
    kmsKeyId?: string
    enaSupport?: boolean
    sriovNetSupport?: 'simple'
    bootMode?: BootMode
    ifExists: IfAmiExists
  }
  x509: { certificate?: KeyMaterial; privateKey?: KeyMaterial }
  verifyBoot: VerifyBoot
  dryRun: boolean
  timeoutMinutes: number
  maxAttempts: number
  logGroup?: string
  /** When the credentials expire, as given by the credentials-expiration input. */
  credentialsExpiration?: Date
}

export class SettingsError extends Error {
  constructor(readonly problems: string[]) {
    super(
      problems.length === 1
        ? `Invalid input: ${problems[0]}`
        : `${problems.length} invalid inputs:\n${problems.map((p) => `  - ${p}`).join('\n')}`
    )
    this.name = 'SettingsError'
  }
}

export type InputReader = (name: string) => string

const readActionInput: InputReader = (name) => core.getInput(name)

/** AWS resource ids: prefix, then 8 or 17 lowercase hex digits. */
export const idPattern = (prefix: string): RegExp => new RegExp(`^${prefix}-(?:[0-9a-f]{8}|[0-9a-f]{17})$`)

const REGION = /^[a-z]{2}(?:-gov|-iso[a-z]?)?-[a-z]+-\d{1,2}$/
// https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html
const BUCKET =
  /^(?!xn--|sthree-|amzn-s3-demo-)(?!.*(?:-s3alias|--ol-s3|--x-s3|--table-s3)$)[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/
// What bundle.sh passes on to ec2-upload-bundle: letters, digits and / . _ - only.
const PREFIX = /^(?!\/)[A-Za-z0-9_./-]{1,900}(?<!\/)$/
const DEVICE = /^\/dev\/(?:sd[a-z]\d{0,2}|xvd[a-z]{1,2}\d{0,2})$/
const AMI_NAME = /^[A-Za-z0-9()[\] ./\-'@_]{3,128}$/
const INSTANCE_TYPE = /^[a-z][a-z0-9-]*\.[a-z0-9-]+$/
const SERVICE = /^[A-Za-z0-9@._:-]+$/
const PARAMETER_NAME = /^\/?[A-Za-z0-9_.-]+(?:\/[A-Za-z0-9_.-]+)*$/
const PROFILE = /^(?:arn:aws[a-z-]*:iam::\d{12}:instance-profile\/[\w+=,.@/-]+|[\w+=,.@-]{1,128})$/
const KMS_KEY =
  /^(?:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|mrk-[0-9a-f]{32}|alias\/[\w/-]+|arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:(?:key|alias)\/[\w/-]+)$/
const LOG_GROUP = /^[.\-_/#A-Za-z0-9]{1,512}$/
const CERT_PEM = /^-----BEGIN CERTIFICATE-----\s[\s\S]+\s-----END CERTIFICATE-----$/
const KEY_PEM = /^-----BEGIN (RSA )?PRIVATE KEY-----\s[\s\S]+\s-----END \1PRIVATE KEY-----$/

/** Splits a list input on commas, newlines (and, for word lists, spaces). */
const splitList = (value: string, onSpaces = false): string[] =>
  value
    .split(onSpaces ? /[\s,]+/ : /[\n,]+/)
    .map((item) => item.trim())
    .filter((item) => item.length > 0)

/** Collects problems as inputs are read, so that all of them are reported at once. */
class InputParser {
  readonly problems: string[] = []

  constructor(private readonly read: InputReader) {}

  raw(name: string): string {
    return this.read(name).trim()
  }

  optional(name: string, pattern: RegExp, accepted: string): string | undefined {
    const value = this.raw(name)
    if (value === '') return undefined
    if (!pattern.test(value)) {
      this.problem(name, value, accepted)
      return undefined
    }
    return value
  }

  oneOf<T extends string>(name: string, choices: readonly T[], fallback?: T): T | undefined {
    const value = this.raw(name)
    if (value === '') return fallback
    if (!(choices as readonly string[]).includes(value)) {
      this.problem(name, value, `one of ${choices.map((c) => `'${c}'`).join(', ')}`)
      return fallback
    }
    return value as T
  }

  boolean(name: string, fallback: boolean): boolean {
    const value = this.optionalBoolean(name)
    return value ?? fallback
  }

  optionalBoolean(name: string): boolean | undefined {
    const value = this.raw(name)
    if (value === '') return undefined
    if (/^(true|yes)$/i.test(value)) return true
    if (/^(false|no)$/i.test(value)) return false
    this.problem(name, value, "'true' or 'false'")
    return undefined
  }

  integer(name: string, min: number, max: number): number | undefined {
    const value = this.raw(name)
    if (value === '') return undefined
    const n = /^\d+$/.test(value) ? Number(value) : Number.NaN
    if (!Number.isSafeInteger(n) || n < min || n > max) {
      this.problem(name, value, `a whole number from ${min} to ${max}`)
      return undefined
    }
    return n
  }

  list(name: string, pattern: RegExp, accepted: string, onSpaces = false): string[] {
    const items = splitList(this.raw(name), onSpaces)
    const bad = items.filter((item) => !pattern.test(item))
    for (const item of bad) this.problem(name, item, accepted)
    return items.filter((item) => pattern.test(item))
  }

  /** An ISO 8601 time with its zone, such as aws-actions/configure-aws-credentials' aws-expiration output. */
  timestamp(name: string): Date | undefined {
    const value = this.raw(name)
    if (value === '') return undefined
    const time = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})$/.test(value)
      ? new Date(value)
      : undefined
    if (!time || Number.isNaN(time.getTime())) {
      this.problem(
        name,
        value,
        'an ISO 8601 time with its zone, such as 2026-01-01T13:00:00Z (the aws-expiration output)'
      )
      return undefined
    }
    return time
  }

  /** A PEM value from a secret: masked before anything else, never echoed. */
  secret(name: string, pattern: RegExp, accepted: string): string | undefined {
    const value = this.read(name).trim()
    if (value === '') return undefined
    core.setSecret(value)
    for (const line of value.split(/\r?\n/)) {
      if (line.length >= 8 && !line.startsWith('-----')) core.setSecret(line)
    }
    if (!pattern.test(value)) {
      this.problems.push(`'${name}': the value (hidden) is not ${accepted}`)
      return undefined
    }
    return value
  }

  problem(name: string, value: string, accepted: string): void {
    const shown = value.length > 80 ? `${value.slice(0, 77)}...` : value
    this.problems.push(`'${name}': '${shown}' is not valid; expected ${accepted}`)
  }

  require(name: string, why: string): void {
    this.problems.push(`'${name}' is required ${why}`)
  }

  forbid(name: string, why: string): void {
    if (this.raw(name) !== '') this.problems.push(`'${name}' cannot be used ${why}`)
  }
}

function parseS3Url(p: InputParser, name: string, requiredSuffix: string): S3Location | undefined {
  const value = p.raw(name)
  if (value === '') return undefined
  const match = /^s3:\/\/([^/]+)\/(.+)$/.exec(value)
  if (!match || !BUCKET.test(match[1] ?? '') || !(match[2] ?? '').endsWith(requiredSuffix)) {
    p.problem(name, value, `s3://bucket/prefix/name${requiredSuffix} with a valid bucket name`)
    return undefined
  }
  return { bucket: match[1] as string, key: match[2] as string }
}

function parseTags(p: InputParser): Tag[] {
  const tags: Tag[] = []
  const seen = new Set<string>()
  for (const item of splitList(p.raw('tags'))) {
    const eq = item.indexOf('=')
    const key = eq > 0 ? item.slice(0, eq).trim() : ''
    const value = eq > 0 ? item.slice(eq + 1).trim() : ''
    // EC2's Tag: "Tag keys are case-sensitive and accept a maximum of 127 Unicode characters. May not
    // begin with aws:." and "Tag values ... accept a maximum of 256 Unicode characters."
    if (
      key === '' ||
      [...key].length > 127 ||
      [...value].length > 256 ||
      /^aws:/i.test(key) ||
      seen.has(key)
    ) {
      p.problem(
        'tags',
        item,
        "key=value pairs, comma or newline separated, unique keys of 1-127 characters not starting with 'aws:', values up to 256 characters"
      )
      continue
    }
    seen.add(key)
    tags.push({ Key: key, Value: value })
  }
  if (tags.length > 40) p.problems.push(`'tags': ${tags.length} tags given; at most 40 are accepted`)
  return tags
}

function parseKeyMaterial(
  p: InputParser,
  valueInput: string,
  parameterInput: string,
  pattern: RegExp,
  accepted: string
): KeyMaterial | undefined {
  const pem = p.secret(valueInput, pattern, accepted)
  const parameter = p.optional(parameterInput, PARAMETER_NAME, 'an SSM parameter name such as /ci/x509/key')
  if (p.raw(valueInput) !== '' && p.raw(parameterInput) !== '') {
    p.problems.push(`'${valueInput}' and '${parameterInput}' cannot both be set; give one of them`)
    return undefined
  }
  if (pem !== undefined) return { kind: 'value', pem }
  if (parameter !== undefined) return { kind: 'parameter', name: parameter }
  return undefined
}

function defaultPrefix(instanceId: string | undefined, now: Date): string {
  const stamp = now.toISOString().replace(/[-:]/g, '').replace(/\..*$/, 'Z')
  return `instance-to-ebs/${instanceId ?? 'bundle'}/${stamp}`
}

export interface ReadSettingsOptions {
  env?: NodeJS.ProcessEnv
  now?: Date
}

/** Reads and validates every input; throws one SettingsError listing every problem. */
export function readSettings(
  read: InputReader = readActionInput,
  options: ReadSettingsOptions = {}
): Settings {
  const env = options.env ?? process.env
  const p = new InputParser(read)

  // Secrets first, so that they are masked before anything could print them.
  const certificate = parseKeyMaterial(
    p,
    'x509-certificate',
    'x509-certificate-parameter',
    CERT_PEM,
    'a PEM certificate (-----BEGIN CERTIFICATE----- ... -----END CERTIFICATE-----)'
  )
  const privateKey = parseKeyMaterial(
    p,
    'x509-private-key',
    'x509-private-key-parameter',
    KEY_PEM,
    'a PEM private key (-----BEGIN PRIVATE KEY----- or -----BEGIN RSA PRIVATE KEY-----)'
  )

  const sourceInstanceId = p.optional(
    'source-instance-id',
    idPattern('i'),
    'an instance id such as i-0123456789abcdef0'
  )
  const sourceAmiId = p.optional('source-ami-id', idPattern('ami'), 'an AMI id such as ami-0123456789abcdef0')
  const manifest = parseS3Url(p, 'manifest-location', '.manifest.xml')

  const explicitMode = p.oneOf<Mode>('mode', ['bundle', 'convert', 'full'])
  const mode: Mode | undefined =
    explicitMode ??
    (p.raw('source-instance-id') !== ''
      ? 'full'
      : p.raw('source-ami-id') !== '' || p.raw('manifest-location') !== ''
        ? 'convert'
        : undefined)

  const regionInput = p.optional('region', REGION, 'a region name such as us-east-1')
  const region = regionInput ?? env.AWS_REGION ?? env.AWS_DEFAULT_REGION ?? ''
  if (p.raw('region') === '' && region === '') {
    p.require(
      'region',
      'when neither AWS_REGION nor AWS_DEFAULT_REGION is set (aws-actions/configure-aws-credentials sets them)'
    )
  } else if (p.raw('region') === '' && !REGION.test(region)) {
    p.problem('region', region, 'a region name such as us-east-1 (taken from AWS_REGION/AWS_DEFAULT_REGION)')
  }

  const convertOn = p.oneOf<ConvertOn>('convert-on', ['helper', 'runner'], 'helper') ?? 'helper'
  const uploadConcurrency = p.integer('upload-concurrency', 1, 128) ?? 32
  const helperInstanceId = p.optional(
    'helper-instance-id',
    idPattern('i'),
    'an instance id such as i-0123456789abcdef0'
  )
  const helperAmiId = p.optional('helper-ami-id', idPattern('ami'), 'an AMI id such as ami-0123456789abcdef0')
  const helperType =
    p.optional('helper-instance-type', INSTANCE_TYPE, 'an instance type such as t3.small') ?? 't3.small'
  const helperSubnet = p.optional(
    'helper-subnet-id',
    idPattern('subnet'),
    'a subnet id such as subnet-0123456789abcdef0'
  )
  const helperGroups = p.list(
    'helper-security-group-ids',
    idPattern('sg'),
    'security group ids such as sg-0123456789abcdef0'
  )
  const helperProfile = p.optional(
    'helper-instance-profile',
    PROFILE,
    'an instance profile name or arn:aws:iam::<account>:instance-profile/<name>'
  )

  const bucket = p.optional(
    's3-bucket',
    BUCKET,
    'an S3 bucket name (3-63 lowercase letters, digits, dots and hyphens)'
  )
  const prefixInput = p.optional(
    's3-prefix',
    PREFIX,
    "a key prefix without leading or trailing '/', of letters, digits and / . _ - only"
  )
  // Tools that build URLs from the prefix may normalise '..', '.' and '//' away: refuse them.
  if (prefixInput?.split('/').some((segment) => segment === '' || segment === '.' || segment === '..'))
    p.problem('s3-prefix', prefixInput, "a key prefix without empty, '.' or '..' segments (a/b/c)")

  const virtualizationType = p.oneOf<VirtualizationType>('virtualization-type', ['hvm', 'paravirtual'])
  const outputVirtualizationType = p.oneOf<VirtualizationType>('output-virtualization-type', [
    'hvm',
    'paravirtual'
  ])
  const rootDeviceName = p.optional(
    'root-device-name',
    DEVICE,
    'a device name such as /dev/sda1 or /dev/xvda'
  )
  const architecture = p.oneOf<Architecture>('architecture', ['x86_64', 'i386', 'arm64'])
  const kernelId = p.optional('kernel-id', idPattern('aki'), 'a kernel id such as aki-0123456789abcdef0')
  const ramdiskId = p.optional('ramdisk-id', idPattern('ari'), 'a ramdisk id such as ari-0123456789abcdef0')

  const amiName = p.optional(
    'ami-name',
    AMI_NAME,
    "3-128 characters of letters, digits, spaces and ( ) [ ] . / - ' @ _"
  )
  const description = p.raw('ami-description')
  if (description.length > 255) p.problem('ami-description', description, 'at most 255 characters')
  const tags = parseTags(p)
  const volumeType =
    p.oneOf<VolumeType>('volume-type', ['gp3', 'gp2', 'io1', 'io2', 'standard'], 'gp3') ?? 'gp3'
  const volumeSizeGiB = p.integer('volume-size', 1, 16384)
  const encrypted = p.boolean('encrypted', false)
  const kmsKeyId = p.optional('kms-key-id', KMS_KEY, 'a KMS key id, mrk- id, alias/name or key/alias ARN')
  const enaSupport = p.optionalBoolean('ena-support')
  const sriovNetSupport = p.oneOf<'simple'>('sriov-net-support', ['simple'])
  const bootMode = p.oneOf<BootMode>('boot-mode', ['legacy-bios', 'uefi', 'uefi-preferred'])
  const ifAmiExists = p.oneOf<IfAmiExists>('if-ami-exists', ['fail', 'reuse', 'replace'], 'fail') ?? 'fail'

  const stopServices = p.list('stop-services', SERVICE, 'service names such as jenkins or redis-server', true)
  // ec2-bundle-vol takes the excludes as one comma-separated argument: no white space.
  const exclude = p.list(
    'bundle-exclude',
    /^\/[^\0\s'"`$\\]*$/,
    "absolute paths without white space, quotes, '$', '`' or '\\' (exclude a parent folder instead)"
  )
  const installPrerequisites = p.boolean('install-prerequisites', true)
  const fixMenuLst = p.boolean('fix-menu-lst', false)
  const ifBundleExists = p.oneOf<IfBundleExists>('if-bundle-exists', ['fail', 'overwrite'], 'fail') ?? 'fail'
  const keepBundle = p.boolean('keep-bundle', false)

  const verifyBoot = p.boolean('verify-boot', false)
  const verifyTypes = p.list(
    'verify-boot-instance-types',
    INSTANCE_TYPE,
    'instance types such as m3.medium or t3.small, comma or newline separated',
    true
  )
  const verifySubnet = p.optional(
    'verify-boot-subnet-id',
    idPattern('subnet'),
    'a subnet id such as subnet-0123456789abcdef0'
  )
  const verifyGroups = p.list(
    'verify-boot-security-group-ids',
    idPattern('sg'),
    'security group ids such as sg-0123456789abcdef0'
  )
  const verifyFailure =
    p.oneOf<VerifyBootFailure>('verify-boot-failure', ['deregister', 'keep'], 'deregister') ?? 'deregister'

  const dryRun = p.boolean('dry-run', false)
  const timeoutMinutes = p.integer('timeout-minutes', 5, 2880) ?? 120
  const maxAttempts = p.integer('max-attempts', 1, 20) ?? 8
  const logGroup = p.optional(
    'log-group',
    LOG_GROUP,
    'a CloudWatch Logs group name (letters, digits, . - _ / #)'
  )
  const credentialsExpiration = p.timestamp('credentials-expiration')

  // Combinations.
  if (kmsKeyId !== undefined && !encrypted) p.problems.push("'kms-key-id' needs 'encrypted: true'")
  // StartSnapshot takes "KmsKeyArn: The Amazon Resource Name (ARN) of the Key Management Service
  // (KMS) key to be used to encrypt the snapshot": no id, no alias.
  if (
    convertOn === 'runner' &&
    kmsKeyId !== undefined &&
    !/^arn:aws[a-z-]*:kms:[^:]+:\d{12}:key\/.+$/.test(kmsKeyId)
  )
    p.problem(
      'kms-key-id',
      kmsKeyId,
      "with 'convert-on: runner', a key ARN such as arn:aws:kms:us-east-1:123456789012:key/… (StartSnapshot takes no id or alias)"
    )
  if (virtualizationType === 'hvm') {
    if (kernelId !== undefined)
      p.problems.push("'kernel-id' applies only to 'virtualization-type: paravirtual'")
    if (ramdiskId !== undefined)
      p.problems.push("'ramdisk-id' applies only to 'virtualization-type: paravirtual'")
  }
  if (outputVirtualizationType === 'hvm') {
    if (kernelId !== undefined)
      p.problems.push("'kernel-id' applies only to a paravirtual result; 'output-virtualization-type' is hvm")
    if (ramdiskId !== undefined)
      p.problems.push(
        "'ramdisk-id' applies only to a paravirtual result; 'output-virtualization-type' is hvm"
      )
    if (bootMode !== undefined && bootMode !== 'legacy-bios')
      p.problems.push(
        `'boot-mode' ${bootMode} cannot boot the converted image: its GRUB 2 is for BIOS; use 'legacy-bios' or leave it empty`
      )
    // "HVM: Differs by AMI /dev/sda1 or /dev/xvda" (EC2 User Guide, device naming: root device names).
    if (rootDeviceName !== undefined && rootDeviceName !== '/dev/sda1' && rootDeviceName !== '/dev/xvda')
      p.problem('root-device-name', rootDeviceName, "'/dev/xvda' or '/dev/sda1' for an hvm result")
  }
  if (outputVirtualizationType === 'paravirtual' && virtualizationType === 'hvm')
    p.problems.push(
      "'output-virtualization-type' paravirtual needs a paravirtual source: an hvm image cannot be made paravirtual"
    )
  if (virtualizationType === 'paravirtual' && outputVirtualizationType !== 'hvm') {
    if (bootMode !== undefined) p.problems.push("'boot-mode' applies only to 'virtualization-type: hvm'")
    if (
      rootDeviceName !== undefined &&
      rootDeviceName !== '/dev/sda1' &&
      !/^\/dev\/(sd|xvd)[a-z]1?$/.test(rootDeviceName)
    )
      p.problem('root-device-name', rootDeviceName, 'a paravirtual root device such as /dev/sda1')
  }
  if (
    ramdiskId !== undefined &&
    kernelId === undefined &&
    p.raw('kernel-id') === '' &&
    sourceAmiId === undefined
  )
    p.problems.push("'ramdisk-id' needs 'kernel-id' (a ramdisk is loaded by its kernel)")

  if (mode === undefined) {
    if (explicitMode === undefined && p.raw('mode') === '')
      p.problems.push(
        "one source is required: 'source-instance-id' (mode full or bundle), 'source-ami-id' or 'manifest-location' (mode convert)"
      )
  } else {
    const needsBundle = mode === 'bundle' || mode === 'full'
    const needsConvert = mode === 'convert' || mode === 'full'
    if (needsBundle) {
      const why = `in mode '${mode}'`
      if (p.raw('source-instance-id') === '')
        p.require('source-instance-id', `${why}: the running instance to bundle`)
      p.forbid('source-ami-id', `${why}: the source is 'source-instance-id'`)
      p.forbid('manifest-location', `${why}: the bundle is made from 'source-instance-id'`)
      if (p.raw('s3-bucket') === '') p.require('s3-bucket', `${why}: the bundle is uploaded there`)
      if (p.raw('x509-certificate') === '' && p.raw('x509-certificate-parameter') === '')
        p.require(
          'x509-certificate',
          `${why} (or 'x509-certificate-parameter'): ec2-bundle-vol encrypts to it`
        )
    } else {
      const why = "in mode 'convert'"
      p.forbid('source-instance-id', `${why}; use mode 'full' to bundle a running instance first`)
      p.forbid('s3-bucket', `${why}: the bundle location comes from the AMI or 'manifest-location'`)
      p.forbid('s3-prefix', `${why}: the bundle location comes from the AMI or 'manifest-location'`)
      const sources = [p.raw('source-ami-id'), p.raw('manifest-location')].filter((v) => v !== '').length
      if (sources === 0) p.require('source-ami-id', `${why} (or 'manifest-location'): what to convert`)
      if (sources === 2)
        p.problems.push("'source-ami-id' and 'manifest-location' cannot both be set; give one of them")
      if (manifest !== undefined && sourceAmiId === undefined) {
        if (p.raw('ami-name') === '')
          p.require('ami-name', `${why} from 'manifest-location': there is no source AMI to name it after`)
        if (p.raw('architecture') === '')
          p.require('architecture', `${why} from 'manifest-location' when no AMI describes the image`)
        if (p.raw('virtualization-type') === '')
          p.require('virtualization-type', `${why} from 'manifest-location' when no AMI describes the image`)
      }
    }
    if (p.raw('x509-private-key') === '' && p.raw('x509-private-key-parameter') === '')
      p.require(
        'x509-private-key',
        `in mode '${mode}' (or 'x509-private-key-parameter'): ${needsConvert ? 'the bundle is decrypted with it' : 'ec2-bundle-vol signs with it'}`
      )
    if (needsConvert && convertOn === 'runner') {
      for (const name of [
        'helper-instance-id',
        'helper-subnet-id',
        'helper-ami-id',
        'helper-security-group-ids',
        'helper-instance-profile'
      ])
        p.forbid(name, "with 'convert-on: runner': no helper is used, the runner writes the snapshot")
    } else if (needsConvert) {
      if (p.raw('upload-concurrency') !== '')
        p.forbid('upload-concurrency', "with 'convert-on: helper': it sets the runner's snapshot uploads")
      if (p.raw('helper-instance-id') === '' && p.raw('helper-subnet-id') === '')
        p.require(
          'helper-subnet-id',
          `in mode '${mode}' when 'helper-instance-id' is empty: a temporary helper is launched there`
        )
      if (
        p.raw('helper-instance-id') === '' &&
        p.raw('helper-instance-profile') === '' &&
        p.raw('helper-subnet-id') !== ''
      )
        p.require(
          'helper-instance-profile',
          'to launch a temporary helper: it reads the bundle and talks to SSM with it'
        )
      if (p.raw('helper-instance-id') !== '') {
        for (const name of [
          'helper-subnet-id',
          'helper-ami-id',
          'helper-security-group-ids',
          'helper-instance-profile'
        ])
          p.forbid(name, "together with 'helper-instance-id': they describe a helper to launch")
      }
    } else {
      for (const name of [
        'helper-instance-id',
        'helper-subnet-id',
        'helper-ami-id',
        'helper-instance-profile'
      ])
        p.forbid(name, "in mode 'bundle': no helper is used")
      for (const name of ['convert-on', 'upload-concurrency'])
        p.forbid(name, "in mode 'bundle': nothing is converted")
      for (const name of ['volume-size', 'kms-key-id', 'boot-mode', 'output-virtualization-type'])
        p.forbid(name, "in mode 'bundle': no EBS volume or EBS AMI is made")
    }
    if (verifyBoot && mode === 'bundle')
      p.problems.push(
        "'verify-boot' applies to modes 'convert' and 'full': mode 'bundle' makes no EBS-backed AMI to boot"
      )
    if (helperInstanceId !== undefined && helperInstanceId === sourceInstanceId)
      p.problems.push(
        "'helper-instance-id' must differ from 'source-instance-id': the helper must be EBS-backed"
      )
  }

  if (p.problems.length > 0) throw new SettingsError(p.problems)

  const resolvedMode = mode as Mode
  const helperNeeded = resolvedMode !== 'bundle' && convertOn === 'helper'
  return {
    mode: resolvedMode,
    region,
    convertOn,
    uploadConcurrency,
    source: { instanceId: sourceInstanceId, amiId: sourceAmiId, manifest },
    helper: {
      instanceId: helperInstanceId,
      launch:
        helperNeeded &&
        helperInstanceId === undefined &&
        helperSubnet !== undefined &&
        helperProfile !== undefined
          ? {
              amiId: helperAmiId,
              instanceType: helperType,
              subnetId: helperSubnet,
              securityGroupIds: helperGroups,
              instanceProfile: helperProfile
            }
          : undefined
    },
    bundle: {
      bucket,
      prefix:
        resolvedMode === 'convert'
          ? undefined
          : (prefixInput ?? defaultPrefix(sourceInstanceId, options.now ?? new Date())),
      stopServices,
      exclude,
      installPrerequisites,
      fixMenuLst,
      ifExists: ifBundleExists,
      keep: keepBundle
    },
    image: {
      virtualizationType,
      outputVirtualizationType,
      rootDeviceName,
      architecture,
      kernelId,
      ramdiskId
    },
    ami: {
      name: amiName,
      description: description === '' ? undefined : description,
      tags,
      volumeType,
      volumeSizeGiB,
      encrypted,
      kmsKeyId,
      enaSupport,
      sriovNetSupport,
      bootMode,
      ifExists: ifAmiExists
    },
    x509: { certificate, privateKey },
    verifyBoot: {
      enabled: verifyBoot,
      instanceTypes: verifyTypes,
      subnetId: verifySubnet,
      securityGroupIds: verifyGroups,
      onFailure: verifyFailure
    },
    dryRun,
    timeoutMinutes,
    maxAttempts,
    logGroup,
    credentialsExpiration
  }
}

/**
 * I2E_POLL_DELAY_MS, a test setting (not an input of the action): the first delay between two
 * checks of anything awaited, in ms (main's default is 5000; each delay then grows by half up to
 * its cap). The end-to-end tests set it, so that waiting on emulators that answer within a second
 * does not cost production delays. Undefined when unset.
 */
export const POLL_DELAY_VARIABLE = 'I2E_POLL_DELAY_MS'
export function readPollDelayMs(env: NodeJS.ProcessEnv = process.env): number | undefined {
  const raw = env[POLL_DELAY_VARIABLE]
  if (raw === undefined || raw === '') return undefined
  const ms = /^\d+$/.test(raw) ? Number(raw) : Number.NaN
  if (!(ms >= 1 && ms <= 60000))
    throw new SettingsError([
      `${POLL_DELAY_VARIABLE} must be a whole number of milliseconds from 1 to 60000, not "${raw}"`
    ])
  return ms
}
