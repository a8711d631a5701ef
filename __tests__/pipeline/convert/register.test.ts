// The register step against the AWS contract: RegisterImage tags only the image (finding 1 of
// issue 10), preflight's DryRun probes send the real requests' shape, and if-ami-exists: replace
// destroys nothing of the user's before the new AMI exists.
import { afterEach, beforeEach, describe, expect, it } from '@jest/globals'
import type { RegisterImageCommandInput } from '@aws-sdk/client-ec2'
import { makeClients } from '../../../src/aws/clients.js'
import { type AccountMocks, FakeAccount, mockAccount, serviceError } from '../../__fixtures__/aws-account.js'
import { takeViolations } from '../../__fixtures__/contract.js'
import { convertWithHelper, runConvert } from '../../__fixtures__/convert-run.js'

let account: FakeAccount
let mocks: AccountMocks

beforeEach(() => {
  account = new FakeAccount()
  mocks = mockAccount(account)
})
afterEach(() => mocks.restore())

const OLD_AMI = 'ami-0cccccccccccccccc'
const OLD_SNAPSHOT = 'snap-0cccccccccccccccc'

/** The structure of a request: its keys, recursively, without the values. */
function shape(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(shape)
  if (value && typeof value === 'object')
    return Object.fromEntries(
      Object.entries(value)
        .filter(([, v]) => v !== undefined)
        .sort(([a], [b]) => a.localeCompare(b))
        .map(([k, v]) => [k, shape(v)])
    )
  return typeof value
}

const without = (input: Record<string, unknown>, ...keys: string[]) =>
  Object.fromEntries(Object.entries(input).filter(([k]) => !keys.includes(k)))

describe('RegisterImage', () => {
  it('tags only the image (the snapshot is tagged by CreateSnapshot), keeping every contract rule', async () => {
    const { result, ctx } = await runConvert(convertWithHelper)
    expect(result.error).toBeUndefined()
    const register = account.callsOf('RegisterImage').filter((i) => !i.DryRun)
    expect(register).toHaveLength(1)
    expect(register[0]?.TagSpecifications).toEqual([
      {
        ResourceType: 'image',
        Tags: [
          { Key: 'Name', Value: 'legacy-web-ebs' },
          { Key: 'instance-to-ebs:run', Value: '4242-1-a1b2c3d4' }
        ]
      }
    ])
    expect(account.callsOf('CreateSnapshot')[0]?.TagSpecifications[0].ResourceType).toBe('snapshot')
    expect(ctx.outputs['ami-id']).toMatch(/^ami-/)
  })

  it('with the snapshot tag specification put back, the run fails with the contract rule’s own message', async () => {
    // Put back what register.ts sent before issue 10: TagSpecifications for image AND snapshot.
    const clients = makeClients({ region: 'us-east-1', maxAttempts: 1 })
    const send = clients.ec2.send.bind(clients.ec2)
    clients.ec2.send = ((command: { constructor: { name: string }; input: RegisterImageCommandInput }) => {
      if (command.constructor.name === 'RegisterImageCommand')
        command.input.TagSpecifications = [
          ...(command.input.TagSpecifications ?? []),
          { ResourceType: 'snapshot', Tags: [{ Key: 'Name', Value: 'legacy-web-ebs' }] }
        ]
      return send(command as never)
    }) as typeof clients.ec2.send
    const { result } = await runConvert(convertWithHelper, { clients })
    expect((result.error as Error).message).toBe(
      `AWS contract rule RegisterImage.tag-resource-type broken: TagSpecifications has ResourceType 'snapshot'; RegisterImage accepts only 'image'. AWS: "To tag the AMI, the value for ResourceType must be image. If you specify another value for ResourceType, the request fails." (https://docs.aws.amazon.com/AWSEC2/latest/APIReference/API_RegisterImage.html)`
    )
    // The DryRun probe broke it first, then the real call: both refused by the rule.
    expect(takeViolations().map((v) => v.rule.id)).toEqual([
      'RegisterImage.tag-resource-type',
      'RegisterImage.tag-resource-type'
    ])
    // Preflight could not prove the permission (the probe was refused for its shape, not for
    // rights), so the run went on and the real call was refused: everything made was removed.
    expect(result.failedStep).toBe('register')
    expect(account.leftovers()).toEqual([])
  })

  it('preflight probes send the same request shape as the real calls', async () => {
    const { result } = await runConvert({
      ...convertWithHelper,
      'ena-support': 'true',
      'sriov-net-support': 'simple',
      tags: 'team=web'
    })
    expect(result.error).toBeUndefined()
    for (const op of ['RegisterImage', 'CreateVolume', 'CreateSnapshot']) {
      const calls = account.callsOf(op)
      const probe = calls.find((i) => i.DryRun)
      const real = calls.find((i) => !i.DryRun)
      expect(probe).toBeDefined()
      expect([op, shape(without(probe ?? {}, 'DryRun'))]).toEqual([
        op,
        shape(without(real ?? {}, 'ClientToken'))
      ])
    }
  })
})

