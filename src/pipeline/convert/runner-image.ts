// convert-on: runner keeps the image in a sparse file on the runner's disk while its blocks go up
// (holes and zero blocks are never written, so the file takes only the image's non-zero data),
// so that, once the bundle is verified, tidy-fstab.sh can tidy /etc/fstab and read the image's
// facts with debugfs (no mount, no root), exactly as convert.sh does on the helper; the blocks the
// tidy changed are then written into the snapshot again before it is completed.
import { spawn } from 'node:child_process'
import { createHash } from 'node:crypto'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { type FileHandle, open } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { basename, join } from 'node:path'
import { SNAPSHOT_BLOCK_BYTES, type SnapshotBlockWriter } from '../../aws/snapshot-blocks.js'
import { scripts } from '../../scripts/index.js'
import type { RunContext } from '../context.js'
import { cliQuote, type Removal } from '../removal.js'
import { Input } from '../../settings/inputs.js'

const ZERO_BLOCK = Buffer.alloc(SNAPSHOT_BLOCK_BYTES)

export interface ScriptRun {
  code: number | null
  results: Record<string, string>
  fail?: string
}

/** Runs one of the action's scripts from `dir` with bash; progress lines go to `log` as they come. */
export function runScript(
  dir: string,
  script: 'tidy-fstab.sh',
  args: string[],
  log: (line: string) => void,
  signal?: AbortSignal
): Promise<ScriptRun> {
  return new Promise((resolve, reject) => {
    const child = spawn('bash', [join(dir, script), ...args], {
      cwd: dir,
      env: { ...process.env, TMPDIR: dir, LC_ALL: 'C' },
      stdio: ['ignore', 'pipe', 'pipe'],
      signal
    })
    const results: Record<string, string> = {}
    let fail: string | undefined
    let pending = ''
    const line = (l: string): void => {
      const r = /^::result ([^=]+)=(.*)$/.exec(l)
      if (r) results[r[1] as string] = r[2] as string
      else if (l.startsWith('::fail ')) fail ??= l.slice(7)
      else if (l.trim() !== '') log(l)
    }
    child.stdout.on('data', (chunk: Buffer) => {
      const lines = (pending + chunk.toString('utf8')).split('\n')
      pending = lines.pop() ?? ''
      for (const l of lines) line(l)
    })
    let stderr = ''
    child.stderr.on('data', (chunk: Buffer) => {
      stderr = (stderr + chunk.toString('utf8')).slice(-4000)
    })
    child.on('error', reject)
    child.on('close', (code) => {
      if (pending) line(pending)
      if (code !== 0 && !fail) fail = stderr.trim().split('\n').pop() || `${script} ended with exit ${code}`
      resolve({ code, results, fail })
    })
  })
}

export interface RewriteTotals {
  /** Blocks the tidy changed that had been written: written again. */
  rewritten: number
  /** Blocks the tidy filled that had been holes or zeros: written now. */
  added: number
}

/** The image on the runner's disk, in a folder of its own under RUNNER_TEMP. */
export class RunnerImage {
  readonly dir: string
  readonly file: string
  private handle?: FileHandle

  private constructor(
    dir: string,
    readonly bytes: number
  ) {
    this.dir = dir
    this.file = join(dir, 'image.raw')
  }

  /**
   * Checks that the runner can tidy an image (Linux, debugfs, e2fsck, sfdisk, blkid) and makes the
   * folder, recorded in the ledger at once: post removes it after a SIGKILL, and so does the
   * runner itself, which empties RUNNER_TEMP at the start and end of every job.
   */
  static async create(ctx: RunContext, bytes: number): Promise<RunnerImage> {
    if (process.platform !== 'linux')
      throw new Error(
        `${Input.ConvertOn}: runner needs a Linux runner (this one is ${process.platform}): the image's /etc/fstab is tidied with e2fsprogs' debugfs; use ${Input.ConvertOn}: helper`
      )
    const parent = process.env.RUNNER_TEMP || tmpdir()
    const dir = mkdtempSync(join(parent, WORK_DIR_PREFIX))
    ctx.ledger.record({ kind: 'work-dir', id: dir, removeOn: 'always' })
    const image = new RunnerImage(dir, bytes)
    try {
      writeFileSync(join(dir, 'common.sh'), scripts['common.sh'](), { mode: 0o600 })
      writeFileSync(join(dir, 'tidy-fstab.sh'), scripts['tidy-fstab.sh'](), { mode: 0o600 })
      const check = await runScript(dir, 'tidy-fstab.sh', ['--check-tools'], ctx.log.info)
      if (check.code !== 0)
        throw new Error(
          `${Input.ConvertOn}: runner cannot tidy the image on this runner: ${check.fail}; install e2fsprogs and util-linux (apt-get install e2fsprogs fdisk), or use ${Input.ConvertOn}: helper`
        )
      image.handle = await open(image.file, 'w+', 0o600)
      await image.handle.truncate(bytes)
    } catch (err) {
      await image.remove(ctx)
      throw err
    }
    return image
  }

