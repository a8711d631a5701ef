// The documented constraints of every AWS request instance-to-ebs makes, as rules that the test
// doubles enforce: the mocked clients of the unit tests (__tests__/__fixtures__/contract-setup.ts)
// and the HTTP proxy in front of moto in the end-to-end run (tools/aws-proxy.mjs). moto and the
// mocks accept almost anything; AWS does not. Each rule quotes the sentence of the AWS reference it
// comes from, and carries a request that keeps it and one that breaks it (tested one by one in
// __tests__/aws/contract-rules.test.ts).
//
// Inputs are in the SDK's shape (RegisterImage { TagSpecifications: [{ ResourceType, Tags }] });
// the proxy decodes the wire formats into that shape, where numbers and booleans arrive as strings,
// so rules read them through num() and yes().

const EC2_API = 'https://docs.aws.amazon.com/AWSEC2/latest/APIReference'
const SSM_API = 'https://docs.aws.amazon.com/systems-manager/latest/APIReference'
const S3_API = 'https://docs.aws.amazon.com/AmazonS3/latest/API'

const num = (v) => (v === undefined || v === null || v === '' ? undefined : Number(v))
const yes = (v) => v === true || v === 'true'
const list = (v) => (Array.isArray(v) ? v : v === undefined ? [] : [v])
const bytes = (s) => Buffer.byteLength(String(s ?? ''), 'utf8')

// ------------------------------------------------------------------ tags (shared)

/** Rules on a list of tags, for every operation that takes them. */
function tagRules(operation, where, read, example) {
  const wrap = (tags) => example(tags)
  return [
    {
      id: `${operation}.tags-count`,
      operation,
      source: 'https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/Using_Tags.html#tag-restrictions',
      sentence: 'Maximum number of tags per resource – 50',
      check: (i) => {
        for (const tags of read(i))
          if (tags.length > 50) return `${tags.length} tags on one resource in ${where}`
      },
      pass: wrap([{ Key: 'Name', Value: 'x' }]),
      fail: wrap(Array.from({ length: 51 }, (_, n) => ({ Key: `k${n}`, Value: 'v' })))
    },
    {
      id: `${operation}.tag-key`,
      operation,
      source: `${EC2_API}/API_Tag.html`,
      sentence:
        'Constraints: Tag keys are case-sensitive and accept a maximum of 127 Unicode characters. May not begin with aws:.',
      check: (i) => {
        for (const tags of read(i))
          for (const t of tags) {
            const key = String(t.Key ?? '')
            if (key.length === 0 || [...key].length > 127)
              return `tag key '${key.slice(0, 40)}…' has ${[...key].length} characters`
            if (/^aws:/i.test(key)) return `tag key '${key}' begins with aws:`
          }
      },
      pass: wrap([{ Key: 'instance-to-ebs:run', Value: 'r' }]),
      fail: wrap([{ Key: 'aws:cloudformation:stack', Value: 'x' }])
    },
    {
      id: `${operation}.tag-value`,
      operation,
      source: `${EC2_API}/API_Tag.html`,
      sentence: 'Constraints: Tag values are case-sensitive and accept a maximum of 256 Unicode characters.',
      check: (i) => {
        for (const tags of read(i))
          for (const t of tags)
            if ([...String(t.Value ?? '')].length > 256)
              return `the value of tag '${t.Key}' is longer than 256 characters`
      },
      pass: wrap([{ Key: 'Name', Value: 'v'.repeat(256) }]),
      fail: wrap([{ Key: 'Name', Value: 'v'.repeat(257) }])
    },
    {
      id: `${operation}.tag-keys-unique`,
      operation,
      source: 'https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/Using_Tags.html#tag-restrictions',
      sentence: 'For each resource, each tag key must be unique, and each tag key can have only one value.',
      check: (i) => {
        for (const tags of read(i)) {
          const keys = tags.map((t) => t.Key)
          const dup = keys.find((k, n) => keys.indexOf(k) !== n)
          if (dup !== undefined) return `tag key '${dup}' given twice for one resource`
        }
      },
      pass: wrap([
        { Key: 'Name', Value: 'a' },
        { Key: 'team', Value: 'b' }
      ]),
      fail: wrap([
        { Key: 'Name', Value: 'a' },
        { Key: 'Name', Value: 'b' }
      ])
    }
  ]
}

const specTags = (i) => list(i.TagSpecifications).map((s) => list(s.Tags))

/** TagSpecifications: the resource types the operation tags on creation, plus the tag rules. */
function tagSpecRules(operation, types, sentence, source, base) {
  return [
    {
      id: `${operation}.tag-resource-type`,
      operation,
      source,
      sentence,
      check: (i) => {
        for (const s of list(i.TagSpecifications)) {
          if (!s.ResourceType) return 'a TagSpecification without ResourceType'
          if (!types.includes(s.ResourceType))
            return `TagSpecifications has ResourceType '${s.ResourceType}'; ${operation} accepts only ${types.map((t) => `'${t}'`).join(', ')}`
        }
        const seen = list(i.TagSpecifications).map((s) => s.ResourceType)
        const dup = seen.find((t, n) => seen.indexOf(t) !== n)
        if (dup) return `ResourceType '${dup}' appears in two TagSpecifications`
      },
      pass: { ...base, TagSpecifications: [{ ResourceType: types[0], Tags: [{ Key: 'Name', Value: 'x' }] }] },
      fail: {
        ...base,
        TagSpecifications: [
          { ResourceType: types[0], Tags: [{ Key: 'Name', Value: 'x' }] },
          {
            ResourceType: types.includes('snapshot') ? 'image' : 'snapshot',
            Tags: [{ Key: 'Name', Value: 'x' }]
          }
        ]
      }
    },
    ...tagRules(operation, 'TagSpecifications', specTags, (tags) => ({
      ...base,
      TagSpecifications: [{ ResourceType: types[0], Tags: tags }]
    }))
  ]
}

