// The runner path (convert-on: runner) on a bundle made by make-bundle.sh: the decode alone
// (parts from disk, SHA-1 of each part, AES-128-CBC, gunzip, sparse tar, 512 KiB blocks: the
// CPU limit of this machine), then end to end into a local EBS direct endpoint that adds a delay
// to every PutSnapshotBlock (tools/ebs-latency.mjs), with the action's own block writer, each
// block also written into a sparse image file as runner-write.ts does (RunnerImage.write, for
// the fstab tidy). Not included: the S3 reads (parts come from the local disk), the tidy itself
// (debugfs on a real ext image), the blocks it re-puts, and the wait for `completed`.
// Each run's CPU time is printed (this process: decoder thread, uploads, GC; its main thread, where
// the uploads run; the endpoint process apart), since on a 2-core machine the figures follow from
// it. Each round also runs end to end into an endpoint adding no delay: the 20 ms run against it
// shows whether concurrency hides the latency, and the no-delay run against decode alone is the
// most any concurrency could reach on this machine (the uploads' own CPU and the endpoint's).
// Used by bench.mjs; runs alone too: node bench/runner-path.mjs BUNDLE_DIR
// Needs the sources compiled into build/ (done here with tsc).
import { spawn, spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { open, readFile } from 'node:fs/promises'
import { availableParallelism, tmpdir } from 'node:os'
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

/**
 * Runs the product's decode stream (decode-thread.ts: the decoder on its worker thread) once,
 * handing each block to `put` when given; returns seconds and the stats. Decode alone computes no
 * SHA-256 per block (that is upload work); the end-to-end run does, as runner-write.ts does.
 */
async function once(modules, bundle, put) {
  const { readBundleSecrets, unwrapBundleKey } = modules.crypto
  const { decodeBundleOffThread, newDecodeStats } = modules.thread
  const secrets = readBundleSecrets(readFileSync(join(bundle, 'image.manifest.xml'), 'utf8'))
  const { key, iv } = unwrapBundleKey(secrets, readFileSync(join(bundle, 'key.pem'), 'utf8'))
  const stats = newDecodeStats()
  const started = performance.now()
  for await (const block of decodeBundleOffThread({
    secrets,
    key,
    iv,
    stats,
    digests: Boolean(put),
    // Asynchronous, as the product's S3 reads are: a readFileSync of each 10 MiB part would stop
    // the main thread (and its uploads) for the whole read, which a GetObject does not.
    readPart: (name) => readFile(join(bundle, name))
  }))
    if (put) await put(block)
  return { seconds: (performance.now() - started) / 1000, stats, imageBytes: secrets.imageBytes }
}

/** CPU seconds (user + system) of process `pid` (or of one thread: `pid/task/tid`) so far, from /proc (Linux). */
function processCpu(pid) {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')
  return (Number(fields[11]) + Number(fields[12])) / 100
}
const mainThreadCpu = () => processCpu(`${process.pid}/task/${process.pid}`)
const cpuSince = (start) => {
  const used = process.cpuUsage(start)
  return (used.user + used.system) / 1e6
}

/**
 * The endpoint in its own process, as a remote service would be: its HTTP parsing and checksum
 * checks must not take the decoder's CPU time.
 */
async function startEndpointProcess(delayMs) {
  const child = spawn(
    process.execPath,
    [join(REPO, 'tools/ebs-latency.mjs'), '--delay-ms', String(delayMs)],
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
    cpu: () => processCpu(child.pid),
    close: () =>
      new Promise((resolve) => {
        child.once('exit', resolve)
        child.kill('SIGTERM')
      })
  }
}

const median = (values) => {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
}
const spread = (values, digits = 1) =>
  `${Math.min(...values).toFixed(digits)}/${median(values).toFixed(digits)}/${Math.max(...values).toFixed(digits)}`

/** Peak resident memory of this process (the decoder's worker included) while `run` runs. */
async function peakRss(run) {
  const before = process.memoryUsage.rss()
  let peak = before
  const timer = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage.rss())
  }, 10)
  try {
    const result = await run()
    return { ...result, rssBefore: before, peakRss: Math.max(peak, process.memoryUsage.rss()) }
  } finally {
    clearInterval(timer)
  }
}

/**
 * The runner path on one bundle. The machine is shared: decode alone and end to end are measured
 * alternately in the same run (`rounds` of each, order swapped every round), and each round's
 * ratio compares the two runs next to each other; min/median/max are reported.
 */
