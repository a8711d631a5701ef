// A small reader of our own shell scripts: which external commands they run, with which flags.
// Not a shell parser: it knows the forms these scripts use (and the test that uses it fails on
// a command it does not know, so a form it misreads shows up as an unknown command to review).

/** The script text with comments, heredoc bodies and quoted text blanked; $(…) inside quotes kept. */
export function codeOnly(text: string): string {
  const lines = text.split('\n')
  const kept: string[] = []
  let heredoc: string | undefined
  for (const line of lines) {
    if (heredoc !== undefined) {
      if (line.trim() === heredoc) heredoc = undefined
      kept.push('')
      continue
    }
    const h = /<<-?\s*(['"]?)([A-Za-z_][A-Za-z0-9_]*)\1/.exec(line)
    if (h) heredoc = h[2]
    kept.push(line)
  }
  return blankQuotes(kept.join('\n'))
}

function blankQuotes(text: string): string {
  let out = ''
  let i = 0
  // stack of contexts: 'code' or 'dq' (inside "…"); $( inside "…" pushes code
  const stack: Array<'code' | 'dq'> = ['code']
  const depth: number[] = [] // paren depth per $( opened inside quotes
  while (i < text.length) {
    const c = text[i] as string
    const ctx = stack[stack.length - 1]
    if (ctx === 'code') {
      if (c === '\\') {
        out += '  '
        i += 2
        continue
      }
      if (c === "'") {
        const end = text.indexOf("'", i + 1)
        out += '_'.repeat(end - i + 1)
        i = end + 1
        continue
      }
      if (c === '"') {
        stack.push('dq')
        out += '_'
        i++
        continue
      }
      if (c === '#' && (i === 0 || /[\s;]/.test(text[i - 1] as string))) {
        const end = text.indexOf('\n', i)
        i = end < 0 ? text.length : end
        continue
      }
      if (c === '(' && depth.length > 0) depth[depth.length - 1] = (depth[depth.length - 1] as number) + 1
      if (c === ')' && depth.length > 0) {
        if (depth[depth.length - 1] === 0) {
          depth.pop()
          stack.pop()
          out += ')'
          i++
          continue
        }
        depth[depth.length - 1] = (depth[depth.length - 1] as number) - 1
      }
      out += c
      i++
      continue
    }
    // inside double quotes
    if (c === '\\') {
      out += '__'
      i += 2
      continue
    }
    if (c === '"') {
      stack.pop()
      out += '_'
      i++
      continue
    }
    if (c === '$' && text[i + 1] === '(' && text[i + 2] !== '(') {
      stack.push('code')
      depth.push(0)
      out += '$('
      i += 2
      continue
    }
    out += c === '\n' ? '\n' : '_'
    i++
  }
  return out
}

const KEYWORDS = new Set(
  'if then else elif fi for while until do done case esac in function select time ! [[ ]] { }'.split(' ')
)
const BUILTINS = new Set(
  (
    'alias bg break builtin cd command compgen complete continue declare dirs disown echo enable eval exec ' +
    'exit export false fc fg getopts hash help history jobs kill let local logout mapfile popd printf pushd ' +
    'pwd read readarray readonly return set shift shopt source suspend test times trap true type typeset ' +
    'ulimit umask unalias unset wait . : ['
  ).split(' ')
)

export interface Use {
  command: string
  flags: string[]
}

/**
 * Every command word (after a separator, keywords and assignments) that is neither a keyword, a
 * builtin nor a function of `functions`, with the flag words that follow it. A word made of a
 * variable is reported as "$" (run through a variable: reviewed by hand).
 */
export function commandUses(text: string, functions: Set<string>, runners: Set<string>): Use[] {
  const code = withoutCasePatterns(codeOnly(text))
    .replace(/\\\n/g, ' ')
    .replace(/[0-9]*[<>]&[0-9-]+|&>/g, ' ') // 2>&1
    .replace(/\[\[.*?\]\]/g, (t) => [...t.matchAll(/\$\(([^()]*)\)/g)].map((m) => `;${m[1]};`).join('')) // tests: only their $(…)
    .replace(/\b[A-Za-z_]\w*\+?=\([^)]*\)/g, ' ') // array assignments
    .replace(/\$\{[^}]*\}/g, '_') // parameter expansions
    .replace(/\$?\(\(.*?\)\)/g, ' ') // arithmetic
    .replace(/\bfor\s+[A-Za-z_]\w*\s+in\b[^;\n]*/g, ' ') // for NAME in WORDS
  const uses: Use[] = []
  // statements: split at separators
  const statements = code.split(/\|\||&&|[|;\n&]|\$\(|\(|\)|`|\bthen\b|\bdo\b|\belse\b/)
  for (const raw of statements) {
    let words = raw.trim().split(/\s+/).filter(Boolean)
    // drop leading keywords, negation and assignments (VAR=value cmd)
    while (words.length > 0) {
      const w = words[0] as string
      if (KEYWORDS.has(w) || /^[A-Za-z_][A-Za-z0-9_]*(\[[^\]]*\])?\+?=/.test(w) || /^\d*[<>]/.test(w)) {
        words = words.slice(1)
        continue
      }
      break
    }
    if (words.length === 0) continue
    let [first, ...rest] = words as [string, ...string[]]
    if (first === 'command' || first === 'exec') {
      if (rest[0] === '-v') continue // a probe, not a use
      ;[first, ...rest] = rest as [string, ...string[]]
      if (!first) continue
    }
    // a function that runs its arguments as a command: run_tool NAME COMMAND ARGS…
    if (runners.has(first)) {
      const [, cmd, ...args] = rest
      if (cmd) uses.push(/^_+$|^\$/.test(cmd) ? { command: '$', flags: [] } : use(cmd, args))
      continue
    }
    if (BUILTINS.has(first) || functions.has(first) || KEYWORDS.has(first)) continue
    if (/^_+$/.test(first) || /^\$/.test(first)) {
      uses.push({ command: '$', flags: [] })
      continue
    }
    if (/^[A-Za-z0-9_.+:-]+$/.test(first) && !first.includes(':')) uses.push(use(first, rest))
  }
  return uses
}

function use(command: string, rest: string[]): Use {
  const flags: string[] = []
  for (const w of rest) {
    if (/^\d*[<>]/.test(w)) break // redirections end the arguments we look at
    if (/^-{1,2}[A-Za-z]/.test(w)) flags.push(w.replace(/=.*$|_+$/, ''))
  }
  return { command, flags }
}

/** Drops the "pattern)" of each case item (the text between "case … in" and "esac"). */
function withoutCasePatterns(code: string): string {
  const pattern = String.raw`\(?[^\s()$;]+(?:\s*\|\s*[^\s()]+)*\)`
  const inline = new RegExp(String.raw`(\bcase\b.*?\bin\s+|;;\s*)${pattern}`, 'g')
  const leading = new RegExp(String.raw`^(\s*)${pattern}`)
  let inCase = 0
  return code
    .split('\n')
    .map((line) => {
      const open = /\bcase\b.*\bin\b/.test(line)
      let out = line.replace(inline, '$1')
      if (inCase > 0 && !open) out = out.replace(leading, '$1')
      if (open) inCase++
      if (/\besac\b/.test(line)) inCase = Math.max(0, inCase - 1)
      return out
    })
    .join('\n')
}

/** Function names defined in the scripts: "name() {". */
export function definedFunctions(texts: string[]): Set<string> {
  const names = new Set<string>()
  for (const t of texts)
    for (const m of t.matchAll(/^\s*([A-Za-z_][A-Za-z0-9_-]*)\(\)\s*\{/gm)) names.add(m[1] as string)
  return names
}
