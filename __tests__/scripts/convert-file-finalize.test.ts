// convert.sh on a plain file (the README's `npm run unbundle -- … --target image.img`): not
// finalized unless --finalize is given, and then finalized through a loop device, as a volume is.
import { spawnSync } from 'node:child_process'
import { readdirSync } from 'node:fs'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals'
import {
  bundlesDir,
  expected,
  hasCommand,
  isRoot,
  localArgs,
  need,
  runConvert,
  type Scratch,
  scratch,
  sh,
  sha256File
} from './convert-harness.js'

const canLoop =
  isRoot() &&
  ['losetup', 'e2fsck', 'debugfs', 'sfdisk'].every(hasCommand) &&
  spawnSync('losetup', ['-f']).status === 0
const describeLoop = canLoop ? describe : describe.skip

let tmp: Scratch
beforeAll(() => {
  tmp = scratch('i2e-convert-file-')
})
afterAll(() => tmp.cleanup())

const env = () => ({ I2E_SHM_DIR: tmp.shm })
const debugfsCat = (fs: string, path: string) =>
  spawnSync('debugfs', ['-R', `cat ${path}`, fs], { encoding: 'utf8' }).stdout

/** Loop devices still attached over FILE. */
const loopsOver = (file: string) => sh('losetup', ['-n', '-O', 'NAME', '-j', file]).trim()

describe('a file target without --finalize', () => {
  it('is the image exactly as bundled, and the run says it is not finalized', () => {
    const target = join(tmp.dir, 'plain.img')
    const run = runConvert(localArgs(join(bundlesDir, 'small-pv'), target), env())
    expect(run.status).toBe(0)
    expect(sha256File(target)).toBe(need(expected('small-pv'), 'image_sha256'))
    expect(run.results.fstab_removed).toBeUndefined()
    expect(run.stdout).toMatch(/the file .*plain\.img is not finalized .*add --finalize/)
  })

  it('--finalize and --no-finalize together are refused', () => {
    const run = runConvert(
      [...localArgs(join(bundlesDir, 'small-pv'), join(tmp.dir, 'x.img')), '--finalize', '--no-finalize'],
      env()
    )
    expect(run.status).toBe(2)
    expect(run.fails[0]).toMatch(/give only one of --finalize and --no-finalize/)
  })

  it('--help says that a file is not finalized without --finalize', () => {
    const run = runConvert(['--help'])
    expect(run.status).toBe(0)
    expect(run.stdout).toMatch(/A FILE target is\s+NOT finalized/)
    expect(run.stdout).toMatch(/--finalize/)
  })
})

describeLoop('a file target with --finalize', () => {
  it.each(['small-pv', 'hvm-mbr'])(
    '%s: fstab tidied with a backup, facts reported, loop devices detached',
    (bundle) => {
      const facts = expected(bundle)
      const target = join(tmp.dir, `${bundle}.img`)
      const run = runConvert([...localArgs(join(bundlesDir, bundle), target), '--finalize'], env())
      expect(run.fails).toEqual([])
      expect(run.status).toBe(0)
      expect(run.stdout).toMatch(/finalizing the file .* through \/dev\/loop\d+/)
      expect(run.results.partition_table).toBe(facts.partition_table ?? 'none')
      expect(run.results.filesystem_label).toBe(need(facts, 'filesystem_label'))
      expect(run.results.fstab_removed).toBe('1')
      expect(run.results.fstab_backup).toBe('/etc/fstab.instance-to-ebs.bak')
      expect(sha256File(target)).not.toBe(need(facts, 'image_sha256')) // the fstab changed
      expect(loopsOver(target)).toBe('')
      expect(readdirSync(tmp.shm)).toEqual([])
      if (bundle === 'small-pv') {
        expect(debugfsCat(target, '/etc/fstab')).not.toMatch(/xvdb/)
        expect(debugfsCat(target, '/etc/fstab.instance-to-ebs.bak')).toMatch(/^\/dev\/xvdb\s+\/mnt/m)
      }
    }
  )
})
