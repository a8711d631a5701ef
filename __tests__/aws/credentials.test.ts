import { describe, expect, it } from '@jest/globals'
import { EC2Client } from '@aws-sdk/client-ec2'
import { checkCredentialLifetime, runMinutes, suggestedSeconds } from '../../src/aws/credentials.js'
import { captureStdout } from '../__fixtures__/capture.js'

const now = new Date('2026-01-01T12:00:00Z')
const inMinutes = (m: number) => new Date(now.getTime() + m * 60000)

const clientsWith = (credentials: () => Promise<unknown>) => {
  const ec2 = new EC2Client({ region: 'us-east-1' })
  ec2.config.credentials = credentials as typeof ec2.config.credentials
  return { ec2 }
}
const keys = (expiration?: Date) =>
  clientsWith(async () => ({ accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'x', expiration }))

const convert = { mode: 'convert' as const, timeoutMinutes: 120, dryRun: false }

describe('runMinutes', () => {
  it('allows timeout-minutes per remote command plus the waits', () => {
    expect(runMinutes(convert)).toBe(145)
    expect(runMinutes({ ...convert, mode: 'bundle' })).toBe(145)
    expect(runMinutes({ ...convert, mode: 'full' })).toBe(265)
    expect(runMinutes({ ...convert, dryRun: true })).toBe(5)
  })

  it('suggests whole quarter hours, at most 12 h', () => {
    expect(suggestedSeconds(145)).toBe(9900)
    expect(suggestedSeconds(5000)).toBe(43200)
  })
})

const session = (expiration?: Date) =>
  clientsWith(async () => ({
    accessKeyId: 'ASIAEXAMPLE',
    secretAccessKey: 'x',
    sessionToken: 'token',
    expiration
  }))

describe('checkCredentialLifetime with aws-actions/configure-aws-credentials (no expiry in the credentials)', () => {
  it('takes the expiry from the credentials-expiration input', async () => {
    const warnings: string[] = []
    const r = await checkCredentialLifetime(
      session(),
      { ...convert, credentialsExpiration: inMinutes(60) },
      now,
      (m) => warnings.push(m)
    )
    expect(r).toMatchObject({ source: 'input', expiresAt: inMinutes(60) })
    expect(warnings).toHaveLength(1)
    expect(warnings[0]).toContain('expire at 2026-01-01T13:00:00.000Z, in 60 min')
    expect(warnings[0]).toContain('role-duration-seconds: 9900')
  })

  it('without the input, takes session credentials of unknown age to last the 1-hour OIDC default', async () => {
    const warnings: string[] = []
    const r = await checkCredentialLifetime(session(), convert, now, (m) => warnings.push(m))
    expect(r).toMatchObject({ source: 'assumed', expiresAt: inMinutes(60) })
    expect(warnings).toHaveLength(1)
    expect(warnings[0]).toContain('session credentials of unknown age')
    expect(warnings[0]).toContain(
      ['credentials-expiration: $', '{{ steps.<id>.outputs.aws-expiration }}'].join('')
    )
  })

  it('says nothing when the input gives enough time, or for long-term keys', async () => {
    const warnings: string[] = []
    await checkCredentialLifetime(
      session(),
      { ...convert, credentialsExpiration: inMinutes(300) },
      now,
      (m) => warnings.push(m)
    )
    await checkCredentialLifetime(keys(), convert, now, (m) => warnings.push(m))
    expect(warnings).toEqual([])
  })
})

describe('checkCredentialLifetime', () => {
  it('warns before starting when a one-hour OIDC session is shorter than the run', async () => {
    const warnings: string[] = []
    const r = await checkCredentialLifetime(keys(inMinutes(60)), convert, now, (m) => warnings.push(m))
    expect(r.neededMinutes).toBe(145)
    expect(warnings).toHaveLength(1)
    expect(warnings[0]).toContain('expire at 2026-01-01T13:00:00.000Z, in 60 min')
    expect(warnings[0]).toContain('may take up to 145 min')
    expect(warnings[0]).toContain('role-duration-seconds: 9900')
    expect(warnings[0]).toContain('MaxSessionDuration')
    expect(warnings[0]).toContain('lower timeout-minutes')
  })

  it('counts both remote commands in full mode', async () => {
    const warnings: string[] = []
    await checkCredentialLifetime(keys(inMinutes(200)), { ...convert, mode: 'full' }, now, (m) =>
      warnings.push(m)
    )
    expect(warnings[0]).toContain('two remote commands')
  })

  it('is quiet when the session outlasts the run', async () => {
    const warnings: string[] = []
    const r = await checkCredentialLifetime(keys(inMinutes(180)), convert, now, (m) => warnings.push(m))
    expect(warnings).toEqual([])
    expect(r.expiresAt).toEqual(inMinutes(180))
    expect(r.warning).toBeUndefined()
  })

  it('is quiet for credentials without expiry and for a dry run with an hour left', async () => {
    const warnings: string[] = []
    await checkCredentialLifetime(keys(), convert, now, (m) => warnings.push(m))
    await checkCredentialLifetime(keys(inMinutes(60)), { ...convert, dryRun: true }, now, (m) =>
      warnings.push(m)
    )
    expect(warnings).toEqual([])
  })

  it('says 0 min for credentials that already expired', async () => {
    const warnings: string[] = []
    await checkCredentialLifetime(keys(inMinutes(-3)), { ...convert, dryRun: true }, now, (m) =>
      warnings.push(m)
    )
    expect(warnings[0]).toContain('in 0 min')
    expect(warnings[0]).toContain('a dry run')
    expect(warnings[0]).not.toContain('timeout-minutes')
  })

  it('leaves missing credentials to the first AWS call', async () => {
    const warnings: string[] = []
    const r = await checkCredentialLifetime(
      clientsWith(async () => {
        throw new Error('Could not load credentials from any providers')
      }),
      convert,
      now,
      (m) => warnings.push(m)
    )
    expect(r).toEqual({ neededMinutes: 145 })
    expect(warnings).toEqual([])
  })

  it('warns through core.warning by default', async () => {
    const { out } = await captureStdout(() => checkCredentialLifetime(keys(inMinutes(10)), convert, now))
    expect(out.join('')).toMatch(/^::warning::The AWS credentials expire/m)
  })
})
