// The X.509 certificate and private key reach the source instance only through SecureString
// parameters: a temporary one per value given as a secret (recorded at once and removed after the
// run whatever happens), or the parameter the user named. Never in a command's parameters, never
// in the log. The private key goes through the shared key parameter step (../key-parameter.ts),
// so the convert steps of a full run find its parameter and do not write the key a second time.
import { randomUUID } from 'node:crypto'
import { PutParameterCommand } from '@aws-sdk/client-ssm'
import { errorCode } from '../../aws/poll.js'
import type { RunContext } from '../context.js'
import { RUN_TAG, runIdOf } from '../convert/state.js'
import { keyParameterStep } from '../key-parameter.js'
import type { Step } from '../runner.js'
import { changing } from './state.js'

const STATE_KEY = 'certificateParameter'

/** The parameter holding the certificate, once the key material step has run. */
export function certificateParameterName(ctx: RunContext): string | undefined {
  const name = ctx.state[STATE_KEY]
  return typeof name === 'string' ? name : undefined
}

/** A unique name: jobs of one workflow run (a matrix) may bundle at the same time. */
export const temporaryCertificateParameterName = (runId: string): string =>
  `/instance-to-ebs/${runId}/${randomUUID()}/x509-certificate`

async function ensureCertificateParameter(ctx: RunContext): Promise<void> {
  if (certificateParameterName(ctx)) return
  const cert = ctx.settings.x509.certificate
  if (!cert)
    throw new Error("No certificate: set 'x509-certificate' (from a secret) or 'x509-certificate-parameter'")
  if (cert.kind === 'parameter') {
    ctx.state[STATE_KEY] = cert.name
    ctx.log.info(`certificate: in SSM parameter ${cert.name} (given)`)
    return
  }
  const name = temporaryCertificateParameterName(runIdOf(ctx))
  try {
    await ctx.clients.ssm.send(
      new PutParameterCommand({
        Name: name,
        Value: cert.pem,
        Type: 'SecureString',
        Overwrite: false,
        Tier: cert.pem.length > 4096 ? 'Advanced' : 'Standard',
        Description:
          'instance-to-ebs: temporary copy of the bundle certificate, deleted at the end of the run',
        Tags: [{ Key: RUN_TAG, Value: runIdOf(ctx) }]
      })
    )
  } catch (err) {
    throw new Error(
      `Could not store x509-certificate in the temporary SecureString parameter ${name} (${errorCode(err) ?? 'error'}); allow ssm:PutParameter, ssm:AddTagsToResource and ssm:DeleteParameter on parameter/instance-to-ebs/* for the action's role, or give x509-certificate-parameter`
    )
  }
  ctx.ledger.record({ kind: 'parameter', id: name, removeOn: 'always' })
  ctx.state[STATE_KEY] = name
  ctx.log.info(`certificate: stored in temporary SecureString ${name}`)
}

const privateKeyParameter = keyParameterStep()

export const bundleKeyMaterial: Step<RunContext> = {
  name: 'bundle key material',
  enabled: changing,
  run: async (ctx) => {
    await ensureCertificateParameter(ctx)
    // Recorded under this step: removed when the run ends, not when bundling ends, so convert reuses it.
    await privateKeyParameter.run(ctx)
  }
}