export async function runnerPathBench(
  bundle,
  {
    delayMs = 20,
    concurrency = 32,
    rounds = Number(process.env.I2E_BENCH_RUNNER_ROUNDS ?? 5),
    log = console.log
  } = {}
) {
  compile()
  const build = (p) => import(join(REPO, 'build', p))
  const modules = {
    crypto: await build('aws/bundle-crypto.js'),
    thread: await build('pipeline/convert/decode-thread.js'),
    blocks: await build('aws/snapshot-blocks.js'),
    clients: await build('aws/clients.js')
  }
  const { StartSnapshotCommand, CompleteSnapshotCommand } = await import('@aws-sdk/client-ebs')

  const run0 = await once(modules, bundle) // warm the page cache and the JIT
  const decodeAlone = async () => {
    const cpuStart = process.cpuUsage()
    const run = await once(modules, bundle)
    return { ...run, rate: run.imageBytes / MiB / run.seconds, cpu: cpuSince(cpuStart) }
  }

  // End to end: the action's own clients (makeClients: its retry settings, its HTTP handler) and
  // its block writer, into the endpoint, from StartSnapshot to CompleteSnapshot.
  const e2e = async (delay) => {
    const endpoint = await startEndpointProcess(delay)
    const env = {
      AWS_ENDPOINT_URL_EBS: endpoint.url,
      AWS_ACCESS_KEY_ID: 'bench',
      AWS_SECRET_ACCESS_KEY: 'bench'
    }
    const saved = Object.fromEntries(Object.keys(env).map((k) => [k, process.env[k]]))
    Object.assign(process.env, env)
    const clients = modules.clients.makeClients({ region: 'us-east-1', maxAttempts: 3 })
    const { ebs } = clients
    // The sparse image file runner-write.ts keeps for the fstab tidy (RunnerImage: a file handle,
    // each block written at its offset, awaited before the block is put).
    const scratch = mkdtempSync(join(process.env.TMPDIR ?? tmpdir(), 'i2e-runner-bench-'))
    const image = await open(join(scratch, 'image.raw'), 'w+', 0o600)
    try {
      return await peakRss(async () => {
        const endpointCpu = endpoint.cpu()
        const mainStart = mainThreadCpu()
        const cpuStart = process.cpuUsage()
        const started = performance.now()
        await image.truncate(run0.imageBytes)
        const { SnapshotId } = await ebs.send(new StartSnapshotCommand({ VolumeSize: 1 }))
        const writer = new modules.blocks.SnapshotBlockWriter({
          ebs,
          snapshotId: SnapshotId,
          concurrency,
          signal: new AbortController().signal
        })
        const run = await once(modules, bundle, async (block) => {
          const offset = block.index * 524288
          await image.write(block.data, 0, Math.min(block.data.length, run0.imageBytes - offset), offset)
          await writer.put(block.index, block.data, { sha256: block.sha256, onSent: block.release })
        })
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
        return {
          seconds,
          rate: run.imageBytes / MiB / seconds,
          totals,
          stats: run.stats,
          cpu: cpuSince(cpuStart),
          mainCpu: mainThreadCpu() - mainStart,
          endpointCpu: endpoint.cpu() - endpointCpu
        }
      })
    } finally {
      await image.close()
      rmSync(scratch, { recursive: true, force: true })
      modules.clients.destroyClients(clients)
      for (const [k, v] of Object.entries(saved)) {
        if (v === undefined) delete process.env[k]
        else process.env[k] = v
      }
      await endpoint.close()
    }
  }

  await e2e(0) // warm the SDK clients' code and the endpoint's
  log(
    "runner path: end to end = decode on its worker (SHA-1s, AES, gunzip, sparse tar, SHA-256 per block) + each block written to a sparse image file + PutSnapshotBlock with the action's clients and block writer + StartSnapshot/CompleteSnapshot; " +
      'not included: S3 reads (parts from local disk, as in decode alone), the fstab tidy and its re-puts, the wait for completed'
  )
  const decodes = []
  const ends = []
  const bares = []
  const orders = [
    ['decode', 'bare', 'e2e'],
    ['e2e', 'decode', 'bare'],
    ['bare', 'e2e', 'decode']
  ]
  const cpuText = (e) =>
    `CPU ${e.cpu.toFixed(2)} s here (${e.mainCpu.toFixed(2)} s on the main thread) + ${e.endpointCpu.toFixed(2)} s in the endpoint`
  for (let round = 0; round < rounds; round++) {
    for (const what of orders[round % orders.length]) {
      if (what === 'decode') decodes.push(await decodeAlone())
      else if (what === 'bare') bares.push(await e2e(0))
      else ends.push(await e2e(delayMs))
    }
    const d = decodes[round]
    const e = ends[round]
    const z = bares[round]
    log(
      `runner path round ${round + 1}: decode alone ${d.seconds.toFixed(2)} s (${d.rate.toFixed(1)} MiB/s, CPU ${d.cpu.toFixed(2)} s); ` +
        `end to end ${e.seconds.toFixed(2)} s (${e.rate.toFixed(1)} MiB/s, ${cpuText(e)}, peak RSS ${(e.peakRss / MiB).toFixed(0)} MiB from ${(e.rssBefore / MiB).toFixed(0)} MiB before), ` +
        `ratio ${(e.rate / d.rate).toFixed(2)}; with no delay ${z.seconds.toFixed(2)} s (${z.rate.toFixed(1)} MiB/s, ${cpuText(z)}), ` +
        `${delayMs} ms/no delay ${(e.rate / z.rate).toFixed(2)}`
    )
  }
  const ratios = ends.map((e, i) => e.rate / decodes[i].rate)
  const hidden = ends.map((e, i) => e.rate / bares[i].rate)
  const ceilings = bares.map((z, i) => z.rate / decodes[i].rate)
  const { totals, stats } = ends[0]
  const skipped = stats.blocks - totals.blocksWritten
  const ratio = median(ratios)
  const decodeRate = median(decodes.map((d) => d.rate))
  const e2eRate = median(ends.map((e) => e.rate))
  const rss = ends.map((e) => e.peakRss / MiB)
  log(
    `runner path: ${rounds} rounds; end to end into an endpoint adding ${delayMs} ms per PutSnapshotBlock, ` +
      `${concurrency} in flight; ${totals.blocksWritten} blocks written, ${skipped} of ${stats.blocks} skipped ` +
      `(${stats.zeroBlocks} all-zero, ${skipped - stats.zeroBlocks} holes), ${totals.retries} retries; ratio min/median/max ` +
      `${spread(ratios, 2)}; target end-to-end >= 80% of decode alone (median) ${ratio >= 0.8 ? 'met' : 'MISSED'}; ` +
      `end to end with ${delayMs} ms against no delay ${spread(hidden, 2)} (1.00: the latency is hidden); ` +
      `no delay against decode alone ${spread(ceilings, 2)} (what the uploads' and the endpoint's CPU leave on ${availableParallelism()} cores)`
  )
  return (
    `runner_path decode_mib_s=${decodeRate.toFixed(1)} end_to_end_mib_s=${e2eRate.toFixed(1)} ratio=${ratio.toFixed(2)} ` +
    `ratio_min_median_max=${spread(ratios, 2)} decode_mib_s_min_median_max=${spread(decodes.map((d) => d.rate))} ` +
    `end_to_end_mib_s_min_median_max=${spread(ends.map((e) => e.rate))} rounds=${rounds} ` +
    `no_delay_mib_s=${median(bares.map((z) => z.rate)).toFixed(1)} delay_vs_no_delay=${median(hidden).toFixed(2)} ` +
    `no_delay_vs_decode=${median(ceilings).toFixed(2)} cores=${availableParallelism()} delay_ms=${delayMs} concurrency=${concurrency} ` +
    `blocks_written=${totals.blocksWritten} blocks_skipped=${skipped} blocks_total=${stats.blocks} bytes_sent=${totals.bytesSent} ` +
    `peak_rss_mib_min_median_max=${spread(rss, 0)} rss_before_mib=${(ends[0].rssBefore / MiB).toFixed(0)} ` +
    `decode_cpu_s=${median(decodes.map((d) => d.cpu)).toFixed(2)} end_to_end_cpu_s=${median(ends.map((e) => e.cpu)).toFixed(2)} ` +
    `main_thread_cpu_s=${median(ends.map((e) => e.mainCpu)).toFixed(2)} endpoint_cpu_s=${median(ends.map((e) => e.endpointCpu)).toFixed(2)} image_file=yes`
  )
}

if (process.argv[1] && import.meta.url.endsWith(process.argv[1].split('/').pop())) {
  const line = await runnerPathBench(process.argv[2])
  console.log(line)
}
