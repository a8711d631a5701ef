// The secrets of an ec2-ami-tools bundle, opened on the runner in Node: the manifest signature
// checked against the certificate (or the private key's public half), and the AES-128-CBC key and
// IV unwrapped from user_encrypted_key/user_encrypted_iv with the private key. Done here rather
// than with `openssl dgst -sha1 -verify` on a helper, whose crypto policy may refuse SHA-1
// signatures; Node's own OpenSSL verifies them.
import {
  constants,
  createPrivateKey,
  createPublicKey,
  type KeyObject,
  privateDecrypt,
  verify,
  X509Certificate
} from 'node:crypto'

export interface BundleSecrets {
  /** `<machine_configuration>…</machine_configuration><image>…</image>`, exactly as written: what the bundler signed. */
  signedText: string
  signature: Buffer
  userEncryptedKey: Buffer
  userEncryptedIv: Buffer
  /** The SHA-1 of the decrypted, gunzipped tar stream. */
  digest: string
  /** Bytes of the disk image. */
  imageBytes: number
  /** The tar member that holds the image. */
  imageName: string
  /** Parts in index order, each with its SHA-1. */
  parts: { name: string; sha1: string }[]
}

const bad = (where: string, what: string): Error =>
  new Error(
    `${where} is unreadable or truncated: ${what}; use the image.manifest.xml that ec2-bundle-vol or ec2-bundle-image wrote`
  )

const hexField = (text: string, tag: string, where: string): Buffer => {
  const value = new RegExp(`<${tag}(?:\\s[^>]*)?>([^<]*)</${tag}>`).exec(text)?.[1]?.trim()
  if (!value || !/^(?:[0-9a-fA-F]{2})+$/.test(value)) throw bad(where, `<${tag}> is missing or not hex`)
  return Buffer.from(value, 'hex')
}

/** Reads what the runner needs to open and check a bundle from the manifest text. */
export function readBundleSecrets(xml: string, where = 'the manifest'): BundleSecrets {
  const machine = /<machine_configuration>[\s\S]*<\/machine_configuration>/.exec(xml)?.[0]
  const image = /<image>([\s\S]*)<\/image>/.exec(xml)
  if (!machine || !image) throw bad(where, 'no <machine_configuration> or <image>')
  const inner = image[1] as string
  const partsBlock = /<parts\s+count=['"](\d+)['"]\s*>([\s\S]*)<\/parts>/.exec(inner)
  if (!partsBlock) throw bad(where, 'no <parts> list')
  const fields = inner.replace(partsBlock[0], '')
  const digest = /<digest[^>]*>([0-9a-fA-F]{40})<\/digest>/.exec(fields)?.[1]?.toLowerCase()
  const size = /<size>\s*(\d{1,19})\s*<\/size>/.exec(fields)?.[1]
  const name = /<name>([^<]+)<\/name>/.exec(fields)?.[1]?.trim()
  if (!digest) throw bad(where, 'the image digest is not a SHA-1')
  if (!size || Number(size) <= 0) throw bad(where, 'the image size is not a positive number')
  if (!name) throw bad(where, 'the image has no <name>')
  const count = Number(partsBlock[1])
  const parts: { name: string; sha1: string }[] = []
  for (const m of (partsBlock[2] as string).matchAll(/<part\s+index=['"](\d+)['"]\s*>([\s\S]*?)<\/part>/g)) {
    const index = Number(m[1])
    const file = /<filename>([^<]+)<\/filename>/.exec(m[2] as string)?.[1]?.trim()
    const sha1 = /<digest[^>]*>([0-9a-fA-F]{40})<\/digest>/.exec(m[2] as string)?.[1]?.toLowerCase()
    if (!file || !sha1) throw bad(where, `part ${index} has no file name or SHA-1 digest`)
    if (index >= count || parts[index])
      throw bad(where, `part index ${index} is out of range or listed twice`)
    parts[index] = { name: file, sha1 }
  }
  if (count === 0 || parts.filter(Boolean).length !== count)
    throw bad(where, `it says count='${count}' but lists ${parts.filter(Boolean).length} parts`)
  return {
    signedText: machine + image[0],
    signature: hexField(xml, 'signature', where),
    userEncryptedKey: hexField(fields, 'user_encrypted_key', where),
    userEncryptedIv: hexField(fields, 'user_encrypted_iv', where),
    digest,
    imageBytes: Number(size),
    imageName: name,
    parts
  }
}

export class BundleKeyError extends Error {
  override name = 'BundleKeyError'
}

const WRONG_KEY =
  "wrong private key: it does not decrypt the manifest's user_encrypted_key/iv; give the private key whose certificate was used to bundle this image (ec2-bundle-vol -c/-k)"

/**
 * RSA PKCS#1 v1.5 decryption of one wrapped field. The bundler wraps the hex text of the key, so
 * the result must be exactly 32 hex characters. Node 24's OpenSSL uses implicit rejection: a wrong
 * key yields random bytes rather than an error, so that check is the only proof of the right key.
 */
function unwrap(privateKey: KeyObject, wrapped: Buffer): Buffer {
  let plain: Buffer
  try {
    plain = privateDecrypt({ key: privateKey, padding: constants.RSA_PKCS1_PADDING }, wrapped)
  } catch {
    throw new BundleKeyError(WRONG_KEY)
  }
  const text = plain.toString('latin1')
  if (!/^[0-9a-fA-F]{32}$/.test(text)) throw new BundleKeyError(WRONG_KEY)
  return Buffer.from(text, 'hex')
}

/** The AES-128-CBC key and IV of the bundle. */
export function unwrapBundleKey(secrets: BundleSecrets, privateKeyPem: string): { key: Buffer; iv: Buffer } {
  let privateKey: KeyObject
  try {
    privateKey = createPrivateKey(privateKeyPem)
  } catch (err) {
    throw new BundleKeyError(`the private key is not a PEM RSA private key (${(err as Error).message})`)
  }
  return {
    key: unwrap(privateKey, secrets.userEncryptedKey),
    iv: unwrap(privateKey, secrets.userEncryptedIv)
  }
}

/**
 * Checks the manifest signature (RSA, SHA-1) with the certificate when given, else with the
 * private key's public half. Throws when the manifest was changed after signing.
 */
export function verifyManifestSignature(
  secrets: BundleSecrets,
  keyPem: { certificatePem?: string; privateKeyPem?: string },
  where = 'the manifest'
): void {
  const source = keyPem.certificatePem ?? keyPem.privateKeyPem
  if (!source)
    throw new Error('internal error: no certificate or private key to check the manifest signature')
  const publicKey = keyPem.certificatePem
    ? new X509Certificate(keyPem.certificatePem).publicKey
    : createPublicKey(source)
  const ok = verify('sha1', Buffer.from(secrets.signedText, 'utf8'), publicKey, secrets.signature)
  if (!ok)
    throw new Error(
      `manifest signature mismatch: ${where} was changed after it was signed, or belongs to another key; use the manifest exactly as the bundler wrote it`
    )
}
