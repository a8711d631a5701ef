// The job summary: what was produced (with console links), what the image can boot on, how long
// each step took, and after a failure where it failed, why, and what was cleaned up.
// renderSummary is pure and takes plain data, so a test can render any run, real or made up.
import * as core from '@actions/core'
import type { OutputName, RunContext } from '../pipeline/context.js'
import { formatSeconds, type PipelineResult } from '../pipeline/runner.js'
import type { Mode, Settings } from '../settings/index.js'
import type { VerifyState } from '../pipeline/verify/instance-types.js'
import { bootCheckSection } from './boot-check.js'
import { failureLine } from './failure.js'
import { Input } from '../settings/inputs.js'

export interface SummaryInput {
  mode: Mode
  region: string
  dryRun: boolean
  outputs: Partial<Record<OutputName, string>>
  facts: Record<string, string>
  result: PipelineResult
  /** What verify-boot saw, when it ran. */
  bootCheck?: VerifyState['report']
}

export function summaryInput(
  settings: Pick<Settings, 'mode' | 'region' | 'dryRun'>,
  ctx: Pick<RunContext, 'outputs' | 'facts'> & Partial<Pick<RunContext, 'state'>>,
  result: PipelineResult
): SummaryInput {
  return {
    mode: settings.mode,
    region: settings.region,
    dryRun: settings.dryRun,
    outputs: ctx.outputs,
    facts: ctx.facts,
    result,
    bootCheck: (ctx.state?.verify as VerifyState | undefined)?.report
  }
}

export async function writeSummary(
  settings: Settings,
  ctx: RunContext,
  result: PipelineResult
): Promise<void> {
  if (!process.env.GITHUB_STEP_SUMMARY) return
  await core.summary.addRaw(renderSummary(summaryInput(settings, ctx, result))).write()
}

// ---------------------------------------------------------------- console links

/** The console's host for the region's partition (commercial, China, GovCloud). */
function consoleHost(region: string, regional: boolean): string {
  if (region.startsWith('cn-')) return `${regional ? `${region}.` : ''}console.amazonaws.cn`
  if (region.startsWith('us-gov-')) return 'console.amazonaws-us-gov.com'
  return `${regional ? `${region}.` : ''}console.aws.amazon.com`
}

export const imageUrl = (region: string, imageId: string): string =>
  `https://${consoleHost(region, true)}/ec2/home?region=${region}#ImageDetails:imageId=${imageId}`

export const snapshotUrl = (region: string, snapshotId: string): string =>
  `https://${consoleHost(region, true)}/ec2/home?region=${region}#SnapshotDetails:snapshotId=${snapshotId}`

/** An s3://bucket/key location as a console link, or undefined when it is not one. */
export function s3ObjectUrl(region: string, location: string): string | undefined {
  const m = /^s3:\/\/([^/]+)\/(.+)$/.exec(location)
  if (!m) return undefined
  const key = (m[2] as string).split('/').map(encodeURIComponent).join('/')
  return `https://${consoleHost(region, false)}/s3/object/${m[1]}?region=${region}&prefix=${key}`
}

// ---------------------------------------------------------------- markdown helpers

const cell = (s: string): string => s.replace(/\\/g, '\\\\').replace(/\|/g, '\\|').replace(/\r?\n/g, '<br>')
const code = (s: string): string => `\`${s.replace(/`/g, "'")}\``
const link = (text: string, url: string | undefined): string => (url ? `[${code(text)}](${url})` : code(text))

function table(header: string[], rows: string[][]): string {
  return [
    `| ${header.join(' | ')} |`,
    `| ${header.map(() => '---').join(' | ')} |`,
    ...rows.map((r) => `| ${r.join(' | ')} |`)
  ].join('\n')
}

// ---------------------------------------------------------------- what was produced

const PRODUCTS: {
  output: OutputName
  label: string
  url: (region: string, value: string) => string | undefined
}[] = [
  { output: 'ami-id', label: 'EBS-backed AMI', url: imageUrl },
  { output: 'snapshot-id', label: 'root snapshot', url: snapshotUrl },
  { output: 'instance-store-ami-id', label: 'instance-store AMI', url: imageUrl },
  { output: 'manifest-location', label: 'bundle manifest', url: s3ObjectUrl }
]

/** Whether the cleanup removed what this output names (a product of a failed run). */
function removedByCleanup(result: PipelineResult, value: string): boolean {
  return result.cleanup.removed.some((entry) => {
    const id = entry.slice(entry.indexOf(' ') + 1)
    return id === value || (id.length > 0 && value.startsWith(id))
  })
}

