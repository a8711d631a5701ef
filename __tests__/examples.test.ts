// The example workflows parse, call this action only with inputs action.yml declares, read only
// outputs it declares, pin every action by major tag, and are linked from the README.
import { describe, expect, it } from '@jest/globals'
import { readdirSync, readFileSync } from 'node:fs'
import { parse } from 'yaml'

const root = new URL('../', import.meta.url)
const text = (path: string) => readFileSync(new URL(path, root), 'utf8')
const action = parse(text('action.yml')) as {
  inputs: Record<string, unknown>
  outputs: Record<string, unknown>
}

interface WorkflowStep {
  id?: string
  uses?: string
  with?: Record<string, unknown>
}
interface Workflow {
  on: unknown
  jobs: Record<string, { steps?: WorkflowStep[]; uses?: string }>
}

const THIS_ACTION = /^(?:instance-to-ebs\/instance-to-ebs@.+|\.\/?)$/
const examples = readdirSync(new URL('examples/', root)).filter((f) => /\.ya?ml$/.test(f))
const load = (file: string) => parse(text(`examples/${file}`)) as Workflow
const stepsOf = (wf: Workflow) => Object.values(wf.jobs).flatMap((job) => job.steps ?? [])
const usesOf = (wf: Workflow) => [
  ...stepsOf(wf).flatMap((s) => (s.uses ? [s.uses] : [])),
  ...Object.values(wf.jobs).flatMap((j) => (j.uses ? [j.uses] : []))
]

describe('examples/', () => {
  it('has the four documented examples', () => {
    expect(examples).toEqual(
      expect.arrayContaining([
        'convert-oidc.yml',
        'matrix-regions.yml',
        'dispatch.yml',
        'scheduled-dry-run.yml'
      ])
    )
  })

  describe.each(examples)('%s', (file) => {
    it('parses as a workflow with jobs', () => {
      const wf = load(file)
      expect(wf.on).toBeDefined()
      expect(Object.keys(wf.jobs).length).toBeGreaterThan(0)
    })

    it('uses this action, with inputs that exist in action.yml', () => {
      const ours = stepsOf(load(file)).filter((s) => s.uses && THIS_ACTION.test(s.uses))
      expect(ours.length).toBeGreaterThan(0)
      const unknown = ours.flatMap((s) => Object.keys(s.with ?? {}).filter((k) => !(k in action.inputs)))
      expect(unknown).toEqual([])
    })

    it('reads only outputs that exist in action.yml', () => {
      const wf = load(file)
      const ids = new Set(
        stepsOf(wf)
          .filter((s) => s.uses && THIS_ACTION.test(s.uses) && s.id)
          .map((s) => s.id)
      )
      const read = [...text(`examples/${file}`).matchAll(/steps\.([\w-]+)\.outputs\.([\w-]+)/g)]
        .filter((m) => ids.has(m[1]))
        .map((m) => m[2] as string)
      expect(read.filter((o) => !(o in action.outputs))).toEqual([])
    })

    it('pins every action by major tag', () => {
      const unpinned = usesOf(load(file)).filter(
        (u) => !/^\.\//.test(u) && !/^[\w.-]+\/[\w.-]+(?:\/[\w./-]+)?@v\d+$/.test(u)
      )
      expect(unpinned).toEqual([])
    })

    it('is linked from the README', () => {
      expect(text('README.md')).toContain(`](examples/${file})`)
    })
  })
})
