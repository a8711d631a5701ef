// The SSM stand-in (scripts/ssm-standin.mjs) against a real moto: commands really run, their
// output and exit code come back through the SDK as from SSM, and attached volumes are devices.
import { type ChildProcessWithoutNullStreams, execFileSync, spawn } from 'node:child_process'
import { once } from 'node:events'
import { closeSync, existsSync, mkdtempSync, openSync, readSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { AttachVolumeCommand, CreateVolumeCommand, EC2Client, RunInstancesCommand } from '@aws-sdk/client-ec2'
import { CreateBucketCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3'
import {
  CancelCommandCommand,
  DescribeInstanceInformationCommand,
  GetCommandInvocationCommand,
  ListCommandInvocationsCommand,
  PutParameterCommand,
  SendCommandCommand,
  SSMClient
} from '@aws-sdk/client-ssm'
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals'

const scripts = fileURLToPath(new URL('../../scripts/', import.meta.url))
const stateDir = mkdtempSync(join(tmpdir(), 'i2e-e2e-'))
const emulatorEnv = { ...process.env, I2E_EMULATOR_STATE: join(stateDir, 'emulator.env') }

/** Starts moto (or reuses one named by I2E_MOTO_URL); the reason it could not, otherwise. */
function startEmulator(): { url?: string; reason?: string } {
  try {
    const out = execFileSync('bash', [join(scripts, 'emulator.sh'), 'start'], {
      env: emulatorEnv,
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'pipe'],
      timeout: 10 * 60_000 // a cold install takes a minute or two
    })
    return { url: /^I2E_MOTO_URL=(.+)$/m.exec(out)?.[1] }
  } catch (err) {
    const stderr = String((err as { stderr?: string }).stderr ?? err).trim()
    return { reason: stderr.split('\n').pop() }
  }
}

const emulator = startEmulator()
const motoUrl = emulator.url
if (!motoUrl) {
  rmSync(stateDir, { recursive: true, force: true })
  console.warn(`skipping the SSM stand-in tests: the emulator did not start: ${emulator.reason}`)
}
const region = 'us-east-1'
const credentials = { accessKeyId: 'testing', secretAccessKey: 'testing' }
const asRoot = process.getuid?.() === 0
const describeWithEmulator = motoUrl ? describe : describe.skip
const title = motoUrl
  ? 'SSM stand-in'
  : `SSM stand-in (skipped: the emulator did not start: ${emulator.reason})`

const terminal = new Set(['Success', 'Failed', 'Cancelled', 'TimedOut'])
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

describeWithEmulator(title, () => {
  let standin: ChildProcessWithoutNullStreams
  let standinUrl = ''
  let standinLog = ''
  let ec2: EC2Client
  let ssm: SSMClient
  let instanceId = ''

  beforeAll(async () => {
    standin = spawn(process.execPath, [join(scripts, 'ssm-standin.mjs')], {
      env: { ...process.env, I2E_MOTO_URL: motoUrl, AWS_REGION: region }
    })
    standin.stderr.setEncoding('utf8').on('data', (s: string) => {
      standinLog += s
    })
    const [line] = (await once(standin.stdout.setEncoding('utf8'), 'data')) as [string]
    standinUrl = /^AWS_ENDPOINT_URL_SSM=(\S+)/.exec(line)?.[1] ?? ''
    expect(standinUrl).not.toBe('')
    ec2 = new EC2Client({ endpoint: motoUrl, region, credentials })
    ssm = new SSMClient({ endpoint: standinUrl, region, credentials })
    const run = await ec2.send(
      new RunInstancesCommand({
        ImageId: 'ami-12c6146b',
        MinCount: 1,
        MaxCount: 1,
        Placement: { AvailabilityZone: `${region}a` }
      })
    )
    instanceId = run.Instances?.[0]?.InstanceId ?? ''
  })

  afterAll(async () => {
    if (standin && standin.exitCode === null) {
      standin.kill('SIGTERM')
      await once(standin, 'exit')
    }
    execFileSync('bash', [join(scripts, 'emulator.sh'), 'stop'], { env: emulatorEnv, stdio: 'ignore' })
    rmSync(stateDir, { recursive: true, force: true })
  })

  const send = async (commands: string[], executionTimeout = '60'): Promise<string> => {
    const out = await ssm.send(
      new SendCommandCommand({
        DocumentName: 'AWS-RunShellScript',
        InstanceIds: [instanceId],
        Parameters: { commands, executionTimeout: [executionTimeout] }
      })
    )
    return out.Command?.CommandId ?? ''
  }

  /** Polls like the action does, tolerating InvocationDoesNotExist; returns the end and what it saw. */
  const waitFor = async (commandId: string) => {
    const seen: string[] = []
    for (let i = 0; i < 200; i++) {
      try {
        const out = await ssm.send(
          new GetCommandInvocationCommand({ CommandId: commandId, InstanceId: instanceId })
        )
        seen.push(out.Status ?? '')
        if (terminal.has(out.Status ?? '')) return { out, seen: [...new Set(seen)] }
      } catch (err) {
        seen.push((err as Error).name)
      }
      await sleep(100)
    }
    throw new Error(`command ${commandId} did not end; stand-in log:\n${standinLog}`)
  }

  it('reports a running moto instance Online and an unknown one not at all', async () => {
    const out = await ssm.send(
      new DescribeInstanceInformationCommand({
        Filters: [{ Key: 'InstanceIds', Values: [instanceId, 'i-0000000000000000f'] }]
      })
    )
    expect(out.InstanceInformationList?.map((i) => [i.InstanceId, i.PingStatus])).toEqual([
      [instanceId, 'Online']
    ])
  })

  it('runs the command for real and reports its exit code and output', async () => {
    const commandId = await send(['echo hi; exit 3'])
    const { out, seen } = await waitFor(commandId)
    expect(seen[0]).toBe('InvocationDoesNotExist')
    expect(out).toMatchObject({
      Status: 'Failed',
      StatusDetails: 'Failed',
      ResponseCode: 3,
      StandardOutputContent: 'hi\n'
    })
  })

  it('gives the command an aws that reads SecureString parameters and lists and reads S3 objects in moto', async () => {
    // PutParameter goes through the stand-in to moto: the forwarding path.
    await ssm.send(new PutParameterCommand({ Name: '/i2e/e2e/key', Value: 'pem-text', Type: 'SecureString' }))
    const s3 = new S3Client({ endpoint: motoUrl, region, credentials, forcePathStyle: true })
    await s3.send(new CreateBucketCommand({ Bucket: 'i2e-e2e-standin' }))
    await s3.send(new PutObjectCommand({ Bucket: 'i2e-e2e-standin', Key: 'b/x.part.0', Body: 'part-zero' }))
    const commandId = await send([
      'aws ssm get-parameter --with-decryption --name /i2e/e2e/key --query Parameter.Value --output text',
      'aws s3 cp s3://i2e-e2e-standin/b/x.part.0 - | tr a-z A-Z; echo',
      "aws --region us-east-1 s3 ls s3://i2e-e2e-standin/b/ | awk '{ print $3, $4 }'"
    ])
    const { out } = await waitFor(commandId)
    expect(out.Status).toBe('Success')
    expect(out.StandardOutputContent).toBe('pem-text\nPART-ZERO\n9 x.part.0\n')
  })

  it('refuses a command for an instance that SSM does not know', async () => {
    await expect(
      ssm.send(
        new SendCommandCommand({
          DocumentName: 'AWS-RunShellScript',
          InstanceIds: ['i-0000000000000000f'],
          Parameters: { commands: ['true'] }
        })
      )
    ).rejects.toMatchObject({ name: 'InvalidInstanceId' })
  })

  it('cancels a running command and lists it as Cancelled', async () => {
    const commandId = await send(['sleep 30'])
    for (let i = 0; i < 50; i++) {
      const list = await ssm.send(new ListCommandInvocationsCommand({ CommandId: commandId }))
      if (list.CommandInvocations?.[0]?.Status === 'InProgress') break
      await sleep(100)
    }
    await ssm.send(new CancelCommandCommand({ CommandId: commandId, InstanceIds: [instanceId] }))
    const { out } = await waitFor(commandId)
    expect(out.Status).toBe('Cancelled')
    const list = await ssm.send(new ListCommandInvocationsCommand({ CommandId: commandId, Details: true }))
    expect(list.CommandInvocations?.[0]?.CommandPlugins?.[0]?.Status).toBe('Cancelled')
  })

  it('stops a command at its executionTimeout', async () => {
    const { out } = await waitFor(await send(['sleep 30'], '1'))
    expect([out.Status, out.StatusDetails]).toEqual(['TimedOut', 'ExecutionTimedOut'])
  })

  // The devices need a mount namespace and a loop device, so root.
  ;(asRoot ? it : it.skip)('shows an attached volume as a block device under its EC2 names', async () => {
    const created = await ec2.send(new CreateVolumeCommand({ AvailabilityZone: `${region}a`, Size: 1 }))
    const volumeId = created.VolumeId ?? ''
    await ec2.send(
      new AttachVolumeCommand({ VolumeId: volumeId, InstanceId: instanceId, Device: '/dev/sdf' })
    )
    const byId = `/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_${volumeId.replace('-', '')}`
    const commandId = await send([
      `test -b ${byId} && test -b /dev/sdf && test -b /dev/xvdf`,
      'blockdev --getsize64 /dev/sdf',
      `printf volume-data | dd of=${byId} conv=fsync status=none`
    ])
    const { out } = await waitFor(commandId)
    expect([out.Status, out.StandardErrorContent]).toEqual(['Success', ''])
    expect(out.StandardOutputContent).toBe(`${2 ** 30}\n`)
    expect(existsSync(byId)).toBe(false) // only the command's namespace has it

    const files = (await (await fetch(`${standinUrl}/_standin/volumes`)).json()) as Record<string, string>
    const head = Buffer.alloc(11)
    const fd = openSync(files[volumeId] ?? '', 'r')
    readSync(fd, head, 0, head.length, 0)
    closeSync(fd)
    expect(head.toString()).toBe('volume-data')
  })
})
