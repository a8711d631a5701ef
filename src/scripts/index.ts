// The shell scripts that run on instances, as text. Literal URLs so that ncc copies each file
// into dist/ (flattened: names must stay unique).
import { readFileSync } from 'node:fs'

const load = (url: URL): string => readFileSync(url, 'utf8')

export const scripts = {
  'common.sh': () => load(new URL('./common.sh', import.meta.url)),
  'convert.sh': () => load(new URL('./convert.sh', import.meta.url)),
  'convert-manifest.sh': () => load(new URL('./convert-manifest.sh', import.meta.url)),
  'convert-target.sh': () => load(new URL('./convert-target.sh', import.meta.url)),
  'convert-stream.sh': () => load(new URL('./convert-stream.sh', import.meta.url)),
  'convert-finalize.sh': () => load(new URL('./convert-finalize.sh', import.meta.url)),
  'to-hvm.sh': () => load(new URL('./to-hvm.sh', import.meta.url)),
  'tidy-fstab.sh': () => load(new URL('./tidy-fstab.sh', import.meta.url)),
  'bundle.sh': () => load(new URL('./bundle.sh', import.meta.url)),
  'bundle-checks.sh': () => load(new URL('./bundle-checks.sh', import.meta.url)),
  'bundle-tools.sh': () => load(new URL('./bundle-tools.sh', import.meta.url)),
  'bundle-services.sh': () => load(new URL('./bundle-services.sh', import.meta.url)),
  'bundle-aws.sh': () => load(new URL('./bundle-aws.sh', import.meta.url)),
  'ssm-get-parameter.rb': () => load(new URL('./ssm-get-parameter.rb', import.meta.url)),
  'cleanup.sh': () => load(new URL('./cleanup.sh', import.meta.url))
} as const

export type ScriptName = keyof typeof scripts
export type EntryScript = 'convert.sh' | 'bundle.sh' | 'cleanup.sh'

/** The files each entry script sources from its own folder. */
export const companions: Record<EntryScript, ScriptName[]> = {
  'convert.sh': [
    'common.sh',
    'to-hvm.sh',
    'convert-manifest.sh',
    'convert-target.sh',
    'convert-stream.sh',
    'convert-finalize.sh',
    'tidy-fstab.sh'
  ],
  'bundle.sh': [
    'common.sh',
    'bundle-checks.sh',
    'bundle-tools.sh',
    'bundle-services.sh',
    'bundle-aws.sh',
    'ssm-get-parameter.rb'
  ],
  'cleanup.sh': ['common.sh']
}
