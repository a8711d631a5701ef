// The pure pieces of convert: manifest reading, device choice, helper architecture, image facts.
import { describe, expect, it } from '@jest/globals'
import { manifestFromImageLocation, parseManifest, partKey } from '../../../src/aws/manifest.js'
import { freeDevice } from '../../../src/pipeline/convert/attach.js'
import { deriveImageFacts } from '../../../src/pipeline/convert/image-facts.js'
import { amiNameFor } from '../../../src/pipeline/convert/preflight-source.js'
import type { RunContext } from '../../../src/pipeline/context.js'
import { defaultHelperAmiParameter, helperArchitecture } from '../../../src/pipeline/convert/preflight.js'
import { readSettings } from '../../../src/settings/index.js'
import { MANIFEST_XML } from '../../__fixtures__/aws-account.js'
import { convertWithHelper } from '../../__fixtures__/convert-run.js'
import { reader } from '../../__fixtures__/inputs.js'

describe('manifest', () => {
  it('reads the real ec2-bundle-image manifest: size and parts in order', () => {
    expect(parseManifest(MANIFEST_XML)).toEqual({
      version: '2007-10-10',
      imageBytes: 67108864,
      parts: ['image.part.0', 'image.part.1'],
      architecture: 'x86_64'
    })
  })

  it.each([
    ['a truncated manifest', MANIFEST_XML.slice(0, 900), /is not an ec2-ami-tools bundle manifest/],
    ['a newer version', MANIFEST_XML.replace('2007-10-10', '2023-01-01'), /manifest version 2023-01-01/],
    [
      'a part outside its folder',
      MANIFEST_XML.replace('image.part.1<', '../x.part.1<'),
      /outside its folder/
    ],
    ['no parts', MANIFEST_XML.replace(/<part index[\s\S]*<\/parts>/, '</parts>'), /lists no parts/]
  ])('refuses %s with a one-line reason', (_label, xml, message) => {
    expect(() => parseManifest(xml, 'm')).toThrow(message)
  })

  it('finds the manifest from an ImageLocation and parts beside it', () => {
    const loc = manifestFromImageLocation('my-bundles/a/b/image.manifest.xml')
    expect(loc).toEqual({ bucket: 'my-bundles', key: 'a/b/image.manifest.xml' })
    expect(partKey(loc as { bucket: string; key: string }, 'image.part.07')).toBe('a/b/image.part.07')
    expect(partKey({ bucket: 'b', key: 'image.manifest.xml' }, 'image.part.0')).toBe('image.part.0')
    expect(manifestFromImageLocation('amazon/getting-started')).toBeUndefined()
  })
})

describe('freeDevice', () => {
  it('skips every slot in use under any of its names', () => {
    expect(freeDevice(['/dev/xvda'])).toBe('/dev/sdf')
    expect(freeDevice(['/dev/xvda', '/dev/sdf', 'xvdg', '/dev/xvdh1'])).toBe('/dev/sdi')
    expect(freeDevice('fghijklmnop'.split('').map((l) => `/dev/sd${l}`))).toBeUndefined()
  })
})

describe('helper architecture', () => {
  it.each([
    ['t3.small', 'x86_64'],
    ['t4g.small', 'arm64'],
    ['c6gn.large', 'arm64'],
    ['a1.large', 'arm64'],
    ['g5.xlarge', 'x86_64'],
    ['g5g.xlarge', 'arm64'],
    ['m7i.large', 'x86_64']
  ])('%s runs %s', (type, arch) => {
    expect(helperArchitecture(type)).toBe(arch)
  })

  it('picks the public Amazon Linux 2023 parameter of that architecture', () => {
    expect(defaultHelperAmiParameter('arm64')).toBe(
      '/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-arm64'
    )
  })
})

