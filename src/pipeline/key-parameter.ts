// Delivers the X.509 private key to an instance: the parameter the user named, or a temporary
// SecureString (unique name, removed in cleanup) that the instance reads with its own profile.
// The key never travels in SSM command parameters and never reaches the log. Shared by the
// bundle and convert steps: the first one that runs makes the parameter, later ones reuse it.
import { PutParameterCommand } from '@aws-sdk/client-ssm'
import { errorCode } from '../aws/poll.js'
import type { RunContext } from './context.js'
import type { Step } from './runner.js'
import { RUN_TAG, runIdOf } from './convert/state.js'

const STATE_KEY = 'keyParameter'

/** The parameter holding the private key, once a key-parameter step has run. */
export function keyParameterName(ctx: RunContext): string {
  const name = ctx.state[STATE_KEY]
  if (typeof name !== 'string') throw new Error('internal error: the key parameter step has not run')
  return name
}

/** Unique per job, as the run id is (see runIdOf). */
export const temporaryKeyParameterName = (runId: string): string => `/instance-to-ebs/${runId}/x509-key`

export interface KeyParameterStepOptions {
  name?: string
  enabled?: (ctx: RunContext) => boolean
}

export function keyParameterStep(options: KeyParameterStepOptions = {}): Step<RunContext> {
  return {
    name: options.name ?? 'key parameter',
    enabled: options.enabled,
    run: async (ctx) => {
      if (typeof ctx.state[STATE_KEY] === 'string') {
        ctx.log.info(`private key: in SSM parameter ${ctx.state[STATE_KEY]}`)
        return
      }
      const key = ctx.settings.x509.privateKey
      if (!key)
        throw new Error(
          "No private key: set 'x509-private-key' (from a secret) or 'x509-private-key-parameter'"
        )
      if (key.kind === 'parameter') {
        ctx.state[STATE_KEY] = key.name
        ctx.log.info(`private key: in SSM parameter ${key.name} (given)`)
        return
      }
      const name = temporaryKeyParameterName(runIdOf(ctx))
      try {
        await ctx.clients.ssm.send(
          new PutParameterCommand({
            Name: name,
            Value: key.pem,
            Type: 'SecureString',
            Overwrite: false,
            Tier: key.pem.length > 4096 ? 'Advanced' : 'Standard',
            Description:
              'instance-to-ebs: temporary copy of the bundle private key, deleted at the end of the run',
            Tags: [{ Key: RUN_TAG, Value: runIdOf(ctx) }]
          })
        )
      } catch (err) {
        const code = errorCode(err) ?? 'error'
        throw new Error(
          code === 'ParameterAlreadyExists'
            ? `SSM parameter ${name} already exists (left by an earlier attempt of this run?); delete it and run again`
            : `Could not store the private key in SSM parameter ${name} (${code}); allow ssm:PutParameter, ssm:AddTagsToResource and ssm:DeleteParameter on parameter/instance-to-ebs/* for the action's role`
        )
      }
      ctx.ledger.record({ kind: 'parameter', id: name, removeOn: 'always' })
      ctx.state[STATE_KEY] = name
      ctx.log.info(`private key: stored in temporary SecureString ${name}`)
    }
  }
}
