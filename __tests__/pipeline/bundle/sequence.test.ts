// The bundle steps end to end against the fake account: what is called, what exists afterwards.
import { describe, expect, it } from '@jest/globals'
import { GetLogEventsCommand } from '@aws-sdk/client-cloudwatch-logs'
import { DescribeImagesCommand, RegisterImageCommand } from '@aws-sdk/client-ec2'
import { DeleteObjectsCommand } from '@aws-sdk/client-s3'
import {
  DeleteParameterCommand,
  GetCommandInvocationCommand,
  PutParameterCommand,
  SendCommandCommand
} from '@aws-sdk/client-ssm'
import { bundleSteps } from '../../../src/pipeline/bundle/index.js'
import { planSteps } from '../../../src/pipeline/plan.js'
import { resourceRemover } from '../../../src/pipeline/resources.js'
import { runPipeline } from '../../../src/pipeline/runner.js'
import {
  ACCOUNT,
  BUCKET,
  bundleAccount,
  bundleSettings,
  INSTANCE,
  MANIFEST_KEY,
  MANIFEST_URL,
  type MockedBundle,
  NEW_IMAGE,
  PART_KEYS,
  PREFIX,
  REGION,
  runContext,
  sourceInstance,
  type TestLog
} from '../../__fixtures__/bundle-account.js'
import { CERT, KEY } from '../../__fixtures__/inputs.js'

async function run(over: Record<string, string> = {}, fake = bundleAccount()) {
  const settings = bundleSettings(over)
  const ctx = runContext(settings, fake.clients)
  const result = await runPipeline(planSteps(settings), ctx, {
    remove: resourceRemover(fake.clients, { pollDelayMs: 1 }),
    log: ctx.log
  })
  return { fake, ctx, result, settings }
}

/** The bundle.sh arguments: the last line of the command text, after the script name. */
const sentArgs = (fake: MockedBundle): string => {
  const text = fake.account.sentCommands[0]?.parameters.commands?.[0] ?? ''
  return text.trim().split('\n').at(-1) ?? ''
}

