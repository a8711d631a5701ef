// The IAM policies in policies/ against what the code really calls. The calls are derived from
// the sources at test time (every `new XxxCommand(` of an AWS SDK client in src/, every `aws
// <service> <command>` and AMI tool in the scripts), so a new call without its permission fails
// here; a permission nothing uses fails too, unless it is listed below with the reason.
import { describe, expect, it } from '@jest/globals'
import { readdirSync, readFileSync } from 'node:fs'
import { companions, type EntryScript } from '../src/scripts/index.js'
// @ts-expect-error plain JS module without types
import { POLICY_NAMES, policyBlock, withPolicyBlocks } from '../tools/readme-policies.mjs'

const root = new URL('../', import.meta.url)
const text = (path: string) => readFileSync(new URL(path, root), 'utf8')

interface Statement {
  Sid?: string
  Effect: 'Allow' | 'Deny'
  Action: string | string[]
  Resource: string | string[]
  Condition?: Record<string, Record<string, string | string[]>>
}
interface PolicyDocument {
  Version: string
  Statement: Statement[]
}

const POLICIES = [
  'runner-role',
  'runner-role-replace',
  'runner-role-direct',
  'source-instance-profile',
  'helper-instance-profile'
] as const
const policy = (name: (typeof POLICIES)[number]) =>
  JSON.parse(text(`policies/${name}.json`)) as PolicyDocument
const list = (v: string | string[]) => (Array.isArray(v) ? v : [v])
const glob = (pattern: string) =>
  new RegExp(`^${pattern.replace(/[.+?^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*')}$`, 'i')

/** The Allow statements that grant the action. */
const grants = (doc: PolicyDocument, action: string) =>
  doc.Statement.filter((s) => s.Effect === 'Allow' && list(s.Action).some((a) => glob(a).test(action)))
const allowed = (doc: PolicyDocument, action: string) => grants(doc, action).length > 0
const grantedActions = (doc: PolicyDocument) =>
  [...new Set(doc.Statement.filter((s) => s.Effect === 'Allow').flatMap((s) => list(s.Action)))].sort()

// ---------------------------------------------------------------- calls made by the action's code

/** IAM service prefix of each SDK client package. */
const SERVICE_OF_PACKAGE: Record<string, string> = {
  'client-ec2': 'ec2',
  'client-ssm': 'ssm',
  'client-s3': 's3',
  'client-cloudwatch-logs': 'logs',
  'client-ebs': 'ebs'
}

/** S3's API names differ from its IAM action names. */
const S3_ACTION: Record<string, string> = {
  ListObjectsV2: 's3:ListBucket',
  ListObjects: 's3:ListBucket',
  HeadObject: 's3:GetObject',
  GetObject: 's3:GetObject',
  DeleteObject: 's3:DeleteObject',
  DeleteObjects: 's3:DeleteObject',
  PutObject: 's3:PutObject',
  PutObjectAcl: 's3:PutObjectAcl',
  HeadBucket: 's3:ListBucket',
  GetBucketLocation: 's3:GetBucketLocation',
  GetBucketOwnershipControls: 's3:GetBucketOwnershipControls',
  GetBucketAcl: 's3:GetBucketAcl'
}

/** The API each SDK waiter polls. */
const WAITER_API: Record<string, string> = {
  waitUntilImageAvailable: 'DescribeImages',
  waitUntilImageExists: 'DescribeImages',
  waitUntilSnapshotCompleted: 'DescribeSnapshots',
  waitUntilVolumeAvailable: 'DescribeVolumes',
  waitUntilVolumeInUse: 'DescribeVolumes',
  waitUntilVolumeDeleted: 'DescribeVolumes',
  waitUntilInstanceRunning: 'DescribeInstances',
  waitUntilInstanceTerminated: 'DescribeInstances',
  waitUntilInstanceExists: 'DescribeInstances',
  waitUntilInstanceStatusOk: 'DescribeInstanceStatus',
  waitUntilCommandExecuted: 'GetCommandInvocation',
  waitUntilObjectExists: 'HeadObject',
  waitUntilBucketExists: 'HeadBucket'
}