describe('image facts', () => {
  const settings = (extra: Record<string, string> = {}) =>
    readSettings(reader({ ...convertWithHelper, ...extra }), { env: {} })

  it('come from the source AMI; inputs override them', () => {
    const source = {
      ImageId: 'ami-1',
      Architecture: 'x86_64' as const,
      VirtualizationType: 'hvm' as const,
      RootDeviceName: '/dev/sda1',
      EnaSupport: false,
      BootMode: 'legacy-bios' as const
    }
    expect(deriveImageFacts(settings(), source)).toEqual({
      architecture: 'x86_64',
      virtualizationType: 'hvm',
      toHvm: false,
      rootDeviceName: '/dev/sda1',
      kernelId: undefined,
      ramdiskId: undefined,
      enaSupport: false,
      sriovNetSupport: undefined,
      bootMode: 'legacy-bios'
    })
    expect(
      deriveImageFacts(
        settings({ 'ena-support': 'true', 'root-device-name': '/dev/xvda', 'boot-mode': 'uefi' }),
        source
      )
    ).toMatchObject({ enaSupport: true, rootDeviceName: '/dev/xvda', bootMode: 'uefi' })
  })

  it('paravirtual: kernel and ramdisk from the AMI, and a clear error without a kernel', () => {
    const pv = {
      ImageId: 'ami-1',
      Architecture: 'x86_64' as const,
      VirtualizationType: 'paravirtual' as const
    }
    expect(
      deriveImageFacts(settings(), { ...pv, KernelId: 'aki-5c21674b', RamdiskId: 'ari-1' })
    ).toMatchObject({
      kernelId: 'aki-5c21674b',
      ramdiskId: 'ari-1',
      bootMode: undefined
    })
    expect(() => deriveImageFacts(settings(), pv)).toThrow(
      "A paravirtual AMI boots through a kernel image and source AMI ami-1 names none; set 'kernel-id' to a PV-GRUB hd0 AKI of the region, or 'output-virtualization-type: hvm'"
    )
  })

  it('paravirtual in, hvm out: no kernel or ramdisk, legacy BIOS, root /dev/sda1 or /dev/xvda', () => {
    const pv = {
      ImageId: 'ami-1',
      Architecture: 'x86_64' as const,
      VirtualizationType: 'paravirtual' as const,
      KernelId: 'aki-5c21674b',
      RamdiskId: 'ari-1',
      RootDeviceName: '/dev/sda1',
      EnaSupport: true
    }
    const hvm = settings({ 'output-virtualization-type': 'hvm' })
    expect(deriveImageFacts(hvm, pv)).toEqual({
      architecture: 'x86_64',
      virtualizationType: 'hvm',
      toHvm: true,
      rootDeviceName: '/dev/sda1',
      bootMode: 'legacy-bios',
      enaSupport: undefined, // decided by the drivers the image turns out to have
      sriovNetSupport: undefined
    })
    expect(deriveImageFacts(hvm, { ...pv, RootDeviceName: '/dev/sda' }).rootDeviceName).toBe('/dev/xvda')
    expect(
      deriveImageFacts(settings({ 'output-virtualization-type': 'hvm', 'root-device-name': '/dev/xvda' }), pv)
        .rootDeviceName
    ).toBe('/dev/xvda')
    // Without the input the result stays paravirtual; an hvm source cannot become paravirtual.
    expect(deriveImageFacts(settings(), pv)).toMatchObject({
      virtualizationType: 'paravirtual',
      toHvm: false
    })
    expect(() =>
      deriveImageFacts(settings({ 'output-virtualization-type': 'paravirtual' }), {
        ...pv,
        VirtualizationType: 'hvm'
      })
    ).toThrow(/an hvm image cannot be made paravirtual/)
  })

  it('refuses an architecture EC2 cannot register', () => {
    expect(() => deriveImageFacts(settings(), { ImageId: 'ami-1', Architecture: 'arm64_mac' })).toThrow(
      /set 'architecture'/
    )
  })
})

describe('AMI name', () => {
  const ctx = (extra: Record<string, string> = {}) =>
    ({ settings: readSettings(reader({ ...convertWithHelper, ...extra }), { env: {} }) }) as RunContext

  it('is the input, or the source name with -ebs, or the name mode full gave before -instance-store', () => {
    expect(amiNameFor(ctx({ 'ami-name': 'mine' }), { Name: 'legacy' })).toBe('mine')
    expect(amiNameFor(ctx(), { Name: 'legacy web' })).toBe('legacy web-ebs')
    expect(amiNameFor(ctx(), { Name: 'web+app' })).toBe('web-app-ebs')
    expect(amiNameFor(ctx(), { Name: 'instance-to-ebs-i-1-20260101-000000-instance-store' })).toBe(
      'instance-to-ebs-i-1-20260101-000000'
    )
    expect(amiNameFor(ctx(), { Name: 'x'.repeat(128) })).toHaveLength(128)
  })
})
