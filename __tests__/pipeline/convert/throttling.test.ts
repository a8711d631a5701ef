// A throttling storm: every third call of every operation answers RequestLimitExceeded. The
// fake account answers from below the SDK's retry middleware, so the SDK's standard retry
// strategy (given a 1 ms backoff to keep the test fast) is what carries the run through.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals'
import { ConfiguredRetryStrategy } from '@smithy/core/retry'
import { makeClients } from '../../../src/aws/clients.js'
import { FakeAccount, REGION, wireAccount } from '../../__fixtures__/aws-account.js'
import { convertWithLaunch, runConvert } from '../../__fixtures__/convert-run.js'

const saved = { ...process.env }
beforeAll(() => {
  // Requests are signed as usual before the fake answers them.
  process.env.AWS_ACCESS_KEY_ID = 'AKIAIOSFODNN7EXAMPLE'
  process.env.AWS_SECRET_ACCESS_KEY = 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY'
  delete process.env.AWS_SESSION_TOKEN
  delete process.env.AWS_PROFILE
})
afterAll(() => {
  process.env = saved
})

describe('convert: throttling storm', () => {
  it('completes with the SDK standard retry when a third of all calls are throttled', async () => {
    const account = new FakeAccount()
    account.throttleEvery = 3
    const clients = makeClients({
      region: REGION,
      maxAttempts: 8,
      retryStrategy: new ConfiguredRetryStrategy(8, 1)
    })
    wireAccount(clients, account)
    const { result, ctx } = await runConvert(convertWithLaunch, { clients })
    expect(result.error).toBeUndefined()
    expect(result.ok).toBe(true)

    const throttled = account.calls.filter((c) => c.throttled)
    expect(throttled.length).toBeGreaterThanOrEqual(15)
    expect(throttled.length / account.calls.length).toBeGreaterThan(0.25)
    // The storm hit the calls that create and remove things too.
    const hit = new Set(throttled.map((c) => c.op))
    for (const op of ['DescribeVolumes', 'DescribeImages', 'GetCommandInvocation', 'HeadObject'])
      expect(hit).toContain(op)

    // Only the product is left; the temporaries went despite the storm.
    expect(account.leftovers()).toEqual([
      `image ${ctx.outputs['ami-id']}`,
      `snapshot ${ctx.outputs['snapshot-id']}`
    ])
    expect(account.instances.get(account.created[0]?.id ?? '')?.value.State?.Name).toBe('terminated')
    expect(result.cleanup.problems).toEqual([])
  })

  it('without retries the same storm fails, so the test above is not vacuous', async () => {
    const account = new FakeAccount()
    account.throttleEvery = 3
    const clients = makeClients({ region: REGION, maxAttempts: 1 })
    wireAccount(clients, account)
    const { result } = await runConvert(convertWithLaunch, { clients })
    expect(result.ok).toBe(false)
    expect(result.failedStep).toMatch(/^preflight/)
    expect(String(result.error)).toMatch(/RequestLimitExceeded|Request limit exceeded/)
  })
})
