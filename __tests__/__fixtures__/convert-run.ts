// Runs the convert plan against a FakeAccount the way main does (settings → clients → steps →
// unwinding with the real resource remover), with a quiet logger and no runner state files.
import { type Clients, makeClients } from '../../src/aws/clients.js'
import type { RunContext } from '../../src/pipeline/context.js'
import { Ledger } from '../../src/pipeline/ledger.js'
import { planSteps } from '../../src/pipeline/plan.js'
import { resourceRemover } from '../../src/pipeline/resources.js'
import { type Logger, type PipelineResult, runPipeline } from '../../src/pipeline/runner.js'
import { readSettings } from '../../src/settings/index.js'
import { HELPER, REGION, SOURCE_AMI, SUBNET } from './aws-account.js'
import { KEY, reader } from './inputs.js'

export const convertWithHelper: Record<string, string> = {
  'source-ami-id': SOURCE_AMI,
  'helper-instance-id': HELPER,
  region: REGION,
  'x509-private-key': KEY
}

export const convertWithLaunch: Record<string, string> = {
  'source-ami-id': SOURCE_AMI,
  'helper-subnet-id': SUBNET,
  'helper-instance-profile': 'instance-to-ebs-helper',
  region: REGION,
  'x509-private-key': KEY,
  tags: 'team=platform'
}

export interface ConvertRun {
  result: PipelineResult
  ctx: RunContext
  lines: string[]
  warnings: string[]
}

export async function runConvert(
  inputs: Record<string, string>,
  options: { clients?: Clients; signal?: AbortSignal } = {}
): Promise<ConvertRun> {
  const settings = readSettings(reader(inputs), { env: {} })
  const clients =
    options.clients ?? makeClients({ region: settings.region, maxAttempts: settings.maxAttempts })
  const lines: string[] = []
  const warnings: string[] = []
  const log: Logger = {
    info: (m) => {
      lines.push(m)
    },
    warning: (m) => {
      warnings.push(m)
    },
    group: (_name, fn) => fn()
  }
  const ctx: RunContext = {
    settings,
    clients,
    log,
    ledger: new Ledger(settings.region, [], () => {}),
    signal: options.signal ?? new AbortController().signal,
    outputs: { region: settings.region },
    facts: {},
    state: { runId: '4242-1-a1b2c3d4' },
    pollDelayMs: 1
  }
  const result = await runPipeline(planSteps(settings), ctx, {
    remove: resourceRemover(clients, { pollDelayMs: 1 }),
    log
  })
  return { result, ctx, lines, warnings }
}
