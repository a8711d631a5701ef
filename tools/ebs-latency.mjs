// A local EBS direct API endpoint that adds a delay to every PutSnapshotBlock, for the bench and
// the end-to-end tests of convert-on: runner. Two modes:
//   - proxy: forwards every request to a real emulator (moto) after the delay;
//   - sink: answers StartSnapshot, PutSnapshotBlock and CompleteSnapshot itself, checking each
//     block's length and SHA-256 as EBS does (hashed as the body arrives), and keeps nothing of
//     the data (for throughput measurements).
// Use from code (startEbsEndpoint) or run it: node tools/ebs-latency.mjs --delay-ms 20 [--target URL]
// (prints AWS_ENDPOINT_URL_EBS=http://127.0.0.1:PORT).
import { createHash } from 'node:crypto'
import { createServer } from 'node:http'
import { readBody, relay } from './http-relay.mjs'

const PUT_BLOCK = /^\/snapshots\/([^/]+)\/blocks\/(\d+)$/

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))

function json(res, status, body, headers = {}) {
  res.writeHead(status, { 'content-type': 'application/json', ...headers })
  res.end(JSON.stringify(body))
}

/** Sink: just enough of the EBS direct APIs to write a snapshot, strict about block checksums. */
function sinkHandler(stats) {
  const snapshots = new Map()
  let seq = 0
  return async (req, res, body) => {
    const url = new URL(req.url ?? '/', 'http://localhost')
    if (req.method === 'POST' && url.pathname === '/snapshots') {
      const input = JSON.parse(body.toString() || '{}')
      seq += 1
      const id = `snap-${seq.toString(16).padStart(17, '0')}`
      snapshots.set(id, { blocks: 0 })
      return json(res, 201, {
        SnapshotId: id,
        Status: 'pending',
        BlockSize: 524288,
        VolumeSize: input.VolumeSize
      })
    }
    const put = PUT_BLOCK.exec(url.pathname)
    if (req.method === 'PUT' && put) {
      const snap = snapshots.get(put[1])
      if (!snap)
        return json(
          res,
          404,
          { Message: 'no such snapshot' },
          { 'x-amzn-errortype': 'ResourceNotFoundException' }
        )
      const checksum = req.headers['x-amz-checksum']
      if (body.length !== 524288 || body.sha256 !== checksum)
        return json(
          res,
          400,
          { Message: 'checksum or length mismatch' },
          { 'x-amzn-errortype': 'ValidationException' }
        )
      snap.blocks += 1
      stats.blocks += 1
      stats.bytes += body.length
      return json(res, 201, {}, { 'x-amz-checksum': String(checksum), 'x-amz-checksum-algorithm': 'SHA256' })
    }
    if (req.method === 'POST' && url.pathname.startsWith('/snapshots/completion/'))
      return json(res, 202, { Status: 'completed' })
    return json(res, 400, { Message: `not in the sink: ${req.method} ${url.pathname}` })
  }
}

/**
 * A block's body, hashed as it arrives: { length, sha256 (base64) }. The sink checks every
 * block's SHA-256 as EBS does, but without gathering and copying the 512 KiB first: on the
 * bench's 2 cores this process stands in for a remote service, and its CPU time (the copy and
 * the garbage of 200 MB of bodies) would be taken from the runner path being measured.
 */
async function hashBody(req) {
  const hash = createHash('sha256')
  let length = 0
  for await (const c of req) {
    hash.update(c)
    length += c.length
  }
  return { length, sha256: hash.digest('base64') }
}

/**
 * Starts the endpoint on a random local port. `delayMs` is added before every PutSnapshotBlock
 * (a function of the call number may vary it). Returns { url, stats, close }.
 */
export async function startEbsEndpoint({ delayMs = 20, target } = {}) {
  const stats = { blocks: 0, bytes: 0, puts: 0 }
  const handle = target
    ? (req, res, body) => relay(target, req, body, res, 'ebs-latency')
    : sinkHandler(stats)
  const server = createServer(async (req, res) => {
    const putBlock = req.method === 'PUT' && PUT_BLOCK.test(new URL(req.url ?? '/', 'http://x').pathname)
    const body = putBlock && !target ? await hashBody(req) : await readBody(req)
    if (putBlock) {
      stats.puts += 1
      const delay = typeof delayMs === 'function' ? delayMs(stats.puts) : delayMs
      if (delay > 0) await sleep(delay)
    }
    await handle(req, res, body)
  })
  server.keepAliveTimeout = 60_000
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve))
  const { port } = server.address()
  return {
    url: `http://127.0.0.1:${port}`,
    stats,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections?.()
        server.close(() => resolve())
      })
  }
}

/** Runs the endpoint as a program: prints its URL, serves until SIGTERM/SIGINT. */
export async function main() {
  const arg = (name) => {
    const at = process.argv.indexOf(name)
    return at > 0 ? process.argv[at + 1] : undefined
  }
  const endpoint = await startEbsEndpoint({
    delayMs: Number(arg('--delay-ms') ?? 20),
    target: arg('--target')
  })
  process.stdout.write(`AWS_ENDPOINT_URL_EBS=${endpoint.url}\n`)
  const stop = () => endpoint.close().then(() => process.exit(0))
  process.on('SIGINT', stop)
  process.on('SIGTERM', stop)
}

if (process.argv[1] && import.meta.url.endsWith(process.argv[1].split('/').pop())) await main()
