import { afterEach, describe, expect, it } from '@jest/globals'
import { EC2Client } from '@aws-sdk/client-ec2'
import { S3Client } from '@aws-sdk/client-s3'
import { SSMClient } from '@aws-sdk/client-ssm'
import { mockClient } from 'aws-sdk-client-mock'
import { main } from '../src/main.js'
import { captureStdout } from './__fixtures__/capture.js'
import { convertInputs, setActionInputs } from './__fixtures__/inputs.js'
import { runnerFiles, withEnv } from './__fixtures__/runner-files.js'

afterEach(() => {
  process.exitCode = undefined
})

describe('main with bad inputs', () => {
  it('fails with every problem named, before any AWS call', async () => {
    const mocks = [mockClient(EC2Client), mockClient(SSMClient), mockClient(S3Client)]
    const files = runnerFiles()
    const undo = setActionInputs({ ...convertInputs, 'volume-size': 'huge', 'if-ami-exists': 'sometimes' })
    const { result, out } = await captureStdout(() => withEnv(files.env, () => main())).finally(undo)
    expect(result).toBeUndefined()
    const error = out.find((l) => l.startsWith('::error::')) ?? ''
    expect(error).toContain("'volume-size': 'huge' is not valid; expected a whole number from 1 to 16384")
    expect(error).toContain("'if-ami-exists': 'sometimes'")
    expect(process.exitCode).toBe(1)
    for (const m of mocks) {
      expect(m.calls()).toHaveLength(0)
      m.restore()
    }
  })
})

describe('main with short-lived credentials', () => {
  it('warns with the role-duration-seconds advice before running any step', async () => {
    const mocks = [mockClient(EC2Client), mockClient(SSMClient), mockClient(S3Client)]
    const files = runnerFiles()
    const undo = setActionInputs({ ...convertInputs, 'timeout-minutes': '90' })
    const { out } = await captureStdout(() =>
      withEnv(
        {
          ...files.env,
          AWS_ACCESS_KEY_ID: 'AKIDEXAMPLE',
          AWS_SECRET_ACCESS_KEY: 'secret',
          AWS_SESSION_TOKEN: 'token',
          AWS_CREDENTIAL_EXPIRATION: new Date(Date.now() + 20 * 60000).toISOString()
        },
        () => main({ pollDelayMs: 1 })
      )
    ).finally(() => {
      undo()
      for (const m of mocks) m.restore()
    })
    const warnings = out.filter((l) => l.startsWith('::warning::'))
    const first = out.findIndex((l) => l.startsWith('::warning::The AWS credentials expire'))
    const firstGroup = out.findIndex((l) => l.startsWith('::group::'))
    expect(warnings.join('')).toContain('role-duration-seconds: 8100')
    expect(first).toBeGreaterThanOrEqual(0)
    expect(first).toBeLessThan(firstGroup)
  })
})
