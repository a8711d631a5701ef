// Bundle preflight: each problem is found before anything is created, and says what to fix.
import { describe, expect, it } from '@jest/globals'
import { RegisterImageCommand } from '@aws-sdk/client-ec2'
import { GetBucketLocationCommand, GetBucketOwnershipControlsCommand } from '@aws-sdk/client-s3'
import { PutParameterCommand, SendCommandCommand } from '@aws-sdk/client-ssm'
import { bucketRegion } from '../../../src/pipeline/bundle/bucket.js'
import { planSteps } from '../../../src/pipeline/plan.js'
import { resourceRemover } from '../../../src/pipeline/resources.js'
import { runPipeline } from '../../../src/pipeline/runner.js'
import { messageOf } from '../../../src/errors.js'
import {
  type AccountOptions,
  BUCKET,
  bundleAccount,
  bundleSettings,
  INSTANCE,
  MANIFEST_KEY,
  PART_KEYS,
  PREFIX,
  runContext,
  sourceInstance,
  type TestLog,
  testLog
} from '../../__fixtures__/bundle-account.js'
import { serviceError } from '../../__fixtures__/errors.js'

async function preflight(options: AccountOptions = {}, over: Record<string, string> = {}) {
  const fake = bundleAccount(options)
  const settings = bundleSettings(over)
  const ctx = runContext(settings, fake.clients)
  const result = await runPipeline(planSteps(settings), ctx, {
    remove: resourceRemover(fake.clients, { pollDelayMs: 1 }),
    log: ctx.log
  })
  return { fake, ctx, result, message: result.ok ? '' : messageOf(result.error) }
}

/** Nothing was created: no parameter, no command, no registration (DryRun aside). */
function expectNothingCreated(r: Awaited<ReturnType<typeof preflight>>): void {
  expect(r.result.failedStep).toBe('bundle preflight')
  expect(r.fake.mocks.ssm).not.toHaveReceivedCommand(PutParameterCommand)
  expect(r.fake.mocks.ssm).not.toHaveReceivedCommand(SendCommandCommand)
  expect(r.fake.mocks.ec2.commandCalls(RegisterImageCommand).filter((c) => !c.args[0].input.DryRun)).toEqual(
    []
  )
  expect(r.ctx.ledger.entries()).toEqual([])
}