// ------------------------------------------------------------------ EBS volume parameters

// CreateVolume's Size / EbsBlockDevice's VolumeSize: "gp2: 1 - 16,384 GiB gp3: 1 - 65,536 GiB
// io1: 4 - 16,384 GiB io2: 4 - 65,536 GiB st1 and sc1: 125 - 16,384 GiB standard: 1 - 1024 GiB"
const SIZES = {
  gp2: [1, 16384],
  gp3: [1, 65536],
  io1: [4, 16384],
  io2: [4, 65536],
  st1: [125, 16384],
  sc1: [125, 16384],
  standard: [1, 1024]
}
// "gp3: 3,000 - 80,000 IOPS io1: 100 - 64,000 IOPS io2: 100 - 256,000 IOPS"
const IOPS = { gp3: [3000, 80000], io1: [100, 64000], io2: [100, 256000] }

function volumeProblem(v, { defaultType, needSize }) {
  const type = v.VolumeType ?? defaultType
  const size = num(v.Size ?? v.VolumeSize)
  if (size === undefined && needSize && !v.SnapshotId) return 'neither a size nor a snapshot id'
  if (size !== undefined && SIZES[type]) {
    const [lo, hi] = SIZES[type]
    if (!Number.isInteger(size) || size < lo || size > hi)
      return `size ${size} GiB is outside ${lo}-${hi} GiB for ${type}`
  }
  const iops = num(v.Iops)
  if ((type === 'io1' || type === 'io2') && iops === undefined) return `${type} without Iops`
  if (iops !== undefined) {
    if (!IOPS[type]) return `Iops given for ${type}, which takes none`
    const [lo, hi] = IOPS[type]
    if (iops < lo || iops > hi) return `Iops ${iops} is outside ${lo}-${hi} for ${type}`
  }
  const throughput = num(v.Throughput)
  if (throughput !== undefined && (type !== 'gp3' || throughput < 125 || throughput > 2000))
    return `Throughput ${throughput} for ${type} (gp3 only, 125-2000 MiB/s)`
}

const VOLUME_SENTENCE =
  'Valid sizes: gp2: 1 - 16,384 GiB, gp3: 1 - 65,536 GiB, io1: 4 - 16,384 GiB, io2: 4 - 65,536 GiB, st1 and sc1: 125 - 16,384 GiB, standard: 1 - 1024 GiB. ' +
  'Iops: Required for io1 and io2 volumes. Optional for gp3 volumes. Omit for all other volume types. Valid ranges: gp3: 3,000 (default) - 80,000 IOPS, io1: 100 - 64,000 IOPS, io2: 100 - 256,000 IOPS. ' +
  'Throughput: Supported for gp3 volumes only. Omit for all other volume types. Valid Range: 125 - 2000 MiB/s'

const CLIENT_TOKEN = (operation, base) => ({
  id: `${operation}.client-token`,
  operation,
  source: 'https://docs.aws.amazon.com/ec2/latest/devguide/ec2-api-idempotency.html',
  sentence: 'Constraints: Maximum 64 ASCII characters',
  check: (i) => {
    if (
      i.ClientToken !== undefined &&
      (String(i.ClientToken).length > 64 || !/^[\x20-\x7e]*$/.test(i.ClientToken))
    )
      return `ClientToken '${i.ClientToken}' is not at most 64 ASCII characters`
  },
  pass: { ...base, ClientToken: `i2e-${'1'.repeat(60)}` },
  fail: { ...base, ClientToken: `i2e-${'1'.repeat(61)}` }
})

// ------------------------------------------------------------------ EC2

const IMAGE = {
  Name: 'web-ebs',
  RootDeviceName: '/dev/sda1',
  VirtualizationType: 'hvm',
  Architecture: 'x86_64',
  BlockDeviceMappings: [
    {
      DeviceName: '/dev/sda1',
      Ebs: { SnapshotId: 'snap-0123456789abcdef0', VolumeType: 'gp3', DeleteOnTermination: true }
    }
  ]
}
const PV_IMAGE = { ...IMAGE, VirtualizationType: 'paravirtual', KernelId: 'aki-5c21674b' }
const rootEbs = (i) => list(i.BlockDeviceMappings).filter((b) => b.Ebs)
const withEbs = (ebs) => ({
  ...IMAGE,
  BlockDeviceMappings: [{ DeviceName: '/dev/sda1', Ebs: { SnapshotId: 'snap-0123456789abcdef0', ...ebs } }]
})
// RegisterImage: "VirtualizationType: The type of virtualization (hvm | paravirtual). Default: paravirtual"
const paravirtual = (i) => (i.VirtualizationType ?? 'paravirtual') === 'paravirtual'

