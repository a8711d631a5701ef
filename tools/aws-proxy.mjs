// An HTTP proxy in front of the emulator for the end-to-end run (started by
// tools/emulator-session.mjs): the action's AWS_ENDPOINT_URL and AWS_ENDPOINT_URL_SSM point here.
//
// 1. It decodes every request dist/index.js really sends (EC2 query, SSM JSON, S3 REST) into the
//    SDK's shape and checks it with the contract rules of tools/aws-contract.mjs. A request that
//    breaks one is refused the way AWS refuses it (400, the service's error format) and remembered:
//    GET /_proxy/report lists the violations, which the e2e suite requires to be none.
// 2. It adds the time AWS takes, which moto does not: a volume, snapshot or AMI just created answers
//    NotFound to its first Describe (InvalidVolume.NotFound, InvalidSnapshot.NotFound,
//    InvalidAMIID.NotFound), then shows a pending state (creating, attaching, pending with rising
//    progress) before moto's real one, so every waiting path of the action is exercised. The phases
//    are counted in Describe calls, not in time, so that the run stays short and deterministic.
//
//   node tools/aws-proxy.mjs   (I2E_MOTO_URL: moto; I2E_SSM_URL: the SSM stand-in; prints AWS_PROXY_URL=…)
import { createServer } from 'node:http'
import { pathToFileURL } from 'node:url'
import { checkRequest } from './aws-contract.mjs'
import { ec2ErrorXml, escapeXml, passOn, readBody, sendAnswer } from './http-relay.mjs'

// ------------------------------------------------------------------ decoding

// EC2 query lists are serialized under a singular name (TagSpecification.1.Tag.1.Key); the SDK's
// member names are plural. Only CreateTags' ResourceId.N is not a plain plural.
const EC2_LIST_NAMES = { ResourceId: 'Resources' }

/** An EC2 query body (Action=…&Name.1.Sub=…) as the SDK input it was serialized from. */
export function decodeEc2Query(body) {
  const params = new URLSearchParams(body)
  const root = {}
  for (const [key, value] of params) {
    if (key === 'Action' || key === 'Version') continue
    const parts = key.split('.')
    let node = root
    for (let i = 0; i < parts.length; i++) {
      const part = parts[i]
      const last = i === parts.length - 1
      const index = /^\d+$/.test(part) ? Number(part) - 1 : undefined
      const slot = index ?? part
      if (last) node[slot] = value
      else {
        const nextIsIndex = /^\d+$/.test(parts[i + 1])
        node[slot] ??= nextIsIndex ? [] : {}
        node = node[slot]
      }
    }
  }
  const rename = (v) => {
    if (Array.isArray(v)) return v.map(rename)
    if (v && typeof v === 'object')
      return Object.fromEntries(
        Object.entries(v).map(([k, x]) => [
          Array.isArray(x) ? (EC2_LIST_NAMES[k] ?? (k.endsWith('s') ? k : `${k}s`)) : k,
          rename(x)
        ])
      )
    return v
  }
  return { operation: params.get('Action') ?? '', input: rename(root) }
}

/** An S3 REST request (path style, or virtual-hosted by the Host header) as operation and input. */
export function decodeS3(method, url, host, body) {
  const u = new URL(url, 'http://s3')
  const segments = u.pathname.split('/').slice(1)
  const hostLabel = String(host ?? '').split(':')[0]
  const virtual = /^[a-z0-9][a-z0-9.-]*\.(s3|localhost)/.test(hostLabel) ? hostLabel.split('.')[0] : undefined
  const Bucket = virtual ?? decodeURIComponent(segments.shift() ?? '')
  const Key =
    segments.length > 0 && segments.join('/') !== '' ? decodeURIComponent(segments.join('/')) : undefined
  const q = u.searchParams
  const input = { Bucket, Key }
  if (Key === undefined) {
    if (method === 'GET' && q.has('location')) return { operation: 'GetBucketLocation', input }
    if (method === 'GET' && q.has('ownershipControls'))
      return { operation: 'GetBucketOwnershipControls', input }
    if (method === 'GET' && q.get('list-type') === '2')
      return {
        operation: 'ListObjectsV2',
        input: { Bucket, Prefix: q.get('prefix') ?? undefined, MaxKeys: q.get('max-keys') ?? undefined }
      }
    if (method === 'POST' && q.has('delete')) {
      const keys = [...String(body ?? '').matchAll(/<Key>([^<]*)<\/Key>/g)].map((m) => ({ Key: m[1] }))
      return { operation: 'DeleteObjects', input: { Bucket, Delete: { Objects: keys } } }
    }
    return { operation: `bucket ${method}`, input }
  }
  const op = { GET: 'GetObject', HEAD: 'HeadObject', PUT: 'PutObject', DELETE: 'DeleteObject' }[method]
  return { operation: op ?? `object ${method}`, input }
}

