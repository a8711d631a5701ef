// npm run bench: the streaming convert.sh against the three-pass manual procedure (parts to a
// scratch folder, unbundle to an image file, dd with fsync to the target) on a bundle of a
// 1 GiB image with about 200 MB of random data. Not a test: it takes a few minutes.
//
// Environment: I2E_BENCH_RUNS (3 per variant), I2E_BENCH_IMAGE_MIB (1024), TMPDIR (work dir).
// Then the runner path (bench/runner-path.mjs), as a line starting `runner_path `.
// Ends with one line: speedup=<baseline/streaming> scratch_bytes=<n> written_bytes=<n> image_bytes=<n>
import { spawn, spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import {
  createReadStream,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync
} from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { runnerPathBench } from './runner-path.mjs'

const here = fileURLToPath(new URL('.', import.meta.url))
const convert = fileURLToPath(new URL('../src/scripts/convert.sh', import.meta.url))
const runs = Number(process.env.I2E_BENCH_RUNS ?? 3)
const imageMib = Number(process.env.I2E_BENCH_IMAGE_MIB ?? 1024)
const MiB = 1048576

const log = (line) => process.stdout.write(`${line}\n`)
const mib = (bytes) => `${(bytes / MiB).toFixed(1)} MiB`
const median = (values) => {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = sorted.length >> 1
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2
}

/** Allocated bytes of every file under `path` (what the files take on disk). */
function diskUsage(path) {
  let total = 0
  let entries
  try {
    entries = readdirSync(path, { withFileTypes: true })
  } catch {
    return 0
  }
  for (const entry of entries) {
    const full = join(path, entry.name)
    try {
      if (entry.isDirectory()) total += diskUsage(full)
      else total += lstatSync(full).blocks * 512
    } catch {
      // removed while we looked
    }
  }
  return total
}

function sha256File(path) {
  return new Promise((resolve, reject) => {
    const hash = createHash('sha256')
    createReadStream(path)
      .on('data', (chunk) => hash.update(chunk))
      .on('end', () => resolve(hash.digest('hex')))
      .on('error', reject)
  })
}

/** Flush and drop the page cache so that every run reads the parts from disk (may be refused). */
function coldCaches() {
  spawnSync('sync')
  try {
    writeFileSync('/proc/sys/vm/drop_caches', '3')
    return true
  } catch {
    return false
  }
}

/**
 * Runs `command` with its process tree's I/O counters (read from the wrapping shell after all
 * its children were reaped) and the peak disk usage of `scratch`, polled every 50 ms.
 */
function measured(command, env, scratch, ioFile) {
  return new Promise((resolve, reject) => {
    const wrapper = '"$@" >"$I2E_BENCH_OUT" 2>&1; rc=$?; cat /proc/$$/io >"$I2E_BENCH_IO"; exit $rc'
    const started = performance.now()
    const child = spawn('bash', ['-c', wrapper, 'bench', ...command], {
      env: { ...process.env, ...env, I2E_BENCH_IO: ioFile, I2E_BENCH_OUT: `${ioFile}.out` },
      stdio: 'ignore'
    })
    let peak = 0
    const poll = setInterval(() => {
      peak = Math.max(peak, diskUsage(scratch))
    }, 50)
    child.on('error', reject)
    child.on('exit', (code) => {
      const seconds = (performance.now() - started) / 1000
      clearInterval(poll)
      peak = Math.max(peak, diskUsage(scratch))
      const output = readFileSync(`${ioFile}.out`, 'utf8')
      if (code !== 0) return reject(new Error(`${command.join(' ')} failed (${code}):\n${output}`))
      const io = Object.fromEntries(
        readFileSync(ioFile, 'utf8')
          .trim()
          .split('\n')
          .map((line) => line.split(': '))
          .map(([k, v]) => [k, Number(v)])
      )
      resolve({ seconds, peak, io, output })
    })
  })
}

async function main() {
  const work = mkdtempSync(join(process.env.TMPDIR ?? tmpdir(), 'i2e-bench-'))
  const cleanup = () => rmSync(work, { recursive: true, force: true })
  process.on('SIGINT', () => {
    cleanup()
    process.exit(130)
  })
  try {
    log(`building a bundle of a ${imageMib} MiB image in ${work} ...`)
    let started = performance.now()
    const made = spawnSync('bash', [join(here, 'make-bundle.sh'), work, String(imageMib)], {
      encoding: 'utf8'
    })
    if (made.status !== 0) throw new Error(`make-bundle.sh failed: ${made.stderr}`)
    const facts = Object.fromEntries(
      readFileSync(join(work, 'facts.env'), 'utf8')
        .trim()
        .split('\n')
        .map((line) => line.split('='))
    )
    const imageBytes = Number(facts.image_bytes)
    const nonzero = Number(facts.nonzero_bytes)
    const bundle = join(work, 'bundle')
    log(
      `bundle: ${facts.parts} parts, ${mib(Number(facts.bundled_bytes))}; image ${mib(imageBytes)}, ` +
        `${mib(nonzero)} non-zero; built in ${((performance.now() - started) / 1000).toFixed(1)} s`
    )

    const target = join(work, 'target.img')
    const variants = {
      streaming: (scratch) => [
        [
          'bash',
          convert,
          '--manifest',
          join(bundle, 'image.manifest.xml'),
          '--key',
          join(bundle, 'key.pem')
        ].concat(['--target', target, '--no-finalize']),
        { TMPDIR: scratch }
      ],
      baseline: (scratch) => [
        ['bash', join(here, 'baseline.sh'), bundle, join(bundle, 'key.pem'), scratch, target],
        { TMPDIR: scratch }
      ]
    }
    const results = { streaming: [], baseline: [] }
    let cold = true
    for (let round = 0; round < runs; round++) {
      const order = round % 2 === 0 ? ['streaming', 'baseline'] : ['baseline', 'streaming']
      for (const name of order) {
        rmSync(target, { force: true })
        const scratch = join(work, `scratch-${name}`)
        rmSync(scratch, { recursive: true, force: true })
        mkdirSync(scratch)
        cold = coldCaches() && cold
        const [command, env] = variants[name](scratch)
        started = performance.now()
        const run = await measured(command, env, scratch, join(work, 'io.txt'))
        rmSync(scratch, { recursive: true, force: true })
        const allocated = statSync(target).blocks * 512
        const size = statSync(target).size
        const digest = await sha256File(target)
        if (size !== imageBytes || digest !== facts.image_sha256) {
          throw new Error(`${name}: the target is wrong (${size} bytes, sha256 ${digest})`)
        }
        const reported = /^::result bytes_written=(\d+)$/m.exec(run.output)?.[1]
        const written = Math.max(allocated, run.io.write_bytes)
        results[name].push({ seconds: run.seconds, written, scratch: run.peak })
        log(
          `run ${round + 1} ${name.padEnd(9)} ${run.seconds.toFixed(2).padStart(6)} s  target allocated ${mib(allocated)}` +
            `, process tree wrote ${mib(run.io.write_bytes)}${reported ? ` (script: ${mib(Number(reported))})` : ''}` +
            ` (elsewhere than the target: ${mib(Math.max(0, run.io.write_bytes - allocated))}, incl. its log)` +
            `, peak scratch ${mib(run.peak)}; image sha256 ok`
        )
      }
    }
    rmSync(target, { force: true })
    if (!cold)
      log('note: could not drop the page cache between runs (not root?): parts may be read from memory')

    const summary = {}
    for (const name of ['streaming', 'baseline']) {
      const r = results[name]
      summary[name] = {
        seconds: median(r.map((x) => x.seconds)),
        written: median(r.map((x) => x.written)),
        scratch: Math.max(...r.map((x) => x.scratch))
      }
      log(
        `median ${name.padEnd(9)} ${summary[name].seconds.toFixed(2)} s, wrote ${mib(summary[name].written)}` +
          `, peak scratch ${mib(summary[name].scratch)} (${r.length} runs)`
      )
    }
    const speedup = summary.baseline.seconds / summary.streaming.seconds
    const written = Math.max(...results.streaming.map((x) => x.written))
    log(
      `ratio baseline/streaming ${speedup.toFixed(2)}x; streaming wrote ${((written / nonzero) * 100).toFixed(2)}% ` +
        `of the image's non-zero bytes (${nonzero}); targets: speedup >= 1.5 ${speedup >= 1.5 ? 'met' : 'MISSED'}, ` +
        `scratch 0 ${summary.streaming.scratch === 0 ? 'met' : 'MISSED'}, written <= non-zero + 1% ` +
        `${written <= nonzero * 1.01 ? 'met' : 'MISSED'}`
    )
    // convert-on: runner on the same bundle; its line starts with `runner_path `.
    const runnerLine = await runnerPathBench(bundle, { log })
    log(runnerLine)
    log(
      `speedup=${speedup.toFixed(2)} scratch_bytes=${summary.streaming.scratch} written_bytes=${written} image_bytes=${imageBytes}`
    )
  } finally {
    cleanup()
  }
}

main().catch((error) => {
  process.stderr.write(`bench failed: ${error.message}\n`)
  process.exit(1)
})