  /** Writes one block of the image (the part of it within the image). */
  async write(index: number, data: Buffer): Promise<void> {
    const offset = index * SNAPSHOT_BLOCK_BYTES
    const length = Math.min(data.length, this.bytes - offset)
    if (!this.handle) throw new Error('internal error: the image file is closed')
    try {
      await this.handle.write(data, 0, length, offset)
    } catch (err) {
      throw new Error(
        `Could not write the image to ${this.file} on the runner (${(err as NodeJS.ErrnoException).code ?? (err as Error).message}): the runner's disk needs room for the image's non-zero data (RUNNER_TEMP)`
      )
    }
  }

  /** tidy-fstab.sh on the image: facts and fstab tidy; its result lines. Throws its reason on failure. */
  async tidy(log: (line: string) => void, signal?: AbortSignal): Promise<Record<string, string>> {
    await this.handle?.close()
    this.handle = undefined
    const run = await runScript(this.dir, 'tidy-fstab.sh', ['--image', this.file], log, signal)
    if (run.code !== 0)
      throw new Error(
        `The image's root filesystem could not be tidied on the runner (nothing was completed): ${run.fail}`
      )
    return run.results
  }

  /**
   * Reads the tidied image back and writes every block that now differs from what the snapshot
   * holds: blocks sent before whose SHA-256 changed, and blocks that were holes or zeros and are not
   * any more. (A block sent before that now reads all zeros is sent again too: the snapshot must
   * read zeros there.) Holes read fast; only blocks with data are hashed.
   */
  async rewriteChanged(writer: SnapshotBlockWriter): Promise<RewriteTotals> {
    const totals: RewriteTotals = { rewritten: 0, added: 0 }
    const handle = await open(this.file, 'r')
    try {
      const blocks = Math.ceil(this.bytes / SNAPSHOT_BLOCK_BYTES)
      const buf = Buffer.alloc(SNAPSHOT_BLOCK_BYTES)
      for (let index = 0; index < blocks; index++) {
        buf.fill(0)
        const offset = index * SNAPSHOT_BLOCK_BYTES
        await handle.read(buf, 0, Math.min(SNAPSHOT_BLOCK_BYTES, this.bytes - offset), offset)
        const sent = writer.digestOf(index)
        if (!sent) {
          if (buf.equals(ZERO_BLOCK)) continue
          totals.added++
          await writer.put(index, Buffer.from(buf))
          continue
        }
        if (createHash('sha256').update(buf).digest().equals(sent)) continue
        totals.rewritten++
        await writer.put(index, Buffer.from(buf), { again: true })
      }
    } finally {
      await handle.close()
    }
    return totals
  }

  /** Closes and removes the folder (idempotent); the ledger forgets it. */
  async remove(ctx: RunContext): Promise<void> {
    await this.handle?.close().catch(() => undefined)
    this.handle = undefined
    removeWorkDir(this.dir)
    ctx.ledger.forget('work-dir', this.dir)
  }
}

/** The image folders' names: mkdtemp's six characters after the prefix. */
const WORK_DIR_PREFIX = 'i2e-image-'
const WORK_DIR_NAME = /^i2e-image-[A-Za-z0-9]{6}$/

/** The runner's image folder (a name mkdtemp gave under the runner's temp folder), and nothing else. */
export function removeWorkDir(path: string): void {
  if (!WORK_DIR_NAME.test(basename(path)))
    throw new Error(`refusing to remove ${path}: not an image folder of this action`)
  rmSync(path, { recursive: true, force: true })
}

/** The ledger's `work-dir`: the runner's image folder, removed by post after a SIGKILL too. */
export const workDirRemoval: Removal = {
  remove: async (r) => removeWorkDir(r.id),
  command: (r) => `on the runner: rm -rf ${cliQuote(r.id)}`
}