const REGISTER_IMAGE = [
  ...tagSpecRules(
    'RegisterImage',
    ['image'],
    'To tag the AMI, the value for ResourceType must be image. If you specify another value for ResourceType, the request fails.',
    `${EC2_API}/API_RegisterImage.html`,
    IMAGE
  ),
  {
    id: 'RegisterImage.name',
    operation: 'RegisterImage',
    source: `${EC2_API}/API_RegisterImage.html`,
    sentence:
      "Constraints: 3-128 alphanumeric characters, parentheses (()), square brackets ([]), spaces ( ), periods (.), slashes (/), dashes (-), single quotes ('), at-signs (@), or underscores(_)",
    check: (i) => {
      if (!/^[A-Za-z0-9()[\] ./\-'@_]{3,128}$/.test(String(i.Name ?? '')))
        return `Name '${i.Name}' is not 3-128 of the allowed characters`
    },
    pass: { ...IMAGE, Name: "web (2026) [x86_64] build/7 'ok' @ci_1" },
    fail: { ...IMAGE, Name: 'web:latest' }
  },
  {
    id: 'RegisterImage.bdm-shape',
    operation: 'RegisterImage',
    source: `${EC2_API}/API_BlockDeviceMapping.html`,
    sentence:
      'To define a block device mapping, set the device name and exactly one of the following properties: Ebs, NoDevice, or VirtualName.',
    check: (i) => {
      for (const b of list(i.BlockDeviceMappings)) {
        const set = ['Ebs', 'NoDevice', 'VirtualName'].filter((k) => b[k] !== undefined)
        if (!b.DeviceName) return 'a block device mapping without DeviceName'
        if (set.length !== 1)
          return `block device mapping ${b.DeviceName} sets ${set.join(' and ') || 'none'} of Ebs, NoDevice, VirtualName`
      }
    },
    pass: {
      ...IMAGE,
      BlockDeviceMappings: [
        ...IMAGE.BlockDeviceMappings,
        { DeviceName: '/dev/sdb', VirtualName: 'ephemeral0' }
      ]
    },
    fail: {
      ...IMAGE,
      BlockDeviceMappings: [
        ...IMAGE.BlockDeviceMappings,
        { DeviceName: '/dev/sdb', VirtualName: 'ephemeral0', Ebs: { VolumeSize: 1 } }
      ]
    }
  },
  {
    id: 'RegisterImage.snapshot-encryption',
    operation: 'RegisterImage',
    source: `${EC2_API}/API_RegisterImage.html`,
    sentence:
      "If you specify an Amazon EBS volume using the ID of an Amazon EBS snapshot, you can't specify the encryption state of the volume.",
    check: (i) => {
      for (const b of rootEbs(i))
        if (b.Ebs.SnapshotId && b.Ebs.Encrypted !== undefined)
          return `${b.DeviceName} names snapshot ${b.Ebs.SnapshotId} and sets Encrypted`
    },
    pass: withEbs({}),
    fail: withEbs({ Encrypted: true })
  },
  {
    id: 'RegisterImage.no-kms-key',
    operation: 'RegisterImage',
    source: `${EC2_API}/API_EbsBlockDevice.html`,
    sentence:
      'KmsKeyId: This parameter is only supported on BlockDeviceMapping objects called by RunInstances, RequestSpotFleet, and RequestSpotInstances.',
    check: (i) => {
      for (const b of rootEbs(i)) if (b.Ebs.KmsKeyId !== undefined) return `${b.DeviceName} sets KmsKeyId`
    },
    pass: withEbs({}),
    fail: withEbs({ KmsKeyId: 'alias/ebs' })
  },
  {
    id: 'RegisterImage.volume-parameters',
    operation: 'RegisterImage',
    source: `${EC2_API}/API_EbsBlockDevice.html`,
    sentence: VOLUME_SENTENCE,
    check: (i) => {
      for (const b of rootEbs(i)) {
        const p = volumeProblem(b.Ebs, { defaultType: 'gp2', needSize: true })
        if (p) return `${b.DeviceName}: ${p}`
      }
    },
    pass: withEbs({ VolumeType: 'io2', VolumeSize: 8, Iops: 3000 }),
    fail: withEbs({ VolumeType: 'io1', VolumeSize: 8 })
  },
  {
    id: 'RegisterImage.root-device-mapped',
    operation: 'RegisterImage',
    source: `${EC2_API}/API_RegisterImage.html`,
    sentence:
      'You can use RegisterImage to create an Amazon EBS-backed Linux AMI from a snapshot of a root device volume. You specify the snapshot using a block device mapping.',
    check: (i) => {
      if (i.ImageLocation) return
      const root = list(i.BlockDeviceMappings).find((b) => b.DeviceName === i.RootDeviceName)
      if (!i.RootDeviceName || !root?.Ebs?.SnapshotId)
        return `no block device mapping gives a snapshot for the root device ${i.RootDeviceName ?? '(no RootDeviceName)'}`
    },
    pass: IMAGE,
    fail: { ...IMAGE, RootDeviceName: '/dev/xvda' }
  },
  {
    id: 'RegisterImage.kernel-paravirtual',
    operation: 'RegisterImage',
    source: 'https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/UserProvidedKernels.html',
    sentence:
      'PV AMIs boot with a kernel image (AKI), for which we recommend PV-GRUB: "We recommend that you use PV-GRUB instead of kernels and RAM disks." HVM AMIs boot from the master boot record of the root volume and take no KernelId or RamdiskId.',
    check: (i) => {
      if (!paravirtual(i) && (i.KernelId || i.RamdiskId))
        return `an hvm AMI with ${i.KernelId ? `KernelId ${i.KernelId}` : `RamdiskId ${i.RamdiskId}`}`
    },
    pass: PV_IMAGE,
    fail: { ...IMAGE, KernelId: 'aki-5c21674b' }
  },
  {
    id: 'RegisterImage.hvm-networking',
    operation: 'RegisterImage',
    source: `${EC2_API}/API_RegisterImage.html`,
    sentence:
      'EnaSupport / SriovNetSupport: This option is supported only for HVM AMIs. Specifying this option with a PV AMI can make instances launched from the AMI unreachable.',
    check: (i) => {
      if (paravirtual(i) && (yes(i.EnaSupport) || i.SriovNetSupport !== undefined))
        return `a paravirtual AMI with ${yes(i.EnaSupport) ? 'EnaSupport' : 'SriovNetSupport'}`
      if (i.SriovNetSupport !== undefined && i.SriovNetSupport !== 'simple')
        return `SriovNetSupport '${i.SriovNetSupport}' (only 'simple')`
    },
    pass: { ...IMAGE, EnaSupport: true, SriovNetSupport: 'simple' },
    fail: { ...PV_IMAGE, EnaSupport: true }
  },
  {
    id: 'RegisterImage.enumerations',
    operation: 'RegisterImage',
    source: `${EC2_API}/API_RegisterImage.html`,
    sentence:
      'BootMode Valid Values: legacy-bios | uefi | uefi-preferred. Architecture Valid Values: i386 | x86_64 | arm64 | x86_64_mac | arm64_mac. VirtualizationType: The type of virtualization (hvm | paravirtual).',
    check: (i) => {
      if (i.BootMode !== undefined && !['legacy-bios', 'uefi', 'uefi-preferred'].includes(i.BootMode))
        return `BootMode '${i.BootMode}'`
      if (
        i.Architecture !== undefined &&
        !['i386', 'x86_64', 'arm64', 'x86_64_mac', 'arm64_mac'].includes(i.Architecture)
      )
        return `Architecture '${i.Architecture}'`
      if (i.VirtualizationType !== undefined && !['hvm', 'paravirtual'].includes(i.VirtualizationType))
        return `VirtualizationType '${i.VirtualizationType}'`
    },
    pass: { ...IMAGE, BootMode: 'uefi-preferred' },
    fail: { ...IMAGE, BootMode: 'bios' }
  }
]

const VOLUME = { AvailabilityZone: 'us-east-1a', Size: 8, VolumeType: 'gp3' }
const CREATE_VOLUME = [
  ...tagSpecRules(
    'CreateVolume',
    ['volume'],
    'TagSpecifications: The tags to apply to the volume during creation.',
    `${EC2_API}/API_CreateVolume.html`,
    VOLUME
  ),
  {
    id: 'CreateVolume.volume-parameters',
    operation: 'CreateVolume',
    source: `${EC2_API}/API_CreateVolume.html`,
    sentence: `You must specify either a snapshot ID or a volume size. ${VOLUME_SENTENCE}`,
    check: (i) => volumeProblem(i, { defaultType: 'gp2', needSize: true }),
    pass: { ...VOLUME, VolumeType: 'io1', Size: 4, Iops: 3000 },
    fail: { ...VOLUME, VolumeType: 'gp2', Iops: 3000 }
  },
  {
    id: 'CreateVolume.zone',
    operation: 'CreateVolume',
    source: `${EC2_API}/API_CreateVolume.html`,
    sentence: 'Either AvailabilityZone or AvailabilityZoneId must be specified, but not both.',
    check: (i) => {
      if (!i.AvailabilityZone === !i.AvailabilityZoneId)
        return 'AvailabilityZone and AvailabilityZoneId: exactly one is needed'
    },
    pass: VOLUME,
    fail: { ...VOLUME, AvailabilityZone: undefined }
  },
  {
    id: 'CreateVolume.kms-needs-encrypted',
    operation: 'CreateVolume',
    source: `${EC2_API}/API_CreateVolume.html`,
    sentence: 'If KmsKeyId is specified, the encrypted state must be true.',
    check: (i) => {
      if (i.KmsKeyId !== undefined && !yes(i.Encrypted)) return 'KmsKeyId without Encrypted: true'
    },
    pass: { ...VOLUME, Encrypted: true, KmsKeyId: 'alias/ebs' },
    fail: { ...VOLUME, KmsKeyId: 'alias/ebs' }
  },
  CLIENT_TOKEN('CreateVolume', VOLUME)
]

const VOLUME_ID = /^vol-[0-9a-f]{8}(?:[0-9a-f]{9})?$/
const INSTANCE_ID = /^i-[0-9a-f]{8}(?:[0-9a-f]{9})?$/
const ATTACH = { VolumeId: 'vol-0123456789abcdef0', InstanceId: 'i-0123456789abcdef0', Device: '/dev/sdf' }
const ATTACH_DETACH = [
  {
    id: 'AttachVolume.required',
    operation: 'AttachVolume',
    source: `${EC2_API}/API_AttachVolume.html`,
    sentence:
      'Device: The device name (for example, /dev/sdh or xvdh). Required: Yes. InstanceId: Required: Yes. VolumeId: Required: Yes.',
    check: (i) => {
      if (!VOLUME_ID.test(i.VolumeId ?? '')) return `VolumeId '${i.VolumeId}'`
      if (!INSTANCE_ID.test(i.InstanceId ?? '')) return `InstanceId '${i.InstanceId}'`
      if (!/^(\/dev\/)?(sd[a-z]|xvd[a-z]{1,2})\d{0,2}$/.test(i.Device ?? '')) return `Device '${i.Device}'`
    },
    pass: ATTACH,
    fail: { ...ATTACH, Device: undefined }
  },
  {
    id: 'DetachVolume.volume',
    operation: 'DetachVolume',
    source: `${EC2_API}/API_DetachVolume.html`,
    sentence:
      'VolumeId: The ID of the volume. Required: Yes. InstanceId: The ID of the instance. If you are detaching a Multi-Attach enabled volume, you must specify an instance ID.',
    check: (i) => {
      if (!VOLUME_ID.test(i.VolumeId ?? '')) return `VolumeId '${i.VolumeId}'`
      if (i.InstanceId !== undefined && !INSTANCE_ID.test(i.InstanceId)) return `InstanceId '${i.InstanceId}'`
    },
    pass: { VolumeId: ATTACH.VolumeId, InstanceId: ATTACH.InstanceId },
    fail: { InstanceId: ATTACH.InstanceId }
  }
]

const SNAPSHOT = { VolumeId: 'vol-0123456789abcdef0', Description: 'root of web' }
const CREATE_SNAPSHOT = [
  ...tagSpecRules(
    'CreateSnapshot',
    ['snapshot'],
    'TagSpecifications: The tags to apply to the snapshot during creation.',
    `${EC2_API}/API_CreateSnapshot.html`,
    SNAPSHOT
  ),
  {
    id: 'CreateSnapshot.volume-and-description',
    operation: 'CreateSnapshot',
    source: `${EC2_API}/API_CreateSnapshot.html`,
    sentence:
      'VolumeId: The ID of the Amazon EBS volume. Required: Yes. Description: A description for the snapshot. (Constraints: Up to 255 characters.)',
    check: (i) => {
      if (!VOLUME_ID.test(i.VolumeId ?? '')) return `VolumeId '${i.VolumeId}'`
      if (String(i.Description ?? '').length > 255)
        return `Description of ${String(i.Description).length} characters`
    },
    pass: SNAPSHOT,
    fail: { ...SNAPSHOT, Description: 'd'.repeat(256) }
  }
]

const TAGS = { Resources: ['snap-0123456789abcdef0'], Tags: [{ Key: 'Name', Value: 'web' }] }
const CREATE_TAGS = [
  {
    id: 'CreateTags.resources',
    operation: 'CreateTags',
    source: `${EC2_API}/API_CreateTags.html`,
    sentence:
      'Resources: The IDs of the resources, separated by spaces. Constraints: Up to 1000 resource IDs.',
    check: (i) => {
      const n = list(i.Resources).length
      if (n < 1 || n > 1000) return `${n} resource ids`
    },
    pass: TAGS,
    fail: { ...TAGS, Resources: [] }
  },
  ...tagRules(
    'CreateTags',
    'Tags',
    (i) => [list(i.Tags)],
    (tags) => ({ ...TAGS, Tags: tags })
  )
]

const RUN = {
  ImageId: 'ami-0123456789abcdef0',
  InstanceType: 't3.small',
  MinCount: 1,
  MaxCount: 1,
  SubnetId: 'subnet-0123456789abcdef0'
}
const RUN_INSTANCES = [
  ...tagSpecRules(
    'RunInstances',
    ['instance', 'volume', 'spot-instances-request', 'network-interface'],
    'You can specify tags for the following resources only: Instances, Volumes, Spot Instance requests, Network interfaces',
    `${EC2_API}/API_RunInstances.html`,
    RUN
  ),
  {
    id: 'RunInstances.counts',
    operation: 'RunInstances',
    source: `${EC2_API}/API_RunInstances.html`,
    sentence:
      'MaxCount / MinCount: Constraints: Between 1 and the quota for the specified instance type for your account for this Region.',
    check: (i) => {
      const min = num(i.MinCount)
      const max = num(i.MaxCount)
      if (!(min >= 1) || !(max >= 1) || min > max) return `MinCount ${min}, MaxCount ${max}`
    },
    pass: RUN,
    fail: { ...RUN, MinCount: 0 }
  },
  {
    id: 'RunInstances.volume-parameters',
    operation: 'RunInstances',
    source: `${EC2_API}/API_EbsBlockDevice.html`,
    sentence: VOLUME_SENTENCE,
    check: (i) => {
      for (const b of rootEbs(i)) {
        const p = volumeProblem(b.Ebs, { defaultType: 'gp2', needSize: false })
        if (p) return `${b.DeviceName}: ${p}`
      }
    },
    pass: {
      ...RUN,
      BlockDeviceMappings: [{ DeviceName: '/dev/xvda', Ebs: { VolumeSize: 8, VolumeType: 'gp3' } }]
    },
    fail: {
      ...RUN,
      BlockDeviceMappings: [
        { DeviceName: '/dev/xvda', Ebs: { VolumeSize: 8, VolumeType: 'standard', Iops: 100 } }
      ]
    }
  },
  CLIENT_TOKEN('RunInstances', RUN)
]

const id = (operation, pattern, field, sentence, source, pass) => ({
  id: `${operation}.id`,
  operation,
  source,
  sentence,
  check: (i) => {
    if (!pattern.test(String(i[field] ?? ''))) return `${field} '${i[field]}'`
  },
  pass: { [field]: pass },
  fail: {}
})

const REMOVALS = [
  id(
    'DeregisterImage',
    /^ami-[0-9a-f]{8}(?:[0-9a-f]{9})?$/,
    'ImageId',
    'ImageId: The ID of the AMI. Required: Yes',
    `${EC2_API}/API_DeregisterImage.html`,
    'ami-0123456789abcdef0'
  ),
  id(
    'DeleteSnapshot',
    /^snap-[0-9a-f]{8}(?:[0-9a-f]{9})?$/,
    'SnapshotId',
    'SnapshotId: The ID of the EBS snapshot. Required: Yes',
    `${EC2_API}/API_DeleteSnapshot.html`,
    'snap-0123456789abcdef0'
  ),
  id(
    'DeleteVolume',
    VOLUME_ID,
    'VolumeId',
    'VolumeId: The ID of the volume. Required: Yes',
    `${EC2_API}/API_DeleteVolume.html`,
    'vol-0123456789abcdef0'
  )
]

// ------------------------------------------------------------------ SSM

const COMMAND = {
  DocumentName: 'AWS-RunShellScript',
  InstanceIds: ['i-0123456789abcdef0'],
  Comment: 'instance-to-ebs: convert',
  TimeoutSeconds: 600,
  Parameters: { commands: ['echo hello'], executionTimeout: ['3600'] }
}
// AWS-RunShellScript's executionTimeout: allowedPattern
// ([1-9][0-9]{0,4})|(1[0-6][0-9]{4})|(17[0-1][0-9]{3})|(172[0-7][0-9]{2})|(172800), i.e. 1..172800.
const EXECUTION_TIMEOUT = /^(?:[1-9][0-9]{0,4}|1[0-6][0-9]{4}|17[0-1][0-9]{3}|172[0-7][0-9]{2}|172800)$/
const SEND_COMMAND = [
  {
    id: 'SendCommand.instance-ids',
    operation: 'SendCommand',
    source: `${SSM_API}/API_SendCommand.html`,
    sentence:
      'Specifying managed node IDs is most useful when you are targeting a limited number of managed nodes, though you can specify up to 50 IDs.',
    check: (i) => {
      const n = list(i.InstanceIds).length
      if (n > 50) return `${n} instance ids`
      if (n === 0 && list(i.Targets).length === 0) return 'neither InstanceIds nor Targets'
    },
    pass: COMMAND,
    fail: { ...COMMAND, InstanceIds: Array.from({ length: 51 }, () => 'i-0123456789abcdef0') }
  },
  {
    id: 'SendCommand.timeout-seconds',
    operation: 'SendCommand',
    source: `${SSM_API}/API_SendCommand.html`,
    sentence:
      "TimeoutSeconds: If this time is reached and the command hasn't already started running, it won't run. Valid Range: Minimum value of 30. Maximum value of 2592000.",
    check: (i) => {
      const t = num(i.TimeoutSeconds)
      if (t !== undefined && !(Number.isInteger(t) && t >= 30 && t <= 2592000)) return `TimeoutSeconds ${t}`
    },
    pass: COMMAND,
    fail: { ...COMMAND, TimeoutSeconds: 10 }
  },
  {
    id: 'SendCommand.comment',
    operation: 'SendCommand',
    source: `${SSM_API}/API_SendCommand.html`,
    sentence:
      'Comment: User-specified information about the command, such as a brief description of what the command should do. Length Constraints: Maximum length of 100.',
    check: (i) => {
      if (String(i.Comment ?? '').length > 100) return `Comment of ${String(i.Comment).length} characters`
    },
    pass: { ...COMMAND, Comment: 'c'.repeat(100) },
    fail: { ...COMMAND, Comment: 'c'.repeat(101) }
  },
  {
    id: 'SendCommand.execution-timeout',
    operation: 'SendCommand',
    source:
      'https://docs.aws.amazon.com/systems-manager/latest/userguide/documents-command-ssm-plugin-reference.html#aws-runShellScript',
    sentence:
      'AWS-RunShellScript executionTimeout: "The time in seconds for a command to be completed before it is considered to have failed. Default is 3600 (1 hour). Maximum is 172800 (48 hours)." allowedPattern ([1-9][0-9]{0,4})|(1[0-6][0-9]{4})|(17[0-1][0-9]{3})|(172[0-7][0-9]{2})|(172800)',
    check: (i) => {
      if (i.DocumentName !== 'AWS-RunShellScript') return
      const t = list(i.Parameters?.executionTimeout)
      if (t.length > 1 || (t.length === 1 && !EXECUTION_TIMEOUT.test(String(t[0]))))
        return `executionTimeout ${JSON.stringify(t)}`
      if (list(i.Parameters?.commands).length === 0) return 'no commands'
    },
    pass: COMMAND,
    fail: { ...COMMAND, Parameters: { ...COMMAND.Parameters, executionTimeout: ['172801'] } }
  },
  {
    id: 'SendCommand.document-size',
    operation: 'SendCommand',
    source: `${SSM_API}/API_SendCommand.html#API_SendCommand_Errors`,
    sentence: 'MaxDocumentSizeExceeded: The size limit of a document is 64 KB.',
    check: (i) => {
      const size = bytes(JSON.stringify(i.Parameters ?? {}))
      if (size > 64 * 1024) return `parameters of ${size} bytes`
    },
    pass: COMMAND,
    fail: { ...COMMAND, Parameters: { ...COMMAND.Parameters, commands: ['x'.repeat(64 * 1024)] } }
  }
]

const PARAMETER = {
  Name: '/instance-to-ebs/run-1/private-key',
  Value: 'secret',
  Type: 'SecureString',
  Overwrite: false,
  Tier: 'Standard'
}
// The 45 characters of arn:aws:ssm:us-east-2:111122223333:parameter/ count toward the 1011.
const ARN_PREFIX = 'arn:aws:ssm:us-east-2:111122223333:parameter'.length
const PUT_PARAMETER = [
  {
    id: 'PutParameter.name',
    operation: 'PutParameter',
    source: `${SSM_API}/API_PutParameter.html`,
    sentence:
      'A parameter name can\'t be prefixed with "aws" or "ssm" (case-insensitive). Parameter names can include only the following symbols and letters: a-zA-Z0-9_.- In addition, the slash character ( / ) is used to delineate hierarchies in parameter names. Parameter hierarchies are limited to a maximum depth of fifteen levels. The maximum length for a parameter name that you specify is 1011 characters. This count of 1011 characters includes the characters in the ARN that precede the name you specify.',
    check: (i) => {
      const name = String(i.Name ?? '')
      if (!/^[A-Za-z0-9_.\-/]+$/.test(name)) return `Name '${name}' has characters outside a-zA-Z0-9_.-/`
      if (/^\/?(aws|ssm)/i.test(name)) return `Name '${name}' begins with aws or ssm`
      if (name.split('/').filter(Boolean).length > 15) return `Name '${name}' is deeper than 15 levels`
      if (ARN_PREFIX + (name.startsWith('/') ? 0 : 1) + name.length > 1011)
        return `Name of ${name.length} characters`
    },
    pass: PARAMETER,
    fail: { ...PARAMETER, Name: '/ssm/instance-to-ebs/key' }
  },
  {
    id: 'PutParameter.value-size',
    operation: 'PutParameter',
    source: `${SSM_API}/API_PutParameter.html`,
    sentence:
      'Value: Standard parameters have a value limit of 4 KB. Advanced parameters have a value limit of 8 KB.',
    check: (i) => {
      const size = bytes(i.Value)
      const limit = i.Tier === 'Advanced' || i.Tier === 'Intelligent-Tiering' ? 8192 : 4096
      if (size > limit)
        return `a value of ${size} bytes in the ${i.Tier ?? 'default (Standard)'} tier (limit ${limit})`
    },
    pass: { ...PARAMETER, Value: 'k'.repeat(5000), Tier: 'Advanced' },
    fail: { ...PARAMETER, Value: 'k'.repeat(4097) }
  },
  {
    id: 'PutParameter.type-and-tier',
    operation: 'PutParameter',
    source: `${SSM_API}/API_PutParameter.html`,
    sentence:
      'Type: You must specify a parameter type when creating a parameter. Tier Valid Values: Standard | Advanced | Intelligent-Tiering. Type Valid Values: String | StringList | SecureString',
    check: (i) => {
      if (!yes(i.Overwrite) && i.Type === undefined) return 'a new parameter without Type'
      if (i.Type !== undefined && !['String', 'StringList', 'SecureString'].includes(i.Type))
        return `Type '${i.Type}'`
      if (i.Tier !== undefined && !['Standard', 'Advanced', 'Intelligent-Tiering'].includes(i.Tier))
        return `Tier '${i.Tier}'`
    },
    pass: PARAMETER,
    fail: { ...PARAMETER, Type: undefined }
  },
  ...tagRules(
    'PutParameter',
    'Tags',
    (i) => [list(i.Tags)],
    (tags) => ({ ...PARAMETER, Tags: tags })
  ).map((r) =>
    r.id === 'PutParameter.tag-key'
      ? {
          ...r,
          source: `${SSM_API}/API_Tag.html`,
          sentence:
            'Key: Length Constraints: Minimum length of 1. Maximum length of 128. Pattern: ^(?!^(?i)aws:)(?=^[\\p{L}\\p{Z}\\p{N}_.:/=+\\-@]*$).*$',
          check: (i) => {
            for (const t of list(i.Tags)) {
              const key = String(t.Key ?? '')
              if (
                key.length === 0 ||
                key.length > 128 ||
                /^aws:/i.test(key) ||
                !/^[\p{L}\p{Z}\p{N}_.:/=+\-@]*$/u.test(key)
              )
                return `tag key '${key}'`
            }
          }
        }
      : r
  )
]

// ------------------------------------------------------------------ S3

const BUCKET_RULE = (operation, base) => ({
  id: `${operation}.bucket`,
  operation,
  source: 'https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html',
  sentence:
    'Bucket names must be between 3 (min) and 63 (max) characters long. Bucket names can consist only of lowercase letters, numbers, periods (.), and hyphens (-). Bucket names must begin and end with a letter or number.',
  check: (i) => {
    if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(String(i.Bucket ?? ''))) return `Bucket '${i.Bucket}'`
  },
  pass: base,
  fail: { ...base, Bucket: 'My_Bundles' }
})
const KEY_RULE = (operation, base) => ({
  id: `${operation}.key`,
  operation,
  source: 'https://docs.aws.amazon.com/AmazonS3/latest/userguide/object-keys.html',
  sentence:
    'The object key name is a sequence of Unicode characters with UTF-8 encoding of up to 1,024 bytes long.',
  check: (i) => {
    const keys = i.Key !== undefined ? [i.Key] : list(i.Delete?.Objects).map((o) => o.Key)
    for (const k of keys) if (!k || bytes(k) > 1024) return `object key of ${bytes(k)} bytes`
  },
  pass: base,
  fail: { ...base, Key: 'k'.repeat(1025) }
})
const OBJECT = { Bucket: 'my-bundles', Key: 'builds/web/image.manifest.xml' }
const S3 = [
  ...['GetObject', 'HeadObject', 'PutObject'].flatMap((op) => [
    BUCKET_RULE(op, OBJECT),
    KEY_RULE(op, OBJECT)
  ]),
  ...['GetBucketLocation', 'GetBucketOwnershipControls'].map((op) =>
    BUCKET_RULE(op, { Bucket: 'my-bundles' })
  ),
  BUCKET_RULE('ListObjectsV2', { Bucket: 'my-bundles', Prefix: 'builds/web/' }),
  {
    id: 'ListObjectsV2.max-keys',
    operation: 'ListObjectsV2',
    source: `${S3_API}/API_ListObjectsV2.html`,
    sentence:
      'MaxKeys: Sets the maximum number of keys returned in the response. By default, the action returns up to 1,000 key names.',
    check: (i) => {
      const n = num(i.MaxKeys)
      if (n !== undefined && !(n >= 0 && n <= 1000)) return `MaxKeys ${n}`
    },
    pass: { Bucket: 'my-bundles', MaxKeys: 1000 },
    fail: { Bucket: 'my-bundles', MaxKeys: 5000 }
  },
  BUCKET_RULE('DeleteObjects', { Bucket: 'my-bundles', Delete: { Objects: [{ Key: 'a' }] } }),
  {
    id: 'DeleteObjects.count',
    operation: 'DeleteObjects',
    source: `${S3_API}/API_DeleteObjects.html`,
    sentence: 'The request can contain a list of up to 1,000 keys that you want to delete.',
    check: (i) => {
      const n = list(i.Delete?.Objects).length
      if (n < 1 || n > 1000) return `${n} keys`
    },
    pass: { Bucket: 'my-bundles', Delete: { Objects: [{ Key: 'a' }] } },
    fail: {
      Bucket: 'my-bundles',
      Delete: { Objects: Array.from({ length: 1001 }, (_, n) => ({ Key: `k${n}` })) }
    }
  },
  KEY_RULE('DeleteObjects', { Bucket: 'my-bundles', Delete: { Objects: [{ Key: 'a' }] } })
]

export const RULES = [
  ...REGISTER_IMAGE,
  ...CREATE_VOLUME,
  ...ATTACH_DETACH,
  ...CREATE_SNAPSHOT,
  ...CREATE_TAGS,
  ...RUN_INSTANCES,
  ...REMOVALS,
  ...SEND_COMMAND,
  ...PUT_PARAMETER,
  ...S3
]

const byOperation = new Map()
for (const r of RULES) byOperation.set(r.operation, [...(byOperation.get(r.operation) ?? []), r])

/** The message a broken rule gives: its id, what was wrong, and the sentence it comes from. */
export const violationMessage = (rule, problem) =>
  `AWS contract rule ${rule.id} broken: ${problem}. AWS: "${rule.sentence}" (${rule.source})`

/** Every rule of the operation that the input breaks, as { rule, problem, message }. */
export function checkRequest(operation, input) {
  const out = []
  for (const rule of byOperation.get(operation) ?? []) {
    const problem = rule.check(input ?? {})
    if (problem) out.push({ rule, problem, message: violationMessage(rule, problem) })
  }
  return out
}

/** How many rules each operation has. */
export const ruleCounts = () => Object.fromEntries([...byOperation].map(([op, rules]) => [op, rules.length]))

/** The error a broken rule raises, shaped like an AWS service error so callers see a code. */
export class ContractViolation extends Error {
  constructor(operation, violations) {
    super(violations.map((v) => v.message).join('\n'))
    this.name = 'ContractViolation'
    this.operation = operation
    this.violations = violations
    this.$fault = 'client'
    this.$metadata = { httpStatusCode: 400 }
  }
}
