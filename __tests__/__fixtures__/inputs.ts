// Input maps for settings tests, and a way to expose them the way the runner does (INPUT_* vars).
import type { InputReader } from '../../src/settings/index.js'

export const CERT =
  '-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUSECRETCERTLINE\n-----END CERTIFICATE-----'
export const KEY =
  '-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASSECRETKEYLINE\n-----END PRIVATE KEY-----'

/** A complete, valid convert configuration. */
export const convertInputs: Record<string, string> = {
  'source-ami-id': 'ami-0123456789abcdef0',
  'helper-instance-id': 'i-0fedcba9876543210',
  region: 'us-east-1',
  'x509-private-key': KEY
}

/** A complete, valid full (bundle then convert) configuration. */
export const fullInputs: Record<string, string> = {
  'source-instance-id': 'i-0123456789abcdef0',
  'helper-subnet-id': 'subnet-0123456789abcdef0',
  'helper-instance-profile': 'instance-to-ebs-helper',
  's3-bucket': 'my-bundles',
  region: 'eu-west-1',
  'x509-certificate': CERT,
  'x509-private-key': KEY
}

export const reader =
  (inputs: Record<string, string>): InputReader =>
  (name) =>
    inputs[name] ?? ''

/** Sets INPUT_* variables as the Actions runner does (hyphens kept, upper case); returns an undo. */
export function setActionInputs(inputs: Record<string, string>): () => void {
  const variable = (name: string) => `INPUT_${name.replace(/ /g, '_').toUpperCase()}`
  const names = Object.keys(inputs).map(variable)
  for (const [name, value] of Object.entries(inputs)) process.env[variable(name)] = value
  return () => {
    for (const n of names) delete process.env[n]
  }
}
