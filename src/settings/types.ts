// What readSettings returns: every input, read once, validated and typed. Each field names the
// input it comes from (see inputs.ts for the table of names, action.yml for their descriptions).

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

/** A temporary helper to launch (convert-on: helper, no helper-instance-id). */
export interface HelperLaunch {
  /** helper-ami-id; undefined: the latest Amazon Linux 2023 AMI. */
  amiId?: string
  /** helper-instance-type (default t3.small). */
  instanceType: string
  /** helper-subnet-id. */
  subnetId: string
  /** helper-security-group-ids. */
  securityGroupIds: string[]
  /** helper-instance-profile. */
  instanceProfile: string
}

/** verify-boot: launch the new AMI once and judge its boot (src/pipeline/verify/). */
export interface VerifyBoot {
  /** verify-boot (default false). */
  enabled: boolean
  /** verify-boot-instance-types, in order of preference; empty means "chosen from the image facts". */
  instanceTypes: string[]
  /** verify-boot-subnet-id; undefined: the helper's subnet (and then its security groups). */
  subnetId?: string
  /** verify-boot-security-group-ids. */
  securityGroupIds: string[]
  /** verify-boot-failure (default deregister). */
  onFailure: VerifyBootFailure
}

/** The source: one of these, by mode. */
export interface Source {
  /** source-instance-id (modes bundle, full). */
  instanceId?: string
  /** source-ami-id (mode convert). */
  amiId?: string
  /** manifest-location (mode convert, instead of source-ami-id). */
  manifest?: S3Location
}

export interface HelperSettings {
  /** helper-instance-id: a running EBS-backed instance to convert on. */
  instanceId?: string
  /** The helper-* inputs of a helper to launch; undefined when none is launched. */
  launch?: HelperLaunch
}

export interface BundleSettings {
  /** s3-bucket. */
  bucket?: string
  /** s3-prefix; by default instance-to-ebs/<instance>/<time> (undefined in mode convert). */
  prefix?: string
  /** stop-services. */
  stopServices: string[]
  /** bundle-exclude. */
  exclude: string[]
  /** install-prerequisites (default true). */
  installPrerequisites: boolean
  /** fix-menu-lst (default false). */
  fixMenuLst: boolean
  /** if-bundle-exists (default fail). */
  ifExists: IfBundleExists
  /** keep-bundle (default false). */
  keep: boolean
}

/** Inputs that override what is detected from the source; undefined means "detect". */
export interface ImageSettings {
  /** virtualization-type. */
  virtualizationType?: VirtualizationType
  /** output-virtualization-type: that of the EBS AMI (convert, full); undefined means "as the source". */
  outputVirtualizationType?: VirtualizationType
  /** root-device-name. */
  rootDeviceName?: string
  /** architecture. */
  architecture?: Architecture
  /** kernel-id. */
  kernelId?: string
  /** ramdisk-id. */
  ramdiskId?: string
}

export interface AmiSettings {
  /** ami-name; undefined: named after the source. */
  name?: string
  /** ami-description. */
  description?: string
  /** tags. */
  tags: Tag[]
  /** volume-type (default gp3). */
  volumeType: VolumeType
  /** volume-size in GiB; undefined: the image's size. */
  volumeSizeGiB?: number
  /** encrypted (default false). */
  encrypted: boolean
  /** kms-key-id. */
  kmsKeyId?: string
  /** ena-support; undefined: as the source. */
  enaSupport?: boolean
  /** sriov-net-support. */
  sriovNetSupport?: 'simple'
  /** boot-mode. */
  bootMode?: BootMode
  /** if-ami-exists (default fail). */
  ifExists: IfAmiExists
}

export interface X509Settings {
  /** x509-certificate (a secret) or x509-certificate-parameter. */
  certificate?: KeyMaterial
  /** x509-private-key (a secret) or x509-private-key-parameter. */
  privateKey?: KeyMaterial
}

export interface Settings {
  /** mode; when empty, full for source-instance-id and convert for source-ami-id or manifest-location. */
  mode: Mode
  /** region, else AWS_REGION, else AWS_DEFAULT_REGION. */
  region: string
  source: Source
  /** convert-on (default helper). */
  convertOn: ConvertOn
  /** upload-concurrency (default 32): PutSnapshotBlock calls in flight at most (convert-on: runner). */
  uploadConcurrency: number
  helper: HelperSettings
  bundle: BundleSettings
  image: ImageSettings
  ami: AmiSettings
  x509: X509Settings
  verifyBoot: VerifyBoot
  /** dry-run (default false). */
  dryRun: boolean
  /** timeout-minutes (default 120). */
  timeoutMinutes: number
  /** max-attempts (default 8). */
  maxAttempts: number
  /** log-group. */
  logGroup?: string
  /** credentials-expiration: when the credentials expire. */
  credentialsExpiration?: Date
}
