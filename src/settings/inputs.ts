// The names of the action's inputs (action.yml), in one table: code and messages spell an input
// through it, so a misspelt or renamed input is a type error, not a silent ''. A test holds this
// table and action.yml equal.
//
// The order is the order in which input problems are reported (secrets first, so that they are
// masked before anything else is read; then the source, the conversion, the helper, ...).

export const Input = {
  X509Certificate: 'x509-certificate',
  X509CertificateParameter: 'x509-certificate-parameter',
  X509PrivateKey: 'x509-private-key',
  X509PrivateKeyParameter: 'x509-private-key-parameter',

  SourceInstanceId: 'source-instance-id',
  SourceAmiId: 'source-ami-id',
  ManifestLocation: 'manifest-location',
  Mode: 'mode',
  Region: 'region',

  ConvertOn: 'convert-on',
  UploadConcurrency: 'upload-concurrency',

  HelperInstanceId: 'helper-instance-id',
  HelperAmiId: 'helper-ami-id',
  HelperInstanceType: 'helper-instance-type',
  HelperSubnetId: 'helper-subnet-id',
  HelperSecurityGroupIds: 'helper-security-group-ids',
  HelperInstanceProfile: 'helper-instance-profile',

  S3Bucket: 's3-bucket',
  S3Prefix: 's3-prefix',

  VirtualizationType: 'virtualization-type',
  OutputVirtualizationType: 'output-virtualization-type',
  RootDeviceName: 'root-device-name',
  Architecture: 'architecture',
  KernelId: 'kernel-id',
  RamdiskId: 'ramdisk-id',

  AmiName: 'ami-name',
  AmiDescription: 'ami-description',
  Tags: 'tags',
  VolumeType: 'volume-type',
  VolumeSize: 'volume-size',
  Encrypted: 'encrypted',
  KmsKeyId: 'kms-key-id',
  EnaSupport: 'ena-support',
  SriovNetSupport: 'sriov-net-support',
  BootMode: 'boot-mode',
  IfAmiExists: 'if-ami-exists',

  StopServices: 'stop-services',
  BundleExclude: 'bundle-exclude',
  InstallPrerequisites: 'install-prerequisites',
  FixMenuLst: 'fix-menu-lst',
  IfBundleExists: 'if-bundle-exists',
  KeepBundle: 'keep-bundle',

  VerifyBoot: 'verify-boot',
  VerifyBootInstanceTypes: 'verify-boot-instance-types',
  VerifyBootSubnetId: 'verify-boot-subnet-id',
  VerifyBootSecurityGroupIds: 'verify-boot-security-group-ids',
  VerifyBootFailure: 'verify-boot-failure',

  DryRun: 'dry-run',
  TimeoutMinutes: 'timeout-minutes',
  MaxAttempts: 'max-attempts',
  LogGroup: 'log-group',
  CredentialsExpiration: 'credentials-expiration'
} as const

export type InputName = (typeof Input)[keyof typeof Input]

/** Every input name, in the table's order. */
export const INPUT_NAMES: readonly InputName[] = Object.values(Input)
