// Failure at every bundle step that creates something: exactly what is removed, and what stays.
import { describe, expect, it } from '@jest/globals'
import { DeregisterImageCommand, RegisterImageCommand } from '@aws-sdk/client-ec2'
import { DeleteObjectsCommand, ListObjectsV2Command } from '@aws-sdk/client-s3'
import {
  CancelCommandCommand,
  DeleteParameterCommand,
  GetCommandInvocationCommand,
  PutParameterCommand,
  SendCommandCommand
} from '@aws-sdk/client-ssm'
import { Ledger } from '../../../src/pipeline/ledger.js'
import { planSteps } from '../../../src/pipeline/plan.js'
import { resourceRemover } from '../../../src/pipeline/resources.js'
import { runPipeline } from '../../../src/pipeline/runner.js'
import { messageOf } from '../../../src/errors.js'
import { failureLine } from '../../../src/report/failure.js'
import {
  type AccountOptions,
  BUCKET,
  type MockedBundle,
  bundleAccount,
  bundleSettings,
  cleanupDone,
  MANIFEST_KEY,
  MANIFEST_URL,
  NEW_IMAGE,
  PART_KEYS,
  PREFIX,
  runContext,
  type TestLog
} from '../../__fixtures__/bundle-account.js'
import { serviceError } from '../../__fixtures__/errors.js'

async function run(fake: MockedBundle, over: Record<string, string> = {}, abort?: AbortController) {
  const settings = bundleSettings(over)
  const ctx = runContext(settings, fake.clients)
  if (abort) ctx.signal = abort.signal
  const saved: string[] = []
  // The ledger as the runner's state sees it, to prove what post would find after a crash.
  ctx.ledger = new Ledger(settings.region, [], (json) => saved.push(json))
  const result = await runPipeline(planSteps(settings), ctx, {
    remove: resourceRemover(fake.clients, { pollDelayMs: 1 }),
    log: ctx.log
  })
  return { ctx, result, saved, message: messageOf(result.error) }
}

const parameterNames = (fake: MockedBundle): string[] =>
  fake.mocks.ssm.commandCalls(PutParameterCommand).map((c) => c.args[0].input.Name as string)

const deletedParameters = (fake: MockedBundle): string[] =>
  fake.mocks.ssm.commandCalls(DeleteParameterCommand).map((c) => c.args[0].input.Name as string)

const ALL_BUNDLE_KEYS = [MANIFEST_KEY, ...PART_KEYS]

function expectBundleRemoved(fake: MockedBundle, keys = ALL_BUNDLE_KEYS): void {
  expect(fake.mocks.s3).toHaveReceivedCommandWith(ListObjectsV2Command, {
    Bucket: BUCKET,
    Prefix: `${PREFIX}/image.`
  })
  expect(fake.mocks.s3).toHaveReceivedCommandTimes(DeleteObjectsCommand, 1)
  expect(fake.mocks.s3).toHaveReceivedCommandWith(DeleteObjectsCommand, {
    Bucket: BUCKET,
    Delete: { Objects: keys.map((Key) => ({ Key })), Quiet: true }
  })
  expect(fake.account.bundleKeys().length).toBe(0)
}

const failedUpload = (uploaded: string[]): AccountOptions['bundle'] => ({
  exitCode: 8,
  uploaded,
  stdout: [
    '::result services_restarted=jenkins,redis-server',
    'ec2-upload-bundle failed (exit 3); its last lines:',
    '  | Signature version 4 authentication failed, trying different signature version',
    '  | ERROR: Error talking to S3: Server.NotImplemented(501): A header you provided implies functionality that is not implemented',
    '::fail ec2-upload-bundle failed (exit 3): Server.NotImplemented(501): A header you provided implies functionality that is not implemented',
    ''
  ].join('\n')
})

