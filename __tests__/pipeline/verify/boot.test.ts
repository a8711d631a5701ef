// verify-boot against the fake account: the instance type chosen from the verdict and the offerings,
// the launch (run tag, ledger), both status checks, the console read (Latest only on Nitro), and on
// every path the test instance terminated; the AMI removed or kept as verify-boot-failure says.
import { afterEach, beforeEach, describe, expect, it } from '@jest/globals'
import { GetConsoleOutputCommand, RunInstancesCommand } from '@aws-sdk/client-ec2'
import { makeClients } from '../../../src/aws/clients.js'
import type { RunContext } from '../../../src/pipeline/context.js'
import { convertSteps } from '../../../src/pipeline/convert/index.js'
import { Ledger } from '../../../src/pipeline/ledger.js'
import { resourceRemover } from '../../../src/pipeline/resources.js'
import { type Logger, runPipeline, type Step } from '../../../src/pipeline/runner.js'
import { bootCheckStep } from '../../../src/pipeline/verify/boot.js'
import { renderSummary, summaryInput } from '../../../src/report/summary.js'
import { readSettings } from '../../../src/settings/index.js'
import type { AccountMocks } from '../../__fixtures__/aws-account.js'
import { serviceError, SOURCE_AMI, SUBNET } from '../../__fixtures__/aws-account.js'
import { BootAccount, mockBootAccount } from '../../__fixtures__/boot-account.js'
import { convertWithHelper, convertWithLaunch, runConvert } from '../../__fixtures__/convert-run.js'

let account: BootAccount
let mocks: AccountMocks

beforeEach(() => {
  account = new BootAccount()
  mocks = mockBootAccount(account)
})
afterEach(() => mocks.restore())

const verify = (extra: Record<string, string> = {}) => ({
  ...convertWithLaunch,
  'verify-boot': 'true',
  ...extra
})

const NITRO_READY =
  '::result target=/dev/nvme1n1\n::result image_bytes=67108864\n::result digest=ok\n::result initramfs_nvme=yes\n::result initramfs_ena=yes\n'

const PANIC = [
  '[    1.234567] md: Waiting for all devices to be available before autodetect',
  '[    1.300000] VFS: Cannot open root device "xvda1" or unknown-block(0,0): error -6',
  '[    1.300001] Please append a correct "root=" boot option; here are the available partitions:',
  '[    1.300002] Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)'
].join('\n')

/** The launch of the boot check (not the helper's). */
const bootLaunch = () =>
  mocks.ec2
    .commandCalls(RunInstancesCommand)
    .find(
      (c) =>
        c.args[0].input.ImageId !== undefined &&
        account.created.some((x) => x.kind === 'image' && x.id === c.args[0].input.ImageId)
    )?.args[0].input

/** Runs the convert steps with a boot check of short waits instead of the plan's. */
async function runWithBootCheck(
  inputs: Record<string, string>,
  options: { statusTimeoutSeconds?: number; consoleWaitSeconds?: number; signal?: AbortSignal } = {}
) {
  const settings = readSettings((n) => inputs[n] ?? '', { env: {} })
  const clients = makeClients({ region: settings.region, maxAttempts: 1 })
  const lines: string[] = []
  const log: Logger = {
    info: (m) => void lines.push(m),
    warning: (m) => void lines.push(m),
    group: (_n, fn) => fn()
  }
  const ctx: RunContext = {
    settings,
    clients,
    log,
    ledger: new Ledger(settings.region, [], () => {}),
    signal: options.signal ?? new AbortController().signal,
    outputs: { region: settings.region, 'boot-verified': 'skipped' },
    facts: {},
    state: { runId: '4242-1-b00tb00t' },
    pollDelayMs: 1
  }
  const steps: Step<RunContext>[] = [
    ...convertSteps.filter((s) => s.name !== 'boot check'),
    bootCheckStep({
      statusTimeoutSeconds: options.statusTimeoutSeconds,
      consoleWaitSeconds: options.consoleWaitSeconds
    })
  ]
  const result = await runPipeline(steps, ctx, { remove: resourceRemover(clients, { pollDelayMs: 1 }), log })
  return { result, ctx, lines }
}