function sourceFiles(dir: string): string[] {
  return readdirSync(new URL(dir, root), { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('.ts'))
    .map((f) => `${dir}${f}`)
}

interface SdkCall {
  action: string
  file: string
  command: string
}

/** Every SDK command the sources construct, as the IAM action it needs. */
function sdkCalls(): SdkCall[] {
  const calls: SdkCall[] = []
  for (const file of sourceFiles('src/')) {
    const source = text(file)
    const packageOf = new Map<string, string>()
    for (const m of source.matchAll(/import\s*(?:type\s*)?\{([^}]*)\}\s*from\s*'@aws-sdk\/([a-z0-9-]+)'/g))
      for (const name of (m[1] as string).split(',').map((n) => n.replace(/^\s*type\s+/, '').trim()))
        if (name) packageOf.set(name.split(/\s+as\s+/)[1] ?? name, m[2] as string)
    const used = [
      ...[...source.matchAll(/new\s+([A-Z][A-Za-z0-9]*)Command\s*\(/g)].map((m) => m[1] as string),
      ...[...source.matchAll(/\bpaginate([A-Z][A-Za-z0-9]*)\s*\(/g)].map((m) => m[1] as string)
    ]
    for (const m of source.matchAll(/\b(waitUntil[A-Z][A-Za-z0-9]*)\s*\(/g)) {
      const waiter = m[1] as string
      if (!packageOf.has(waiter)) continue
      const api = WAITER_API[waiter]
      if (!api) throw new Error(`${file}: add the API that ${waiter} polls to WAITER_API in this test`)
      used.push(api)
      packageOf.set(`${api}Command`, packageOf.get(waiter) as string)
    }
    for (const api of used) {
      const pkg = packageOf.get(`${api}Command`) ?? packageOf.get(`paginate${api}`)
      if (!pkg) throw new Error(`${file}: ${api}Command is not imported from an @aws-sdk client package`)
      const service = SERVICE_OF_PACKAGE[pkg]
      if (!service) throw new Error(`${file}: add @aws-sdk/${pkg} to SERVICE_OF_PACKAGE in this test`)
      const action = service === 's3' ? S3_ACTION[api] : `${service}:${api}`
      if (!action) throw new Error(`${file}: add the IAM action of S3 ${api} to S3_ACTION in this test`)
      calls.push({ action, file, command: `${api}Command` })
    }
  }
  return calls
}

/**
 * Runner permissions that no SDK command names, each with the call that needs it. Everything
 * else in runner-role.json must be needed by a command in src/.
 */
const RUNNER_EXTRAS: Record<string, string> = {
  'iam:PassRole': 'RunInstances with IamInstanceProfile passes the helper role to EC2',
  'ec2:CreateTags': 'TagSpecifications on RunInstances, CreateVolume, CreateSnapshot and RegisterImage',
  'ssm:AddTagsToResource': 'PutParameter with Tags',
  'kms:CreateGrant': 'encrypted volumes with kms-key-id (EBS on behalf of the caller)',
  'kms:Decrypt': 'encrypted volumes with kms-key-id',
  'kms:DescribeKey': 'encrypted volumes with kms-key-id',
  'kms:GenerateDataKeyWithoutPlaintext': 'encrypted volumes with kms-key-id',
  'kms:ReEncryptFrom': 'encrypted volumes with kms-key-id',
  'kms:ReEncryptTo': 'encrypted volumes with kms-key-id'
}

// ---------------------------------------------------------------- calls made on the instances

/** IAM actions of each AWS CLI command or AMI tool the scripts run. */
const CLI_ACTIONS: Record<string, string[]> = {
  // The scripts only download with `aws s3 cp` (an upload would need s3:PutObject).
  's3 cp': ['s3:GetObject'],
  's3 ls': ['s3:ListBucket'],
  // --with-decryption also needs kms:Decrypt when the parameter uses a customer managed key.
  'ssm get-parameter': ['ssm:GetParameter'],
  'ec2-upload-bundle': ['s3:PutObject', 's3:PutObjectAcl', 's3:ListBucket', 's3:GetBucketLocation']
}

/** The instance profile each entry script runs under (cleanup.sh runs under both: it calls no AWS API). */
const PROFILE_OF_SCRIPT: Record<
  Exclude<EntryScript, 'cleanup.sh'>,
  'source-instance-profile' | 'helper-instance-profile'
> = {
  'bundle.sh': 'source-instance-profile',
  'convert.sh': 'helper-instance-profile'
}

/** Profile permissions that the scripts do not call, each with who needs it. */
const PROFILE_EXTRAS: [RegExp, string][] = [
  [/^(ec2messages|ssmmessages):|^ssm:UpdateInstanceInformation$/, 'the SSM agent (Run Command)'],
  [/^logs:/, 'the SSM agent writing command output to log-group'],
  [/^kms:Decrypt$/, 'GetParameter WithDecryption of a parameter under a customer managed key']
]

interface CliCall {
  command: string
  script: string
}

/** `aws <service> <command>` (or the scripts' aws_cli wrapper) and AMI tools, outside comments. */
function cliCalls(script: string): CliCall[] {
  const calls: CliCall[] = []
  for (const line of text(`src/scripts/${script}`).split('\n')) {
    if (/^\s*#/.test(line)) continue
    for (const m of line.matchAll(
      /(?:^|[\s;&|(!])(?:aws|aws_cli)\s+(?:(?:\$\{[^}]*\}|--region\s+(?:"[^"]*"|\S+))\s+)*([a-z0-9]+)\s+([a-z][a-z0-9-]*)/g
    ))
      calls.push({ command: `${m[1]} ${m[2]}`, script })
    for (const tool of ['ec2-upload-bundle'])
      if (new RegExp(`(?:^|\\s)${tool}\\s+-`).test(line)) calls.push({ command: tool, script })
    // ssm-get-parameter.rb signs the call itself (no CLI on old sources): its X-Amz-Target
    if (/TARGET = 'AmazonSSM\.GetParameter'/.test(line)) calls.push({ command: 'ssm get-parameter', script })
  }
  return calls
}

// ---------------------------------------------------------------- tests

describe('policy documents', () => {
  it.each(POLICIES)('%s is a valid, explicit Allow-only document', (name) => {
    const doc = policy(name)
    expect(doc.Version).toBe('2012-10-17')
    const sids = doc.Statement.map((s) => s.Sid)
    expect(new Set(sids).size).toBe(sids.length)
    for (const s of doc.Statement) {
      expect(s.Sid).toMatch(/^[A-Za-z0-9]+$/)
      expect(s.Effect).toBe('Allow')
      // No service-wide or all-action wildcards.
      for (const a of list(s.Action)) expect(a).toMatch(/^[a-z0-9]+:[A-Za-z0-9]+$/)
    }
  })

  it.each(POLICIES)('%s scopes bucket, log group and parameters to placeholders or prefixes', (name) => {
    for (const s of policy(name).Statement) {
      const actions = list(s.Action)
      const resources = list(s.Resource)
      if (actions.some((a) => a.startsWith('s3:')))
        for (const r of resources) expect(r).toMatch(/^arn:aws:s3:::BUNDLE_BUCKET(\/\*)?$/)
      if (actions.some((a) => a.startsWith('logs:')) && !actions.includes('logs:DescribeLogGroups'))
        for (const r of resources) expect(r).toBe('arn:aws:logs:*:*:log-group:LOG_GROUP:*')
      if (actions.some((a) => /^ssm:(Get|Put|Delete)Parameter$/.test(a)))
        for (const r of resources)
          expect(r).toMatch(/^arn:aws:ssm:\*:\*?:parameter\/(instance-to-ebs|aws\/service)\//)
    }
  })
})

describe('runner-role.json', () => {
  const doc = policy('runner-role')
  const calls = sdkCalls()

  it('finds the SDK calls in src/', () => {
    expect(calls.length).toBeGreaterThan(10)
    expect(calls.map((c) => c.action)).toEqual(
      expect.arrayContaining(['ssm:SendCommand', 'ec2:CreateVolume'])
    )
  })

  it('allows every AWS API call the code makes (the EBS direct APIs are in runner-role-direct.json)', () => {
    const missing = calls
      .filter((c) => !c.action.startsWith('ebs:') && !allowed(doc, c.action))
      .map((c) => `${c.action} (${c.command} in ${c.file})`)
    expect([...new Set(missing)]).toEqual([])
  })

  it('allows nothing the code does not need', () => {
    const used = new Set(calls.map((c) => c.action))
    const unused = grantedActions(doc).filter((a) => !used.has(a) && !(a in RUNNER_EXTRAS))
    expect(unused).toEqual([])
  })

  it('may pass only the helper role, only to EC2, when the code launches helpers', () => {
    const launches = calls.some((c) => c.action === 'ec2:RunInstances')
    const passRole = grants(doc, 'iam:PassRole')
    expect(passRole.length > 0).toBe(launches)
    for (const s of passRole) {
      expect(s.Resource).toBe('arn:aws:iam::*:role/HELPER_ROLE')
      expect(s.Condition?.StringEquals?.['iam:PassedToService']).toBe('ec2.amazonaws.com')
    }
  })

  it('terminates and deletes only what carries the run tag', () => {
    for (const action of [
      'ec2:TerminateInstances',
      'ec2:DeleteVolume',
      'ec2:DeregisterImage',
      'ec2:DeleteSnapshot'
    ])
      for (const s of grants(doc, action))
        expect(s.Condition?.Null?.['aws:ResourceTag/instance-to-ebs:run']).toBe('false')
    for (const s of grants(doc, 'ec2:CreateTags'))
      expect(s.Condition?.StringEquals?.['ec2:CreateAction']).toBeDefined()
  })

  it('launches only Amazon-owned images (helpers) or images a run registered (boot checks)', () => {
    const runInstances = grants(doc, 'ec2:RunInstances')
    // Every resource RunInstances authorizes is named: no '*' that would let any AMI through.
    for (const s of runInstances) for (const r of list(s.Resource)) expect(r).not.toBe('*')
    const onImages = runInstances.filter((s) => list(s.Resource).some((r) => r.includes(':image/')))
    expect(onImages.map((s) => s.Condition)).toEqual(
      expect.arrayContaining([
        { StringEquals: { 'ec2:Owner': 'amazon' } },
        { Null: { 'aws:ResourceTag/instance-to-ebs:run': 'false' } }
      ])
    )
    for (const s of onImages) expect(s.Condition).toBeDefined()
    for (const s of grants(doc, 'ec2:GetConsoleOutput'))
      expect(s.Condition?.Null?.['aws:ResourceTag/instance-to-ebs:run']).toBe('false')
  })
})

describe('runner-role-replace.json', () => {
  const doc = policy('runner-role-replace')
  it('adds only the rights to replace an AMI the action did not make: deregister it, delete its snapshots', () => {
    expect(grantedActions(doc)).toEqual(['ec2:DeleteSnapshot', 'ec2:DeregisterImage'])
    expect(doc.Statement.every((s) => s.Condition === undefined)).toBe(true)
  })
  it('grants nothing the code does not call', () => {
    const used = new Set(sdkCalls().map((c) => c.action))
    expect(grantedActions(doc).filter((a) => !used.has(a))).toEqual([])
  })
})

describe('runner-role-direct.json (convert-on: runner)', () => {
  const doc = policy('runner-role-direct')
  const calls = sdkCalls()
  /** The files whose calls the runner path makes: its own step, the shared source checks and registration. */
  const runnerPathFiles = [
    'src/pipeline/convert/runner-write.ts',
    'src/aws/snapshot-blocks.ts',
    'src/aws/manifest.ts',
    'src/pipeline/convert/preflight-source.ts',
    'src/pipeline/convert/register.ts'
  ]
  /** Calls the runner path makes through helpers shared with the helper path. */
  const shared: Record<string, string> = {
    'ec2:DescribeSnapshots': 'waitForSnapshot in snapshot.ts',
    'ec2:DeleteSnapshot': 'removing the pending snapshot on failure (resources.ts)',
    'ssm:DescribeParameters': 'preflight checks a given key parameter'
  }

  it('allows every call of the runner path, including each EBS direct API the code makes', () => {
    const needed = new Set([
      ...calls
        .filter((c) => runnerPathFiles.includes(c.file) || c.action.startsWith('ebs:'))
        .map((c) => c.action),
      ...Object.keys(shared)
    ])
    expect([...needed]).toEqual(
      expect.arrayContaining(['ebs:StartSnapshot', 'ebs:PutSnapshotBlock', 'ebs:CompleteSnapshot'])
    )
    expect([...needed].filter((a) => !allowed(doc, a))).toEqual([])
  })

  it('allows nothing the code does not need, and nothing of the helper path', () => {
    const used = new Set(calls.map((c) => c.action))
    const extras = ['ec2:CreateTags', ...Object.keys(RUNNER_EXTRAS).filter((a) => a.startsWith('kms:'))]
    expect(grantedActions(doc).filter((a) => !used.has(a) && !extras.includes(a))).toEqual([])
    for (const a of [
      'ec2:RunInstances',
      'ec2:CreateVolume',
      'ec2:AttachVolume',
      'ec2:DetachVolume',
      'ec2:CreateSnapshot',
      'ec2:TerminateInstances',
      'ssm:SendCommand',
      'ssm:PutParameter',
      'iam:PassRole'
    ])
      expect(allowed(doc, a)).toBe(false)
  })

  it('starts, writes and completes only snapshots that carry the run tag', () => {
    for (const s of grants(doc, 'ebs:StartSnapshot')) {
      expect(s.Resource).toBe('arn:aws:ec2:*::snapshot/*')
      expect(s.Condition?.Null?.['aws:RequestTag/instance-to-ebs:run']).toBe('false')
    }
    for (const action of ['ebs:PutSnapshotBlock', 'ebs:CompleteSnapshot'])
      for (const s of grants(doc, action)) {
        expect(s.Resource).toBe('arn:aws:ec2:*::snapshot/*')
        expect(s.Condition?.Null?.['aws:ResourceTag/instance-to-ebs:run']).toBe('false')
      }
    for (const s of grants(doc, 'ec2:CreateTags'))
      expect(
        s.Condition?.StringEquals?.['ec2:CreateAction'] ??
          s.Condition?.Null?.['aws:RequestTag/instance-to-ebs:run']
      ).toBeDefined()
  })
})

describe.each(
  Object.entries(PROFILE_OF_SCRIPT) as [EntryScript, 'source-instance-profile' | 'helper-instance-profile'][]
)('%s runs under %s', (entry, profile) => {
  const doc = policy(profile)
  const calls = [entry, ...companions[entry]].flatMap((script) => cliCalls(script))
  const actions = calls.flatMap((c) => {
    const mapped = CLI_ACTIONS[c.command]
    if (!mapped)
      throw new Error(`${c.script} runs '${c.command}': add its IAM actions to CLI_ACTIONS in this test`)
    return mapped
  })

  it('finds the AWS calls of the script', () => expect(calls.length).toBeGreaterThan(0))

  it('allows every call the script makes', () => {
    expect([...new Set(actions.filter((a) => !allowed(doc, a)))]).toEqual([])
  })

  it('allows nothing else but what the SSM agent needs', () => {
    const unused = grantedActions(doc).filter(
      (a) => !actions.includes(a) && !PROFILE_EXTRAS.some(([pattern]) => pattern.test(a))
    )
    expect(unused).toEqual([])
  })
})

it('cleanup.sh, sent to the source and to the helper, calls no AWS API: it needs no permission', () => {
  expect(['cleanup.sh', ...companions['cleanup.sh']].flatMap((script) => cliCalls(script))).toEqual([])
})

describe('CLI call detection', () => {
  it('sees through the region option and the aws_cli wrapper, not comments', () => {
    // An entry script and the companions it sources (the calls live in the companions too).
    const shipped = (entry: EntryScript) =>
      [entry, ...companions[entry]].flatMap((script) => cliCalls(script)).map((c) => c.command)
    expect(shipped('convert.sh')).toEqual(expect.arrayContaining(['ssm get-parameter', 's3 cp', 's3 ls']))
    expect(cliCalls('convert-manifest.sh').map((c) => c.command)).toEqual(['s3 cp', 's3 ls'])
    expect(shipped('bundle.sh').sort()).toEqual(['ec2-upload-bundle', 'ssm get-parameter'])
    expect(cliCalls('ssm-get-parameter.rb').map((c) => c.command)).toEqual(['ssm get-parameter'])
  })
})

describe('README permissions section', () => {
  const readme = text('README.md')
  it('names the same policies as policies/', () => {
    expect([...POLICY_NAMES].sort()).toEqual(
      readdirSync(new URL('policies/', root))
        .filter((f) => f.endsWith('.json'))
        .map((f) => f.replace(/\.json$/, ''))
        .sort()
    )
  })

  it.each(POLICIES)('shows %s exactly as the file (node tools/readme-policies.mjs)', (name) => {
    const m = new RegExp(`<!-- policy:${name}:start -->\\n([\\s\\S]*?)\\n<!-- policy:${name}:end -->`).exec(
      readme
    )
    expect(m?.[1]).toBe(policyBlock(name))
  })

  it('is what the script would write', () => expect(withPolicyBlocks(readme)).toBe(readme))
})
