import { describe, expect, it } from '@jest/globals'
import { readFileSync, writeFileSync } from 'node:fs'
import {
  bootsOn,
  imageUrl,
  renderSummary,
  type SummaryInput,
  s3ObjectUrl,
  snapshotUrl,
  writeSummary
} from '../../src/report/summary.js'
import type { Settings } from '../../src/settings/index.js'
import type { RunContext } from '../../src/pipeline/context.js'
import { fixture, loadSummaryInput, storeSummaryInput } from '../__fixtures__/summary/load.js'
import { runnerFiles, withEnv } from '../__fixtures__/runner-files.js'

// UPDATE_SUMMARY_FIXTURES=1 rewrites the expected markdown (review the diff before committing).
const expectMarkdown = (name: string, markdown: string) => {
  const url = new URL(`../__fixtures__/summary/${name}.md`, import.meta.url)
  if (process.env.UPDATE_SUMMARY_FIXTURES) writeFileSync(url, markdown)
  expect(markdown).toBe(readFileSync(url, 'utf8'))
}

describe('renderSummary', () => {
  it.each(['success', 'failure'])('renders the %s run as expected', (name) => {
    expectMarkdown(name, renderSummary(loadSummaryInput(name)))
  })

  it('keeps the stored inputs in their stored form', () => {
    for (const name of ['success', 'failure'])
      expect(JSON.parse(storeSummaryInput(loadSummaryInput(name)))).toEqual(
        JSON.parse(fixture(`${name}.input.json`))
      )
  })

  it('shows the failure line with its fix, and what cleanup removed, kept and left', () => {
    const md = renderSummary(loadSummaryInput('failure'))
    expect(md).toContain('## instance-to-ebs: failed')
    expect(md).toContain('Step **write image** failed.')
    expect(md).toContain('Fix: Allow ssm:GetParameter')
    expect(md).toContain('(removed by the cleanup)')
    expect(md).toContain('**could not remove bundle s3://')
    expect(md).toContain('Paravirtual: only previous-generation families')
  })

  it('says cancelled, and dry run', () => {
    const base = loadSummaryInput('success')
    const cancelled: SummaryInput = {
      ...base,
      result: {
        ...base.result,
        ok: false,
        cancelled: true,
        failedStep: 'write image',
        error: new Error('the job was cancelled')
      }
    }
    const md = renderSummary(cancelled)
    expect(md).toContain('## instance-to-ebs: cancelled')
    expect(md).toContain('### Cancelled\n\nStep **write image** was cancelled.')
    const dry = renderSummary({
      ...base,
      dryRun: true,
      outputs: { region: 'us-east-1' },
      facts: {},
      result: { ok: true, cancelled: false, timings: [], cleanup: { removed: [], kept: [], problems: [] } }
    })
    expect(dry).toBe(
      '## instance-to-ebs: dry run passed, nothing created\n\nMode `convert` in `us-east-1`, dry run.\n'
    )
  })

  it('escapes table cells', () => {
    const base = loadSummaryInput('success')
    const md = renderSummary({ ...base, facts: { note: 'a | b\nc' } })
    expect(md).toContain('| note | a \\| b<br>c |')
  })
})