describe('cleanup after a failed registration', () => {
  it('deletes the snapshot even when EC2 still counts it in use right after DeregisterImage', async () => {
    account.imageOutcome = 'failed'
    account.failOn(
      'DeleteSnapshot',
      serviceError('InvalidSnapshot.InUse', 'The snapshot is currently in use'),
      1
    )
    const { result, warnings } = await runConvert(convertWithHelper)
    expect(result.failedStep).toBe('register')
    expect(account.callsOf('DeleteSnapshot')).toHaveLength(2)
    expect(account.leftovers()).toEqual([])
    expect(warnings).toEqual([])
  })
})

describe('if-ami-exists: replace', () => {
  beforeEach(() => account.addEbsImage(OLD_AMI, 'legacy-web-ebs', OLD_SNAPSHOT))
  const replace = { ...convertWithHelper, 'if-ami-exists': 'replace' }
  const order = () =>
    account.calls
      .filter((c) => !c.input.DryRun && ['RegisterImage', 'DeregisterImage', 'DeleteSnapshot'].includes(c.op))
      .map((c) => `${c.op} ${c.input.Name ?? c.input.ImageId ?? c.input.SnapshotId}`)

  it('registers under a temporary name first; the old AMI goes only once the new one is available', async () => {
    const { result, ctx } = await runConvert(replace)
    expect(result.error).toBeUndefined()
    const newAmi = ctx.outputs['ami-id'] as string
    const temporary = account.callsOf('RegisterImage').filter((i) => !i.DryRun)[0]
    expect(order()).toEqual([
      'RegisterImage legacy-web-ebs (instance-to-ebs 4242-1-a1b2c3d4)',
      `DeregisterImage ${OLD_AMI}`,
      'RegisterImage legacy-web-ebs',
      expect.stringMatching(/^DeregisterImage ami-/),
      `DeleteSnapshot ${OLD_SNAPSHOT}`
    ])
    // The temporary AMI was available before the old one was deregistered.
    const firstDeregister = account.calls.findIndex((c) => c.op === 'DeregisterImage')
    const describedAvailable = account.calls.findIndex(
      (c, n) => n < firstDeregister && c.op === 'DescribeImages' && c.input.ImageIds
    )
    expect(describedAvailable).toBeGreaterThan(0)
    expect(temporary?.BlockDeviceMappings).toEqual(
      account.callsOf('RegisterImage').at(-1)?.BlockDeviceMappings
    )
    expect(account.leftovers()).toEqual([`image ${newAmi}`, `snapshot ${ctx.outputs['snapshot-id']}`])
    expect(ctx.ledger.entries()).toEqual([])
  })

  it('a refused registration leaves the old AMI and its snapshot untouched', async () => {
    account.failOn('RegisterImage', (i) => (i.DryRun ? undefined : serviceError('InvalidParameterValue')))
    const { result } = await runConvert(replace)
    expect(result.ok).toBe(false)
    expect(account.images.has(OLD_AMI)).toBe(true)
    expect(account.snapshots.has(OLD_SNAPSHOT)).toBe(true)
    expect(
      account
        .callsOf('DeregisterImage')
        .filter((i) => !i.DryRun)
        .map((i) => i.ImageId)
    ).not.toContain(OLD_AMI)
    expect(account.leftovers()).toEqual([])
  })

  it('if the real name then fails, the new image stays under its temporary name, with its snapshot', async () => {
    account.failOn('RegisterImage', (_input, n) =>
      n === 3 ? serviceError('InternalError', 'boom', 500) : undefined
    )
    const { result } = await runConvert({ ...replace, 'max-attempts': '1' })
    const message = (result.error as Error).message
    expect(message).toMatch(
      new RegExp(
        `The old AMI ${OLD_AMI} is deregistered, but registering 'legacy-web-ebs' failed \\(InternalError\\); the new image is available as (ami-\\S+) 'legacy-web-ebs \\(instance-to-ebs 4242-1-a1b2c3d4\\)'`
      )
    )
    const kept = /available as (ami-\S+)/.exec(message)?.[1] as string
    const snapshot = account.created.find((c) => c.kind === 'snapshot')?.id as string
    expect(account.leftovers()).toEqual([`image ${kept}`, `snapshot ${snapshot}`])
    expect(account.snapshots.has(OLD_SNAPSHOT)).toBe(true)
  })

  it('retries InvalidSnapshot.InUse when deleting the old snapshot right after DeregisterImage', async () => {
    account.failOn(
      'DeleteSnapshot',
      serviceError('InvalidSnapshot.InUse', `The snapshot ${OLD_SNAPSHOT} is currently in use by ${OLD_AMI}`),
      2
    )
    const { result, warnings } = await runConvert(replace)
    expect(result.error).toBeUndefined()
    expect(account.snapshots.has(OLD_SNAPSHOT)).toBe(false)
    expect(account.callsOf('DeleteSnapshot').filter((i) => i.SnapshotId === OLD_SNAPSHOT)).toHaveLength(3)
    expect(warnings).toEqual([])
  })
})