describe('verify-boot: success', () => {
  it('boots the new AMI on a Xen type when the drivers are unknown, reads the console without Latest, and terminates the instance', async () => {
    const { result, ctx } = await runConvert(verify())
    expect(result.error).toBeUndefined()
    expect(ctx.outputs['boot-verified']).toBe('true')

    const launch = bootLaunch()
    expect(launch?.ImageId).toBe(ctx.outputs['ami-id'])
    expect(launch?.InstanceType).toBe('t2.small')
    expect(launch?.SubnetId).toBe(SUBNET)
    expect(launch?.TagSpecifications?.find((t) => t.ResourceType === 'instance')?.Tags).toEqual(
      expect.arrayContaining([{ Key: 'instance-to-ebs:run', Value: '4242-1-a1b2c3d4' }])
    )
    const [instance] = account.bootInstances()
    expect(account.stateOf(instance as string)).toBe('terminated')
    expect(mocks.ec2.commandCalls(GetConsoleOutputCommand).map((c) => c.args[0].input)).toEqual([
      { InstanceId: instance, Latest: undefined }
    ])
    // Only the products stay.
    expect(account.leftovers()).toEqual([
      `image ${ctx.outputs['ami-id']}`,
      `snapshot ${ctx.outputs['snapshot-id']}`
    ])
    expect(result.timings.map((t) => [t.step, t.status])).toEqual(
      expect.arrayContaining([
        ['boot check types', 'succeeded'],
        ['boot check', 'succeeded']
      ])
    )
    // Types are checked before the helper is launched.
    const order = account.calls.map((c) => (c.input.DryRun ? 'probe' : c.op))
    expect(order.indexOf('DescribeInstanceTypeOfferings')).toBeLessThan(order.indexOf('RunInstances'))
    expect(order.indexOf('DescribeInstanceTypeOfferings')).toBeGreaterThan(-1)

    const summary = renderSummary(summaryInput(ctx.settings, ctx, result))
    expect(summary).toContain('### Boot check')
    expect(summary).toContain('booted on t2.small (Xen)')
    expect(summary).toContain('Welcome to Debian GNU/Linux 11!')
  })

  it('prefers a Nitro type and reads the latest console when the image has NVMe and ENA drivers and ENA support', async () => {
    account.commandOutcome = { ...account.commandOutcome, StandardOutputContent: NITRO_READY }
    const { result, ctx } = await runConvert(verify())
    expect(result.error).toBeUndefined()
    expect(bootLaunch()?.InstanceType).toBe('t3.small')
    expect(mocks.ec2.commandCalls(GetConsoleOutputCommand).map((c) => c.args[0].input.Latest)).toEqual([true])
    expect(ctx.outputs['boot-verified']).toBe('true')
  })

  it('takes the subnet and security groups of a given helper', async () => {
    const helper = account.instances.get(convertWithHelper['helper-instance-id'] as string)?.value
    Object.assign(helper ?? {}, { SubnetId: SUBNET, SecurityGroups: [{ GroupId: 'sg-0123456789abcdef0' }] })
    const { result } = await runConvert({ ...convertWithHelper, 'verify-boot': 'true' })
    expect(result.error).toBeUndefined()
    expect(bootLaunch()).toMatchObject({ SubnetId: SUBNET, SecurityGroupIds: ['sg-0123456789abcdef0'] })
  })

  it('passes on the status checks alone when a Xen type posts no console output in time, and says so', async () => {
    account.consoles = ['']
    const { result, ctx } = await runWithBootCheck(verify(), { consoleWaitSeconds: 1 })
    expect(result.error).toBeUndefined()
    expect(ctx.outputs['boot-verified']).toBe('true')
    const summary = renderSummary(summaryInput(ctx.settings, ctx, result))
    expect(summary).toMatch(/posted no console output within 1 s \(Xen types post it late\)/)
  })

  it('skips the boot check when verify-boot is false, and says skipped', async () => {
    const { result, ctx } = await runWithBootCheck(convertWithLaunch)
    expect(result.error).toBeUndefined()
    expect(ctx.outputs['boot-verified']).toBe('skipped')
    expect(account.calls.map((c) => c.op)).not.toContain('DescribeInstanceStatus')
    expect(account.bootInstances()).toEqual([])
  })
})

