// Paravirtual in, hvm out, end to end: the committed dist/index.js converts a paravirtual
// instance-store AMI (its bundle: a synthetic PV image with a kernel, drivers and menu.lst) with
// output-virtualization-type: hvm against moto and the SSM stand-in, which runs convert.sh and
// to-hvm.sh on a loop device. moto ignores RegisterImage's fields, so the request itself is read
// from moto's own recorder. Leftovers come from the emulator's listing.
import { readFileSync, rmSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, expect, it } from '@jest/globals'
import { EmulatorSession } from '../../tools/emulator-session.mjs'
import { bundleAmis, bytesAt, describeWithEmulator, startSession } from '../__fixtures__/e2e-setup.js'
import { scratch, type Scratch } from '../scripts/convert-harness.js'
import { bundlePvImage } from '../scripts/pv-image.js'

const BUCKET = 'i2e-e2e-pv-bundles'
const PV_AMI = 'ami-0fa1a2a3a4a5a6a7a'
const TIMEOUT_MS = 240_000
const GRUB_BOOT_IMG = '/usr/lib/grub/i386-pc/boot.img'

const session = new EmulatorSession({
  amis: bundleAmis(BUCKET, { pv: [PV_AMI, 'pv-instance-store'] }).map((ami) => ({
    ...ami,
    virtualization_type: 'paravirtual',
    root_device_name: '/dev/sda1'
  }))
})
const unavailable = await startSession(session, { suite: 'the end-to-end hvm conversion', loopDevices: true })

/** The form fields of moto's recorded EC2 requests for an action (DryRun calls left out). */
async function recorded(action: string): Promise<URLSearchParams[]> {
  const text = await (await fetch(`${session.motoUrl}/moto-api/recorder/download-recording`)).text()
  return text
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((line) => JSON.parse(line) as { body?: string; body_encoded?: boolean })
    .map(
      (r) =>
        new URLSearchParams(r.body_encoded ? Buffer.from(r.body ?? '', 'base64').toString() : (r.body ?? ''))
    )
    .filter((form) => form.get('Action') === action && form.get('DryRun') !== 'true')
}

let tmp: Scratch
let bundle = ''
let helper = ''

describeWithEmulator('end-to-end convert with output-virtualization-type: hvm', unavailable, () => {
  beforeAll(async () => {
    tmp = scratch('i2e-e2e-hvm-')
    bundle = bundlePvImage(tmp.dir, 'pv', {
      config: ['CONFIG_XEN_BLKDEV_FRONTEND=m', 'CONFIG_BLK_DEV_NVME=m', 'CONFIG_ENA_ETHERNET=m'],
      initramfs: ['drivers/block/xen-blkfront.ko', 'drivers/nvme/host/nvme.ko'],
      onDisk: ['drivers/net/ethernet/amazon/ena/ena.ko']
    })
    await session.uploadBundle({ bucket: BUCKET, prefix: 'pv', fixtureDir: bundle })
    helper = (await session.launchHelper()).instanceId
  }, TIMEOUT_MS)

  afterAll(async () => {
    // The recording (request bodies) is a file in moto's working folder: emptied, and removed
    // when that folder is the repository's.
    await fetch(`${session.motoUrl}/moto-api/recorder/reset-recording`, { method: 'POST' }).catch(
      () => undefined
    )
    rmSync(fileURLToPath(new URL('../../moto_recording', import.meta.url)), { force: true })
    await session.stop()
    tmp?.cleanup()
  })

  it(
    'registers an hvm AMI (no kernel, no ramdisk, the root device asked for, legacy BIOS, ENA) and leaves nothing else',
    async () => {
      const before = await session.inventory()
      await fetch(`${session.motoUrl}/moto-api/recorder/reset-recording`, { method: 'POST' })
      await fetch(`${session.motoUrl}/moto-api/recorder/start-recording`, { method: 'POST' })
      const step = session.step({
        'source-ami-id': PV_AMI,
        'ami-name': 'e2e-pv-to-hvm',
        'output-virtualization-type': 'hvm',
        'root-device-name': '/dev/xvda',
        'helper-instance-id': helper,
        'x509-private-key': readFileSync(`${bundle}/key.pem`, 'utf8')
      })
      const main = await step.run('main')
      await fetch(`${session.motoUrl}/moto-api/recorder/stop-recording`, { method: 'POST' })
      if (main.code !== 0) console.error(main.stdout, main.stderr)
      expect(main.code).toBe(0)

      const out = step.outputs()
      const registers = await recorded('RegisterImage')
      expect(registers).toHaveLength(1)
      const register = registers[0] as URLSearchParams
      expect({
        VirtualizationType: register.get('VirtualizationType'),
        KernelId: register.get('KernelId'),
        RamdiskId: register.get('RamdiskId'),
        RootDeviceName: register.get('RootDeviceName'),
        DeviceName: register.get('BlockDeviceMapping.1.DeviceName'),
        SnapshotId: register.get('BlockDeviceMapping.1.Ebs.SnapshotId'),
        BootMode: register.get('BootMode'),
        EnaSupport: register.get('EnaSupport')
      }).toEqual({
        VirtualizationType: 'hvm',
        KernelId: null,
        RamdiskId: null,
        RootDeviceName: '/dev/xvda',
        DeviceName: '/dev/xvda',
        SnapshotId: out['snapshot-id'],
        BootMode: 'legacy-bios',
        EnaSupport: 'true'
      })

      const left = EmulatorSession.added(before, await session.inventory())
      expect(left.volumes).toEqual([])
      expect(left.parameters).toEqual([])
      expect(left.instances).toEqual([])
      expect(left.images).toEqual([out['ami-id']])
      expect(left.snapshots).toContain(out['snapshot-id']) // (moto adds one of its own for each AMI)

      // What the helper wrote: GRUB's boot code in the MBR and one bootable partition at sector 2048.
      const files = (await (await fetch(`${session.standinUrl}/_standin/volumes`)).json()) as Record<
        string,
        string
      >
      const volumeFiles = Object.values(files)
      const written = volumeFiles.find((f) => bytesAt(f, 510, 2).toString('hex') === '55aa') ?? ''
      expect(written).not.toBe('')
      expect(bytesAt(written, 0, 440).equals(readFileSync(GRUB_BOOT_IMG).subarray(0, 440))).toBe(true)
      expect(bytesAt(written, 446 + 8, 4).readUInt32LE(0)).toBe(2048)
      expect(bytesAt(written, 1048576 + 1024 + 0x38, 2).readUInt16LE(0)).toBe(0xef53)

      const summary = step.summary()
      expect(summary).toContain('hvm, converted from paravirtual: Xen hvm families')
      expect(summary).toContain('Nitro families such as t3')
      const post = await step.run('post')
      expect(post.code).toBe(0)
      expect(EmulatorSession.added(before, await session.inventory()).images).toEqual([out['ami-id']])
    },
    TIMEOUT_MS
  )
})
