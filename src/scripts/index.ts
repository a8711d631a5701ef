// The shell scripts that run on instances, as text. Literal URLs so that ncc copies each file
// into dist/ (flattened: names must stay unique).
import { readFileSync } from 'node:fs'

const load = (url: URL): string => readFileSync(url, 'utf8')

export const scripts = {
  'common.sh': () => load(new URL('./common.sh', import.meta.url)),
  'convert.sh': () => load(new URL('./convert.sh', import.meta.url)),
  'to-hvm.sh': () => load(new URL('./to-hvm.sh', import.meta.url)),
  'tidy-fstab.sh': () => load(new URL('./tidy-fstab.sh', import.meta.url)),
  'bundle.sh': () => load(new URL('./bundle.sh', import.meta.url)),
  'bundle-checks.sh': () => load(new URL('./bundle-checks.sh', import.meta.url)),
  'ssm-get-parameter.rb': () => load(new URL('./ssm-get-parameter.rb', import.meta.url)),
  'cleanup.sh': () => load(new URL('./cleanup.sh', import.meta.url))
} as const

export type ScriptName = keyof typeof scripts
export type EntryScript = 'convert.sh' | 'bundle.sh' | 'cleanup.sh'

/** The files each entry script sources from its own folder. */
export const companions: Record<EntryScript, ScriptName[]> = {
  'convert.sh': ['common.sh', 'to-hvm.sh', 'tidy-fstab.sh'],
  'bundle.sh': ['common.sh', 'bundle-checks.sh', 'ssm-get-parameter.rb'],
  'cleanup.sh': ['common.sh']
}