describe('bundle preflight', () => {
  it('refuses a bucket with ACLs disabled (BucketOwnerEnforced), saying how to enable them', async () => {
    const r = await preflight({ ownership: 'BucketOwnerEnforced' })
    expectNothingCreated(r)
    expect(r.message).toContain('BucketOwnerEnforced')
    expect(r.message).toContain('aws-exec-read')
    expect(r.message).toMatch(/ObjectWriter or BucketOwnerPreferred/)
    expect(r.message).toContain(`put-bucket-ownership-controls --bucket ${BUCKET}`)
  })

  it.each(['BucketOwnerPreferred', 'ObjectWriter'])('accepts Object Ownership %s', async (ownership) => {
    const r = await preflight({ ownership }, { 'dry-run': 'true' })
    expect(r.result.ok).toBe(true)
  })

  it('warns but goes on when the Object Ownership cannot be read', async () => {
    const fake = bundleAccount()
    fake.mocks.s3.on(GetBucketOwnershipControlsCommand).rejects(serviceError('AccessDenied'))
    const log = testLog()
    const settings = bundleSettings({ 'dry-run': 'true' })
    const ctx = runContext(settings, fake.clients, log)
    const result = await runPipeline(planSteps(settings), ctx, { remove: async () => {}, log })
    expect(result.ok).toBe(true)
    expect(log.warnings[0]).toMatch(/GetBucketOwnershipControls denied/)
  })

  it('refuses a bucket in another region, naming both', async () => {
    const r = await preflight({ bucketRegion: 'us-west-2' })
    expectNothingCreated(r)
    expect(r.message).toBe(
      `The bucket '${BUCKET}' is in us-west-2, not in eu-west-1 where the source instance runs; ec2-upload-bundle and RegisterImage need a bucket in the instance's region: use a bucket in eu-west-1 (s3-bucket)`
    )
  })

  it('reads an empty location constraint as us-east-1 and EU as eu-west-1', async () => {
    expect(bucketRegion(null)).toBe('us-east-1')
    expect(bucketRegion('')).toBe('us-east-1')
    expect(bucketRegion(undefined)).toBe('us-east-1')
    expect(bucketRegion('EU')).toBe('eu-west-1')
    expect(bucketRegion('ap-south-1')).toBe('ap-south-1')
    const r = await preflight({ bucketRegion: null })
    expect(r.message).toMatch(/is in us-east-1, not in eu-west-1/)
    const eu = await preflight({ bucketRegion: 'EU' }, { 'dry-run': 'true' })
    expect(eu.result.ok).toBe(true)
  })

  it('reports a missing bucket with the command that creates it', async () => {
    const r = await preflight({}, { 's3-bucket': 'no-such-bucket' })
    expectNothingCreated(r)
    expect(r.message).toContain("The bucket 'no-such-bucket' (s3-bucket) does not exist")
    expect(r.message).toContain('aws s3 mb s3://no-such-bucket --region eu-west-1')
  })

  it('reports a redirect as the wrong region', async () => {
    const fake = bundleAccount()
    fake.mocks.s3.on(GetBucketLocationCommand).rejects(
      Object.assign(serviceError('PermanentRedirect'), {
        $response: { headers: { 'x-amz-bucket-region': 'us-east-2' } }
      })
    )
    const settings = bundleSettings()
    const ctx = runContext(settings, fake.clients)
    const result = await runPipeline(planSteps(settings), ctx, { remove: async () => {}, log: ctx.log })
    expect(messageOf(result.error)).toMatch(/is in us-east-2, not in eu-west-1/)
  })

  it('refuses a prefix that already holds a bundle, unless if-bundle-exists: overwrite', async () => {
    const objects = [MANIFEST_KEY, ...PART_KEYS]
    const r = await preflight({ objects })
    expectNothingCreated(r)
    expect(r.message).toBe(
      `s3://${BUCKET}/${PREFIX}/ already holds a bundle (s3://${BUCKET}/${MANIFEST_KEY}); choose another s3-prefix, remove that bundle, or set if-bundle-exists: overwrite`
    )
    const other = await preflight({ objects: [`${PREFIX}/old.manifest.xml`] })
    expect(other.message).toContain(`s3://${BUCKET}/${PREFIX}/old.manifest.xml`)
    const overwrite = await preflight({ objects }, { 'if-bundle-exists': 'overwrite', 'dry-run': 'true' })
    expect(overwrite.result.ok).toBe(true)
    expect((overwrite.ctx.log as TestLog).warnings).toEqual([
      expect.stringMatching(
        /overwrite replaces it, and if this run fails the bundle there is removed unless keep-bundle/
      )
    ])
  })

  it('ignores bundles in other folders and objects that are not manifests', async () => {
    const r = await preflight(
      {
        objects: [
          `${PREFIX}/notes.txt`,
          `${PREFIX}/older/image.manifest.xml`,
          `${PREFIX}-2/image.manifest.xml`
        ]
      },
      { 'dry-run': 'true' }
    )
    expect(r.result.ok).toBe(true)
  })

  it('refuses an EBS-backed source, pointing to CreateImage', async () => {
    const r = await preflight({ instance: sourceInstance({ RootDeviceType: 'ebs' }) })
    expectNothingCreated(r)
    expect(r.message).toMatch(/has an ebs root device, not instance-store: it is already EBS-backed/)
    expect(r.message).toContain(`aws ec2 create-image --instance-id ${INSTANCE}`)
  })

  it('refuses a source that is not running', async () => {
    const r = await preflight({ instance: sourceInstance({ State: { Name: 'stopped' } }) })
    expectNothingCreated(r)
    expect(r.message).toMatch(new RegExp(`^The source instance ${INSTANCE} is stopped, not running`))
  })

  it('refuses a source that does not exist', async () => {
    const r = await preflight({}, { 'source-instance-id': 'i-0000000000000000f' })
    expectNothingCreated(r)
    expect(r.message).toBe(
      'The source instance i-0000000000000000f does not exist in eu-west-1; check source-instance-id and region'
    )
  })

  it.each([
    ['ConnectionLost', 'is ConnectionLost in SSM'],
    ['unknown', 'is not known to SSM']
  ])('refuses a source that SSM sees as %s, with what makes it online', async (pingStatus, said) => {
    const r = await preflight({ pingStatus })
    expectNothingCreated(r)
    expect(r.message).toContain(`The source instance ${INSTANCE} ${said}`)
    expect(r.message).toContain('AmazonSSMManagedInstanceCore')
  })

  it('says that an Ubuntu 10.04 source cannot run the SSM agent (kernel 3.2 or later)', async () => {
    const fake = bundleAccount({
      pingStatus: 'unknown',
      instance: sourceInstance({ ImageId: 'ami-0000000000000a1cd' })
    })
    fake.account.images.set('ami-0000000000000a1cd', {
      settle: 0,
      value: {
        ImageId: 'ami-0000000000000a1cd',
        Name: 'ubuntu/images/ubuntu-lucid-10.04-amd64-server-20150427',
        State: 'available'
      }
    })
    const settings = bundleSettings()
    const ctx = runContext(settings, fake.clients)
    const result = await runPipeline(planSteps(settings), ctx, {
      remove: resourceRemover(fake.clients, { pollDelayMs: 1 }),
      log: ctx.log
    })
    expect(result.ok).toBe(false)
    const message = result.ok ? '' : messageOf(result.error)
    expect(message).toBe(
      `The source instance ${INSTANCE} is not known to SSM and its AMI ami-0000000000000a1cd is 'ubuntu/images/ubuntu-lucid-10.04-amd64-server-20150427': the SSM agent needs Linux kernel 3.2 or later, so sources older than Ubuntu 12.04 (10.04 runs 2.6.32) cannot be bundled through SSM: bundle those by hand with ec2-bundle-vol (see the README, "Sources the action cannot reach")`
    )
    expect(ctx.ledger.entries()).toEqual([])
  })

  it('names the kernel requirement too when the AMI does not tell the release', async () => {
    const r = await preflight({
      pingStatus: 'ConnectionLost',
      instance: sourceInstance({ ImageId: 'ami-0000000000000dead' })
    })
    expectNothingCreated(r)
    expect(r.message).toContain('AmazonSSMManagedInstanceCore')
    expect(r.message).toContain('the SSM agent needs Linux kernel 3.2 or later')
  })

  it('refuses an hvm root device ec2-bundle-vol cannot map', async () => {
    const r = await preflight({ instance: sourceInstance({ RootDeviceName: '/dev/sdf' }) })
    expectNothingCreated(r)
    expect(r.message).toMatch(/set root-device-name to one of them/)
  })

  it('refuses an instance-store AMI name that is taken', async () => {
    const fake = bundleAccount()
    fake.account.images.set('ami-0bbbbbbbbbbbbbbb2', {
      settle: 0,
      value: { ImageId: 'ami-0bbbbbbbbbbbbbbb2', Name: 'web-instance-store', State: 'available' }
    })
    const settings = bundleSettings()
    const ctx = runContext(settings, fake.clients)
    const result = await runPipeline(planSteps(settings), ctx, { remove: async () => {}, log: ctx.log })
    expect(messageOf(result.error)).toMatch(
      /An AMI named 'web-instance-store' already exists \(ami-0bbbbbbbbbbbbbbb2\); .*choose another ami-name/
    )
  })

  it('refuses when DryRun says RegisterImage is not allowed', async () => {
    const fake = bundleAccount()
    fake.mocks.ec2.on(RegisterImageCommand).rejects(serviceError('UnauthorizedOperation'))
    const settings = bundleSettings()
    const ctx = runContext(settings, fake.clients)
    const result = await runPipeline(planSteps(settings), ctx, { remove: async () => {}, log: ctx.log })
    expect(messageOf(result.error)).toMatch(/not allowed to call ec2:RegisterImage/)
    expect(fake.mocks.ssm).not.toHaveReceivedCommand(PutParameterCommand)
  })
})
