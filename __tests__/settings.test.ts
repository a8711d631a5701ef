import { describe, expect, it } from '@jest/globals'
import { INPUT_NAMES, readPollDelayMs, readSettings, SettingsError } from '../src/settings/index.js'
import { CERT, convertInputs, fullInputs, KEY, reader } from './__fixtures__/inputs.js'

const read = (inputs: Record<string, string>, env: NodeJS.ProcessEnv = {}) =>
  readSettings(reader(inputs), { env, now: new Date('2026-11-24T10:20:30Z') })

const problemsOf = (inputs: Record<string, string>, env: NodeJS.ProcessEnv = {}): string[] => {
  try {
    read(inputs, env)
  } catch (err) {
    if (err instanceof SettingsError) return err.problems
    throw err
  }
  throw new Error('expected a SettingsError')
}

describe('readSettings: valid inputs', () => {
  it('reads output-virtualization-type: the result may be hvm from a paravirtual source', () => {
    const s = read({
      ...convertInputs,
      'virtualization-type': 'paravirtual',
      'output-virtualization-type': 'hvm',
      'root-device-name': '/dev/xvda',
      'boot-mode': 'legacy-bios'
    })
    expect(s.image).toMatchObject({
      virtualizationType: 'paravirtual',
      outputVirtualizationType: 'hvm',
      rootDeviceName: '/dev/xvda'
    })
    expect(s.ami.bootMode).toBe('legacy-bios')
    expect(read(convertInputs).image.outputVirtualizationType).toBeUndefined()
  })

  it('reads a convert configuration with defaults', () => {
    const s = read(convertInputs)
    expect(s.mode).toBe('convert')
    expect(s.region).toBe('us-east-1')
    expect(s.source.amiId).toBe('ami-0123456789abcdef0')
    expect(s.helper).toEqual({ instanceId: 'i-0fedcba9876543210', launch: undefined })
    expect(s.ami).toMatchObject({ volumeType: 'gp3', encrypted: false, ifExists: 'fail', tags: [] })
    expect(s.x509.privateKey).toEqual({ kind: 'value', pem: KEY })
    expect(s.bundle.prefix).toBeUndefined()
    expect(s.timeoutMinutes).toBe(120)
    expect(s.maxAttempts).toBe(8)
    expect(s.dryRun).toBe(false)
    expect(s.credentialsExpiration).toBeUndefined()
  })

  it('reads credentials-expiration as configure-aws-credentials gives it, and prefixes with dots inside names', () => {
    const s = read({ ...convertInputs, 'credentials-expiration': '2026-01-01T13:00:00.000Z' })
    expect(s.credentialsExpiration?.toISOString()).toBe('2026-01-01T13:00:00.000Z')
    expect(
      read({
        ...convertInputs,
        'credentials-expiration': '2026-01-01T13:00:00+02:00'
      }).credentialsExpiration?.toISOString()
    ).toBe('2026-01-01T11:00:00.000Z')
    expect(read({ ...fullInputs, 's3-prefix': 'builds/v1.2/web..old' }).bundle.prefix).toBe(
      'builds/v1.2/web..old'
    )
  })

  it('reads verify-boot off by default, and its inputs when given', () => {
    expect(read(convertInputs).verifyBoot).toEqual({
      enabled: false,
      instanceTypes: [],
      subnetId: undefined,
      securityGroupIds: [],
      onFailure: 'deregister'
    })
    const s = read({
      ...convertInputs,
      'verify-boot': 'true',
      'verify-boot-instance-types': 'm3.medium, m1.small\nc3.large',
      'verify-boot-subnet-id': 'subnet-0123456789abcdef0',
      'verify-boot-security-group-ids': 'sg-0123456789abcdef0',
      'verify-boot-failure': 'keep'
    })
    expect(s.verifyBoot).toEqual({
      enabled: true,
      instanceTypes: ['m3.medium', 'm1.small', 'c3.large'],
      subnetId: 'subnet-0123456789abcdef0',
      securityGroupIds: ['sg-0123456789abcdef0'],
      onFailure: 'keep'
    })
  })

  it('defaults to full mode for a source instance and derives a timestamped prefix', () => {
    const s = read(fullInputs)
    expect(s.mode).toBe('full')
    expect(s.bundle.prefix).toBe('instance-to-ebs/i-0123456789abcdef0/20261124T102030Z')
    expect(s.helper.launch).toEqual({
      amiId: undefined,
      instanceType: 't3.small',
      subnetId: 'subnet-0123456789abcdef0',
      securityGroupIds: [],
      instanceProfile: 'instance-to-ebs-helper'
    })
    expect(s.x509.certificate).toEqual({ kind: 'value', pem: CERT })
  })

  it('takes the region from AWS_REGION, then AWS_DEFAULT_REGION', () => {
    const { region: _, ...noRegion } = convertInputs
    expect(read(noRegion, { AWS_REGION: 'ap-southeast-2', AWS_DEFAULT_REGION: 'us-west-2' }).region).toBe(
      'ap-southeast-2'
    )
    expect(read(noRegion, { AWS_DEFAULT_REGION: 'us-west-2' }).region).toBe('us-west-2')
  })

  it('parses tags, lists, numbers and booleans', () => {
    const s = read({
      ...convertInputs,
      tags: 'team=infra, cost-center = 42\nempty=',
      'volume-size': '16',
      encrypted: 'TRUE',
      'kms-key-id': 'alias/ebs',
      'ena-support': 'false',
      'virtualization-type': 'paravirtual',
      'kernel-id': 'aki-5c21674b',
      'if-ami-exists': 'replace'
    })
    expect(s.ami.tags).toEqual([
      { Key: 'team', Value: 'infra' },
      { Key: 'cost-center', Value: '42' },
      { Key: 'empty', Value: '' }
    ])
    expect(s.ami).toMatchObject({
      volumeSizeGiB: 16,
      encrypted: true,
      kmsKeyId: 'alias/ebs',
      enaSupport: false,
      ifExists: 'replace'
    })
    expect(s.image).toMatchObject({ virtualizationType: 'paravirtual', kernelId: 'aki-5c21674b' })
  })

  it('accepts key material as parameter names', () => {
    const { 'x509-private-key': _, ...rest } = fullInputs
    const { 'x509-certificate': __, ...inputs } = rest
    const s = read({
      ...inputs,
      'x509-private-key-parameter': '/ci/x509/key',
      'x509-certificate-parameter': 'x509-cert'
    })
    expect(s.x509).toEqual({
      privateKey: { kind: 'parameter', name: '/ci/x509/key' },
      certificate: { kind: 'parameter', name: 'x509-cert' }
    })
  })

  it('reads bundle mode lists', () => {
    const { 'helper-subnet-id': _, 'helper-instance-profile': __, ...inputs } = fullInputs
    const s = read({
      ...inputs,
      mode: 'bundle',
      'stop-services': 'jenkins rabbitmq-server,redis-server epmd',
      'bundle-exclude': '/var/cache\n/home/ci'
    })
    expect(s.mode).toBe('bundle')
    expect(s.bundle.stopServices).toEqual(['jenkins', 'rabbitmq-server', 'redis-server', 'epmd'])
    expect(s.bundle.exclude).toEqual(['/var/cache', '/home/ci'])
    expect(s.helper.launch).toBeUndefined()
  })
})

