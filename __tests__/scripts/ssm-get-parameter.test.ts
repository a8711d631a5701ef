// ssm-get-parameter.rb, the source's way to read the key without the AWS CLI: its Signature V4
// compared with the AWS SDK's own signer (@smithy/signature-v4) on the request it really sends,
// its JSON reading, its errors, and (when the emulator is there) a real read from moto.
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals'
import { PutParameterCommand, SSMClient } from '@aws-sdk/client-ssm'
import { SignatureV4 } from '@smithy/signature-v4'
import { execFile, spawnSync } from 'node:child_process'
import { createHash, createHmac, type Hash, type Hmac } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer, type IncomingHttpHeaders, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'

const script = fileURLToPath(new URL('../../src/scripts/ssm-get-parameter.rb', import.meta.url))
const emulator = fileURLToPath(new URL('../../tools/emulator.sh', import.meta.url))
const run = promisify(execFile)
const ruby = spawnSync('ruby', ['--version']).status === 0
if (!ruby) {
  if (process.env.CI === 'true')
    it('ruby is installed (CI requires it: tools/setup.sh installs it)', () => {
      throw new Error('ruby is not installed')
    })
  else console.warn('SKIPPED: ssm-get-parameter.rb tests: ruby is not installed (tools/setup.sh installs it)')
}
const maybe = ruby ? describe : describe.skip

const CREDS = {
  accessKeyId: 'ASIAEXAMPLEKEYID1234',
  secretAccessKey: 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY',
  sessionToken: 'IQoJb3JpZ2luX2VjEXAMPLETOKEN//+=='
}
const PEM = '-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA/+x\n-----END RSA PRIVATE KEY-----'

/** A SHA-256 (or HMAC) for the SDK signer, from Node's crypto. */
class Sha256 {
  private readonly h: Hash | Hmac
  constructor(secret?: unknown) {
    this.h = secret ? createHmac('sha256', secret as string | Uint8Array) : createHash('sha256')
  }
  update(data: string | Uint8Array): void {
    this.h.update(data)
  }
  async digest(): Promise<Uint8Array> {
    return new Uint8Array(this.h.digest())
  }
}

interface Seen {
  method: string
  url: string
  headers: IncomingHttpHeaders
  body: string
}

let server: Server
let port = 0
let seen: Seen[] = []
let answer: { status: number; body: string } = { status: 200, body: '' }

beforeAll(async () => {
  server = createServer((req, res) => {
    let body = ''
    req.setEncoding('utf8')
    req.on('data', (c: string) => {
      body += c
    })
    req.on('end', () => {
      seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body })
      res.writeHead(answer.status, { 'content-type': 'application/x-amz-json-1.1' })
      res.end(answer.body)
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  port = (server.address() as AddressInfo).port
})
afterAll(async () => {
  await new Promise<void>((resolve) => server.close(() => resolve()))
})

async function getParameter(
  name: string,
  env: Record<string, string>
): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const out = await run('ruby', [script, 'eu-central-1', name], {
      env: { PATH: process.env.PATH ?? '', LANG: 'C', ...env },
      encoding: 'utf8'
    })
    return { code: 0, stdout: out.stdout, stderr: out.stderr }
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string }
    return { code: e.code, stdout: e.stdout, stderr: e.stderr }
  }
}

const credentialEnv = {
  AWS_ACCESS_KEY_ID: CREDS.accessKeyId,
  AWS_SECRET_ACCESS_KEY: CREDS.secretAccessKey,
  AWS_SESSION_TOKEN: CREDS.sessionToken
}

