// The small part of Dockerfile syntax the registry assembler needs: logical lines (continuations, comments, parser
// directives), word splitting that keeps quotes, and docker's variable expansion ($X, ${X}, ${X:-d}, ${X:+a}).
//
// Hand-written, not dockerfile-ast (npm, what editors use), after trying it under Bun and Deno (issue 15). Cases
// where it reads a Dockerfile differently from docker, each a silently different image here:
// - exec form: `ENTRYPOINT ["/bin/sh", "-c", "echo a  b"]` → getJSONStrings() gives "echoab" (whitespace inside a
//   JSON string dropped); docker's Entrypoint is ["/bin/sh","-c","echo a  b"].
// - a comment line inside a continuation (`ENV A=1 \` / `# note` / `B=2`): getArgumentsContent() keeps the
//   comment, so "#", "note" become words; docker drops the line.
// - expansion (getExpandedArguments) sees only what the file declares: not --build-arg values and not the base
//   image's Env, which `ENV PATH=/opt/bin:$PATH` and `COPY … $HOME/x` need.
// What it would add — the `# escape=` directive and heredocs — is refused here with a reason (docker build does it).

/** One instruction: its upper-cased keyword, the raw text after it, the 1-based line it starts on, heredoc or not. */
export type Instruction = { keyword: string; rest: string; line: number; heredoc?: boolean }

/**
 * Joins `\`-continued lines, drops comments and blank lines. Parser directives (`# syntax=`, `# escape=`) are
 * reported. A heredoc (`<<EOF` … `EOF`) is skipped whole and its instruction marked.
 */