// [what is wrong, inputs (merged over a valid base), the input the message must name]
const bad: Array<[string, Record<string, string>, string, Record<string, string>?]> = [
  ['unknown mode', { mode: 'copy' }, 'mode'],
  [
    'instance id too short',
    { 'source-instance-id': 'i-123', mode: 'full' },
    'source-instance-id',
    fullInputs
  ],
  [
    'instance id upper case',
    { 'source-instance-id': 'i-0123456789ABCDEF0' },
    'source-instance-id',
    fullInputs
  ],
  [
    'instance id wrong prefix',
    { 'source-instance-id': 'ami-0123456789abcdef0' },
    'source-instance-id',
    fullInputs
  ],
  ['ami id 9 hex', { 'source-ami-id': 'ami-0123456789' }, 'source-ami-id'],
  ['ami id not hex', { 'source-ami-id': 'ami-zzzzzzzz' }, 'source-ami-id'],
  [
    'manifest not s3',
    {
      'source-ami-id': '',
      'manifest-location': 'https://b/x.manifest.xml',
      'ami-name': 'x-ebs',
      architecture: 'x86_64',
      'virtualization-type': 'hvm'
    },
    'manifest-location'
  ],
  [
    'manifest wrong suffix',
    {
      'source-ami-id': '',
      'manifest-location': 's3://bucket/x.xml',
      'ami-name': 'x-ebs',
      architecture: 'x86_64',
      'virtualization-type': 'hvm'
    },
    'manifest-location'
  ],
  [
    'manifest bad bucket',
    {
      'source-ami-id': '',
      'manifest-location': 's3://Bad_Bucket/x.manifest.xml',
      'ami-name': 'x-ebs',
      architecture: 'x86_64',
      'virtualization-type': 'hvm'
    },
    'manifest-location'
  ],
  ['helper id bad', { 'helper-instance-id': 'i-xyz' }, 'helper-instance-id'],
  [
    'helper ami bad',
    {
      'helper-instance-id': '',
      'helper-subnet-id': 'subnet-0123456789abcdef0',
      'helper-instance-profile': 'p',
      'helper-ami-id': 'ami-1'
    },
    'helper-ami-id'
  ],
  ['instance type bad', { 'helper-instance-type': 'large' }, 'helper-instance-type'],
  ['subnet bad', { 'helper-subnet-id': 'sub-0123456789abcdef0' }, 'helper-subnet-id', fullInputs],
  [
    'security group bad',
    { 'helper-security-group-ids': 'sg-0123456789abcdef0, default' },
    'helper-security-group-ids',
    fullInputs
  ],
  [
    'profile bad',
    { 'helper-instance-profile': 'arn:aws:iam::12:role/x' },
    'helper-instance-profile',
    fullInputs
  ],
  ['bucket upper case', { 's3-bucket': 'MyBucket' }, 's3-bucket', fullInputs],
  ['bucket too short', { 's3-bucket': 'ab' }, 's3-bucket', fullInputs],
  ['bucket xn-- prefix', { 's3-bucket': 'xn--bucket' }, 's3-bucket', fullInputs],
  ['bucket with underscore', { 's3-bucket': 'my_bucket' }, 's3-bucket', fullInputs],
  ['prefix leading slash', { 's3-prefix': '/bundles' }, 's3-prefix', fullInputs],
  ['prefix with a .. segment', { 's3-prefix': 'a/../../b' }, 's3-prefix', fullInputs],
  ['prefix with a . segment', { 's3-prefix': 'a/./b' }, 's3-prefix', fullInputs],
  ['prefix with an empty segment', { 's3-prefix': 'a//b' }, 's3-prefix', fullInputs],
  ['prefix that is ..', { 's3-prefix': '..' }, 's3-prefix', fullInputs],
  ['credentials-expiration not a time', { 'credentials-expiration': 'tomorrow' }, 'credentials-expiration'],
  [
    'credentials-expiration without a zone',
    { 'credentials-expiration': '2026-01-01T13:00:00' },
    'credentials-expiration'
  ],
  ['prefix trailing slash', { 's3-prefix': 'bundles/' }, 's3-prefix', fullInputs],
  ['prefix with characters bundle.sh cannot pass', { 's3-prefix': "it's(here)" }, 's3-prefix', fullInputs],
  ['bundle-exclude with a space', { 'bundle-exclude': '/var/my files' }, 'bundle-exclude', fullInputs],
  ['region malformed', { region: 'useast1' }, 'region'],
  ['region from env malformed', { region: '' }, 'region', undefined],
  ['virtualization unknown', { 'virtualization-type': 'pv' }, 'virtualization-type'],
  ['root device bad', { 'root-device-name': 'sda1' }, 'root-device-name'],
  ['root device nvme', { 'root-device-name': '/dev/nvme0n1' }, 'root-device-name'],
  ['architecture unknown', { architecture: 'amd64' }, 'architecture'],
  ['kernel id bad', { 'kernel-id': 'aki-xyz' }, 'kernel-id'],
  ['ramdisk id bad', { 'ramdisk-id': 'ari-12' }, 'ramdisk-id'],
  ['kernel with hvm', { 'virtualization-type': 'hvm', 'kernel-id': 'aki-5c21674b' }, 'kernel-id'],
  ['boot mode with paravirtual', { 'virtualization-type': 'paravirtual', 'boot-mode': 'uefi' }, 'boot-mode'],
  ['output virtualization unknown', { 'output-virtualization-type': 'pv' }, 'output-virtualization-type'],
  [
    'kernel with an hvm result',
    { 'output-virtualization-type': 'hvm', 'kernel-id': 'aki-5c21674b' },
    'kernel-id'
  ],
  [
    'ramdisk with an hvm result',
    { 'output-virtualization-type': 'hvm', 'ramdisk-id': 'ari-5c21674b' },
    'ramdisk-id'
  ],
  ['uefi for a converted image', { 'output-virtualization-type': 'hvm', 'boot-mode': 'uefi' }, 'boot-mode'],
  [
    'hvm result at a data device name',
    { 'output-virtualization-type': 'hvm', 'root-device-name': '/dev/sdf' },
    'root-device-name'
  ],
  [
    'paravirtual result of an hvm source',
    { 'virtualization-type': 'hvm', 'output-virtualization-type': 'paravirtual' },
    'output-virtualization-type'
  ],
  [
    'output type in mode bundle',
    {
      mode: 'bundle',
      'helper-subnet-id': '',
      'helper-instance-profile': '',
      'output-virtualization-type': 'hvm'
    },
    'output-virtualization-type',
    fullInputs
  ],
  ['ami name too short', { 'ami-name': 'ab' }, 'ami-name'],
  ['ami name bad char', { 'ami-name': 'my ami!' }, 'ami-name'],
  ['description too long', { 'ami-description': 'x'.repeat(256) }, 'ami-description'],
  ['tag without =', { tags: 'team' }, 'tags'],
  ['tag aws: prefix', { tags: 'aws:cloudformation=1' }, 'tags'],
  ['tag duplicate key', { tags: 'a=1,a=2' }, 'tags'],
  ['tag key of 128 characters (EC2 takes 127)', { tags: `${'k'.repeat(128)}=1` }, 'tags'],
  ['tag value of 257 characters', { tags: `a=${'v'.repeat(257)}` }, 'tags'],
  ['volume type st1', { 'volume-type': 'st1' }, 'volume-type'],
  ['volume size zero', { 'volume-size': '0' }, 'volume-size'],
  ['volume size too big', { 'volume-size': '16385' }, 'volume-size'],
  ['volume size not number', { 'volume-size': '8G' }, 'volume-size'],
  ['encrypted not boolean', { encrypted: 'maybe' }, 'encrypted'],
  ['kms key bad', { encrypted: 'true', 'kms-key-id': 'my-key' }, 'kms-key-id'],
  ['kms key without encrypted', { 'kms-key-id': 'alias/ebs' }, 'kms-key-id'],
  ['ena not boolean', { 'ena-support': 'on' }, 'ena-support'],
  ['sriov unknown', { 'sriov-net-support': 'true' }, 'sriov-net-support'],
  ['boot mode unknown', { 'boot-mode': 'bios' }, 'boot-mode'],
  ['certificate not PEM', { 'x509-certificate': 'not a cert' }, 'x509-certificate', fullInputs],
  ['key not PEM', { 'x509-private-key': 'AKIAEXAMPLESECRET' }, 'x509-private-key'],
  ['key value and parameter', { 'x509-private-key-parameter': '/ci/key' }, 'x509-private-key-parameter'],
  [
    'key parameter bad name',
    { 'x509-private-key': '', 'x509-private-key-parameter': 'bad name' },
    'x509-private-key-parameter'
  ],
  ['key missing', { 'x509-private-key': '' }, 'x509-private-key'],
  ['certificate missing in full', { 'x509-certificate': '' }, 'x509-certificate', fullInputs],
  ['stop-services bad name', { 'stop-services': 'jenkins; rm -rf /' }, 'stop-services', fullInputs],
  ['bundle-exclude relative', { 'bundle-exclude': 'var/cache' }, 'bundle-exclude', fullInputs],
  ['install-prerequisites bad', { 'install-prerequisites': '1' }, 'install-prerequisites', fullInputs],
  ['if-bundle-exists unknown', { 'if-bundle-exists': 'replace' }, 'if-bundle-exists', fullInputs],
  ['if-ami-exists unknown', { 'if-ami-exists': 'overwrite' }, 'if-ami-exists'],
  ['keep-bundle bad', { 'keep-bundle': 'always' }, 'keep-bundle', fullInputs],
  ['dry-run bad', { 'dry-run': 'y' }, 'dry-run'],
  ['timeout too small', { 'timeout-minutes': '1' }, 'timeout-minutes'],
  ['timeout above SSM limit', { 'timeout-minutes': '2881' }, 'timeout-minutes'],
  ['max attempts zero', { 'max-attempts': '0' }, 'max-attempts'],
  ['log group bad', { 'log-group': 'my logs' }, 'log-group'],
  ['no source at all', { 'source-ami-id': '' }, 'source-ami-id'],
  ['two convert sources', { 'manifest-location': 's3://bucket/x/image.manifest.xml' }, 'manifest-location'],
  ['bucket in convert mode', { 's3-bucket': 'my-bundles' }, 's3-bucket'],
  [
    'source instance in convert mode',
    { mode: 'convert', 'source-instance-id': 'i-0123456789abcdef0' },
    'source-instance-id'
  ],
  ['source ami in full mode', { 'source-ami-id': 'ami-0123456789abcdef0' }, 'source-ami-id', fullInputs],
  ['no bucket in full mode', { 's3-bucket': '' }, 's3-bucket', fullInputs],
  ['no helper in convert mode', { 'helper-instance-id': '' }, 'helper-subnet-id'],
  [
    'no profile for launched helper',
    { 'helper-instance-profile': '' },
    'helper-instance-profile',
    fullInputs
  ],
  ['helper id with launch settings', { 'helper-subnet-id': 'subnet-0123456789abcdef0' }, 'helper-subnet-id'],
  ['helper in bundle mode', { mode: 'bundle' }, 'helper-subnet-id', fullInputs],
  [
    'volume size in bundle mode',
    { mode: 'bundle', 'helper-subnet-id': '', 'helper-instance-profile': '', 'volume-size': '8' },
    'volume-size',
    fullInputs
  ],
  [
    'helper equals source',
    { 'helper-subnet-id': '', 'helper-instance-profile': '', 'helper-instance-id': 'i-0123456789abcdef0' },
    'helper-instance-id',
    fullInputs
  ],
  [
    'manifest source without ami-name',
    {
      'source-ami-id': '',
      'manifest-location': 's3://bucket/x/image.manifest.xml',
      architecture: 'x86_64',
      'virtualization-type': 'hvm'
    },
    'ami-name'
  ],
  [
    'manifest source without architecture',
    {
      'source-ami-id': '',
      'manifest-location': 's3://bucket/x/image.manifest.xml',
      'ami-name': 'x-ebs',
      'virtualization-type': 'hvm'
    },
    'architecture'
  ],
  ['verify-boot not a boolean', { 'verify-boot': 'maybe' }, 'verify-boot'],
  [
    'verify-boot-instance-types malformed',
    { 'verify-boot-instance-types': 'm3.medium, M5' },
    'verify-boot-instance-types'
  ],
  ['verify-boot-subnet-id malformed', { 'verify-boot-subnet-id': 'subnet-xyz' }, 'verify-boot-subnet-id'],
  [
    'verify-boot-security-group-ids malformed',
    { 'verify-boot-security-group-ids': 'sg-1' },
    'verify-boot-security-group-ids'
  ],
  ['verify-boot-failure unknown', { 'verify-boot-failure': 'delete' }, 'verify-boot-failure'],
  [
    'verify-boot in mode bundle',
    { mode: 'bundle', 'helper-subnet-id': '', 'helper-instance-profile': '', 'verify-boot': 'true' },
    'verify-boot',
    fullInputs
  ]
]

