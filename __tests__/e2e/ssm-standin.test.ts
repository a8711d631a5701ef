// The SSM stand-in (tools/ssm-standin.mjs) against a real moto: commands really run, their
// output and exit code come back through the SDK as from SSM, and attached volumes are devices.
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, readSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import {
  AttachVolumeCommand,
  CreateVolumeCommand,
  type EC2Client,
  RunInstancesCommand,
  TerminateInstancesCommand
} from '@aws-sdk/client-ec2'
import { CreateBucketCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3'
import {
  CancelCommandCommand,
  DescribeInstanceInformationCommand,
  GetCommandInvocationCommand,
  ListCommandInvocationsCommand,
  PutParameterCommand,
  SendCommandCommand,
  type SSMClient
} from '@aws-sdk/client-ssm'
import { afterAll, beforeAll, expect, it } from '@jest/globals'
import { CREDENTIALS as credentials, REGION as region } from '../../tools/emulator-session.mjs'
import {
  describeWithEmulator,
  type StandinAccount,
  startMoto,
  startStandinAccount
} from '../__fixtures__/e2e-setup.js'

const moto = startMoto('the SSM stand-in tests')
const motoUrl = moto.url ?? ''
const asRoot = process.getuid?.() === 0

const terminal = new Set(['Success', 'Failed', 'Cancelled', 'TimedOut'])
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

describeWithEmulator('SSM stand-in', moto.unavailable, () => {
  let account: StandinAccount | undefined
  let standinUrl = ''
  let ec2: EC2Client
  let ssm: SSMClient
  let instanceId = ''

  beforeAll(async () => {
    account = await startStandinAccount(motoUrl, { I2E_STANDIN_DELIVERY_TIMEOUT_SCALE: '0.1' })
    ;({ ec2, ssm, instanceId } = account)
    standinUrl = account.standin.url
    expect(standinUrl).not.toBe('')
  })

  afterAll(async () => {
    await account?.standin.stop()
    moto.stop()
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
    throw new Error(`command ${commandId} did not end; stand-in log:\n${account?.standin.log}`)
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

  /** Waits until a file exists (a command's marker that it got somewhere). */
  const waitForFile = async (path: string) => {
    for (let i = 0; i < 600 && !existsSync(path); i++) await sleep(100)
    expect(existsSync(path)).toBe(true)
  }

  const alive = (pid: number) => {
    try {
      process.kill(pid, 0)
      return true
    } catch {
      return false
    }
  }

  it('runs the commands as _script.sh through sh -c, with dash as /bin/sh on Ubuntu and Debian', async () => {
    // [[ is not dash: the first command fails, and the script carries on (no set -e). The file has
    // no #! line: dash runs it through /bin/sh (dash again), so look at the program, not the name.
    const commandId = await send([
      '[[ 1 == 1 ]] && echo bash',
      'echo "$(basename "$0") $(basename "$(readlink /proc/$$/exe)")"'
    ])
    const { out } = await waitFor(commandId)
    expect(out.StandardOutputContent).toBe('_script.sh dash\n')
    expect(out.StandardErrorContent).toMatch(/\[\[: not found/)
  })

  it('reports Pending, then InProgress, then the end, and the output only at the end', async () => {
    const commandId = await send(['sleep 2; echo done'])
    const { out, seen } = await waitFor(commandId)
    expect(seen).toEqual(['InvocationDoesNotExist', 'Pending', 'InProgress', 'Success'])
    expect(out.StandardOutputContent).toBe('done\n')
  })

  // executers_unix.go:52 syscall.Kill(-pid, SIGKILL): no trap runs, background children die too.
  for (const how of ['cancel', 'executionTimeout'] as const)
    it(`on ${how} kills the whole process group with SIGKILL: no trap runs, no child survives`, async () => {
      const dir = mkdtempSync(join(tmpdir(), 'i2e-standin-kill-'))
      try {
        const commandId = await send(
          [
            `trap 'echo trapped > ${dir}/trap' EXIT INT TERM HUP`,
            `sleep 300 & echo $! > ${dir}/child`,
            `touch ${dir}/started`,
            'wait'
          ],
          how === 'cancel' ? '60' : '3'
        )
        await waitForFile(join(dir, 'started'))
        const child = Number(readFileSync(join(dir, 'child'), 'utf8'))
        expect(alive(child)).toBe(true)
        if (how === 'cancel')
          await ssm.send(new CancelCommandCommand({ CommandId: commandId, InstanceIds: [instanceId] }))
        const { out } = await waitFor(commandId)
        expect([out.Status, out.StatusDetails, out.ResponseCode]).toEqual(
          how === 'cancel' ? ['Cancelled', 'Cancelled', 137] : ['TimedOut', 'ExecutionTimedOut', 137]
        )
        for (let i = 0; i < 100 && alive(child); i++) await sleep(100)
        expect(alive(child)).toBe(false)
        await sleep(500) // a trap would have run by now
        expect(existsSync(join(dir, 'trap'))).toBe(false)
        const list = await ssm.send(
          new ListCommandInvocationsCommand({ CommandId: commandId, Details: true })
        )
        expect(list.CommandInvocations?.[0]?.CommandPlugins?.[0]?.Status).toBe(out.Status)
      } finally {
        rmSync(dir, { recursive: true, force: true })
      }
    })

  it('cancels a Pending command before it starts: it never runs and stays Cancelled', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'i2e-standin-pending-'))
    try {
      const commandId = await send([`touch ${dir}/ran`])
      await ssm.send(new CancelCommandCommand({ CommandId: commandId, InstanceIds: [instanceId] }))
      const { out } = await waitFor(commandId)
      expect(out.Status).toBe('Cancelled')
      await sleep(2500) // past the moment it would have started
      expect(existsSync(join(dir, 'ran'))).toBe(false)
      const again = await ssm.send(
        new GetCommandInvocationCommand({ CommandId: commandId, InstanceId: instanceId })
      )
      expect(again.Status).toBe('Cancelled')
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it('cuts stdout at 24,000 and stderr at 8,000 bytes, and the listed plugin Output at 2,500', async () => {
    const commandId = await send([
      "head -c 30000 /dev/zero | tr '\\0' a",
      "head -c 9000 /dev/zero | tr '\\0' b >&2"
    ])
    const { out } = await waitFor(commandId)
    const stdout = out.StandardOutputContent ?? ''
    const stderr = out.StandardErrorContent ?? ''
    expect([stdout.length, stderr.length]).toEqual([24000, 8000])
    expect(stdout.endsWith('a--output truncated--')).toBe(true)
    expect(stderr.endsWith('b--output truncated--')).toBe(true)
    const list = await ssm.send(new ListCommandInvocationsCommand({ CommandId: commandId, Details: true }))
    const output = list.CommandInvocations?.[0]?.CommandPlugins?.[0]?.Output ?? ''
    expect(output.length).toBeLessThanOrEqual(2500)
    expect(output).toMatch(/^a+\n---Output truncated---\n----------ERROR-------\nb+\n---Error truncated----$/)
  })

  const instanceOffline = async (id: string, offline: boolean) => {
    const answer = await fetch(`${standinUrl}/_standin/offline`, {
      method: 'POST',
      body: JSON.stringify({ instanceId: id, offline })
    })
    expect(answer.status).toBe(200)
  }

  it('keeps a command for an instance whose agent does not answer Pending, then DeliveryTimedOut', async () => {
    await instanceOffline(instanceId, true)
    try {
      const info = await ssm.send(
        new DescribeInstanceInformationCommand({ Filters: [{ Key: 'InstanceIds', Values: [instanceId] }] })
      )
      expect(info.InstanceInformationList?.[0]?.PingStatus).toBe('ConnectionLost')
      const out = await ssm.send(
        new SendCommandCommand({
          DocumentName: 'AWS-RunShellScript',
          InstanceIds: [instanceId],
          TimeoutSeconds: 30, // × the test's delivery scale of 0.1: 3 s
          Parameters: { commands: ['echo ran'] }
        })
      )
      const { out: end, seen } = await waitFor(out.Command?.CommandId ?? '')
      expect(seen).not.toContain('InProgress')
      expect([end.Status, end.StatusDetails, end.StandardOutputContent]).toEqual([
        'TimedOut',
        'DeliveryTimedOut',
        ''
      ])
    } finally {
      await instanceOffline(instanceId, false)
    }
  })

  it('reports Undeliverable when the instance is gone before the command reaches it', async () => {
    const run = await ec2.send(new RunInstancesCommand({ ImageId: 'ami-12c6146b', MinCount: 1, MaxCount: 1 }))
    const doomed = run.Instances?.[0]?.InstanceId ?? ''
    await instanceOffline(doomed, true)
    const sent = await ssm.send(
      new SendCommandCommand({
        DocumentName: 'AWS-RunShellScript',
        InstanceIds: [doomed],
        Parameters: { commands: ['echo ran'] }
      })
    )
    await ec2.send(new TerminateInstancesCommand({ InstanceIds: [doomed] }))
    const commandId = sent.Command?.CommandId ?? ''
    for (let i = 0; i < 100; i++) {
      const out = await ssm
        .send(new GetCommandInvocationCommand({ CommandId: commandId, InstanceId: doomed }))
        .catch(() => undefined)
      if (out && terminal.has(out.Status ?? '')) {
        expect([out.Status, out.StatusDetails]).toEqual(['Failed', 'Undeliverable'])
        return
      }
      await sleep(100)
    }
    throw new Error('the command for a terminated instance never ended')
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