maybe('ssm-get-parameter.rb', () => {
  it('signs GetParameter exactly as the AWS SDK signs the same request', async () => {
    seen = []
    answer = {
      status: 200,
      body: JSON.stringify({
        Parameter: { Name: '/i2e/run-1/key', Type: 'SecureString', Value: PEM, Version: 1 }
      })
    }
    const out = await getParameter('/i2e/run-1/key', {
      ...credentialEnv,
      I2E_SSM_ENDPOINT: `http://127.0.0.1:${port}`,
      I2E_SIGV4_DATE: '20261202T030405Z'
    })
    expect(out.stderr).toBe('')
    expect(out.code).toBe(0)
    expect(out.stdout).toBe(`${PEM}\n`)

    expect(seen).toHaveLength(1)
    const req = seen[0] as Seen
    expect(req.method).toBe('POST')
    expect(req.url).toBe('/')
    expect(JSON.parse(req.body)).toEqual({ Name: '/i2e/run-1/key', WithDecryption: true })
    expect(req.headers['x-amz-target']).toBe('AmazonSSM.GetParameter')
    expect(req.headers['content-type']).toBe('application/x-amz-json-1.1')

    // applyChecksum false: the script sends no x-amz-content-sha256 header (optional outside S3)
    const signer = new SignatureV4({
      service: 'ssm',
      region: 'eu-central-1',
      credentials: CREDS,
      sha256: Sha256,
      applyChecksum: false
    })
    const signed = await signer.sign(
      {
        method: 'POST',
        protocol: 'http:',
        hostname: '127.0.0.1',
        port,
        path: '/',
        query: {},
        headers: {
          'content-type': 'application/x-amz-json-1.1',
          host: `127.0.0.1:${port}`,
          'x-amz-target': 'AmazonSSM.GetParameter'
        },
        body: req.body
      },
      { signingDate: new Date('2026-12-02T03:04:05Z') }
    )
    expect(signed.headers['x-amz-security-token']).toBe(CREDS.sessionToken)
    expect(req.headers['x-amz-security-token']).toBe(CREDS.sessionToken)
    expect(req.headers['x-amz-date']).toBe('20261202T030405Z')
    expect(req.headers.authorization).toBe(signed.headers.authorization)
    expect(req.headers.authorization).toMatch(
      /^AWS4-HMAC-SHA256 Credential=ASIAEXAMPLEKEYID1234\/20261202\/eu-central-1\/ssm\/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-security-token;x-amz-target, Signature=[0-9a-f]{64}$/
    )
  })

  it('without a session token signs without one, like the SDK', async () => {
    seen = []
    answer = { status: 200, body: '{"Parameter":{"Value":"a\\"b\\\\c\\u0041\\/d"}}' }
    const out = await getParameter('cert', {
      AWS_ACCESS_KEY_ID: CREDS.accessKeyId,
      AWS_SECRET_ACCESS_KEY: CREDS.secretAccessKey,
      I2E_SSM_ENDPOINT: `http://127.0.0.1:${port}`,
      I2E_SIGV4_DATE: '20261202T030405Z'
    })
    expect(out.stdout).toBe('a"b\\cA/d\n')
    const req = seen[0] as Seen
    const signer = new SignatureV4({
      service: 'ssm',
      region: 'eu-central-1',
      credentials: { accessKeyId: CREDS.accessKeyId, secretAccessKey: CREDS.secretAccessKey },
      sha256: Sha256,
      applyChecksum: false
    })
    const signed = await signer.sign(
      {
        method: 'POST',
        protocol: 'http:',
        hostname: '127.0.0.1',
        port,
        path: '/',
        query: {},
        headers: {
          'content-type': 'application/x-amz-json-1.1',
          host: `127.0.0.1:${port}`,
          'x-amz-target': 'AmazonSSM.GetParameter'
        },
        body: req.body
      },
      { signingDate: new Date('2026-12-02T03:04:05Z') }
    )
    expect(req.headers['x-amz-security-token']).toBeUndefined()
    expect(req.headers.authorization).toBe(signed.headers.authorization)
  })

  it('reports an AWS error as the CLI words it, exit 1, nothing on stdout', async () => {
    answer = {
      status: 400,
      body: '{"__type":"com.amazonaws.ssm#ParameterNotFound","message":"Parameter /x not found."}'
    }
    const out = await getParameter('/x', { ...credentialEnv, I2E_SSM_ENDPOINT: `http://127.0.0.1:${port}` })
    expect(out.code).toBe(1)
    expect(out.stdout).toBe('')
    expect(out.stderr.trim()).toBe(
      'An error occurred (ParameterNotFound) when calling the GetParameter operation: Parameter /x not found.'
    )
  })

  it('refuses to run without credentials or with a name it would have to escape', async () => {
    const none = await getParameter('/x', { I2E_SSM_ENDPOINT: `http://127.0.0.1:${port}` })
    expect(none.code).toBe(1)
    expect(none.stderr).toMatch(/no credentials/)
    const bad = await getParameter('/x"y', { ...credentialEnv, I2E_SSM_ENDPOINT: `http://127.0.0.1:${port}` })
    expect(bad.code).toBe(1)
    expect(bad.stderr).toMatch(/not a parameter name/)
  })

  it('keeps to Ruby 1.8.7 syntax: no JSON library, no 1.9 hash literals, no stabby lambdas, no &.', () => {
    const text = spawnSync('cat', [script], { encoding: 'utf8' }).stdout
    const code = text
      .split('\n')
      .filter((l) => !/^\s*#/.test(l))
      .join('\n')
    expect(code).not.toMatch(/require ['"]json['"]/)
    expect(code).not.toMatch(/[{,(]\s*[a-z_]+: /) // { key: value }
    expect(code).not.toMatch(/->\s*[({]/)
    expect(code).not.toMatch(/&\./)
    expect(code).not.toMatch(/__dir__|require_relative|\.then\b|\bthen\s*\{|<<~/)
  })

  it('reads a SecureString parameter from moto (the emulator), when it runs here', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'i2e-ssm-rb-'))
    const env = { ...process.env, I2E_EMULATOR_STATE: join(dir, 'emulator.env') }
    const started = spawnSync('bash', [emulator, 'start'], { env, encoding: 'utf8', timeout: 300_000 })
    const url = /^I2E_MOTO_URL=(.+)$/m.exec(started.stdout)?.[1]
    try {
      if (!url) {
        if (process.env.CI === 'true') throw new Error(`the emulator did not start: ${started.stderr}`)
        console.warn(`SKIPPED: reading from moto: the emulator did not start: ${started.stderr.trim()}`)
        return
      }
      const ssm = new SSMClient({
        endpoint: url,
        region: 'eu-central-1',
        credentials: { accessKeyId: 'testing', secretAccessKey: 'testing' }
      })
      await ssm.send(
        new PutParameterCommand({ Name: '/i2e/rb/key', Type: 'SecureString', Value: PEM, Overwrite: true })
      )
      const out = await getParameter('/i2e/rb/key', {
        AWS_ACCESS_KEY_ID: 'testing',
        AWS_SECRET_ACCESS_KEY: 'testing',
        I2E_SSM_ENDPOINT: url
      })
      expect(out.stderr).toBe('')
      expect(out.stdout).toBe(`${PEM}\n`)
      const missing = await getParameter('/i2e/rb/none', {
        AWS_ACCESS_KEY_ID: 'testing',
        AWS_SECRET_ACCESS_KEY: 'testing',
        I2E_SSM_ENDPOINT: url
      })
      expect(missing.stderr).toMatch(
        /^An error occurred \(ParameterNotFound\) when calling the GetParameter operation/
      )
    } finally {
      spawnSync('bash', [emulator, 'stop'], { env, encoding: 'utf8' })
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