describe('verify-boot: failures remove the test instance and, by default, the AMI and snapshot', () => {
  it('fails on a failed instance status check, naming it and the console line it saw', async () => {
    account.statuses = [{ instance: 'impaired', system: 'ok' }]
    account.consoles = [PANIC]
    const { result, ctx } = await runConvert(verify())
    expect(result.failedStep).toBe('boot check')
    const message = String((result.error as Error).message)
    expect(message).toMatch(/did not boot: the instance status check of i-\w+ failed/)
    expect(message).toContain(
      'Kernel panic - not syncing: VFS: Unable to mount root fs on unknown-block(0,0)'
    )
    expect(ctx.outputs['boot-verified']).toBe('false')
    expect(account.stateOf(account.bootInstances()[0] as string)).toBe('terminated')
    expect(account.leftovers()).toEqual([])
    expect(result.cleanup.removed).toEqual(
      expect.arrayContaining([`image ${ctx.outputs['ami-id']}`, `snapshot ${ctx.outputs['snapshot-id']}`])
    )
  })

  it('fails on a failed system status check and says it is the host, not the image', async () => {
    account.statuses = [{ instance: 'initializing', system: 'impaired' }]
    const { result, ctx } = await runConvert(verify())
    expect(String((result.error as Error).message)).toMatch(
      /system status check .* a problem of the AWS host/
    )
    expect(ctx.outputs['boot-verified']).toBe('false')
    expect(account.leftovers()).toEqual([])
  })

  it('fails when both checks pass but the console shows a kernel panic, naming the line', async () => {
    account.consoles = [PANIC]
    const { result, ctx } = await runConvert(verify())
    const message = String((result.error as Error).message)
    expect(message).toContain(
      'shows kernel panic: "[    1.300002] Kernel panic - not syncing: VFS: Unable to mount root fs'
    )
    expect(ctx.outputs['boot-verified']).toBe('false')
    expect(account.stateOf(account.bootInstances()[0] as string)).toBe('terminated')
    expect(account.leftovers()).toEqual([])
    const summary = renderSummary(summaryInput(ctx.settings, ctx, result))
    expect(summary).toContain('**did not boot**')
    expect(summary).toContain('Kernel panic - not syncing')
  })

  it('keeps the AMI and snapshot for inspection with verify-boot-failure: keep, and still fails', async () => {
    account.consoles = [
      'Begin: Mounting root file system ...\nGave up waiting for root device.  Common problems:'
    ]
    const { result, ctx } = await runConvert(verify({ 'verify-boot-failure': 'keep' }))
    expect(result.ok).toBe(false)
    expect(String((result.error as Error).message)).toContain('Gave up waiting for root device')
    expect(account.stateOf(account.bootInstances()[0] as string)).toBe('terminated')
    expect(account.leftovers()).toEqual([
      `image ${ctx.outputs['ami-id']}`,
      `snapshot ${ctx.outputs['snapshot-id']}`
    ])
    expect(ctx.ledger.entries()).toEqual([])
  })

  it('fails when the status checks never pass within the limit', async () => {
    account.statuses = [{ instance: 'initializing', system: 'ok' }]
    const { result, ctx } = await runWithBootCheck(verify(), { statusTimeoutSeconds: 1 })
    expect(String((result.error as Error).message)).toMatch(
      /did not boot: timed out after 1 s waiting for boot check instance/
    )
    expect(ctx.outputs['boot-verified']).toBe('false')
    expect(account.leftovers()).toEqual([])
  })

  it('removes the AMI when the boot check instance cannot be launched, and says so', async () => {
    account.failOn('RunInstances', (input) =>
      account.created.some((c) => c.kind === 'image' && c.id === input.ImageId)
        ? serviceError(
            'InsufficientInstanceCapacity',
            'We currently do not have sufficient t2.small capacity.',
            500
          )
        : undefined
    )
    const { result, ctx } = await runConvert(verify())
    expect(String((result.error as Error).message)).toMatch(
      /could not be boot-checked: We currently do not have sufficient/
    )
    expect(ctx.outputs['boot-verified']).toBe('false')
    expect(account.leftovers()).toEqual([])
  })

  it('terminates the instance and removes the AMI when the job is cancelled during the wait', async () => {
    const abort = new AbortController()
    account.statuses = [{ instance: 'initializing', system: 'initializing' }]
    const cancelAfter = setInterval(() => {
      if (account.callsOf('DescribeInstanceStatus').length >= 3) abort.abort()
    }, 1)
    try {
      const { result, ctx } = await runWithBootCheck(verify(), { signal: abort.signal })
      expect(result.cancelled).toBe(true)
      expect(ctx.outputs['boot-verified']).toBe('skipped')
      expect(account.stateOf(account.bootInstances()[0] as string)).toBe('terminated')
      expect(account.leftovers()).toEqual([])
    } finally {
      clearInterval(cancelAfter)
    }
  })
})