describe('cleanup after a failed bundle run', () => {
  it('certificate parameter refused: nothing was made, nothing is removed', async () => {
    const fake = bundleAccount()
    fake.mocks.ssm
      .on(PutParameterCommand)
      .rejects(serviceError('AccessDeniedException', 'not authorized to perform ssm:PutParameter'))
    const { result, message } = await run(fake)
    expect(result.failedStep).toBe('bundle key material')
    expect(message).toMatch(
      /^Could not store the certificate \(x509-certificate\) in the temporary SecureString parameter/
    )
    expect(message).toMatch(/allow ssm:PutParameter/)
    expect(fake.mocks.ssm).not.toHaveReceivedCommand(DeleteParameterCommand)
    expect(fake.mocks.ssm).not.toHaveReceivedCommand(SendCommandCommand)
    expect(result.cleanup).toEqual({ removed: [], kept: [], problems: [] })
  })

  it('key parameter refused: the certificate parameter is deleted', async () => {
    const fake = bundleAccount()
    fake.mocks.ssm
      .on(PutParameterCommand)
      .callsFakeOnce((input: { Name: string; Value: string }) => {
        fake.account.parameters.set(input.Name, { Type: 'SecureString', Value: input.Value })
        return { Version: 1 }
      })
      .rejectsOnce(serviceError('ParameterLimitExceeded'))
    const { result, message } = await run(fake)
    expect(result.failedStep).toBe('bundle key material')
    expect(message).toMatch(/Could not store the private key \(x509-private-key\) .*ParameterLimitExceeded/)
    const [cert] = parameterNames(fake)
    expect(deletedParameters(fake)).toEqual([cert])
    expect(fake.account.parameters.size).toBe(0)
    expect(fake.mocks.ssm).not.toHaveReceivedCommand(SendCommandCommand)
  })

  it('remote bundle command fails mid-upload: parameters deleted, the partial upload removed, the fix given once', async () => {
    const fake = bundleAccount({ bundle: failedUpload([`${PREFIX}/image.part.00`]) })
    const { result, message, ctx } = await run(fake)
    expect(result.failedStep).toBe('bundle and upload')
    expect(message).toContain('failed: ec2-upload-bundle failed (exit 3): Server.NotImplemented(501)')
    // The parameters go although the script failed (bundle.sh restarts the services itself).
    expect(deletedParameters(fake).sort()).toEqual(parameterNames(fake).sort())
    expect(fake.account.parameters.size).toBe(0)
    expectBundleRemoved(fake, [`${PREFIX}/image.part.00`])
    expect(fake.mocks.ec2.commandCalls(RegisterImageCommand).filter((c) => !c.args[0].input.DryRun)).toEqual(
      []
    )
    expect(fake.mocks.ec2).not.toHaveReceivedCommand(DeregisterImageCommand)
    expect(result.cleanup.removed).toEqual([
      // a failed command may have been killed (OOM) before its trap: cleanup.sh goes too
      expect.stringMatching(/^remote-undo \/var\/tmp\/instance-to-ebs\/[0-9a-f-]+\.journal$/),
      `bundle ${MANIFEST_URL}`,
      `parameter ${parameterNames(fake)[1]}`,
      `parameter ${parameterNames(fake)[0]}`
    ])
    const line = failureLine(result)
    expect(line.match(/Fix: /g)).toHaveLength(1)
    expect(line).toContain('Fix: Check that the bucket is in the action region')
    expect(
      (ctx.log as TestLog).lines.some((l) => /^Likely cause: S3 refused the SigV4-signed upload/.test(l))
    ).toBe(true)
  })

  it('the bundle is in the saved ledger before the command is sent, so post can remove a partial upload', async () => {
    const fake = bundleAccount()
    let ledgerAtSend: string | undefined
    let savedRef: string[] = []
    fake.mocks.ssm.on(SendCommandCommand).callsFake(() => {
      ledgerAtSend = savedRef.at(-1)
      return { Command: { CommandId: 'cmd-1' } }
    })
    fake.mocks.ssm
      .on(GetCommandInvocationCommand)
      .resolves({ Status: 'Failed', StatusDetails: 'Failed', ResponseCode: 1 })
    const settings = bundleSettings()
    const ctx = runContext(settings, fake.clients)
    const saved: string[] = []
    savedRef = saved
    ctx.ledger = new Ledger(settings.region, [], (json) => saved.push(json))
    await runPipeline(planSteps(settings), ctx, { remove: async () => {}, log: ctx.log })
    expect(JSON.parse(ledgerAtSend ?? '[]')).toContainEqual(
      expect.objectContaining({
        kind: 'bundle',
        id: MANIFEST_URL,
        removeOn: 'failure',
        step: 'bundle and upload'
      })
    )
  })

  it('keep-bundle: a failed upload stays in the bucket and is never recorded; the parameters still go', async () => {
    const fake = bundleAccount({ bundle: failedUpload(ALL_BUNDLE_KEYS) })
    const { result, saved } = await run(fake, { 'keep-bundle': 'true' })
    expect(result.failedStep).toBe('bundle and upload')
    expect(fake.mocks.s3).not.toHaveReceivedCommand(DeleteObjectsCommand)
    expect(fake.account.bundleKeys()).toEqual(ALL_BUNDLE_KEYS)
    expect(saved.some((json) => json.includes('"bundle"'))).toBe(false)
    expect(fake.account.parameters.size).toBe(0)
  })

  it('register fails: parameters and the uploaded bundle are removed', async () => {
    const fake = bundleAccount()
    fake.mocks.ec2
      .on(RegisterImageCommand, { DryRun: true })
      .rejects(serviceError('DryRunOperation'))
      .on(RegisterImageCommand, { DryRun: undefined })
      .rejects(serviceError('InvalidManifest', 'HTTP 403 (Forbidden) response for URL'))
    const { result, message } = await run(fake)
    expect(result.failedStep).toBe('register instance-store AMI')
    expect(message).toContain('HTTP 403')
    expectBundleRemoved(fake)
    expect(fake.account.parameters.size).toBe(0)
    expect(deletedParameters(fake)).toHaveLength(2)
    expect(fake.mocks.ec2).not.toHaveReceivedCommand(DeregisterImageCommand)
  })

  it('register fails with keep-bundle: the bundle stays', async () => {
    const fake = bundleAccount()
    fake.mocks.ec2
      .on(RegisterImageCommand, { DryRun: true })
      .rejects(serviceError('DryRunOperation'))
      .on(RegisterImageCommand, { DryRun: undefined })
      .rejects(serviceError('InvalidManifest'))
    await run(fake, { 'keep-bundle': 'true' })
    expect(fake.mocks.s3).not.toHaveReceivedCommand(DeleteObjectsCommand)
    expect(fake.account.bundleKeys()).toEqual(ALL_BUNDLE_KEYS)
    expect(fake.account.parameters.size).toBe(0)
  })

  it('the AMI fails instead of becoming available: it is deregistered, the bundle and parameters removed', async () => {
    const fake = bundleAccount({
      imageStates: [
        { State: 'pending' },
        { State: 'failed', StateReason: { Message: 'Unable to read manifest' } }
      ]
    })
    const { result, message } = await run(fake)
    expect(result.failedStep).toBe('wait for instance-store AMI')
    expect(message).toContain(
      `${NEW_IMAGE} went to state 'failed' instead of available: Unable to read manifest`
    )
    expect(fake.mocks.ec2).toHaveReceivedCommandTimes(DeregisterImageCommand, 1)
    expect(fake.mocks.ec2).toHaveReceivedCommandWith(DeregisterImageCommand, { ImageId: NEW_IMAGE })
    expectBundleRemoved(fake)
    expect(fake.account.parameters.size).toBe(0)
    const [cert, key] = parameterNames(fake)
    expect(result.cleanup.removed).toEqual([
      `image ${NEW_IMAGE}`,
      `bundle ${MANIFEST_URL}`,
      `parameter ${key}`,
      `parameter ${cert}`
    ])
  })

  it('the AMI fails with keep-bundle: deregistered, the bundle stays', async () => {
    const fake = bundleAccount({ imageStates: [{ State: 'failed' }] })
    await run(fake, { 'keep-bundle': 'true' })
    expect(fake.mocks.ec2).toHaveReceivedCommandWith(DeregisterImageCommand, { ImageId: NEW_IMAGE })
    expect(fake.mocks.s3).not.toHaveReceivedCommand(DeleteObjectsCommand)
    expect(fake.account.bundleKeys().length).toBe(3)
  })

  it('cancelled while bundling: the command is cancelled, the partial upload and parameters removed', async () => {
    const fake = bundleAccount()
    const abort = new AbortController()
    let cancelled = false
    fake.mocks.ssm.on(GetCommandInvocationCommand).callsFake((input: { CommandId?: string }) => {
      if (input.CommandId?.startsWith('cleanup-')) return cleanupDone
      abort.abort()
      return cancelled
        ? { Status: 'Cancelled', StatusDetails: 'Cancelled' }
        : { Status: 'InProgress', StatusDetails: 'InProgress' }
    })
    fake.mocks.ssm.on(CancelCommandCommand).callsFake(() => {
      cancelled = true
      return {}
    })
    const { result } = await run(fake, {}, abort)
    expect(result.cancelled).toBe(true)
    expect(fake.mocks.ssm).toHaveReceivedCommandWith(CancelCommandCommand, { CommandId: 'cmd-1' })
    // SSM's SIGKILL ran no trap: cleanup.sh was sent for the bundle command's journal.
    const journal = /export I2E_JOURNAL='([^']+)'/.exec(
      fake.account.sentCommands[0]?.parameters.commands?.[0] ?? ''
    )?.[1]
    expect(journal).toMatch(/\.journal$/)
    expect(
      fake.account.cleanupCommands.map((c) => c.parameters.commands?.[0]?.trimEnd().split('\n').pop())
    ).toEqual([`bash "$d/cleanup.sh" '--journal' '${journal}'`])
    expectBundleRemoved(fake)
    expect(fake.account.parameters.size).toBe(0)
  })
})