describe('bootsOn', () => {
  const hvm = { 'virtualization type': 'hvm', architecture: 'x86_64' }
  it.each([
    [{}, undefined],
    [{ 'virtualization type': 'paravirtual' }, /^Paravirtual: only .*m1, m2, m3, c1, c3, t1, hs1/],
    [{ ...hvm, initramfs_nvme: 'yes', initramfs_ena: 'yes' }, /t2, m4, c4 and Nitro families/],
    [
      { ...hvm, initramfs_nvme: 'yes', initramfs_ena: 'yes', 'ENA support': 'false' },
      /registered without ENA support.*ena-support: true/
    ],
    [{ ...hvm, initramfs_nvme: 'no', initramfs_ena: 'yes' }, /^hvm, missing NVMe driver: Xen families/],
    [{ ...hvm, initramfs_nvme: 'no', initramfs_ena: 'no' }, /missing NVMe and ENA driver/],
    [
      { ...hvm, initramfs_nvme: 'unknown', initramfs_ena: 'yes' },
      /unknown: the image was not checked for NVMe and ENA drivers/
    ],
    [hvm, /unknown/],
    [{ ...hvm, architecture: 'i386' }, /no Nitro family runs i386/],
    [{ ...hvm, architecture: 'arm64', initramfs_nvme: 'yes', initramfs_ena: 'yes' }, /^hvm, arm64: Graviton/],
    [{ ...hvm, architecture: 'arm64', initramfs_nvme: 'no' }, /lacks the NVMe and ENA drivers/],
    // Converted from paravirtual: to-hvm.sh's driver check decides, family by family.
    [
      {
        ...hvm,
        hvm_families: 'xen,nitro',
        hvm_xen_disk_driver: 'xen-blkfront (built-in)',
        hvm_nvme: 'built-in',
        hvm_ena: 'module',
        'ENA support': 'true'
      },
      /^hvm, converted from paravirtual: Xen hvm families such as t2, m4, c4 \(disk driver xen-blkfront \(built-in\)\); Nitro families such as t3/
    ],
    [
      {
        ...hvm,
        hvm_families: 'xen',
        hvm_xen_disk_driver: 'ata_piix (built-in)',
        hvm_nvme: 'no',
        hvm_ena: 'no'
      },
      /Xen hvm families .*ata_piix.*; not Nitro families \(they need nvme at boot and ena: nvme no, ena no\)/
    ],
    [
      {
        ...hvm,
        hvm_families: 'nitro',
        hvm_xen_disk_driver: 'no',
        hvm_nvme: 'initramfs',
        hvm_ena: 'built-in'
      },
      /not Xen hvm families .*; Nitro families/
    ],
    [
      {
        ...hvm,
        hvm_families: 'xen,nitro',
        hvm_xen_disk_driver: 'xen-blkfront (initramfs)',
        hvm_nvme: 'initramfs',
        hvm_ena: 'module',
        'ENA support': 'false'
      },
      /not Nitro families .*registered without ENA support/
    ]
  ])('%j', (facts, expected) => {
    const text = bootsOn(facts as Record<string, string>)
    if (expected === undefined) expect(text).toBeUndefined()
    else expect(text).toMatch(expected)
  })
})

describe('console links', () => {
  it('points at the region and partition', () => {
    expect(imageUrl('us-east-1', 'ami-1')).toBe(
      'https://us-east-1.console.aws.amazon.com/ec2/home?region=us-east-1#ImageDetails:imageId=ami-1'
    )
    expect(snapshotUrl('cn-north-1', 'snap-1')).toBe(
      'https://cn-north-1.console.amazonaws.cn/ec2/home?region=cn-north-1#SnapshotDetails:snapshotId=snap-1'
    )
    expect(imageUrl('us-gov-west-1', 'ami-1')).toMatch(/^https:\/\/console\.amazonaws-us-gov\.com\/ec2\//)
    expect(s3ObjectUrl('eu-west-1', 's3://b/p q/image.manifest.xml')).toBe(
      'https://console.aws.amazon.com/s3/object/b?region=eu-west-1&prefix=p%20q/image.manifest.xml'
    )
    expect(s3ObjectUrl('eu-west-1', 'not-s3')).toBeUndefined()
  })
})

describe('writeSummary', () => {
  const settings = { mode: 'convert', region: 'us-east-1', dryRun: false } as Settings
  it('appends the rendered markdown to GITHUB_STEP_SUMMARY', async () => {
    const input = loadSummaryInput('success')
    const files = runnerFiles()
    const ctx = { outputs: input.outputs, facts: input.facts } as RunContext
    await withEnv(files.env, () => writeSummary(settings, ctx, input.result))
    expect(readFileSync(files.env.GITHUB_STEP_SUMMARY as string, 'utf8')).toBe(renderSummary(input))
  })

  it('does nothing outside a runner', async () => {
    const input = loadSummaryInput('success')
    const ctx = { outputs: input.outputs, facts: input.facts } as RunContext
    await withEnv({ GITHUB_STEP_SUMMARY: undefined }, () => writeSummary(settings, ctx, input.result))
  })
})