describe('verify-boot: instance types, before anything is created', () => {
  const nothingCreated = () => {
    expect(account.created).toEqual([])
    expect(account.leftovers()).toEqual([])
  }

  it('refuses a zone that offers no type for a paravirtual image, naming the input and a type to use', async () => {
    const source = account.images.get(SOURCE_AMI)?.value
    Object.assign(source ?? {}, { VirtualizationType: 'paravirtual', KernelId: 'aki-919dcaf8' })
    account.offerings.set('us-east-1a', ['t3.small', 'm5.large'])
    const { result } = await runConvert(verify())
    expect(result.failedStep).toBe('boot check types')
    const message = String((result.error as Error).message)
    expect(message).toMatch(/None of m3\.medium, m1\.small.* is offered in us-east-1a \(us-east-1\)/)
    expect(message).toContain("'verify-boot-instance-types'")
    expect(message).toContain('previous-generation type such as m3.medium')
    nothingCreated()
  })

  it('launches a paravirtual image on m3.medium by default', async () => {
    const source = account.images.get(SOURCE_AMI)?.value
    Object.assign(source ?? {}, { VirtualizationType: 'paravirtual', KernelId: 'aki-919dcaf8' })
    const { result } = await runConvert(verify())
    expect(result.error).toBeUndefined()
    expect(bootLaunch()?.InstanceType).toBe('m3.medium')
  })

  it('refuses named types that cannot run the image', async () => {
    const source = account.images.get(SOURCE_AMI)?.value
    Object.assign(source ?? {}, { VirtualizationType: 'paravirtual', KernelId: 'aki-919dcaf8' })
    const { result } = await runConvert(verify({ 'verify-boot-instance-types': 't3.small m5.large' }))
    expect(String((result.error as Error).message)).toMatch(
      /None of t3\.small, m5\.large \(offered in us-east-1a\) runs paravirtual x86_64 images; set 'verify-boot-instance-types'/
    )
    nothingCreated()
  })

  it('keeps the order of named types and skips those not offered', async () => {
    account.offerings.set('us-east-1a', ['t2.small', 'm4.large'])
    const { result } = await runConvert(
      verify({ 'verify-boot-instance-types': 'm5.large, m4.large, t2.small' })
    )
    expect(result.error).toBeUndefined()
    expect(bootLaunch()?.InstanceType).toBe('m4.large')
  })

  it('refuses a verify-boot-subnet-id that does not exist, by name', async () => {
    const { result } = await runConvert(verify({ 'verify-boot-subnet-id': 'subnet-0aaaaaaaaaaaaaaaa' }))
    expect(String((result.error as Error).message)).toMatch(
      /Subnet subnet-0aaaaaaaaaaaaaaaa, 'verify-boot-subnet-id', does not exist/
    )
    nothingCreated()
  })

  it('never launches a Nitro type for an AMI registered without ENA support', async () => {
    account.commandOutcome = { ...account.commandOutcome, StandardOutputContent: NITRO_READY }
    account.offerings.set('us-east-1a', ['t3.small', 'm5.large'])
    const { result } = await runConvert(verify({ 'ena-support': 'false' }))
    expect(String((result.error as Error).message)).toMatch(
      /registered without ENA support.*only Nitro types/
    )
    expect(account.bootInstances()).toEqual([])
    expect(account.leftovers()).toEqual([])
  })
})

