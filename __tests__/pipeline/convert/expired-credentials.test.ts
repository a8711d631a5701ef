// Finding 4 of issue 10: a run that outlives its credentials. Cleanup stops at the first
// expired-token answer instead of failing once per resource, and says what is left and the AWS CLI
// command that removes each.
import { afterEach, beforeEach, describe, expect, it } from '@jest/globals'
import { removalCommand } from '../../../src/pipeline/resources.js'
import { type AccountMocks, FakeAccount, mockAccount, serviceError } from '../../__fixtures__/aws-account.js'
import { convertWithHelper, runConvert } from '../../__fixtures__/convert-run.js'

let account: FakeAccount
let mocks: AccountMocks

beforeEach(() => {
  account = new FakeAccount()
  mocks = mockAccount(account)
})
afterEach(() => mocks.restore())

const REMOVALS = ['CancelCommand', 'DetachVolume', 'DeleteVolume', 'DeleteParameter']

describe('cleanup with expired credentials', () => {
  it('stops at the first expired answer and lists what is left with the command that removes each', async () => {
    account.commandOutcome = {
      Status: 'Failed',
      StatusDetails: 'Failed',
      ResponseCode: 1,
      StandardOutputContent: '::fail the helper ran out of disk\n'
    }
    const expired = serviceError('RequestExpired', 'Request has expired.')
    for (const op of REMOVALS) account.failOn(op, (i) => (i.DryRun ? undefined : expired), 100)
    const { result, warnings, ctx } = await runConvert({ ...convertWithHelper, 'max-attempts': '1' })
    expect(result.failedStep).toBe('write image')
    expect(result.cleanup.credentialsExpired).toBe('RequestExpired')
    // One removal was tried (detaching the volume: the write step's own resource), then nothing more.
    const removals = account.calls.filter((c) => REMOVALS.includes(c.op))
    expect(removals.map((c) => c.op)).toEqual(['DetachVolume'])

    const volume = account.created.find((c) => c.kind === 'volume')?.id as string
    const parameter = account.created.find((c) => c.kind === 'parameter')?.id as string
    const left = warnings.at(-1) as string
    expect(left).toMatch(
      /^The AWS credentials expired \(RequestExpired\) during cleanup; 3 resource\(s\) are left/
    )
    expect(left).toContain(
      `aws ec2 detach-volume --region us-east-1 --volume-id ${volume} --instance-id i-0fedcba9876543210`
    )
    expect(left).toContain(`aws ec2 delete-volume --region us-east-1 --volume-id ${volume}`)
    expect(left).toContain(`aws ssm delete-parameter --region us-east-1 --name ${parameter}`)
    // Detach before delete: the order the commands must run in.
    expect(left.indexOf('detach-volume')).toBeLessThan(left.indexOf('delete-volume'))
    // The ledger keeps them, so the post step tries again with whatever credentials it has.
    expect(
      ctx.ledger
        .entries()
        .map((r) => r.kind)
        .sort()
    ).toEqual(['attachment', 'parameter', 'volume'])
  })
})

describe('removalCommand', () => {
  const r = (kind: never, id: string, detail?: Record<string, string>) => ({
    kind,
    id,
    region: 'eu-west-1',
    removeOn: 'always' as const,
    step: 's',
    detail
  })
  it.each([
    [
      'instance',
      'i-0123456789abcdef0',
      'aws ec2 terminate-instances --region eu-west-1 --instance-ids i-0123456789abcdef0'
    ],
    [
      'snapshot',
      'snap-0123456789abcdef0',
      'aws ec2 delete-snapshot --region eu-west-1 --snapshot-id snap-0123456789abcdef0'
    ],
    [
      'image',
      'ami-0123456789abcdef0',
      'aws ec2 deregister-image --region eu-west-1 --image-id ami-0123456789abcdef0'
    ],
    [
      'bundle',
      's3://my-bundles/builds/web/image.manifest.xml',
      "aws s3 rm --region eu-west-1 s3://my-bundles/builds/web/ --recursive --exclude '*' --include image.manifest.xml --include 'image.part.*'"
    ]
  ])('%s', (kind, id, command) => expect(removalCommand(r(kind as never, id))).toBe(command))
})