function productsSection(input: SummaryInput): string | undefined {
  const rows: string[][] = []
  for (const p of PRODUCTS) {
    const value = input.outputs[p.output]
    if (!value) continue
    const gone = removedByCleanup(input.result, value) ? ' (removed by the cleanup)' : ''
    rows.push([p.label, `${link(value, p.url(input.region, value))}${gone}`])
  }
  if (rows.length === 0) return undefined
  rows.push(['region', code(input.outputs.region ?? input.region)])
  return `### Produced\n\n${table(['product', 'id or location'], rows)}`
}

// ---------------------------------------------------------------- what the image boots on

/** Image facts shown in the image table, with their labels, in this order. */
const IMAGE_FACTS: [key: string, label: string][] = [
  ['virtualization type', 'virtualization type'],
  ['architecture', 'architecture'],
  ['root device', 'root device'],
  ['boot mode', 'boot mode'],
  ['kernel', 'kernel image (AKI)'],
  ['ramdisk', 'ramdisk image (ARI)'],
  ['ENA support', 'registered with ENA support'],
  ['SR-IOV', 'SR-IOV'],
  ['kernel_version', 'kernel in the image'],
  ['bootloader_config', 'boot loader configuration'],
  ['initramfs_nvme', 'NVMe driver in the image'],
  ['initramfs_ena', 'ENA driver in the image'],
  ['initramfs_note', 'driver check'],
  ['converted from', 'converted from'],
  ['hvm_kernel', 'kernel GRUB 2 boots'],
  ['hvm_root', 'kernel root='],
  ['filesystem', 'root filesystem']
]

/** Which instance families can boot the image, from its virtualization type, architecture and drivers. */
export function bootsOn(facts: Record<string, string>): string | undefined {
  const virtualization = facts['virtualization type']
  if (!virtualization) return undefined
  if (virtualization === 'paravirtual')
    return `Paravirtual: only previous-generation families that still offer PV (m1, m2, m3, c1, c3, t1, hs1). Modern families need an hvm image (${Input.OutputVirtualizationType}: hvm).`
  if (facts.hvm_families !== undefined) return convertedBootsOn(facts)
  const nvme = facts.initramfs_nvme
  const ena = facts.initramfs_ena
  const drivers =
    nvme === 'yes' && ena === 'yes'
      ? 'both'
      : nvme === 'no' || ena === 'no'
        ? `missing ${[nvme === 'no' && 'NVMe', ena === 'no' && 'ENA'].filter(Boolean).join(' and ')}`
        : 'unknown'
  const enaRegistered = facts['ENA support'] !== 'false'
  if (facts.architecture === 'i386')
    return 'hvm, 32-bit: only Xen families that run 32-bit images (such as t2, m3, c3); no Nitro family runs i386.'
  if (facts.architecture === 'arm64')
    return drivers === 'both'
      ? 'hvm, arm64: Graviton (Nitro) families such as t4g, m6g, c7g.'
      : `hvm, arm64: Graviton (Nitro) families only, and the image ${drivers === 'unknown' ? 'was not checked for' : 'lacks'} the NVMe and ENA drivers they need: it may not boot.`
  if (drivers === 'both' && enaRegistered)
    return 'hvm with NVMe and ENA drivers: Xen families such as t2, m4, c4 and Nitro families such as t3, m5, c5, m6i, m7i.'
  if (drivers === 'both')
    return `hvm with NVMe and ENA drivers, but registered without ENA support: Xen families such as t2, m4, c4; register with ${Input.EnaSupport}: true for Nitro families.`
  if (drivers === 'unknown')
    return 'hvm: Xen families such as t2, m4, c4. Whether Nitro families (t3, m5, c5…) can boot it is unknown: the image was not checked for NVMe and ENA drivers, or its initramfs could not be read.'
  return `hvm, ${drivers} driver: Xen families such as t2, m4, c4 only; Nitro families (t3, m5, c5…) need both NVMe and ENA drivers in the initramfs.`
}