export function logicalLines(text: string): { instructions: Instruction[]; directives: Record<string, string> } {
  const lines = text.replace(/\r\n?/g, '\n').split('\n')
  const instructions: Instruction[] = []
  const directives: Record<string, string> = {}
  let current = ''
  let start = 0
  let header = true
  let heredocEnd: RegExp | undefined
  lines.forEach((raw, i) => {
    if (heredocEnd) {
      if (heredocEnd.test(raw)) heredocEnd = undefined
      return
    }
    const directive = /^\s*#\s*([a-zA-Z]+)\s*=\s*(.*?)\s*$/.exec(raw)
    if (header && directive) {
      directives[directive[1].toLowerCase()] = directive[2]
      return
    }
    header = false
    if (/^\s*#/.test(raw)) return
    if (!raw.trim()) return // a blank line ends nothing: docker skips it inside a continuation too
    if (!current) start = i + 1
    const continued = /\\\s*$/.test(raw)
    current += continued ? raw.replace(/\\\s*$/, '') : raw
    if (continued) return
    push()
  })
  push()
  return { instructions, directives }

  function push() {
    const m = /^\s*(\S+)\s*([\s\S]*?)\s*$/.exec(current)
    const heredocs = m && /^(RUN|COPY|ADD)$/i.test(m[1]) // the only instructions BuildKit reads heredocs for
    const doc = heredocs && /<<(-?)\s*(["']?)([A-Za-z0-9_]+)\2/.exec(m[2])
    if (doc) heredocEnd = new RegExp(`^${doc[1] ? '\\s*' : ''}${doc[3]}$`)
    if (m) {
      instructions.push({ keyword: m[1].toUpperCase(), rest: m[2], line: start, ...(doc ? { heredoc: true } : {}) })
    }
    current = ''
  }
}

/** Splits on unquoted whitespace, keeping quotes and escapes in the words (docker's parseWords). */
export function splitWords(text: string): string[] {
  const words: string[] = []
  let word = ''
  let quote = ''
  for (let i = 0; i < text.length; i++) {
    const ch = text[i]
    if (!quote && /\s/.test(ch)) {
      if (word) words.push(word)
      word = ''
      continue
    }
    if (ch === '\\' && quote !== "'" && i + 1 < text.length) {
      word += ch + text[++i]
      continue
    }
    if (!quote && (ch === '"' || ch === "'")) quote = ch
    else if (quote === ch) quote = ''
    word += ch
  }
  if (word) words.push(word)
  return words
}

/** Variables visible to expansion; `missing` records names that were not set (callers decide if that matters). */
export type Vars = { get(name: string): string | undefined; missing?: Set<string> }
export const varsFrom = (map: Map<string, string>, missing?: Set<string>): Vars => ({ get: (n) => map.get(n), missing })

/**
 * Expands one word the way docker's shell lexer does for ENV, LABEL, WORKDIR, USER, COPY and ARG:
 * quotes are removed, `'…'` is literal, `\` escapes, `$X` `${X}` `${X:-default}` `${X:+alt}` expand.
 */
export function expandWord(word: string, vars: Vars): string {
  let out = ''
  let i = 0
  const lookup = (name: string) => {
    const v = vars.get(name)
    if (v === undefined) vars.missing?.add(name)
    return v
  }
  const dollar = (inQuotes: boolean) => {
    const next = word[i + 1]
    if (next === '{') {
      const close = matchBrace(word, i + 1)
      const body = word.slice(i + 2, close)
      i = close + 1
      const m = /^([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-+])([\s\S]*))?$/.exec(body)
      if (!m) throw new Error(`bad substitution \${${body}}`)
      const value = lookup(m[1])
      const set = m[2]?.startsWith(':') ? Boolean(value) : value !== undefined
      if (m[2]?.endsWith('-')) return set ? value! : expandWord(m[3], vars)
      if (m[2]?.endsWith('+')) return set ? expandWord(m[3], vars) : ''
      return value ?? ''
    }
    const m = /^[A-Za-z_][A-Za-z0-9_]*/.exec(word.slice(i + 1))
    if (!m) {
      i++
      return '$'
    }
    i += 1 + m[0].length
    return lookup(m[0]) ?? (inQuotes ? '' : '')
  }
  while (i < word.length) {
    const ch = word[i]
    if (ch === "'") {
      const close = word.indexOf("'", i + 1)
      const end = close < 0 ? word.length : close
      out += word.slice(i + 1, end)
      i = end + 1
    } else if (ch === '"') {
      i++
      while (i < word.length && word[i] !== '"') {
        if (word[i] === '\\' && '"$\\'.includes(word[i + 1] ?? '')) {
          out += word[i + 1]
          i += 2
        } else if (word[i] === '$') out += dollar(true)
        else out += word[i++]
      }
      i++
    } else if (ch === '\\' && i + 1 < word.length) {
      out += word[i + 1]
      i += 2
    } else if (ch === '$') out += dollar(false)
    else {
      out += ch
      i++
    }
  }
  return out
}

function matchBrace(word: string, open: number): number {
  let depth = 0
  for (let j = open; j < word.length; j++) {
    if (word[j] === '{') depth++
    else if (word[j] === '}' && --depth === 0) return j
  }
  throw new Error(`missing } in ${word}`)
}

/** `["a","b"]` → ['a','b']; anything that is not a JSON array of strings → undefined (shell form). */
export function jsonArgs(rest: string): string[] | undefined {
  if (!rest.trim().startsWith('[')) return undefined
  try {
    const value = JSON.parse(rest)
    return Array.isArray(value) && value.every((v) => typeof v === 'string') ? value : undefined
  } catch {
    return undefined
  }
}

/** Key/value pairs for ENV and LABEL: `k=v k2="v 2"` or the legacy `k the rest of the line`. Values stay unexpanded. */
export function keyValues(rest: string): [string, string][] {
  const words = splitWords(rest)
  if (!words.length) throw new Error('needs at least one key')
  if (!words[0].includes('=')) {
    const key = words[0]
    const value = rest.slice(rest.indexOf(key) + key.length).trim()
    if (!value) throw new Error(`${key} needs a value`)
    return [[key, value]]
  }
  return words.map((w) => {
    const eq = w.indexOf('=')
    if (eq <= 0) throw new Error(`'${w}' is not key=value`)
    return [w.slice(0, eq), w.slice(eq + 1)]
  })
}
