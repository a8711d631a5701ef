// Checks across inputs, made once every input is read, on the values read: what a mode needs and
// refuses, and which image inputs go together. Each problem names the inputs it is about.
import { Input, type InputName } from './inputs.js'
import { invalid, required } from './parser.js'
import type { SourceAndMode } from './source.js'
import type { Settings } from './types.js'

/** The inputs as read, before the checks: mode may still be missing. */
export type Read = Omit<Settings, 'mode'> & Pick<SourceAndMode, 'mode'>

/** Collects the problems of the checks, in the order they are found. */
class Checks {
  readonly problems: string[] = []

  /** given: whether an input is set (not empty), valid or not. */
  constructor(readonly given: (name: InputName) => boolean) {}

  add(text: string): void {
    this.problems.push(text)
  }

  invalid(name: InputName, value: string, accepted: string): void {
    this.add(invalid(name, value, accepted))
  }

  require(name: InputName, why: string): void {
    this.add(required(name, why))
  }

  forbid(name: InputName, why: string): void {
    if (this.given(name)) this.add(`'${name}' cannot be used ${why}`)
  }
}

function checkEncryption(c: Checks, s: Read): void {
  const { kmsKeyId } = s.ami
  if (kmsKeyId !== undefined && !s.ami.encrypted)
    c.add(`'${Input.KmsKeyId}' needs '${Input.Encrypted}: true'`)
  // StartSnapshot takes "KmsKeyArn: The Amazon Resource Name (ARN) of the Key Management Service
  // (KMS) key to be used to encrypt the snapshot": no id, no alias.
  if (
    s.convertOn === 'runner' &&
    kmsKeyId !== undefined &&
    !/^arn:aws[a-z-]*:kms:[^:]+:\d{12}:key\/.+$/.test(kmsKeyId)
  )
    c.invalid(
      Input.KmsKeyId,
      kmsKeyId,
      `with '${Input.ConvertOn}: runner', a key ARN such as arn:aws:kms:us-east-1:123456789012:key/… (StartSnapshot takes no id or alias)`
    )
}

/** Which virtualization type each image input goes with. */
function checkVirtualization(c: Checks, s: Read): void {
  const { virtualizationType, outputVirtualizationType, rootDeviceName, kernelId, ramdiskId } = s.image
  const { bootMode } = s.ami
  const paravirtualOnly = [
    [Input.KernelId, kernelId],
    [Input.RamdiskId, ramdiskId]
  ] as const
  if (virtualizationType === 'hvm')
    for (const [name, value] of paravirtualOnly)
      if (value !== undefined) c.add(`'${name}' applies only to '${Input.VirtualizationType}: paravirtual'`)
  if (outputVirtualizationType === 'hvm') {
    for (const [name, value] of paravirtualOnly)
      if (value !== undefined)
        c.add(`'${name}' applies only to a paravirtual result; '${Input.OutputVirtualizationType}' is hvm`)
    if (bootMode !== undefined && bootMode !== 'legacy-bios')
      c.add(
        `'${Input.BootMode}' ${bootMode} cannot boot the converted image: its GRUB 2 is for BIOS; use 'legacy-bios' or leave it empty`
      )
    // "HVM: Differs by AMI /dev/sda1 or /dev/xvda" (EC2 User Guide, device naming: root device names).
    if (rootDeviceName !== undefined && rootDeviceName !== '/dev/sda1' && rootDeviceName !== '/dev/xvda')
      c.invalid(Input.RootDeviceName, rootDeviceName, "'/dev/xvda' or '/dev/sda1' for an hvm result")
  }
  if (outputVirtualizationType === 'paravirtual' && virtualizationType === 'hvm')
    c.add(
      `'${Input.OutputVirtualizationType}' paravirtual needs a paravirtual source: an hvm image cannot be made paravirtual`
    )
  if (virtualizationType === 'paravirtual' && outputVirtualizationType !== 'hvm') {
    if (bootMode !== undefined)
      c.add(`'${Input.BootMode}' applies only to '${Input.VirtualizationType}: hvm'`)
    if (
      rootDeviceName !== undefined &&
      rootDeviceName !== '/dev/sda1' &&
      !/^\/dev\/(sd|xvd)[a-z]1?$/.test(rootDeviceName)
    )
      c.invalid(Input.RootDeviceName, rootDeviceName, 'a paravirtual root device such as /dev/sda1')
  }
  if (ramdiskId !== undefined && !c.given(Input.KernelId) && s.source.amiId === undefined)
    c.add(`'${Input.RamdiskId}' needs '${Input.KernelId}' (a ramdisk is loaded by its kernel)`)
}

/** Modes bundle and full: a running instance, bundled into s3-bucket with the certificate. */
function checkBundleSource(c: Checks, mode: 'bundle' | 'full'): void {
  const why = `in mode '${mode}'`
  if (!c.given(Input.SourceInstanceId))
    c.require(Input.SourceInstanceId, `${why}: the running instance to bundle`)
  c.forbid(Input.SourceAmiId, `${why}: the source is '${Input.SourceInstanceId}'`)
  c.forbid(Input.ManifestLocation, `${why}: the bundle is made from '${Input.SourceInstanceId}'`)
  if (!c.given(Input.S3Bucket)) c.require(Input.S3Bucket, `${why}: the bundle is uploaded there`)
  if (!c.given(Input.X509Certificate) && !c.given(Input.X509CertificateParameter))
    c.require(
      Input.X509Certificate,
      `${why} (or '${Input.X509CertificateParameter}'): ec2-bundle-vol encrypts to it`
    )
}

