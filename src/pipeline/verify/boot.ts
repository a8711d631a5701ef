// verify-boot: launch the new AMI once, wait for it to run and pass both EC2 status checks, read
// its console and look for the signs of a boot that did not come up. The test instance is made
// and removed here: recorded in the ledger the moment RunInstances answers (removeOn 'always', so
// the unwinding, or the post step after a killed main, terminates it whatever happened).
// On failure the AMI and snapshot go with the run's cleanup (verify-boot-failure: deregister), or
// are taken out of the ledger and kept for inspection (keep); the run fails either way.
import {
  DescribeInstanceStatusCommand,
  GetConsoleOutputCommand,
  type InstanceStatus,
  RunInstancesCommand
} from '@aws-sdk/client-ec2'
import { EC2_NOT_YET_VISIBLE, steadily } from '../../aws/ec2-wait.js'
import { poll } from '../../aws/poll.js'
import { type RunContext, required, waitOptions } from '../context.js'
import { oneInstanceInput } from '../launch.js'
import { convertState, proceeding } from '../convert/state.js'
import { clientToken } from '../run-id.js'
import type { Step } from '../runner.js'
import { CancelledError, messageOf } from '../../errors.js'
import { consoleTail, decodeConsole, findBootFailure } from './console.js'
import { type BootReport, type BootType, chooseBootType, verifyState } from './instance-types.js'
import { Input } from '../../settings/inputs.js'

export interface BootCheckOptions {
  /** Seconds from launch until both status checks must be ok. */
  statusTimeoutSeconds?: number
  /** Seconds to wait for a Xen type to post any console output once the checks are ok. */
  consoleWaitSeconds?: number
}

/** A boot that was tried and did not come up (as opposed to an API or permission problem). */
export class BootCheckFailed extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'BootCheckFailed'
  }
}

function runInput(ctx: RunContext, imageId: string, type: BootType) {
  const plan = required(verifyState(ctx).plan, 'the boot check plan')
  return {
    ...oneInstanceInput(ctx, {
      imageId,
      instanceType: type.instanceType,
      subnetId: plan.subnetId,
      securityGroupIds: plan.securityGroupIds,
      name: 'instance-to-ebs boot check'
    }),
    ClientToken: clientToken(ctx, 'boot-check')
  }
}

const describeChecks = (s: InstanceStatus): string =>
  `instance status ${s.InstanceStatus?.Status ?? 'unknown'}, system status ${s.SystemStatus?.Status ?? 'unknown'}`

/**
 * Waits until the instance runs and BOTH status checks are ok, as the SDK's instance-status-ok
 * waiter does for the instance check. DescribeInstanceStatus: "By default, only running instances
 * are described, unless you specifically indicate to return the status of all instances." — so
 * IncludeAllInstances, to see pending and a launch that ends in 'terminated'. A status is one of
 * "ok | impaired | insufficient-data | not-applicable | initializing" (InstanceStatusSummary).
 */
async function waitForStatusChecks(
  ctx: RunContext,
  instanceId: string,
  timeoutSeconds: number
): Promise<InstanceStatus> {
  return poll({
    what: `boot check instance ${instanceId} to pass both status checks`,
    timeoutSeconds,
    ...steadily(waitOptions(ctx)),
    tolerate: EC2_NOT_YET_VISIBLE,
    check: async () => {
      const out = await ctx.clients.ec2.send(
        new DescribeInstanceStatusCommand({ InstanceIds: [instanceId], IncludeAllInstances: true })
      )
      const s = out.InstanceStatuses?.find((x) => x.InstanceId === instanceId)
      if (!s) return { done: false, progress: 'not listed yet' }
      const state = s.InstanceState?.Name
      if (state === 'pending') return { done: false, progress: 'pending' }
      if (state !== 'running')
        throw new BootCheckFailed(
          `the boot check instance ${instanceId} went to '${state}' instead of running`
        )
      const instance = s.InstanceStatus?.Status
      const system = s.SystemStatus?.Status
      if (instance === 'ok' && system === 'ok') return { done: true, value: s }
      if (instance === 'impaired')
        throw new BootCheckFailed(
          `the instance status check of ${instanceId} failed (${describeChecks(s)}): the operating system did not come up far enough to answer on the network`
        )
      if (system === 'impaired')
        throw new BootCheckFailed(
          `the system status check of ${instanceId} failed (${describeChecks(s)}): a problem of the AWS host rather than of the image; run again`
        )
      return { done: false, progress: `running, ${describeChecks(s)}` }
    }
  })
}

/**
 * GetConsoleOutput: "By default, the console output returns buffered information that was posted
 * shortly after an instance transition state (start, stop, reboot, or terminate)." and "You can
 * optionally retrieve the latest serial console output at any time during the instance lifecycle.
 * This option is supported on instance types that use the Nitro hypervisor." (EC2 API reference)
 * So Latest only on Nitro types; a Xen type's output can lag, or be empty for a while.
 */