describe('bundle mode', () => {
  it('plans the bundle steps', () => {
    expect(planSteps(bundleSettings()).map((s) => s.name)).toEqual(bundleSteps().map((s) => s.name))
  })

  it('bundles, registers and waits; sets the outputs; deletes the parameters and keeps bundle and AMI', async () => {
    const { fake, ctx, result } = await run()
    expect(result.error).toBeUndefined()
    expect(result.ok).toBe(true)
    expect(ctx.outputs).toEqual({
      region: REGION,
      'instance-store-ami-id': NEW_IMAGE,
      'manifest-location': MANIFEST_URL
    })
    // Temporary parameters gone, products kept, nothing left in the ledger for post.
    expect(fake.account.parameters.size).toBe(0)
    expect(fake.mocks.ssm).toHaveReceivedCommandTimes(PutParameterCommand, 2)
    expect(fake.mocks.ssm).toHaveReceivedCommandTimes(DeleteParameterCommand, 2)
    expect(fake.account.bundleKeys()).toEqual([MANIFEST_KEY, ...PART_KEYS].sort())
    expect(fake.mocks.s3).not.toHaveReceivedCommand(DeleteObjectsCommand)
    expect(fake.account.images.has(NEW_IMAGE)).toBe(true)
    expect(result.cleanup.kept.sort()).toEqual([`bundle ${MANIFEST_URL}`, `image ${NEW_IMAGE}`].sort())
    expect(ctx.ledger.entries()).toEqual([])
  })

  it('stores cert and key as SecureStrings and passes only their names to bundle.sh', async () => {
    const { fake } = await run()
    const puts = fake.mocks.ssm.commandCalls(PutParameterCommand).map((c) => c.args[0].input)
    expect(puts.map((p) => [p.Type, p.Value])).toEqual([
      ['SecureString', CERT],
      ['SecureString', KEY]
    ])
    const [certName, keyName] = puts.map((p) => p.Name as string)
    expect(certName).toMatch(/^\/instance-to-ebs\/test-run\/[0-9a-f-]{36}\/x509-certificate$/)
    expect(keyName).toBe('/instance-to-ebs/test-run/x509-key')
    const command = JSON.stringify(fake.mocks.ssm.commandCalls(SendCommandCommand)[0]?.args[0].input)
    for (const secretLine of [...CERT.split('\n'), ...KEY.split('\n')].filter((l) => !l.startsWith('-----')))
      expect(command).not.toContain(secretLine)
    expect(sentArgs(fake)).toBe(
      `bash "$d/bundle.sh" '--virtualization-type' 'hvm' '--architecture' 'x86_64' '--root-device-name' '/dev/sda1' '--account-id' '${ACCOUNT}' '--bucket' '${BUCKET}' '--prefix' '${PREFIX}' '--region' '${REGION}' '--cert-parameter' '${certName}' '--key-parameter' '${keyName}' '--bundle-name' 'image' '--install-prerequisites' 'true' '--stop-services' 'jenkins redis-server' '--exclude' '/var/cache/app'`
    )
  })

  it('sends the command with timeout-minutes and the log group, and shows its output as it comes', async () => {
    const fake = bundleAccount()
    fake.mocks.logs
      .on(GetLogEventsCommand)
      .resolvesOnce({ events: [{ message: 'bundling 2 GiB\n' }], nextForwardToken: 'f/1' })
      .resolves({ events: [{ message: 'uploaded part 1 of 2' }], nextForwardToken: 'f/2' })
      .on(GetLogEventsCommand, { nextToken: 'f/2' })
      .resolves({ events: [], nextForwardToken: 'f/2' })
    const { ctx } = await run({ 'timeout-minutes': '90', 'log-group': '/ci/bundle' }, fake)
    expect(fake.mocks.logs).toHaveReceivedCommandWith(GetLogEventsCommand, {
      logGroupName: '/ci/bundle',
      logStreamName: `cmd-1/${INSTANCE}/aws-runShellScript/stdout`
    })
    const lines = (ctx.log as TestLog).lines
    expect(lines).toContain('│ bundling 2 GiB')
    expect(lines).toContain('│ uploaded part 1 of 2')
    const input = fake.mocks.ssm.commandCalls(SendCommandCommand)[0]?.args[0].input
    expect(input?.InstanceIds).toEqual([INSTANCE])
    expect(input?.Parameters?.executionTimeout).toEqual(['5400'])
    expect(input?.CloudWatchOutputConfig).toEqual({
      CloudWatchOutputEnabled: true,
      CloudWatchLogGroupName: '/ci/bundle'
    })
  })

  it('uses the named parameters as they are, creating and deleting none', async () => {
    const { fake, result } = await run({
      'x509-certificate': '',
      'x509-private-key': '',
      'x509-certificate-parameter': '/ci/x509/cert',
      'x509-private-key-parameter': '/ci/x509/key',
      'install-prerequisites': 'false',
      'fix-menu-lst': 'true'
    })
    expect(result.ok).toBe(true)
    expect(fake.mocks.ssm).not.toHaveReceivedCommand(PutParameterCommand)
    expect(fake.mocks.ssm).not.toHaveReceivedCommand(DeleteParameterCommand)
    expect(sentArgs(fake)).toContain(
      "'--cert-parameter' '/ci/x509/cert' '--key-parameter' '/ci/x509/key' '--bundle-name' 'image' '--install-prerequisites' 'false'"
    )
    expect(sentArgs(fake)).toMatch(/'--fix-menu-lst'$/)
  })

  it('registers a paravirtual image with its kernel, ramdisk, ephemeral disks and tags, and no ENA/SR-IOV (hvm only)', async () => {
    const fake = bundleAccount({
      instance: sourceInstance({
        VirtualizationType: 'paravirtual',
        KernelId: 'aki-0123456789abcdef0',
        RamdiskId: 'ari-0123456789abcdef0',
        EnaSupport: false
      })
    })
    const { result } = await run({ 'ena-support': 'true', tags: 'team=web' }, fake)
    expect(result.ok).toBe(true)
    expect(sentArgs(fake)).toContain(
      "'--virtualization-type' 'paravirtual' '--architecture' 'x86_64' '--account-id'"
    )
    const registers = fake.mocks.ec2.commandCalls(RegisterImageCommand).map((c) => c.args[0].input)
    expect(registers[0]?.DryRun).toBe(true)
    // Preflight's probe is the real request (tags included), with DryRun.
    expect({ ...registers[0], DryRun: undefined }).toEqual(registers[1])
    expect(registers[1]).toEqual({
      Name: 'web-instance-store',
      Description: `instance-to-ebs: bundle of ${INSTANCE}`,
      ImageLocation: `${BUCKET}/${MANIFEST_KEY}`,
      Architecture: 'x86_64',
      VirtualizationType: 'paravirtual',
      KernelId: 'aki-0123456789abcdef0',
      RamdiskId: 'ari-0123456789abcdef0',
      RootDeviceName: '/dev/sda1',
      BlockDeviceMappings: [
        { DeviceName: '/dev/sdb', VirtualName: 'ephemeral0' },
        { DeviceName: '/dev/sdc', VirtualName: 'ephemeral1' }
      ],
      // RegisterImage: "This option is supported only for HVM AMIs. Specifying this option with a
      // PV AMI can make instances launched from the AMI unreachable."
      EnaSupport: undefined,
      SriovNetSupport: undefined,
      TagSpecifications: [
        {
          ResourceType: 'image',
          Tags: [
            { Key: 'team', Value: 'web' },
            { Key: 'Name', Value: 'web-instance-store' },
            { Key: 'instance-to-ebs:run', Value: 'test-run' }
          ]
        }
      ]
    })
  })

  it('hvm keeps no kernel; inputs override what the instance says', async () => {
    const fake = bundleAccount({
      instance: sourceInstance({ RootDeviceName: '/dev/sda1', KernelId: 'aki-0123456789abcdef0' })
    })
    const { result } = await run({ 'root-device-name': '/dev/xvda', 'ami-name': '' }, fake)
    expect(result.ok).toBe(true)
    const input = fake.mocks.ec2.commandCalls(RegisterImageCommand)[1]?.args[0].input
    expect(input?.KernelId).toBeUndefined()
    expect(input?.RootDeviceName).toBe('/dev/xvda')
    expect(input?.Name).toMatch(new RegExp(`^instance-to-ebs-${INSTANCE}-\\d{8}-\\d{6}-instance-store$`))
    expect(sentArgs(fake)).toContain("'--root-device-name' '/dev/xvda'")
  })

  it('dry run: only the preflight runs, nothing is created', async () => {
    const { fake, result, ctx } = await run({ 'dry-run': 'true' })
    expect(result.ok).toBe(true)
    expect(result.timings.map((t) => t.status)).toEqual([
      'succeeded',
      'skipped',
      'skipped',
      'skipped',
      'skipped'
    ])
    expect(fake.mocks.ssm).not.toHaveReceivedCommand(PutParameterCommand)
    expect(fake.mocks.ssm).not.toHaveReceivedCommand(SendCommandCommand)
    expect(fake.mocks.ec2.commandCalls(RegisterImageCommand).map((c) => c.args[0].input.DryRun)).toEqual([
      true
    ])
    expect(ctx.outputs['instance-store-ami-id']).toBeUndefined()
    expect(ctx.facts['bundle location']).toBe(MANIFEST_URL)
  })

  it('polls until the AMI is available', async () => {
    const fake = bundleAccount({
      imageStates: [{ State: 'pending' }, { State: 'pending' }, { State: 'available' }]
    })
    const { result } = await run({}, fake)
    expect(result.ok).toBe(true)
    expect(
      fake.mocks.ec2.commandCalls(DescribeImagesCommand).filter((c) => c.args[0].input.ImageIds)
    ).toHaveLength(3)
    expect(fake.mocks.ssm).toHaveReceivedCommandTimes(GetCommandInvocationCommand, 1)
  })
})
