// The job summary's boot check section (verify-boot): verdict, instance, status checks, and the
// last lines of the console, which is where a failed boot says why.
import type { BootReport } from '../pipeline/verify/instance-types.js'

const fence = (lines: string[]): string => {
  const text = lines.join('\n').replace(/`{3,}/g, "'''")
  return `\`\`\`text\n${text}\n\`\`\``
}

export function bootCheckSection(report: BootReport | undefined): string | undefined {
  if (!report) return undefined
  const verdict = report.verdict === 'passed' ? 'booted' : '**did not boot**'
  const on = `${report.instanceType} (${report.nitro ? 'Nitro' : 'Xen'})`
  const lines = [
    '### Boot check',
    '',
    `The new AMI ${verdict} on ${on}${report.instanceId ? `, instance \`${report.instanceId}\` (terminated)` : ''}.`
  ]
  if (report.statusChecks) lines.push('', `Status checks: ${report.statusChecks}.`)
  if (report.reason) lines.push('', `> ${report.reason.replace(/\n/g, ' ')}`)
  if (report.consoleNote) lines.push('', report.consoleNote)
  if (report.consoleTail.length > 0)
    lines.push('', `Last ${report.consoleTail.length} lines of the console:`, '', fence(report.consoleTail))
  else lines.push('', 'No console output was available.')
  return lines.join('\n')
}
