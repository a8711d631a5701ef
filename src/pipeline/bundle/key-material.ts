// The X.509 certificate and private key reach the source instance only through SecureString
// parameters: a temporary one per value given as a secret (recorded at once and removed after the
// run whatever happens), or the parameter the user named. Never in a command's parameters, never
// in the log. The private key goes through the shared key parameter step (../key-parameter.ts),
// so the convert steps of a full run find its parameter and do not write the key a second time.
import { randomUUID } from 'node:crypto'
import type { RunContext } from '../context.js'
import { deliverKeyMaterial, type KeyMaterialKind, keyParameterStep } from '../key-parameter.js'
import type { Step } from '../runner.js'
import { changing } from './state.js'
import { Input } from '../../settings/inputs.js'

const STATE_KEY = 'certificateParameter'

/** The parameter holding the certificate, once the key material step has run. */
export function certificateParameterName(ctx: RunContext): string | undefined {
  const name = ctx.state[STATE_KEY]
  return typeof name === 'string' ? name : undefined
}

/** A unique name: jobs of one workflow run (a matrix) may bundle at the same time. */
export const temporaryCertificateParameterName = (runId: string): string =>
  `/instance-to-ebs/${runId}/${randomUUID()}/x509-certificate`

const CERTIFICATE: KeyMaterialKind = {
  stateKey: STATE_KEY,
  label: 'certificate',
  valueInput: Input.X509Certificate,
  parameterInput: Input.X509CertificateParameter,
  material: (ctx) => ctx.settings.x509.certificate,
  temporaryName: temporaryCertificateParameterName
}

const privateKeyParameter = keyParameterStep()

export const bundleKeyMaterial: Step<RunContext> = {
  name: 'bundle key material',
  enabled: changing,
  run: async (ctx) => {
    await deliverKeyMaterial(ctx, CERTIFICATE)
    // Recorded under this step: removed when the run ends, not when bundling ends, so convert reuses it.
    await privateKeyParameter.run(ctx)
  }
}
