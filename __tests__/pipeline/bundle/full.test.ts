// Mode full against the convert fixture's account extended for bundling: bundle, register the
// instance-store AMI, then convert it; on failure everything made in the run goes, in reverse.
import { mkdtempSync, readdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, describe, expect, it } from '@jest/globals'
import { makeClients } from '../../../src/aws/clients.js'
import { planSteps } from '../../../src/pipeline/plan.js'
import { resourceRemover } from '../../../src/pipeline/resources.js'
import { runPipeline } from '../../../src/pipeline/runner.js'
import { messageOf } from '../../../src/errors.js'
import { readSettings } from '../../../src/settings/index.js'
import { type AccountMocks, directSnapshotImage, serviceError } from '../../__fixtures__/aws-account.js'
import {
  FULL_PREFIX,
  FULL_SOURCE,
  FullAccount,
  fullInputs,
  mockBundleAccount,
  runContext
} from '../../__fixtures__/bundle-account.js'
import { reader } from '../../__fixtures__/inputs.js'
import { realBundle } from '../../__fixtures__/real-bundles.js'
import { sha256, tidiedImage } from '../../__fixtures__/tidied-image.js'

const tidied = tidiedImage(
  `${realBundle('hvm-mbr').dir}/image.manifest.xml`,
  `${realBundle('hvm-mbr').dir}/test-key.pem`
)

let mocks: AccountMocks | undefined

/** A fault for the real call only: the preflight's DryRun probes still pass. */
const realCall = (err: Error) => (input: { DryRun?: boolean }) => (input.DryRun ? undefined : err)
afterEach(() => mocks?.restore())

async function runFull(account: FullAccount, over: Record<string, string> = {}) {
  mocks = mockBundleAccount(account)
  const settings = readSettings(reader({ ...fullInputs, ...over }), { env: {} })
  const clients = makeClients({ region: settings.region, maxAttempts: 1, env: {} })
  const ctx = runContext(settings, clients)
  const result = await runPipeline(planSteps(settings), ctx, {
    remove: resourceRemover(clients, { pollDelayMs: 1 }),
    log: ctx.log
  })
  return { ctx, result, message: messageOf(result.error) }
}

const BUNDLE_KEYS = ['image.manifest.xml', 'image.part.0', 'image.part.1'].map((k) => `${FULL_PREFIX}/${k}`)

const hvm = realBundle('hvm-mbr')

