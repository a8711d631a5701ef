// Each contract rule accepts its passing request and refuses its failing one with its own message,
// and the mocked clients of every test apply them (contract-setup.ts).
import { describe, expect, it } from '@jest/globals'
import { RegisterImageCommand, EC2Client } from '@aws-sdk/client-ec2'
import { mockClient } from 'aws-sdk-client-mock'
import { checkRequest, RULES, ruleCounts } from '../../tools/aws-contract.mjs'
import { takeViolations } from '../__fixtures__/contract.js'

describe('contract rules', () => {
  it('have unique ids, an operation, a source and a sentence', () => {
    const ids = RULES.map((r) => r.id)
    expect(new Set(ids).size).toBe(ids.length)
    for (const r of RULES) {
      expect(r.id.startsWith(`${r.operation}.`)).toBe(true)
      expect(r.source).toMatch(/^https:\/\/docs\.aws\.amazon\.com\//)
      expect(r.sentence.length).toBeGreaterThan(30)
    }
  })

  it.each(RULES.map((r) => [r.id, r] as const))('%s accepts its passing request', (_id, rule) => {
    expect(rule.check(rule.pass)).toBeUndefined()
    // The passing request keeps every other rule of its operation too: it is a real, valid request.
    expect(checkRequest(rule.operation, rule.pass).map((v) => v.message)).toEqual([])
  })

  it.each(RULES.map((r) => [r.id, r] as const))('%s refuses its failing request', (_id, rule) => {
    const problem = rule.check(rule.fail)
    expect(typeof problem).toBe('string')
    const own = checkRequest(rule.operation, rule.fail).find((v) => v.rule.id === rule.id)
    expect(own?.message).toContain(`AWS contract rule ${rule.id} broken`)
    expect(own?.message).toContain(rule.sentence)
  })

  it('cover every operation the action sends', () => {
    expect(Object.keys(ruleCounts()).sort()).toEqual(
      [
        'AttachVolume',
        'CreateSnapshot',
        'CreateTags',
        'CreateVolume',
        'DeleteObjects',
        'DeleteSnapshot',
        'DeleteVolume',
        'DeregisterImage',
        'DetachVolume',
        'GetBucketLocation',
        'GetBucketOwnershipControls',
        'GetObject',
        'HeadObject',
        'ListObjectsV2',
        'PutObject',
        'PutParameter',
        'RegisterImage',
        'RunInstances',
        'SendCommand'
      ].sort()
    )
  })
})

describe('a mocked client', () => {
  it('refuses a request that breaks a rule with the rule’s message, and the test is told', async () => {
    const ec2 = mockClient(EC2Client)
    ec2.on(RegisterImageCommand).resolves({ ImageId: 'ami-0123456789abcdef0' })
    const rule = RULES.find((r) => r.id === 'RegisterImage.tag-resource-type')
    if (!rule) throw new Error('no rule')
    try {
      const client = new EC2Client({ region: 'us-east-1' })
      await expect(client.send(new RegisterImageCommand(rule.fail as never))).rejects.toThrow(
        /AWS contract rule RegisterImage\.tag-resource-type broken: TagSpecifications has ResourceType 'snapshot'/
      )
      expect(takeViolations().map((v) => v.rule.id)).toEqual(['RegisterImage.tag-resource-type'])
      await expect(client.send(new RegisterImageCommand(rule.pass as never))).resolves.toMatchObject({
        ImageId: 'ami-0123456789abcdef0'
      })
      // The refused request never reached the mock, as a refused request never reaches AWS.
      expect(ec2).toHaveReceivedCommandTimes(RegisterImageCommand, 1)
    } finally {
      ec2.restore()
    }
  })
})