/** A paravirtual image made hvm: the verdict of to-hvm.sh's driver check, family by family. */
function convertedBootsOn(facts: Record<string, string>): string {
  const families = (facts.hvm_families ?? '').split(',')
  const xen = families.includes('xen')
  const nitro = families.includes('nitro') && facts['ENA support'] !== 'false'
  const disk = facts.hvm_xen_disk_driver ?? 'unknown'
  const parts = [
    xen
      ? `Xen hvm families such as t2, m4, c4 (disk driver ${disk})`
      : 'not Xen hvm families (no xen-blkfront or ata_piix at boot)',
    nitro
      ? `Nitro families such as t3, m5, c5, m6i, m7i (nvme ${facts.hvm_nvme}, ena ${facts.hvm_ena})`
      : `not Nitro families (they need nvme at boot and ena: nvme ${facts.hvm_nvme ?? 'unknown'}, ena ${facts.hvm_ena ?? 'unknown'}${families.includes('nitro') ? ', and the AMI is registered without ENA support' : ''})`
  ]
  return `hvm, converted from paravirtual: ${parts.join('; ')}.`
}

function imageSection(facts: Record<string, string>): string | undefined {
  const rows = IMAGE_FACTS.filter(([key]) => facts[key] !== undefined && facts[key] !== '').map(
    ([key, label]) => [label, cell(facts[key] as string)]
  )
  const boots = bootsOn(facts)
  if (boots) rows.push(['**boots on**', cell(boots)])
  return rows.length > 0 ? `### Image\n\n${table(['fact', 'value'], rows)}` : undefined
}

function otherFactsSection(facts: Record<string, string>): string | undefined {
  const shown = new Set(IMAGE_FACTS.map(([key]) => key))
  const rows = Object.entries(facts)
    .filter(([key, value]) => !shown.has(key) && value !== '')
    .map(([key, value]) => [cell(key.replace(/_/g, ' ')), cell(value)])
  if (rows.length === 0) return undefined
  return `<details><summary>All facts found</summary>\n\n${table(['fact', 'value'], rows)}\n\n</details>`
}

// ---------------------------------------------------------------- steps, failure, cleanup

function stepsSection(result: PipelineResult): string | undefined {
  if (result.timings.length === 0) return undefined
  const total = result.timings.reduce((sum, t) => sum + t.seconds, 0)
  const rows = result.timings.map((t) => [
    cell(t.step),
    t.status === 'failed' || t.status === 'cancelled' ? `**${t.status}**` : t.status,
    t.status === 'skipped' || t.status === 'not run' ? '' : formatSeconds(t.seconds)
  ])
  rows.push(['**total**', '', formatSeconds(total)])
  return `### Steps\n\n${table(['step', 'status', 'time'], rows)}`
}

function failureSection(result: PipelineResult): string | undefined {
  if (result.ok) return undefined
  const where = result.failedStep
    ? `Step **${cell(result.failedStep)}** ${result.cancelled ? 'was cancelled' : 'failed'}.`
    : ''
  const quoted = failureLine(result)
    .split('\n')
    .map((l) => `> ${l}`)
    .join('\n')
  return `### ${result.cancelled ? 'Cancelled' : 'Failure'}\n\n${where ? `${where}\n\n` : ''}${quoted}`
}

function cleanupSection(result: PipelineResult): string | undefined {
  const { removed, kept, problems } = result.cleanup
  if (removed.length + kept.length + problems.length === 0) return undefined
  const list = (title: string, items: string[]) =>
    items.length > 0 ? `${title}\n\n${items.map((i) => `- ${i}`).join('\n')}` : undefined
  return [
    '### Cleanup',
    list('Removed:', removed),
    list('Kept:', kept),
    list(
      'Could not be removed (the post step tries again; remove by hand what stays):',
      problems.map((p) => `**${p}**`)
    )
  ]
    .filter(Boolean)
    .join('\n\n')
}

function heading(input: SummaryInput): string {
  const { result } = input
  const outcome = result.ok
    ? input.dryRun
      ? 'dry run passed, nothing created'
      : 'done'
    : result.cancelled
      ? 'cancelled'
      : 'failed'
  const sentence = `Mode ${code(input.mode)} in ${code(input.region)}${input.dryRun ? ', dry run' : ''}.`
  return `## instance-to-ebs: ${outcome}\n\n${sentence}`
}

export function renderSummary(input: SummaryInput): string {
  const sections = [
    heading(input),
    failureSection(input.result),
    productsSection(input),
    imageSection(input.facts),
    bootCheckSection(input.bootCheck),
    stepsSection(input.result),
    cleanupSection(input.result),
    otherFactsSection(input.facts)
  ]
  return `${sections.filter(Boolean).join('\n\n')}\n`
}
