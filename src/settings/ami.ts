// The EBS-backed AMI to register: its name, description, tags, root volume and boot options.
import type { Form } from './forms.js'
import { Input } from './inputs.js'
import { type InputParser, splitList } from './parser.js'
import type { AmiSettings, BootMode, IfAmiExists, Tag, VolumeType } from './types.js'

const AMI_NAME: Form = {
  pattern: /^[A-Za-z0-9()[\] ./\-'@_]{3,128}$/,
  accepted: "3-128 characters of letters, digits, spaces and ( ) [ ] . / - ' @ _"
}
const KMS_KEY: Form = {
  pattern:
    /^(?:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|mrk-[0-9a-f]{32}|alias\/[\w/-]+|arn:aws[a-z-]*:kms:[a-z0-9-]+:\d{12}:(?:key|alias)\/[\w/-]+)$/,
  accepted: 'a KMS key id, mrk- id, alias/name or key/alias ARN'
}
const TAG_ACCEPTED =
  "key=value pairs, comma or newline separated, unique keys of 1-127 characters not starting with 'aws:', values up to 256 characters"

function readDescription(p: InputParser): string | undefined {
  const description = p.raw(Input.AmiDescription)
  if (description.length > 255) p.problem(Input.AmiDescription, description, 'at most 255 characters')
  return description === '' ? undefined : description
}

function readTags(p: InputParser): Tag[] {
  const tags: Tag[] = []
  const seen = new Set<string>()
  for (const item of splitList(p.raw(Input.Tags))) {
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
      p.problem(Input.Tags, item, TAG_ACCEPTED)
      continue
    }
    seen.add(key)
    tags.push({ Key: key, Value: value })
  }
  if (tags.length > 40)
    p.add(Input.Tags, `'${Input.Tags}': ${tags.length} tags given; at most 40 are accepted`)
  return tags
}

export function readAmi(p: InputParser): AmiSettings {
  return {
    name: p.optional(Input.AmiName, AMI_NAME),
    description: readDescription(p),
    tags: readTags(p),
    volumeType:
      p.oneOf<VolumeType>(Input.VolumeType, ['gp3', 'gp2', 'io1', 'io2', 'standard'], 'gp3') ?? 'gp3',
    volumeSizeGiB: p.integer(Input.VolumeSize, 1, 16384),
    encrypted: p.boolean(Input.Encrypted, false),
    kmsKeyId: p.optional(Input.KmsKeyId, KMS_KEY),
    enaSupport: p.optionalBoolean(Input.EnaSupport),
    sriovNetSupport: p.oneOf<'simple'>(Input.SriovNetSupport, ['simple']),
    bootMode: p.oneOf<BootMode>(Input.BootMode, ['legacy-bios', 'uefi', 'uefi-preferred']),
    ifExists: p.oneOf<IfAmiExists>(Input.IfAmiExists, ['fail', 'reuse', 'replace'], 'fail') ?? 'fail'
  }
}