// ------------------------------------------------------------------ the proxy

const NOT_FOUND = {
  DescribeVolumes: ['VolumeIds', 'InvalidVolume.NotFound', (id) => `The volume '${id}' does not exist.`],
  DescribeSnapshots: [
    'SnapshotIds',
    'InvalidSnapshot.NotFound',
    (id) => `The snapshot '${id}' does not exist.`
  ],
  DescribeImages: ['ImageIds', 'InvalidAMIID.NotFound', (id) => `The image id '[${id}]' does not exist`]
}

export function startProxy({ motoUrl, ssmUrl, port = 0, lag = 1 }) {
  const violations = []
  const checked = {}
  /** id → { notFound: describes left answering NotFound, pending: describes left in a pending state, … } */
  const fresh = new Map()
  const served = { notFound: [], creating: [], attaching: [], snapshotPending: [], imagePending: [] }

  const ec2Error = (code, message) => ({
    status: 400,
    headers: { 'content-type': 'text/xml' },
    body: Buffer.from(ec2ErrorXml(code, message))
  })
  const refuse = (service, violations) => {
    const message = violations.map((v) => v.message).join(' | ')
    if (service === 'ec2') return ec2Error('InvalidParameterValue', message)
    if (service === 'ssm')
      return {
        status: 400,
        headers: { 'content-type': 'application/x-amz-json-1.1', 'x-amzn-errortype': 'ValidationException' },
        body: Buffer.from(JSON.stringify({ __type: 'ValidationException', message }))
      }
    return {
      status: 400,
      headers: { 'content-type': 'application/xml' },
      body: Buffer.from(
        `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>InvalidArgument</Code><Message>${escapeXml(message)}</Message></Error>`
      )
    }
  }

  /** Eventual consistency and pending states on EC2 answers about resources this run just made. */
  const ec2Lag = (operation, input) => {
    const spec = NOT_FOUND[operation]
    if (!spec) return undefined
    const ids = [].concat(input[spec[0]] ?? [])
    for (const id of ids) {
      const f = fresh.get(id)
      if (f && f.notFound > 0) {
        f.notFound -= 1
        served.notFound.push(id)
        return ec2Error(spec[1], spec[2](id))
      }
    }
    return undefined
  }

  const rewrite = (operation, input, answer) => {
    const created = (pattern, extra) => {
      const id = pattern.exec(answer.body.toString('utf8'))?.[1]
      if (id) fresh.set(id, { notFound: lag, pending: lag, ...extra })
    }
    if (answer.status !== 200) return answer
    if (operation === 'CreateVolume') created(/<volumeId>([^<]+)<\/volumeId>/)
    if (operation === 'CreateSnapshot') created(/<snapshotId>([^<]+)<\/snapshotId>/, { progress: 0 })
    if (operation === 'RegisterImage') created(/<imageId>([^<]+)<\/imageId>/)
    if (operation === 'AttachVolume') {
      const f = fresh.get(input.VolumeId) ?? { notFound: 0, pending: 0 }
      fresh.set(input.VolumeId, { ...f, attaching: lag })
    }
    const ids = [].concat(input.VolumeIds ?? input.SnapshotIds ?? input.ImageIds ?? [])
    if (ids.length !== 1) return answer
    const f = fresh.get(ids[0])
    if (!f) return answer
    let text = answer.body.toString('utf8')
    if (operation === 'DescribeVolumes') {
      if (f.pending > 0 && text.includes('<status>available</status>')) {
        f.pending -= 1
        served.creating.push(ids[0])
        text = text.replace('<status>available</status>', '<status>creating</status>')
      } else if (f.attaching > 0 && text.includes('<status>attached</status>')) {
        f.attaching -= 1
        served.attaching.push(ids[0])
        text = text.replace('<status>attached</status>', '<status>attaching</status>')
      }
    } else if (
      operation === 'DescribeSnapshots' &&
      f.pending > 0 &&
      text.includes('<status>completed</status>')
    ) {
      f.pending -= 1
      f.progress = Math.min(99, f.progress + 45)
      served.snapshotPending.push(`${ids[0]} ${f.progress}%`)
      text = text
        .replace('<status>completed</status>', '<status>pending</status>')
        .replace(/<progress>[^<]*<\/progress>/, `<progress>${f.progress}%</progress>`)
    } else if (
      operation === 'DescribeImages' &&
      f.pending > 0 &&
      text.includes('<imageState>available</imageState>')
    ) {
      f.pending -= 1
      served.imagePending.push(ids[0])
      text = text.replace('<imageState>available</imageState>', '<imageState>pending</imageState>')
    } else return answer
    return { ...answer, body: Buffer.from(text), rewritten: true }
  }

  const server = createServer(async (req, res) => {
    const body = await readBody(req)
    if (req.method === 'GET' && req.url === '/_proxy/report') {
      res.writeHead(200, { 'content-type': 'application/json' })
      return res.end(JSON.stringify({ violations, checked, served }))
    }
    const target = String(req.headers['x-amz-target'] ?? '')
    const text = body.toString('utf8')
    let service
    let decoded
    if (target.startsWith('AmazonSSM.')) {
      service = 'ssm'
      decoded = { operation: target.slice('AmazonSSM.'.length), input: JSON.parse(text || '{}') }
    } else if (req.method === 'POST' && /(^|&)Action=/.test(text) && /(^|&)Version=/.test(text)) {
      service = 'ec2'
      decoded = decodeEc2Query(text)
    } else {
      service = 's3'
      decoded = decodeS3(req.method, req.url, req.headers.host, text)
    }
    const { operation, input } = decoded
    checked[operation] = (checked[operation] ?? 0) + 1
    let answer
    try {
      const broken = checkRequest(operation, input)
      if (broken.length > 0) {
        violations.push(...broken.map((v) => ({ operation, rule: v.rule.id, message: v.message })))
        answer = refuse(service, broken)
      } else if (service === 'ec2') {
        answer = ec2Lag(operation, input) ?? rewrite(operation, input, await passOn(motoUrl, req, body))
      } else {
        answer = await passOn(service === 'ssm' && ssmUrl ? ssmUrl : motoUrl, req, body)
      }
    } catch (err) {
      answer = {
        status: 502,
        headers: { 'content-type': 'text/plain' },
        body: Buffer.from(`aws-proxy: ${err.message}`)
      }
    }
    sendAnswer(res, answer)
  })
  return new Promise((resolve) => server.listen(port, '127.0.0.1', () => resolve(server)))
}

/** Runs the proxy as a program: prints its URL, serves until SIGTERM/SIGINT. */
export async function main() {
  const motoUrl = (process.env.I2E_MOTO_URL ?? '').replace(/\/$/, '')
  if (!motoUrl) {
    process.stderr.write('aws-proxy: set I2E_MOTO_URL to the moto server\n')
    process.exit(2)
  }
  const server = await startProxy({
    motoUrl,
    ssmUrl: process.env.I2E_SSM_URL?.replace(/\/$/, ''),
    lag: Number(process.env.I2E_PROXY_LAG ?? 1)
  })
  const stop = () => server.close(() => process.exit(0))
  process.on('SIGTERM', stop)
  process.on('SIGINT', stop)
  process.stdout.write(`AWS_PROXY_URL=http://127.0.0.1:${server.address().port}\n`)
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) await main()
