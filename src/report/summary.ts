// The job summary: what was produced, and how long each step took.
import * as core from '@actions/core'
import type { RunContext } from '../pipeline/context.js'
import { formatSeconds, type PipelineResult } from '../pipeline/runner.js'
import type { Settings } from '../settings.js'

export async function writeSummary(
  settings: Settings,
  ctx: RunContext,
  result: PipelineResult
): Promise<void> {
  if (!process.env.GITHUB_STEP_SUMMARY) return
  const summary = core.summary.addHeading(result.ok ? 'instance-to-ebs: done' : 'instance-to-ebs: failed', 2)
  const rows = Object.entries(ctx.outputs).map(([k, v]) => [k, v ?? ''])
  if (rows.length > 0)
    summary.addTable([
      [
        { data: 'output', header: true },
        { data: 'value', header: true }
      ],
      ...rows
    ])
  summary.addTable([
    [
      { data: 'step', header: true },
      { data: 'status', header: true },
      { data: 'time', header: true }
    ],
    ...result.timings.map((t) => [t.step, t.status, formatSeconds(t.seconds)])
  ])
  summary.addRaw(`Mode: ${settings.mode}, region ${settings.region}.`, true)
  await summary.write()
}
