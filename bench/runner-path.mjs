// The runner path (convert-on: runner) on a bundle made by make-bundle.sh: the decode alone
// (parts from disk, SHA-1 of each part, AES-128-CBC, gunzip, sparse tar, 512 KiB blocks: the
// CPU limit of this machine), then end to end into a local EBS direct endpoint that adds a delay
// to every PutSnapshotBlock (scripts/ebs-latency.mjs), with the action's own block writer.
// Used by bench.mjs; runs alone too: node bench/runner-path.mjs BUNDLE_DIR
// Needs the sources compiled into build/ (done here with tsc).
import { spawn, spawnSync } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

const REPO = fileURLToPath(new URL('..', import.meta.url))
const MiB = 1048576

function compile() {
  const tsc = spawnSync(
    process.execPath,
    [join(REPO, 'node_modules/typescript/bin/tsc'), '-p', join(REPO, 'tsconfig.json')],
    {
      encoding: 'utf8'
    }
  )
  if (tsc.status !== 0) throw new Error(`tsc failed: ${tsc.stdout}${tsc.stderr}`)
}

/** Runs the decode (and, given a writer, the upload) once; returns seconds and the stats. */
async function once(modules, bundle, put) {
  const { readBundleSecrets, unwrapBundleKey } = modules.crypto
  const { decodeBundle, newDecodeStats } = modules.decode
  const secrets = readBundleSecrets(readFileSync(join(bundle, 'image.manifest.xml'), 'utf8'))
  const { key, iv } = unwrapBundleKey(secrets, readFileSync(join(bundle, 'key.pem'), 'utf8'))
  const stats = newDecodeStats()
  const started = performance.now()
  for await (const block of decodeBundle({
    secrets,
    key,
    iv,
    stats,
    readPart: async (name) => readFileSync(join(bundle, name))
  }))
    if (put) await put(block)
  return { seconds: (performance.now() - started) / 1000, stats, imageBytes: secrets.imageBytes }
}

/**
 * The endpoint in its own process, as a remote service would be: its HTTP parsing and checksum
 * checks must not take the decoder's CPU time.
 */
async function startEndpointProcess(delayMs) {
  const child = spawn(
    process.execPath,
    [join(REPO, 'scripts/ebs-latency.mjs'), '--delay-ms', String(delayMs)],
    {
      stdio: ['ignore', 'pipe', 'inherit']
    }
  )
  const url = await new Promise((resolve, reject) => {
    let out = ''
    child.stdout.on('data', (chunk) => {
      out += chunk
      const m = /AWS_ENDPOINT_URL_EBS=(\S+)/.exec(out)
      if (m) resolve(m[1])
    })
    child.on('exit', (code) => reject(new Error(`the EBS endpoint exited with ${code}`)))
  })
  return {
    url,
    close: () =>
      new Promise((resolve) => {
        child.once('exit', resolve)
        child.kill('SIGTERM')
      })
  }
}

export async function runnerPathBench(bundle, { delayMs = 20, concurrency = 32, log = console.log } = {}) {
  compile()
  const build = (p) => import(join(REPO, 'build', p))
  const modules = {
    crypto: await build('aws/bundle-crypto.js'),
    decode: await build('pipeline/convert/bundle-decode.js'),
    blocks: await build('aws/snapshot-blocks.js'),
    clients: await build('aws/clients.js')
  }
  const { EBSClient, StartSnapshotCommand, CompleteSnapshotCommand } = await import('@aws-sdk/client-ebs')

  await once(modules, bundle) // warm the page cache and the JIT
  const decode = await once(modules, bundle)
  const decodeRate = decode.imageBytes / MiB / decode.seconds
  log(`runner path: decode alone ${decode.seconds.toFixed(2)} s (${decodeRate.toFixed(1)} MiB/s of image)`)

  const e2e = async (delay) => {
    const endpoint = await startEndpointProcess(delay)
    const ebs = new EBSClient({
      region: 'us-east-1',
      endpoint: endpoint.url,
      credentials: { accessKeyId: 'bench', secretAccessKey: 'bench' }
    })
    modules.clients.unsignedBlockPayloads(ebs)
    try {
      const started = performance.now()
      const { SnapshotId } = await ebs.send(
        new StartSnapshotCommand({ VolumeSize: Math.ceil(decode.imageBytes / 1024 ** 3) })
      )
      const writer = new modules.blocks.SnapshotBlockWriter({
        ebs,
        snapshotId: SnapshotId,
        concurrency,
        signal: new AbortController().signal
      })
      const run = await once(modules, bundle, (block) => writer.put(block.index, block.data))
      const totals = await writer.finish()
      await ebs.send(
        new CompleteSnapshotCommand({
          SnapshotId,
          ChangedBlocksCount: totals.blocksWritten,
          Checksum: totals.checksum,
          ChecksumAlgorithm: 'SHA256',
          ChecksumAggregationMethod: 'LINEAR'
        })
      )
      const seconds = (performance.now() - started) / 1000
      return { seconds, rate: decode.imageBytes / MiB / seconds, totals, stats: run.stats }
    } finally {
      ebs.destroy()
      await endpoint.close()
    }
  }

  // Without the delay first: what the upload costs in CPU alone; then with it: what latency adds.
  const bare = await e2e(0)
  log(
    `runner path: end to end ${bare.seconds.toFixed(2)} s (${bare.rate.toFixed(1)} MiB/s of image) into an endpoint adding no delay`
  )
  const { seconds, rate: e2eRate, totals, stats } = await e2e(delayMs)
  const skipped = stats.blocks - totals.blocksWritten
  const ratio = e2eRate / decodeRate
  log(
    `runner path: end to end ${seconds.toFixed(2)} s (${e2eRate.toFixed(1)} MiB/s of image) into an endpoint adding ` +
      `${delayMs} ms per PutSnapshotBlock, ${concurrency} in flight; ${totals.blocksWritten} blocks written, ` +
      `${skipped} of ${stats.blocks} skipped (${stats.zeroBlocks} all-zero, ${skipped - stats.zeroBlocks} holes), ` +
      `${totals.retries} retries; target end-to-end >= 80% of decode alone ${ratio >= 0.8 ? 'met' : 'MISSED'}` +
      ` (latency hidden: ${((e2eRate / bare.rate) * 100).toFixed(0)}% of the no-delay rate)`
  )
  return (
    `runner_path decode_mib_s=${decodeRate.toFixed(1)} end_to_end_mib_s=${e2eRate.toFixed(1)} ratio=${ratio.toFixed(2)} ` +
    `no_delay_mib_s=${bare.rate.toFixed(1)} delay_ms=${delayMs} concurrency=${concurrency} ` +
    `blocks_written=${totals.blocksWritten} blocks_skipped=${skipped} blocks_total=${stats.blocks} bytes_sent=${totals.bytesSent}`
  )
}

if (process.argv[1] && import.meta.url.endsWith(process.argv[1].split('/').pop())) {
  const line = await runnerPathBench(process.argv[2])
  console.log(line)
}