describe('readSettings: bad inputs', () => {
  it('has at least 40 cases', () => expect(bad.length).toBeGreaterThanOrEqual(40))

  const cases = bad.map(([what, change, input, base]) => ({ what, change, input, base }))
  it.each(cases)('$what → names $input', ({ change, input, base }) => {
    const env = input === 'region' && change.region === '' ? { AWS_REGION: 'Mars-1' } : {}
    const problems = problemsOf({ ...(base ?? convertInputs), ...change }, env)
    expect(problems.some((p) => p.includes(`'${input}'`))).toBe(true)
  })

  it('reports every problem at once', () => {
    const problems = problemsOf({
      ...convertInputs,
      'volume-size': 'x',
      'if-ami-exists': 'y',
      architecture: 'z'
    })
    expect(problems).toHaveLength(3)
    const err = (() => {
      try {
        read({ ...convertInputs, 'volume-size': 'x', 'if-ami-exists': 'y' })
      } catch (e) {
        return e as Error
      }
    })()
    expect(err?.message).toMatch(/^2 invalid inputs:\n {2}- 'volume-size'/)
  })

  // The lists below are what the single-function reader gave before the reader was split by
  // concern: the problems of each input in the order of the inputs table, then the checks across
  // inputs in their own order.
  it('lists the problems in a fixed order: input by input, then the checks across inputs', () => {
    expect(
      problemsOf({
        ...convertInputs,
        'dry-run': 'y',
        tags: 'team',
        'x509-private-key-parameter': '/ci/key',
        'volume-size': 'x',
        'verify-boot-failure': 'delete',
        'helper-instance-type': 'large',
        's3-bucket': 'my-bundles',
        'kms-key-id': 'alias/ebs',
        'virtualization-type': 'hvm',
        'ramdisk-id': 'ari-5c21674b'
      })
    ).toEqual([
      "'x509-private-key' and 'x509-private-key-parameter' cannot both be set; give one of them",
      "'helper-instance-type': 'large' is not valid; expected an instance type such as t3.small",
      "'tags': 'team' is not valid; expected key=value pairs, comma or newline separated, unique keys of 1-127 characters not starting with 'aws:', values up to 256 characters",
      "'volume-size': 'x' is not valid; expected a whole number from 1 to 16384",
      "'verify-boot-failure': 'delete' is not valid; expected one of 'deregister', 'keep'",
      "'dry-run': 'y' is not valid; expected 'true' or 'false'",
      "'kms-key-id' needs 'encrypted: true'",
      "'ramdisk-id' applies only to 'virtualization-type: paravirtual'",
      "'s3-bucket' cannot be used in mode 'convert': the bundle location comes from the AMI or 'manifest-location'"
    ])
    expect(
      problemsOf({
        ...fullInputs,
        mode: 'bundle',
        'credentials-expiration': 'soon',
        'upload-concurrency': '0',
        's3-prefix': 'a//b',
        region: 'mars',
        'source-ami-id': 'ami-1'
      })
    ).toEqual([
      "'source-ami-id': 'ami-1' is not valid; expected an AMI id such as ami-0123456789abcdef0",
      "'region': 'mars' is not valid; expected a region name such as us-east-1",
      "'upload-concurrency': '0' is not valid; expected a whole number from 1 to 128",
      "'s3-prefix': 'a//b' is not valid; expected a key prefix without empty, '.' or '..' segments (a/b/c)",
      "'credentials-expiration': 'soon' is not valid; expected an ISO 8601 time with its zone, such as 2026-01-01T13:00:00Z (the aws-expiration output)",
      "'source-ami-id' cannot be used in mode 'bundle': the source is 'source-instance-id'",
      "'helper-subnet-id' cannot be used in mode 'bundle': no helper is used",
      "'helper-instance-profile' cannot be used in mode 'bundle': no helper is used",
      "'upload-concurrency' cannot be used in mode 'bundle': nothing is converted"
    ])
  })

  it('reads each input once', () => {
    const counts = new Map<string, number>()
    const inputs: Record<string, string> = { ...fullInputs, mode: 'bundle', 'helper-subnet-id': '' }
    expect(() =>
      readSettings(
        (name) => {
          counts.set(name, (counts.get(name) ?? 0) + 1)
          return inputs[name] ?? ''
        },
        { env: {} }
      )
    ).toThrow(SettingsError)
    expect([...counts.values()].every((n) => n === 1)).toBe(true)
    expect(counts.size).toBe(INPUT_NAMES.length)
  })

  it('shows the bad value and the accepted form', () => {
    expect(problemsOf({ ...convertInputs, 'volume-type': 'st1' })).toEqual([
      "'volume-type': 'st1' is not valid; expected one of 'gp3', 'gp2', 'io1', 'io2', 'standard'"
    ])
  })

  it('never shows a secret value', () => {
    const secret = '-----BEGIN PRIVATE KEY-----\nTOPSECRETMATERIAL\n-----END CERTIFICATE-----'
    const problems = problemsOf({ ...convertInputs, 'x509-private-key': secret })
    expect(problems.join('\n')).not.toContain('TOPSECRET')
    expect(problems.join('\n')).toContain("'x509-private-key': the value (hidden)")
  })
})

