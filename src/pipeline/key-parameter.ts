// Delivers the X.509 private key to an instance: the parameter the user named, or a temporary
// SecureString (unique name, removed in cleanup) that the instance reads with its own profile.
// The key never travels in SSM command parameters and never reaches the log. Shared by the
// bundle and convert steps: the first one that runs makes the parameter, later ones reuse it.
// The temporary parameters (the key's, and the certificate's of bundle/key-material.ts) are
// deleted by parameterRemoval, below.
import { DeleteParameterCommand, PutParameterCommand } from '@aws-sdk/client-ssm'
import { errorCode } from '../errors.js'
import type { KeyMaterial } from '../settings/index.js'
import type { RunContext } from './context.js'
import { cliQuote, type Removal, regionOf, tolerateGone } from './removal.js'
import type { Step } from './runner.js'
import { RUN_TAG } from './tags.js'
import { runIdOf } from './run-id.js'
import { Input, type InputName } from '../settings/inputs.js'

const STATE_KEY = 'keyParameter'

/** The parameter holding the private key, once a key-parameter step has run. */
export function keyParameterName(ctx: RunContext): string {
  const name = ctx.state[STATE_KEY]
  if (typeof name !== 'string') throw new Error('internal error: the key parameter step has not run')
  return name
}

/** Unique per job, as the run id is (see runIdOf). */
export const temporaryKeyParameterName = (runId: string): string => `/instance-to-ebs/${runId}/x509-key`

/** One piece of key material and where it is kept: the private key, or the bundling certificate. */
export interface KeyMaterialKind {
  /** Where ctx.state keeps the parameter name. */
  stateKey: string
  /** For messages: "private key", "certificate". */
  label: string
  valueInput: InputName
  parameterInput: InputName
  material: (ctx: RunContext) => KeyMaterial | undefined
  temporaryName: (runId: string) => string
}

export const PRIVATE_KEY: KeyMaterialKind = {
  stateKey: STATE_KEY,
  label: 'private key',
  valueInput: Input.X509PrivateKey,
  parameterInput: Input.X509PrivateKeyParameter,
  material: (ctx) => ctx.settings.x509.privateKey,
  temporaryName: temporaryKeyParameterName
}

/**
 * Puts the material in ctx.state as a parameter name: the one the user named, one an earlier step
 * made, or a temporary SecureString made now (recorded at once, removed when the run ends).
 */
export async function deliverKeyMaterial(ctx: RunContext, kind: KeyMaterialKind): Promise<void> {
  const known = ctx.state[kind.stateKey]
  if (typeof known === 'string') {
    ctx.log.info(`${kind.label}: in SSM parameter ${known}`)
    return
  }
  const material = kind.material(ctx)
  if (!material)
    throw new Error(`No ${kind.label}: set '${kind.valueInput}' (from a secret) or '${kind.parameterInput}'`)
  if (material.kind === 'parameter') {
    ctx.state[kind.stateKey] = material.name
    ctx.log.info(`${kind.label}: in SSM parameter ${material.name} (given)`)
    return
  }
  const name = kind.temporaryName(runIdOf(ctx))
  try {
    await ctx.clients.ssm.send(
      new PutParameterCommand({
        Name: name,
        Value: material.pem,
        Type: 'SecureString',
        Overwrite: false,
        Tier: material.pem.length > 4096 ? 'Advanced' : 'Standard',
        Description: `instance-to-ebs: temporary copy of the bundle ${kind.label}, deleted at the end of the run`,
        Tags: [{ Key: RUN_TAG, Value: runIdOf(ctx) }]
      })
    )
  } catch (err) {
    const code = errorCode(err) ?? 'error'
    throw new Error(
      code === 'ParameterAlreadyExists'
        ? `SSM parameter ${name} already exists (left by an earlier attempt of this run?); delete it and run again`
        : `Could not store the ${kind.label} (${kind.valueInput}) in the temporary SecureString parameter ${name} (${code}); allow ssm:PutParameter, ssm:AddTagsToResource and ssm:DeleteParameter on parameter/instance-to-ebs/* for the action's role, or give ${kind.parameterInput}`
    )
  }
  ctx.ledger.record({ kind: 'parameter', id: name, removeOn: 'always' })
  ctx.state[kind.stateKey] = name
  ctx.log.info(`${kind.label}: stored in temporary SecureString ${name}`)
}

export interface KeyParameterStepOptions {
  name?: string
  enabled?: (ctx: RunContext) => boolean
}

export function keyParameterStep(options: KeyParameterStepOptions = {}): Step<RunContext> {
  return {
    name: options.name ?? 'key parameter',
    enabled: options.enabled,
    run: (ctx) => deliverKeyMaterial(ctx, PRIVATE_KEY)
  }
}

export const parameterRemoval: Removal = {
  remove: (r, env) => tolerateGone(() => env.clients.ssm.send(new DeleteParameterCommand({ Name: r.id }))),
  command: (r) => `aws ssm delete-parameter ${regionOf(r)} --name ${cliQuote(r.id)}`
}
