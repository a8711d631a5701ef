// Convert variants: a manifest-location source, a key the user keeps in SSM, a paravirtual
// source, a helper whose /dev/sdf is taken, and a job cancelled while the image is written.
import { afterEach, beforeEach, describe, expect, it } from '@jest/globals'
import { AttachVolumeCommand, RegisterImageCommand } from '@aws-sdk/client-ec2'
import { CancelCommandCommand, DeleteParameterCommand, PutParameterCommand } from '@aws-sdk/client-ssm'
import {
  type AccountMocks,
  BUCKET,
  FakeAccount,
  HELPER,
  MANIFEST_KEY,
  MANIFEST_XML,
  mockAccount,
  SOURCE_AMI
} from '../../__fixtures__/aws-account.js'
import { convertWithHelper, runConvert } from '../../__fixtures__/convert-run.js'
import { KEY } from '../../__fixtures__/inputs.js'

let account: FakeAccount
let mocks: AccountMocks

beforeEach(() => {
  account = new FakeAccount()
  mocks = mockAccount(account)
})
afterEach(() => mocks.restore())

const { 'x509-private-key': _key, ...withoutKey } = convertWithHelper

describe('convert variants', () => {
  it('from a manifest-location: no source AMI, facts from the inputs', async () => {
    const { 'source-ami-id': _ami, ...rest } = convertWithHelper
    const { result, ctx } = await runConvert({
      ...rest,
      'manifest-location': `s3://${BUCKET}/${MANIFEST_KEY}`,
      'ami-name': 'from-bundle',
      architecture: 'x86_64',
      'virtualization-type': 'hvm'
    })
    expect(result.error).toBeUndefined()
    expect(account.callsOf('DescribeImages').some((i) => i.ImageIds?.includes(SOURCE_AMI))).toBe(false)
    expect(mocks.ec2).toHaveReceivedCommandWith(RegisterImageCommand, {
      Name: 'from-bundle',
      RootDeviceName: '/dev/sda1',
      VirtualizationType: 'hvm'
    })
    expect(ctx.outputs['instance-store-ami-id']).toBeUndefined()
    expect(ctx.outputs['manifest-location']).toBe(`s3://${BUCKET}/${MANIFEST_KEY}`)
  })

  it('with the key in a parameter the user names: used as is, never copied or deleted', async () => {
    account.parameters.set('/ci/x509/key', { Type: 'SecureString', Value: KEY })
    const { result } = await runConvert({ ...withoutKey, 'x509-private-key-parameter': '/ci/x509/key' })
    expect(result.error).toBeUndefined()
    expect(mocks.ssm).not.toHaveReceivedCommand(PutParameterCommand)
    expect(mocks.ssm).not.toHaveReceivedCommand(DeleteParameterCommand)
    expect(account.callsOf('SendCommand')[0]?.Parameters.commands[0]).toContain(
      "'--key-parameter' '/ci/x509/key'"
    )
    expect(account.parameters.has('/ci/x509/key')).toBe(true)
  })

  it('a named key parameter that does not exist is a preflight error', async () => {
    const { result } = await runConvert({ ...withoutKey, 'x509-private-key-parameter': '/ci/x509/nope' })
    expect(result.failedStep).toBe('preflight')
    expect((result.error as Error).message).toMatch(
      /SSM parameter \/ci\/x509\/nope does not exist in us-east-1; check 'x509-private-key-parameter'/
    )
    expect(account.leftovers()).toEqual([])
  })

  it('a paravirtual source keeps its kernel; no boot mode', async () => {
    const source = account.images.get(SOURCE_AMI)?.value
    if (source)
      Object.assign(source, {
        VirtualizationType: 'paravirtual',
        KernelId: 'aki-5c21674b',
        EnaSupport: false
      })
    const { result } = await runConvert(convertWithHelper)
    expect(result.error).toBeUndefined()
    const register = account.callsOf('RegisterImage').find((i) => !i.DryRun)
    expect(register).toMatchObject({ VirtualizationType: 'paravirtual', KernelId: 'aki-5c21674b' })
    expect(register?.BootMode).toBeUndefined()
    expect(register?.RamdiskId).toBeUndefined()
  })

  describe('paravirtual in, hvm out (output-virtualization-type: hvm)', () => {
    const makePv = () => {
      const source = account.images.get(SOURCE_AMI)?.value
      if (source)
        Object.assign(source, {
          VirtualizationType: 'paravirtual',
          KernelId: 'aki-5c21674b',
          RamdiskId: 'ari-0123abcd',
          RootDeviceName: '/dev/sda1',
          EnaSupport: false,
          BootMode: undefined
        })
    }
    const reportEna = (ena: string) => {
      account.commandOutcome = {
        ...account.commandOutcome,
        StandardOutputContent: `${account.commandOutcome.StandardOutputContent}::result hvm_families=xen${ena === 'no' ? '' : ',nitro'}\n::result hvm_nvme=initramfs\n::result hvm_ena=${ena}\n`
      }
    }

    it('registers hvm without kernel or ramdisk, legacy BIOS, the volume 1 MiB larger than the image, ENA as the image has it', async () => {
      makePv()
      reportEna('module')
      // An image of exactly 1 GiB: with the partition 1 MiB in, it needs a 2 GiB volume.
      account.objects.set(
        `${BUCKET}/${MANIFEST_KEY}`,
        MANIFEST_XML.replace('<size>67108864</size>', '<size>1073741824</size>')
      )
      const { result, ctx } = await runConvert({ ...convertWithHelper, 'output-virtualization-type': 'hvm' })
      expect(result.error).toBeUndefined()
      const register = account.callsOf('RegisterImage').find((i) => !i.DryRun)
      expect(register).toMatchObject({
        VirtualizationType: 'hvm',
        RootDeviceName: '/dev/sda1',
        BootMode: 'legacy-bios',
        EnaSupport: true
      })
      expect(register).not.toHaveProperty('KernelId', expect.anything())
      expect(register).not.toHaveProperty('RamdiskId', expect.anything())
      expect(register?.BlockDeviceMappings?.[0]?.DeviceName).toBe('/dev/sda1')
      const command = account.callsOf('SendCommand')[0]?.Parameters.commands[0]
      expect(command).toContain("'--output-virtualization-type' 'hvm'")
      expect(command).toContain('to-hvm.sh') // shipped beside convert.sh
      expect(account.callsOf('CreateVolume').find((i) => !i.DryRun)?.Size).toBe(2)
      expect(ctx.facts['virtualization type']).toBe('hvm')
    })

    it('registers without ENA support when the kernel has no ena driver, at the root device asked for', async () => {
      makePv()
      reportEna('no')
      const { result } = await runConvert({
        ...convertWithHelper,
        'output-virtualization-type': 'hvm',
        'root-device-name': '/dev/xvda'
      })
      expect(result.error).toBeUndefined()
      const register = account.callsOf('RegisterImage').find((i) => !i.DryRun)
      expect(register).toMatchObject({
        VirtualizationType: 'hvm',
        RootDeviceName: '/dev/xvda',
        EnaSupport: false
      })
      expect(register?.BlockDeviceMappings?.[0]?.DeviceName).toBe('/dev/xvda')
    })

    it('an hvm source with output paravirtual is refused before anything is made', async () => {
      const { result } = await runConvert({
        ...convertWithHelper,
        'output-virtualization-type': 'paravirtual'
      })
      expect((result.error as Error).message).toMatch(/is hvm, and an hvm image cannot be made paravirtual/)
      expect(account.created).toEqual([])
    })
  })

  it('attaches at the first free device name', async () => {
    const helper = account.instances.get(HELPER)?.value
    helper?.BlockDeviceMappings?.push({ DeviceName: '/dev/sdf', Ebs: { VolumeId: 'vol-0dddddddddddddddd' } })
    const { result } = await runConvert(convertWithHelper)
    expect(result.error).toBeUndefined()
    expect(mocks.ec2).toHaveReceivedCommandWith(AttachVolumeCommand, { Device: '/dev/sdg' })
    expect(account.callsOf('SendCommand')[0]?.Parameters.commands[0]).toContain("'--device' '/dev/sdg'")
  })

  it('cancelled while the image is written: the command is cancelled and everything made is removed', async () => {
    const controller = new AbortController()
    account.failOn(
      'GetCommandInvocation',
      () => {
        controller.abort()
        return undefined
      },
      99
    )
    const { result, ctx } = await runConvert(convertWithHelper, { signal: controller.signal })
    expect(result.cancelled).toBe(true)
    expect(result.failedStep).toBe('write image')
    expect(mocks.ssm).toHaveReceivedCommand(CancelCommandCommand)
    expect(account.created.map((c) => c.kind)).toEqual(['parameter', 'volume'])
    expect(account.leftovers()).toEqual([])
    expect(ctx.ledger.entries()).toEqual([])
  })
})
