// The real ec2-bundle-image fixtures in fixtures/bundles (in the repository): paths and expected.txt facts.
import { existsSync, readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

export const realBundlesDir = fileURLToPath(new URL('../../fixtures/bundles/', import.meta.url))

export const realBundleNames = (): string[] =>
  readdirSync(realBundlesDir, { withFileTypes: true })
    .filter((e) => e.isDirectory() && existsSync(join(realBundlesDir, e.name, 'expected.txt')))
    .map((e) => e.name)
    .sort()

export function realBundle(name: string): {
  dir: string
  manifest: string
  key: string
  cert: string
  facts: Record<string, string>
  part: (file: string) => Buffer
} {
  const dir = join(realBundlesDir, name)
  const facts: Record<string, string> = {}
  for (const line of readFileSync(join(dir, 'expected.txt'), 'utf8').split('\n')) {
    const at = line.indexOf('=')
    if (!line.startsWith('#') && at > 0) facts[line.slice(0, at)] = line.slice(at + 1)
  }
  return {
    dir,
    manifest: readFileSync(join(dir, 'image.manifest.xml'), 'utf8'),
    key: readFileSync(join(dir, 'test-key.pem'), 'utf8'),
    cert: readFileSync(join(dir, 'test-cert.pem'), 'utf8'),
    facts,
    part: (file) => readFileSync(join(dir, file))
  }
}