describe('readSettings: convert-on', () => {
  const onRunner = {
    'source-ami-id': 'ami-0123456789abcdef0',
    region: 'us-east-1',
    'x509-private-key': KEY,
    'convert-on': 'runner'
  }

  it('defaults to the helper; runner needs no helper input and sets the upload concurrency', () => {
    expect(read(convertInputs)).toMatchObject({ convertOn: 'helper', uploadConcurrency: 32 })
    const s = read({ ...onRunner, 'upload-concurrency': '16' })
    expect(s).toMatchObject({ convertOn: 'runner', uploadConcurrency: 16 })
    expect(s.helper).toEqual({ instanceId: undefined, launch: undefined })
  })

  it('refuses helper inputs with convert-on: runner, naming each', () => {
    const problems = problemsOf({
      ...onRunner,
      'helper-instance-id': 'i-0fedcba9876543210',
      'helper-subnet-id': 'subnet-0123456789abcdef0',
      'helper-instance-profile': 'p'
    })
    for (const name of ['helper-instance-id', 'helper-subnet-id', 'helper-instance-profile'])
      expect(problems).toContainEqual(
        expect.stringMatching(new RegExp(`^'${name}' cannot be used with 'convert-on: runner'`))
      )
  })

  it('refuses a bad convert-on, upload-concurrency out of range, a KMS key that is not an ARN, and bundle mode', () => {
    expect(problemsOf({ ...onRunner, 'convert-on': 'laptop' })).toContainEqual(
      expect.stringMatching(/^'convert-on'/)
    )
    expect(problemsOf({ ...onRunner, 'upload-concurrency': '0' })).toContainEqual(
      expect.stringMatching(/^'upload-concurrency'/)
    )
    expect(problemsOf({ ...onRunner, encrypted: 'true', 'kms-key-id': 'alias/ebs' })).toContainEqual(
      expect.stringMatching(/^'kms-key-id'.*key ARN/)
    )
    expect(
      read({ ...onRunner, encrypted: 'true', 'kms-key-id': 'arn:aws:kms:us-east-1:123456789012:key/abcd' })
        .ami.kmsKeyId
    ).toMatch(/^arn:/)
    expect(problemsOf({ ...convertInputs, 'upload-concurrency': '8' })).toContainEqual(
      expect.stringMatching(/^'upload-concurrency' cannot be used with 'convert-on: helper'/)
    )
    expect(
      problemsOf({
        ...fullInputs,
        mode: 'bundle',
        'helper-subnet-id': '',
        'helper-instance-profile': '',
        'convert-on': 'runner'
      })
    ).toContainEqual(expect.stringMatching(/^'convert-on' cannot be used in mode 'bundle'/))
  })
})

describe('readPollDelayMs: the test setting I2E_POLL_DELAY_MS', () => {
  it('is undefined when unset or empty, and the number of milliseconds when given', () => {
    expect(readPollDelayMs({})).toBeUndefined()
    expect(readPollDelayMs({ I2E_POLL_DELAY_MS: '' })).toBeUndefined()
    expect(readPollDelayMs({ I2E_POLL_DELAY_MS: '200' })).toBe(200)
  })

  it.each(['0', '-5', '1.5', '2s', '60001'])('refuses %p, naming the variable', (value) => {
    expect(() => readPollDelayMs({ I2E_POLL_DELAY_MS: value })).toThrow(
      new SettingsError([
        `I2E_POLL_DELAY_MS must be a whole number of milliseconds from 1 to 60000, not "${value}"`
      ])
    )
  })
})