async function readConsole(ctx: RunContext, instanceId: string, type: BootType): Promise<string> {
  const out = await ctx.clients.ec2.send(
    new GetConsoleOutputCommand({ InstanceId: instanceId, Latest: type.nitro ? true : undefined })
  )
  return decodeConsole(out.Output)
}

/** Console output once there is some, or '' when a Xen type posted none within `seconds`. */
async function awaitConsole(
  ctx: RunContext,
  instanceId: string,
  type: BootType,
  seconds: number
): Promise<string> {
  try {
    return await poll({
      what: `console output of ${instanceId}`,
      timeoutSeconds: seconds,
      ...steadily(waitOptions(ctx)),
      check: async () => {
        const text = await readConsole(ctx, instanceId, type)
        if (text.trim() !== '') return { done: true, value: text }
        return { done: false, progress: 'nothing posted yet' }
      }
    })
  } catch (err) {
    if (err instanceof Error && err.name === 'PollTimeoutError') return ''
    throw err
  }
}

/** verify-boot-failure: keep — the AMI and its snapshot leave the ledger, so no cleanup removes them. */
function keepProducts(ctx: RunContext): void {
  const s = convertState(ctx)
  for (const [kind, id] of [
    ['image', s.imageId],
    ['snapshot', s.snapshotId]
  ] as const) {
    if (!id || !ctx.ledger.find(kind, id)) continue
    ctx.ledger.forget(kind, id)
    ctx.log.warning(
      `kept ${kind} ${id} for inspection (${Input.VerifyBootFailure}: keep); remove it by hand when done`
    )
  }
}

/**
 * Just over 60 lines: launch, status checks, console and the verdict share one report and one
 * catch that decides between "did not boot" and "could not be checked".
 */
export function bootCheckStep(options: BootCheckOptions = {}): Step<RunContext> {
  const statusTimeout = options.statusTimeoutSeconds ?? 900
  const consoleWait = options.consoleWaitSeconds ?? 300
  return {
    name: 'boot check',
    enabled: (ctx) => ctx.settings.verifyBoot.enabled && proceeding(ctx),
    run: async (ctx) => {
      const v = verifyState(ctx)
      const imageId = required(convertState(ctx).imageId, 'the new AMI')
      const type = chooseBootType(required(v.plan, 'the boot check plan'), ctx.facts)
      const report: BootReport = {
        instanceType: type.instanceType,
        nitro: type.nitro,
        verdict: 'failed',
        consoleTail: []
      }
      v.report = report
      let consoleText: string | undefined
      try {
        const out = await ctx.clients.ec2.send(new RunInstancesCommand(runInput(ctx, imageId, type)))
        const instanceId = required(out.Instances?.[0]?.InstanceId, 'the id of the boot check instance')
        ctx.ledger.record({ kind: 'instance', id: instanceId, removeOn: 'always' })
        report.instanceId = instanceId
        ctx.log.info(`boot check: launched ${instanceId} (${type.instanceType}) from ${imageId}`)

        const status = await waitForStatusChecks(ctx, instanceId, statusTimeout)
        report.statusChecks = describeChecks(status)
        ctx.log.info(`boot check: ${instanceId} passed both status checks`)

        consoleText = await awaitConsole(ctx, instanceId, type, type.nitro ? 60 : consoleWait)
        const sign = findBootFailure(consoleText)
        if (sign)
          throw new BootCheckFailed(`the console of ${instanceId} shows ${sign.meaning}: "${sign.line}"`)
        if (consoleText.trim() === '')
          report.consoleNote = `${type.instanceType} posted no console output within ${consoleWait} s (Xen types post it late); the verdict rests on the status checks`
        else if (!type.nitro)
          report.consoleNote = `${type.instanceType} is a Xen type: its console output is what was posted so far, and may end before the boot did`
        report.verdict = 'passed'
        report.consoleTail = consoleTail(consoleText)
        ctx.outputs['boot-verified'] = 'true'
        ctx.log.info(`boot check: ${imageId} booted on ${type.instanceType}`)
      } catch (err) {
        if (err instanceof CancelledError || ctx.signal.aborted) throw err
        if (consoleText === undefined && report.instanceId)
          consoleText = await readConsole(ctx, report.instanceId, type).catch(() => '')
        const sign = consoleText ? findBootFailure(consoleText) : undefined
        report.consoleTail = consoleTail(consoleText ?? '')
        report.reason = messageOf(err)
        ctx.outputs['boot-verified'] = 'false'
        if (ctx.settings.verifyBoot.onFailure === 'keep') keepProducts(ctx)
        const seen =
          sign && !report.reason.includes(sign.line)
            ? `; its console shows ${sign.meaning}: "${sign.line}"`
            : ''
        const bootFailed =
          err instanceof BootCheckFailed || (err instanceof Error && err.name === 'PollTimeoutError')
        const what = bootFailed ? 'did not boot' : 'could not be boot-checked'
        throw new Error(`The new AMI ${imageId} ${what}: ${report.reason}${seen}`)
      }
    }
  }
}

export const bootStep = bootCheckStep()