/** Mode convert: one instance-store AMI or manifest, and what no AMI describes. */
function checkConvertSource(c: Checks, s: Read): void {
  const why = "in mode 'convert'"
  const fromBundle = `${why}: the bundle location comes from the AMI or '${Input.ManifestLocation}'`
  c.forbid(Input.SourceInstanceId, `${why}; use mode 'full' to bundle a running instance first`)
  c.forbid(Input.S3Bucket, fromBundle)
  c.forbid(Input.S3Prefix, fromBundle)
  const sources = [Input.SourceAmiId, Input.ManifestLocation].filter((name) => c.given(name)).length
  if (sources === 0) c.require(Input.SourceAmiId, `${why} (or '${Input.ManifestLocation}'): what to convert`)
  if (sources === 2)
    c.add(`'${Input.SourceAmiId}' and '${Input.ManifestLocation}' cannot both be set; give one of them`)
  if (s.source.manifest === undefined || s.source.amiId !== undefined) return
  const fromManifest = `${why} from '${Input.ManifestLocation}'`
  if (!c.given(Input.AmiName))
    c.require(Input.AmiName, `${fromManifest}: there is no source AMI to name it after`)
  for (const name of [Input.Architecture, Input.VirtualizationType])
    if (!c.given(name)) c.require(name, `${fromManifest} when no AMI describes the image`)
}

const HELPER_LAUNCH = [
  Input.HelperSubnetId,
  Input.HelperAmiId,
  Input.HelperSecurityGroupIds,
  Input.HelperInstanceProfile
] as const

/** convert-on: helper needs a helper, running or to launch; convert-on: runner refuses one. */
function checkHelper(c: Checks, s: Read, mode: 'convert' | 'full'): void {
  if (s.convertOn === 'runner') {
    for (const name of [Input.HelperInstanceId, ...HELPER_LAUNCH])
      c.forbid(name, `with '${Input.ConvertOn}: runner': no helper is used, the runner writes the snapshot`)
    return
  }
  c.forbid(
    Input.UploadConcurrency,
    `with '${Input.ConvertOn}: helper': it sets the runner's snapshot uploads`
  )
  if (!c.given(Input.HelperInstanceId) && !c.given(Input.HelperSubnetId))
    c.require(
      Input.HelperSubnetId,
      `in mode '${mode}' when '${Input.HelperInstanceId}' is empty: a temporary helper is launched there`
    )
  if (
    !c.given(Input.HelperInstanceId) &&
    !c.given(Input.HelperInstanceProfile) &&
    c.given(Input.HelperSubnetId)
  )
    c.require(
      Input.HelperInstanceProfile,
      'to launch a temporary helper: it reads the bundle and talks to SSM with it'
    )
  if (c.given(Input.HelperInstanceId))
    for (const name of HELPER_LAUNCH)
      c.forbid(name, `together with '${Input.HelperInstanceId}': they describe a helper to launch`)
}

/** Mode bundle: nothing converted, no helper, no EBS AMI. */
function checkBundleOnly(c: Checks): void {
  const why = "in mode 'bundle'"
  for (const name of [
    Input.HelperInstanceId,
    Input.HelperSubnetId,
    Input.HelperAmiId,
    Input.HelperInstanceProfile
  ])
    c.forbid(name, `${why}: no helper is used`)
  for (const name of [Input.ConvertOn, Input.UploadConcurrency])
    c.forbid(name, `${why}: nothing is converted`)
  for (const name of [Input.VolumeSize, Input.KmsKeyId, Input.BootMode, Input.OutputVirtualizationType])
    c.forbid(name, `${why}: no EBS volume or EBS AMI is made`)
}

/** What the mode needs and refuses. */
function checkMode(c: Checks, s: Read): void {
  const { mode } = s
  if (mode === undefined) {
    if (!c.given(Input.Mode))
      c.add(
        `one source is required: '${Input.SourceInstanceId}' (mode full or bundle), '${Input.SourceAmiId}' or '${Input.ManifestLocation}' (mode convert)`
      )
    return
  }
  if (mode === 'convert') checkConvertSource(c, s)
  else checkBundleSource(c, mode)
  if (!c.given(Input.X509PrivateKey) && !c.given(Input.X509PrivateKeyParameter))
    c.require(
      Input.X509PrivateKey,
      `in mode '${mode}' (or '${Input.X509PrivateKeyParameter}'): ${mode === 'bundle' ? 'ec2-bundle-vol signs with it' : 'the bundle is decrypted with it'}`
    )
  if (mode === 'bundle') checkBundleOnly(c)
  else checkHelper(c, s, mode)
  if (s.verifyBoot.enabled && mode === 'bundle')
    c.add(
      `'${Input.VerifyBoot}' applies to modes 'convert' and 'full': mode 'bundle' makes no EBS-backed AMI to boot`
    )
  if (s.helper.instanceId !== undefined && s.helper.instanceId === s.source.instanceId)
    c.add(
      `'${Input.HelperInstanceId}' must differ from '${Input.SourceInstanceId}': the helper must be EBS-backed`
    )
}

/** Every check across inputs; the problems in the order found. */
export function checkAcrossInputs(s: Read, given: (name: InputName) => boolean): string[] {
  const c = new Checks(given)
  checkEncryption(c, s)
  checkVirtualization(c, s)
  checkMode(c, s)
  return c.problems
}
