// The id of one job's run, and the names and idempotency tokens made from it. Shared by the
// bundle, convert and verify steps and by the key parameter, so it stands at the pipeline's top.
import { randomBytes } from 'node:crypto'
import type { RunContext } from './context.js'

/**
 * One id per job, kept in ctx.state: the workflow run and attempt plus a random part (the jobs
 * of a matrix share the run and attempt, and must not share names or idempotency tokens), or
 * random outside Actions. Used in the run tag, temporary names and client tokens.
 */
export function runIdOf(ctx: RunContext, env: NodeJS.ProcessEnv = process.env): string {
  if (typeof ctx.state.runId === 'string') return ctx.state.runId
  const random = randomBytes(4).toString('hex')
  const id = env.GITHUB_RUN_ID
    ? `${env.GITHUB_RUN_ID}-${env.GITHUB_RUN_ATTEMPT ?? '1'}-${random}`
    : `local-${random}`
  ctx.state.runId = id
  return id
}

/** An idempotency token for one create call of this job (EC2 allows 64 characters). */
export const clientToken = (ctx: RunContext, what: string): string => `i2e-${runIdOf(ctx)}-${what}`.slice(-64)