describe('full mode', () => {
  it('convert-on: runner: bundles, then writes the snapshot on the runner, fstab tidied, with no helper', async () => {
    const account = new FullAccount()
    account.realParts = true
    const runnerTemp = mkdtempSync(join(tmpdir(), 'i2e-full-runner-'))
    process.env.RUNNER_TEMP = runnerTemp
    try {
      const { result, ctx, message } = await runFull(account, {
        'helper-instance-id': '',
        'convert-on': 'runner',
        'x509-certificate': hvm.cert,
        'x509-private-key': hvm.key
      })
      expect(message).toBe('undefined')
      expect(result.ok).toBe(true)
      expect(result.timings.map((t) => t.step)).toEqual([
        'preflight',
        'bundle preflight',
        'bundle key material',
        'bundle and upload',
        'register instance-store AMI',
        'wait for instance-store AMI',
        'preflight source',
        'image facts',
        'write snapshot',
        'register'
      ])
      const snapshotId = ctx.outputs['snapshot-id'] as string
      const image = directSnapshotImage(account, snapshotId, Number(hvm.facts.image_size_bytes))
      expect(sha256(image)).toBe(tidied.sha256)
      expect(ctx.facts).toMatchObject({ fstab_removed: '1', fstab_backup: '/etc/fstab.instance-to-ebs.bak' })
      // Only the bundle half sent a command; no helper, no volume.
      expect(account.callsOf('SendCommand')).toHaveLength(1)
      expect(account.callsOf('CreateVolume')).toEqual([])
      const storeAmi = ctx.outputs['instance-store-ami-id'] as string
      expect(account.leftovers()).toEqual(
        [`image ${storeAmi}`, `image ${ctx.outputs['ami-id']}`, `snapshot ${snapshotId}`].sort()
      )
      expect(readdirSync(runnerTemp)).toEqual([])
    } finally {
      delete process.env.RUNNER_TEMP
      rmSync(runnerTemp, { recursive: true, force: true })
    }
  })

  it('plans the convert checks, the bundle steps, then the convert work', () => {
    const settings = readSettings(reader(fullInputs), { env: {} })
    expect(planSteps(settings).map((s) => s.name)).toEqual([
      'preflight',
      'bundle preflight',
      'bundle key material',
      'bundle and upload',
      'register instance-store AMI',
      'wait for instance-store AMI',
      'preflight source',
      'image facts',
      'helper',
      'key parameter',
      'create volume',
      'attach volume',
      'write image',
      'detach volume',
      'snapshot',
      'register'
    ])
  })

  it('bundles, registers the instance-store AMI, converts it, and writes the key parameter once', async () => {
    const account = new FullAccount()
    const { result, ctx, message } = await runFull(account)
    expect(message).toBe('undefined')
    expect(result.ok).toBe(true)
    const storeAmi = ctx.outputs['instance-store-ami-id'] as string
    expect(storeAmi).toMatch(/^ami-/)
    expect(ctx.outputs['manifest-location']).toBe(`s3://my-bundles/${FULL_PREFIX}/image.manifest.xml`)
    expect(ctx.outputs['ami-id']).toMatch(/^ami-/)
    expect(ctx.outputs['ami-id']).not.toBe(storeAmi)
    expect(ctx.outputs['snapshot-id']).toMatch(/^snap-/)
    // The convert steps read the instance-store AMI the bundle steps made.
    expect(account.images.get(storeAmi)?.value.Name).toBe('web-instance-store')
    expect(account.images.get(ctx.outputs['ami-id'] as string)?.value.Name).toBe('web')
    // Certificate and key once each, both gone at the end; the convert command read the same key.
    const puts = account.callsOf('PutParameter').map((i) => i.Name as string)
    expect(puts).toHaveLength(2)
    expect(
      account
        .callsOf('DeleteParameter')
        .map((i) => i.Name)
        .sort()
    ).toEqual([...puts].sort())
    expect(account.parameters.size).toBe(0)
    const convertCommand = String(account.callsOf('SendCommand')[1]?.Parameters.commands[0])
    expect(convertCommand).toContain(`'/instance-to-ebs/test-run/x509-key'`)
    // Products kept: the bundle, both AMIs, the snapshot.
    expect(account.bundleKeys()).toEqual(BUNDLE_KEYS)
    expect(account.leftovers()).toEqual(
      [`image ${storeAmi}`, `image ${ctx.outputs['ami-id']}`, `snapshot ${ctx.outputs['snapshot-id']}`].sort()
    )
    expect(ctx.ledger.entries()).toEqual([])
  })

  it('convert fails after bundling: the instance-store AMI is deregistered, the bundle, volume and parameters removed', async () => {
    const account = new FullAccount()
    account.failOn(
      'CreateSnapshot',
      realCall(serviceError('SnapshotCreationPerVolumeRateExceeded', 'snapshot refused'))
    )
    const { result, message } = await runFull(account)
    expect(result.failedStep).toBe('snapshot')
    expect(message).toContain('snapshot refused')
    expect(account.leftovers()).toEqual([])
    expect(account.bundleKeys()).toEqual([])
    expect(account.callsOf('DeregisterImage')).toHaveLength(1)
  })

  it('convert fails after bundling with keep-bundle: the bundle stays, the rest goes', async () => {
    const account = new FullAccount()
    account.failOn('CreateVolume', realCall(serviceError('InsufficientVolumeCapacity', 'no capacity')))
    const { result } = await runFull(account, { 'keep-bundle': 'true' })
    expect(result.failedStep).toBe('create volume')
    expect(account.leftovers()).toEqual([])
    expect(account.bundleKeys()).toEqual(BUNDLE_KEYS)
  })

  it('the convert checks run first: a helper that is not online stops the run before anything is made', async () => {
    const account = new FullAccount()
    account.ping.set(fullInputs['helper-instance-id'] as string, 'ConnectionLost')
    const { result } = await runFull(account)
    expect(result.failedStep).toBe('preflight')
    expect(account.callsOf('PutParameter')).toEqual([])
    expect(account.callsOf('SendCommand')).toEqual([])
  })

  it('dry run: checks the helper and the source instance, creates nothing', async () => {
    const account = new FullAccount()
    const { result, ctx } = await runFull(account, { 'dry-run': 'true' })
    expect(result.ok).toBe(true)
    expect(account.created).toEqual([])
    expect(account.callsOf('SendCommand')).toEqual([])
    expect(ctx.facts['source instance']).toContain(FULL_SOURCE)
  })
})
