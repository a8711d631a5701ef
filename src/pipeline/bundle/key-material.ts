// The X.509 certificate and private key reach the source instance only through SecureString
// parameters: a temporary one per value given as a secret (unique name, recorded at once and
// removed after the run whatever happens), or the parameter the user named. Never in a command's
// parameters, never in the log. The private key's parameter name goes where the shared key
// parameter step (../key-parameter.ts) keeps it, ctx.state.keyParameter, so that the convert steps
// of a full run reuse it instead of writing the key a second time.
import { randomUUID } from 'node:crypto'
import { PutParameterCommand } from '@aws-sdk/client-ssm'
import type { KeyMaterial } from '../../settings.js'
import type { RunContext } from '../context.js'
import type { Step } from '../runner.js'
import { changing, RUN_TAG, runId } from './state.js'

export type KeyRole = 'certificate' | 'privateKey'

/** Where each parameter name is kept; 'keyParameter' is the shared key parameter step's key. */
const STATE_KEY: Record<KeyRole, string> = { certificate: 'certificateParameter', privateKey: 'keyParameter' }

export function keyParameterOf(ctx: RunContext, role: KeyRole): string | undefined {
  const name = ctx.state[STATE_KEY[role]]
  return typeof name === 'string' ? name : undefined
}

const INPUT: Record<KeyRole, string> = { certificate: 'x509-certificate', privateKey: 'x509-private-key' }
const LEAF: Record<KeyRole, string> = { certificate: 'x509-certificate', privateKey: 'x509-private-key' }

/** SSM standard parameters hold 4 KB; a 4096-bit key's PEM fits, larger ones need the advanced tier. */
const tierFor = (value: string): 'Standard' | 'Advanced' =>
  Buffer.byteLength(value) > 4096 ? 'Advanced' : 'Standard'

/** Makes (or names) the parameter for one piece of key material and returns its name. */
export async function ensureKeyParameter(ctx: RunContext, role: KeyRole): Promise<string> {
  const existing = keyParameterOf(ctx, role)
  if (existing) return existing
  const material: KeyMaterial | undefined = ctx.settings.x509[role]
  if (!material) throw new Error(`'${INPUT[role]}' (or '${INPUT[role]}-parameter') is required to bundle`)
  if (material.kind === 'parameter') {
    ctx.state[STATE_KEY[role]] = material.name
    ctx.log.info(`${INPUT[role]}: the instance reads the SecureString parameter ${material.name}`)
    return material.name
  }
  const name = `/instance-to-ebs/${runId(ctx)}/${randomUUID()}/${LEAF[role]}`
  try {
    await ctx.clients.ssm.send(
      new PutParameterCommand({
        Name: name,
        Type: 'SecureString',
        Value: material.pem,
        Tier: tierFor(material.pem),
        Description: 'instance-to-ebs: temporary key material, deleted when the run ends',
        Tags: [{ Key: RUN_TAG, Value: runId(ctx) }]
      })
    )
  } catch (err) {
    // The SDK's message never holds the value; say what to allow.
    throw new Error(
      `Could not store ${INPUT[role]} as a temporary SecureString parameter ${name} (${(err as Error).name}: ${(err as Error).message}); allow ssm:PutParameter, ssm:AddTagsToResource and ssm:DeleteParameter on arn:aws:ssm:${ctx.settings.region}:*:parameter/instance-to-ebs/* for the action's role, or give ${INPUT[role]}-parameter`
    )
  }
  ctx.ledger.record({ kind: 'parameter', id: name, removeOn: 'always' })
  ctx.state[STATE_KEY[role]] = name
  ctx.log.info(`${INPUT[role]}: stored as the temporary SecureString parameter ${name}`)
  return name
}

export const bundleKeyMaterial: Step<RunContext> = {
  name: 'bundle key material',
  enabled: changing,
  run: async (ctx) => {
    await ensureKeyParameter(ctx, 'certificate')
    await ensureKeyParameter(ctx, 'privateKey')
  }
}
