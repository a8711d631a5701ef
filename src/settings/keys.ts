// x509-certificate, x509-private-key and their -parameter twins: the key material for
// ec2-bundle-vol and ec2-unbundle. Read first, so that the secrets are masked before anything else.
import type { Form } from './forms.js'
import { Input, type InputName } from './inputs.js'
import type { InputParser } from './parser.js'
import type { KeyMaterial, X509Settings } from './types.js'

const CERT_PEM: Form = {
  pattern: /^-----BEGIN CERTIFICATE-----\s[\s\S]+\s-----END CERTIFICATE-----$/,
  accepted: 'a PEM certificate (-----BEGIN CERTIFICATE----- ... -----END CERTIFICATE-----)'
}
const KEY_PEM: Form = {
  pattern: /^-----BEGIN (RSA )?PRIVATE KEY-----\s[\s\S]+\s-----END \1PRIVATE KEY-----$/,
  accepted: 'a PEM private key (-----BEGIN PRIVATE KEY----- or -----BEGIN RSA PRIVATE KEY-----)'
}
const PARAMETER_NAME: Form = {
  pattern: /^\/?[A-Za-z0-9_.-]+(?:\/[A-Za-z0-9_.-]+)*$/,
  accepted: 'an SSM parameter name such as /ci/x509/key'
}

function readKeyMaterial(
  p: InputParser,
  valueInput: InputName,
  parameterInput: InputName,
  form: Form
): KeyMaterial | undefined {
  const pem = p.secret(valueInput, form)
  const parameter = p.optional(parameterInput, PARAMETER_NAME)
  if (p.given(valueInput) && p.given(parameterInput)) {
    p.add(parameterInput, `'${valueInput}' and '${parameterInput}' cannot both be set; give one of them`)
    return undefined
  }
  if (pem !== undefined) return { kind: 'value', pem }
  if (parameter !== undefined) return { kind: 'parameter', name: parameter }
  return undefined
}

export function readKeys(p: InputParser): X509Settings {
  return {
    certificate: readKeyMaterial(p, Input.X509Certificate, Input.X509CertificateParameter, CERT_PEM),
    privateKey: readKeyMaterial(p, Input.X509PrivateKey, Input.X509PrivateKeyParameter, KEY_PEM)
  }
}
