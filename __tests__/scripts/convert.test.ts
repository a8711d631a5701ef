// convert.sh against the real ec2-bundle-image fixtures, on file targets: byte-for-byte
// reconstruction, zero skipping that still yields the right content, and one-line failures
// that never report a bad target as good.
import { spawnSync } from 'node:child_process'
import { createHash } from 'node:crypto'
import { readdirSync, readFileSync, renameSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from '@jest/globals'
import { companions } from '../../src/scripts/index.js'
import {
  bundleNames,
  bundlesDir,
  copyBundle,
  expected,
  hasCommand,
  localArgs,
  manifestOf,
  need,
  needNumber,
  otherKey,
  type Run,
  runConvert,
  type Scratch,
  scratch,
  scriptsDir,
  sha256File,
  writeSignedManifest
} from './convert-harness.js'

let tmp: Scratch
beforeAll(() => {
  tmp = scratch()
})
afterAll(() => tmp.cleanup())

const env = () => ({ I2E_SHM_DIR: tmp.shm })

/** A failure: non-zero exit, exactly one ::fail line matching, no digest=ok, nothing left behind. */
function expectFailure(run: Run, reason: RegExp): void {
  expect(run.status).not.toBe(0)
  expect(run.fails).toHaveLength(1)
  expect(run.fails[0]).toMatch(reason)
  expect(run.results.digest).toBeUndefined()
  expect(run.stdout).not.toMatch(/^::result digest=/m)
  expect(readdirSync(tmp.shm)).toEqual([])
}

describe('convert.sh rebuilds every fixture bundle onto a file', () => {
  const names = bundleNames()

  it('finds the fixture bundles', () => {
    expect(names.length).toBeGreaterThanOrEqual(2)
  })

  it.each(names)('%s: byte for byte, exact size, zero blocks skipped', (bundle) => {
    const facts = expected(bundle)
    const target = join(tmp.dir, `${bundle}.img`)
    const run = runConvert(localArgs(join(bundlesDir, bundle), target), env())
    expect(run.fails).toEqual([])
    expect(run.status).toBe(0)
    const size = needNumber(facts, 'image_size_bytes')
    expect(statSync(target).size).toBe(size)
    expect(sha256File(target)).toBe(need(facts, 'image_sha256'))
    expect(run.results.digest).toBe('ok')
    expect(Number(run.results.image_bytes)).toBe(size)
    // Zero blocks were skipped: far fewer bytes written than the image, and the file is sparse.
    const written = Number(run.results.bytes_written)
    expect(written).toBeGreaterThan(0)
    expect(written).toBeLessThan(size / 2)
    expect(statSync(target).blocks * 512).toBeLessThanOrEqual(written + 65536)
    expect(readdirSync(tmp.shm)).toEqual([])
  })

  it('keeps stdout compact: result lines and a few progress lines', () => {
    const bundle = names[names.length - 1] as string
    const run = runConvert(localArgs(join(bundlesDir, bundle), join(tmp.dir, 'compact.img')), env())
    expect(run.status).toBe(0)
    expect(run.stdout.split('\n').length).toBeLessThan(20)
    expect(run.stderr).toBe('')
  })
})

describe('zero skipping needs a target that reads zeros', () => {
  it('a file pre-filled with garbage (and longer than the image) is cut and rebuilt exactly', () => {
    const bundle = 'small-pv'
    const facts = expected(bundle)
    const size = needNumber(facts, 'image_size_bytes')
    const target = join(tmp.dir, 'garbage.img')
    const garbage = Buffer.alloc(size + 3 * 1048576)
    for (let i = 0; i < garbage.length; i += 4096) garbage.fill(0xa5 ^ (i & 0xff), i, i + 4096)
    writeFileSync(target, garbage)
    const run = runConvert(localArgs(join(bundlesDir, bundle), target), env())
    expect(run.status).toBe(0)
    expect(statSync(target).size).toBe(size)
    expect(sha256File(target)).toBe(need(facts, 'image_sha256'))
  })

  it('--write-zeros writes every block: same content, the whole image written', () => {
    const bundle = 'small-pv'
    const facts = expected(bundle)
    const target = join(tmp.dir, 'zeros.img')
    const run = runConvert([...localArgs(join(bundlesDir, bundle), target), '--write-zeros'], env())
    expect(run.status).toBe(0)
    expect(sha256File(target)).toBe(need(facts, 'image_sha256'))
    expect(Number(run.results.bytes_written)).toBe(needNumber(facts, 'image_size_bytes'))
  })

  it('the script says why skipping is safe only on a fresh target', () => {
    const text = readFileSync(join(scriptsDir, 'convert.sh'), 'utf8')
    const header = text.slice(0, text.indexOf('set -euo pipefail')).replace(/\n#\s*/g, ' ')
    expect(header).toMatch(/Skipping is only right on a target that already reads zeros/)
    expect(header).toMatch(/a file, which this script truncates to 0 and then to the image size first/)
    expect(header).toMatch(/A block device is sampled before writing and refused if it holds data/)
  })
})

describe('parts come from the manifest, in index order', () => {
  it('renamed parts listed out of order, with a decoy beside them, still rebuild the image', () => {
    const bundle = 'hvm-mbr'
    const facts = expected(bundle)
    const dir = copyBundle(bundle, join(tmp.dir, 'renamed'))
    const names = need(facts, 'part_files').split(' ')
    expect(names.length).toBeGreaterThan(1)
    let xml = manifestOf(dir)
    names.forEach((name, i) => {
      renameSync(join(dir, name), join(dir, `renamed-${i}.bin`))
      xml = xml.replace(`<filename>${name}</filename>`, `<filename>renamed-${i}.bin</filename>`)
    })
    // A file that a directory listing or a pattern would pick up first.
    writeFileSync(join(dir, names[0] as string), 'decoy')
    // Reverse the <part> elements: order must come from index, not position.
    const parts = xml.match(/<part index=[^>]*>.*?<\/part>/g) ?? []
    expect(parts).toHaveLength(names.length)
    xml = xml.replace(parts.join(''), [...parts].reverse().join(''))
    writeSignedManifest(dir, xml)
    const target = join(tmp.dir, 'renamed.img')
    const run = runConvert(localArgs(dir, target), env())
    expect(run.fails).toEqual([])
    expect(sha256File(target)).toBe(need(facts, 'image_sha256'))
  })
})

describe('bundles of any number of parts', () => {
  it('the hvm bundle re-split into 150 parts: rebuilt exactly, progress stays compact', () => {
    const bundle = 'hvm-mbr'
    const facts = expected(bundle)
    const dir = copyBundle(bundle, join(tmp.dir, 'many'))
    const names = need(facts, 'part_files').split(' ')
    const stream = Buffer.concat(names.map((name) => readFileSync(join(dir, name))))
    for (const name of names) rmSync(join(dir, name))
    const count = 150
    const size = Math.ceil(stream.length / count)
    let parts = ''
    for (let i = 0; i < count; i++) {
      const name = `image.part.${String(i).padStart(3, '0')}`
      const data = stream.subarray(i * size, (i + 1) * size)
      writeFileSync(join(dir, name), data)
      const digest = createHash('sha1').update(data).digest('hex')
      parts += `<part index='${i}'><filename>${name}</filename><digest algorithm='SHA1'>${digest}</digest></part>`
    }
    const xml = manifestOf(dir).replace(
      /<parts count='\d+'>.*<\/parts>/,
      `<parts count='${count}'>${parts}</parts>`
    )
    writeSignedManifest(dir, xml)
    const target = join(tmp.dir, 'many.img')
    const run = runConvert(localArgs(dir, target), env())
    expect(run.fails).toEqual([])
    expect(sha256File(target)).toBe(need(facts, 'image_sha256'))
    const progress = run.stdout.split('\n').filter((line) => line.includes('verified'))
    expect(progress.length).toBeGreaterThanOrEqual(2)
    expect(progress.length).toBeLessThanOrEqual(21)
    expect(progress.at(-1)).toMatch(new RegExp(`parts: ${count}/${count} verified \\(100%\\)`))
    expect(run.stdout.length).toBeLessThan(3000)
  })
})

describe('every failure is one clear line and the target is never reported good', () => {
  const bundle = 'hvm-mbr'
  const facts = () => expected(bundle)
  const lastPart = () => need(facts(), 'part_files').split(' ').pop() as string
  const firstPart = () => need(facts(), 'part_files').split(' ')[0] as string
  const target = () => join(tmp.dir, 'failed.img')

  it('wrong private key', () => {
    const run = runConvert(localArgs(join(bundlesDir, bundle), target(), otherKey(tmp.dir)), env())
    expectFailure(run, /^wrong private key: .*user_encrypted_key/)
  })

  it('a key file that is not a key', () => {
    const notKey = join(tmp.dir, 'not-a-key.pem')
    writeFileSync(notKey, 'hello\n')
    const run = runConvert(localArgs(join(bundlesDir, bundle), target(), notKey), env())
    expectFailure(run, /is not an unencrypted PEM private key/)
  })

  it('missing part', () => {
    const dir = copyBundle(bundle, join(tmp.dir, 'missing'))
    spawnSync('rm', [join(dir, lastPart())])
    const run = runConvert(localArgs(dir, target()), env())
    expectFailure(run, new RegExp(`^missing part file .*/${lastPart().replaceAll('.', '\\.')}: `))
  })

  it.each([
    ['first', 0],
    ['last', -1]
  ])('a %s part with one changed byte', (_which, pick) => {
    const dir = copyBundle(bundle, join(tmp.dir, `flipped${pick}`))
    const name = pick === 0 ? firstPart() : lastPart()
    const data = readFileSync(join(dir, name))
    const at = Math.floor(data.length / 3)
    data[at] = (data[at] as number) ^ 0x01
    writeFileSync(join(dir, name), data)
    const run = runConvert(localArgs(dir, target()), env())
    expectFailure(run, new RegExp(`^part ${name.replaceAll('.', '\\.')} digest mismatch .*copy it again`))
  })

  it('truncated last part', () => {
    const dir = copyBundle(bundle, join(tmp.dir, 'truncated'))
    const path = join(dir, lastPart())
    truncateSync(path, statSync(path).size - 1000)
    const run = runConvert(localArgs(dir, target()), env())
    expectFailure(run, new RegExp(`^part ${lastPart().replaceAll('.', '\\.')} is truncated`))
  })

  it('truncated manifest', () => {
    const dir = copyBundle(bundle, join(tmp.dir, 'cut-manifest'))
    const xml = manifestOf(dir)
    writeFileSync(join(dir, 'image.manifest.xml'), xml.slice(0, Math.floor(xml.length / 2)))
    const run = runConvert(localArgs(dir, target()), env())
    expectFailure(run, /^manifest .* is unreadable or truncated: .*download it again/)
  })

  const flip = (c: string) => (c === '0' ? '1' : '0')
  it.each([
    ['architecture', /(<architecture>.*?)(.)(<\/architecture>)/],
    ['type', /(<type>.*?)(.)(<\/type>)/],
    ['image digest', /(<image>.*?<digest algorithm='SHA1'>)(.)()/]
  ])('manifest edited by one character (%s): signature mismatch', (field, at) => {
    const dir = copyBundle(bundle, join(tmp.dir, `edited-${field.replace(' ', '-')}`))
    const xml = manifestOf(dir)
    const edited = xml.replace(
      at,
      (_all, before: string, c: string, after: string) => before + flip(c) + after
    )
    expect(edited.length).toBe(xml.length)
    expect(edited).not.toBe(xml)
    writeFileSync(join(dir, 'image.manifest.xml'), edited)
    const run = runConvert(localArgs(dir, target()), env())
    expectFailure(run, /^manifest signature mismatch/)
  })

  it.each([
    ['larger', 512],
    ['smaller', -1048576]
  ])('manifest size %s than the image (validly signed)', (_how, delta) => {
    const dir = copyBundle(bundle, join(tmp.dir, `size-${_how}`))
    const size = needNumber(facts(), 'image_size_bytes')
    writeSignedManifest(dir, manifestOf(dir).replace(`<size>${size}</size>`, `<size>${size + delta}</size>`))
    const run = runConvert(localArgs(dir, target()), env())
    expectFailure(
      run,
      new RegExp(`image size ${size + delta} differs from the image in the bundle \\(${size} bytes\\)`)
    )
  })

  it('manifest digest that the tar stream does not match (validly signed)', () => {
    const dir = copyBundle(bundle, join(tmp.dir, 'digest'))
    const digest = need(facts(), 'manifest_image_digest_sha1')
    const wrong = digest.replace(/^./, (c) => (c === '0' ? '1' : '0'))
    writeSignedManifest(dir, manifestOf(dir).replace(digest, wrong))
    const run = runConvert(localArgs(dir, target()), env())
    expectFailure(
      run,
      new RegExp(`tar stream's SHA-1 ${digest} differs from the manifest's image digest ${wrong}`)
    )
  })

  it('an image name the tar archive does not hold (validly signed)', () => {
    const dir = copyBundle(bundle, join(tmp.dir, 'name'))
    const name = need(facts(), 'tar_member_name')
    writeSignedManifest(dir, manifestOf(dir).replace(`<name>${name}</name>`, '<name>other</name>'))
    const run = runConvert(localArgs(dir, target()), env())
    expectFailure(run, /^tar could not extract 'other'/)
  })

  it('a part name that leaves the parts folder (validly signed)', () => {
    const dir = copyBundle(bundle, join(tmp.dir, 'escape'))
    writeSignedManifest(dir, manifestOf(dir).replace(`<filename>${firstPart()}<`, '<filename>../x<'))
    const run = runConvert(localArgs(dir, target()), env())
    expectFailure(run, /part 0's file name is not a plain file name/)
  })

  it.each([
    [[], /--manifest is required/],
    [['--manifest', 'm', '--key', 'k'], /--target or --volume-id is required/],
    [
      ['--manifest', 'm', '--key', 'k', '--target', 't', '--volume-id', 'vol-0123456789abcdef0'],
      /only one of/
    ],
    [['--manifest', 'm', '--key', 'k', '--volume-id', 'vol-xyz'], /is not a volume id/],
    [['--manifest', 'm', '--key', 'k', '--target', 't', '--bogus'], /unknown argument '--bogus'/],
    [['--manifest'], /option --manifest needs a value/]
  ])('usage error %j', (args, reason) => {
    const run = runConvert(args as string[], env())
    expect(run.status).toBe(2)
    expect(run.fails).toHaveLength(1)
    expect(run.fails[0]).toMatch(reason)
  })
})

describe('npm run unbundle', () => {
  const available = hasCommand('npm')
  const test = available ? it : it.skip
  test(`runs the script locally: result lines on stdout, exit 0 only with the digest${available ? '' : ' (skipped: no npm)'}`, () => {
    const bundle = 'small-pv'
    const dir = join(bundlesDir, bundle)
    const target = join(tmp.dir, 'npm.img')
    const args = ['--manifest', join(dir, 'image.manifest.xml'), '--parts', dir, '--target', target]
    const cwd = fileURLToPath(new URL('../../', import.meta.url))
    const npm = (key: string) =>
      spawnSync('npm', ['run', '--silent', 'unbundle', '--', ...args, '--key', key], {
        cwd,
        encoding: 'utf8',
        // npm keeps a compile cache in the temporary folder, which a test must leave empty.
        env: { ...process.env, NODE_DISABLE_COMPILE_CACHE: '1' }
      })
    const good = npm(join(dir, 'test-key.pem'))
    expect(good.status).toBe(0)
    expect(good.stdout).toMatch(/^::result digest=ok$/m)
    expect(sha256File(target)).toBe(need(expected(bundle), 'image_sha256'))
    const bad = npm(otherKey(tmp.dir))
    expect(bad.status).not.toBe(0)
    expect(bad.stdout).toMatch(/^::fail wrong private key/m)
    expect(bad.stdout).not.toMatch(/digest=ok/)
  })
})

describe('shellcheck', () => {
  const available = hasCommand('shellcheck')
  const test = available ? it : it.skip
  test(`convert.sh and the files it sources are clean${available ? '' : ' (skipped: shellcheck is not on PATH)'}`, () => {
    const out = spawnSync('shellcheck', ['-x', 'convert.sh', ...companions['convert.sh']], {
      cwd: scriptsDir,
      encoding: 'utf8'
    })
    expect(out.stdout).toBe('')
    expect(out.status).toBe(0)
  })
})