describe('the plan', () => {
  it('holds the boot check steps only with verify-boot: true, the check last', async () => {
    const { planSteps } = await import('../../../src/pipeline/plan.js')
    const names = (inputs: Record<string, string>) =>
      planSteps(readSettings((n) => inputs[n] ?? '', { env: {} })).map((s) => s.name)
    expect(names(convertWithLaunch).filter((n) => n.startsWith('boot check'))).toEqual([])
    const on = names(verify())
    expect(on.filter((n) => n.startsWith('boot check'))).toEqual(['boot check types', 'boot check'])
    expect(on.at(-1)).toBe('boot check')
    expect(on.indexOf('boot check types')).toBeLessThan(on.indexOf('helper'))
  })
})

describe('verify-boot in mode full: checked before the bundle is made', () => {
  const fullCtx = (extra: Record<string, string>): RunContext => {
    const inputs: Record<string, string> = {
      'source-instance-id': 'i-0123456789abcdef0',
      'helper-subnet-id': SUBNET,
      'helper-instance-profile': 'instance-to-ebs-helper',
      's3-bucket': 'my-bundles',
      region: 'us-east-1',
      'x509-certificate': '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----',
      'x509-private-key': '-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----',
      'verify-boot': 'true',
      ...extra
    }
    const settings = readSettings((n) => inputs[n] ?? '', { env: {} })
    return {
      settings,
      clients: makeClients({ region: settings.region, maxAttempts: 1 }),
      log: { info: () => {}, warning: () => {}, group: (_n, fn) => fn() },
      ledger: new Ledger(settings.region, [], () => {}),
      signal: new AbortController().signal,
      outputs: {},
      facts: {},
      state: {},
      pollDelayMs: 1
    }
  }

  it('runs in the checks that precede the bundle, and only in mode full', async () => {
    const { planSteps } = await import('../../../src/pipeline/plan.js')
    const ctx = fullCtx({})
    const names = planSteps(ctx.settings).map((s) => s.name)
    expect(names.indexOf('boot check preflight')).toBeGreaterThan(-1)
    expect(names.indexOf('boot check preflight')).toBeLessThan(names.indexOf('bundle and upload'))
    const step = planSteps(ctx.settings).find((s) => s.name === 'boot check preflight')
    expect(step?.enabled?.(ctx)).toBe(true)
    const convert = readSettings((n) => ({ ...convertWithLaunch, 'verify-boot': 'true' })[n] ?? '', {
      env: {}
    })
    expect(step?.enabled?.({ ...ctx, settings: convert })).toBe(false)
  })

  it('refuses a paravirtual source when the zone offers no previous-generation type', async () => {
    account.offerings.set('us-east-1a', ['t3.small', 't2.small'])
    const { bootCheckPreflightStep } = await import('../../../src/pipeline/verify/instance-types.js')
    const ctx = fullCtx({ 'virtualization-type': 'paravirtual', 'kernel-id': 'aki-919dcaf8' })
    await expect(bootCheckPreflightStep.run(ctx)).rejects.toThrow(
      /None of m3\.medium, m1\.small.* is offered in us-east-1a/
    )
    expect(account.created).toEqual([])
  })

  it('with the virtualization type unknown, accepts a zone that offers a type for either kind', async () => {
    account.offerings.set('us-east-1a', ['t2.small'])
    const { bootCheckPreflightStep, verifyState } = await import(
      '../../../src/pipeline/verify/instance-types.js'
    )
    const ctx = fullCtx({})
    await bootCheckPreflightStep.run(ctx)
    expect(verifyState(ctx).plan?.types).toEqual([{ instanceType: 't2.small', nitro: false }])
  })
})
