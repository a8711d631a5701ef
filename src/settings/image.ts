// Image facts that override what is detected from the source (virtualization-type, architecture,
// root-device-name, kernel-id, ramdisk-id), and output-virtualization-type, the EBS AMI's type.
import { type Form, KERNEL_ID, RAMDISK_ID } from './forms.js'
import { Input } from './inputs.js'
import type { InputParser } from './parser.js'
import type { Architecture, ImageSettings, VirtualizationType } from './types.js'

const DEVICE: Form = {
  pattern: /^\/dev\/(?:sd[a-z]\d{0,2}|xvd[a-z]{1,2}\d{0,2})$/,
  accepted: 'a device name such as /dev/sda1 or /dev/xvda'
}
const VIRTUALIZATION_TYPES: VirtualizationType[] = ['hvm', 'paravirtual']

export function readImage(p: InputParser): ImageSettings {
  return {
    virtualizationType: p.oneOf(Input.VirtualizationType, VIRTUALIZATION_TYPES),
    outputVirtualizationType: p.oneOf(Input.OutputVirtualizationType, VIRTUALIZATION_TYPES),
    rootDeviceName: p.optional(Input.RootDeviceName, DEVICE),
    architecture: p.oneOf<Architecture>(Input.Architecture, ['x86_64', 'i386', 'arm64']),
    kernelId: p.optional(Input.KernelId, KERNEL_ID),
    ramdiskId: p.optional(Input.RamdiskId, RAMDISK_ID)
  }
}
