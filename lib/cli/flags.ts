// Command-line flags: one table per script defines each flag once (type, default, help),
// and that table is both the parser's input and the --help text.
// Every flag can also come from the environment as IMAGEFLEET_<FLAG> (the flag wins).
import minimist from 'minimist'
import { parseSize, SizeError } from './size.ts'

export type FlagSpec =
  | { type: 'string'; default?: string; help: string; arg?: string; choices?: readonly string[] }
  | { type: 'boolean'; default?: boolean; help: string }
  | { type: 'int'; default?: number; help: string; arg?: string; min?: number }
  | { type: 'size'; default?: string; help: string; arg?: string }
  | { type: 'list'; help: string; arg?: string }
  | { type: 'duration'; default?: string; help: string; arg?: string }
export type FlagTable = Record<string, FlagSpec>

type Camel<S extends string> = S extends `${infer A}-${infer B}` ? `${A}${Capitalize<Camel<B>>}` : S
type ValueOf<F extends FlagSpec> = F extends { type: 'boolean' } ? boolean
  : F extends { type: 'list' } ? string[]
  : F extends { type: 'int' | 'size' | 'duration' }
    ? (F extends { default: string | number } ? number : number | undefined)
  : F extends { default: string } ? string
  : string | undefined
export type Flags<T extends FlagTable> = { [K in keyof T & string as Camel<K>]: ValueOf<T[K]> } & { help: boolean }

/** Bad usage or input: the entry point prints the message and exits 2 before anything is built. */
export class UsageError extends Error {
  constructor(message: string, readonly problems: string[] = [message]) {
    super(message)
  }
}

const camel = (name: string) => name.replace(/-([a-z])/g, (_, c) => c.toUpperCase())
export const envName = (name: string) => `IMAGEFLEET_${name.toUpperCase().replace(/-/g, '_')}`

/**
 * Parses argv against a flag table. Returns typed flags plus positionals.
 * Unknown flags, bad numbers and bad sizes are all collected into one UsageError; so are arguments that are not
 * flags, unless `accepts.positionals` (a stray word is a mistake: an unquoted value with spaces, a broken `\`).
 */
export function parseFlags<T extends FlagTable>(
  table: T,
  argv: string[],
  env: Record<string, string | undefined> = {},
  accepts: { positionals?: boolean } = {},
): { flags: Flags<T>; positionals: string[] } {
  const names = Object.keys(table)
  const booleans = names.filter((n) => table[n].type === 'boolean')
  const problems: string[] = []
  const raw = minimist(argv, {
    boolean: [...booleans, 'help'],
    string: names.filter((n) => table[n].type !== 'boolean'),
    alias: { h: 'help' },
    unknown: (arg) => {
      if (arg.startsWith('-')) problems.push(`unknown flag ${arg.split('=')[0]} (see --help)`)
      return !arg.startsWith('-')
    },
  })
  const flags: Record<string, unknown> = {}
  for (const name of names) {
    const spec = table[name]
    const given = argv.some((a) => a === `--${name}` || a.startsWith(`--${name}=`) || a === `--no-${name}`)
    let value: unknown = given ? raw[name] : env[envName(name)]
    if (value === undefined || (spec.type === 'list' && !given && value === '')) {
      value = spec.type === 'list' ? [] : spec.default
    }
    if (spec.type === 'boolean' && typeof value === 'string') value = /^(1|true|yes|on)$/i.test(value)
    if (spec.type === 'boolean') value = Boolean(value)
    if (Array.isArray(value) && spec.type !== 'list') {
      problems.push(`--${name} given more than once`)
      value = value[value.length - 1]
    }
    if (spec.type === 'list') {
      value = (Array.isArray(value) ? value : given ? [value] : String(value).split(/[\s,]+/)).map(String).filter(
        Boolean,
      )
    }
    if (value !== undefined && spec.type !== 'boolean' && spec.type !== 'list') {
      value = convert(name, spec, String(value), problems)
    }
    flags[camel(name)] = value
  }
  flags.help = Boolean(raw.help)
  const positionals = raw._.map(String)
  if (positionals.length && !accepts.positionals) {
    problems.push(unexpectedArguments(positionals, 'this command takes flags only'))
  }
  if (problems.length) throw new UsageError(problems.join('\n'), problems)
  return { flags: flags as Flags<T>, positionals }
}

/** The problem for arguments a command does not take; `why` says what it takes instead. */
export function unexpectedArguments(args: string[], why: string): string {
  return `unexpected argument${args.length > 1 ? 's' : ''} ${
    args.map((a) => `'${a}'`).join(' ')
  }: ${why} (a value with spaces needs quotes; see --help)`
}

function convert(name: string, spec: FlagSpec, text: string, problems: string[]): unknown {
  if (spec.type === 'int') {
    const n = Number(text)
    if (!/^\d+$/.test(text.trim()) || n < (spec.min ?? 0)) {
      problems.push(`--${name} wants a whole number${spec.min ? ` ≥ ${spec.min}` : ''}, got '${text}'`)
    }
    return n
  }
  if (spec.type === 'size') {
    try {
      return parseSize(text)
    } catch (e) {
      if (e instanceof SizeError) {
        problems.push(`--${name}: ${e.message}`)
        return undefined
      }
      throw e
    }
  }
  if (spec.type === 'duration') {
    const ms = parseDuration(text)
    if (ms === undefined) {
      problems.push(`--${name} wants a duration like 90s, 10m, 2h (bare numbers are seconds), got '${text}'`)
    }
    return ms
  }
  if (spec.type === 'string' && spec.choices && !spec.choices.includes(text)) {
    problems.push(`--${name} must be one of ${spec.choices.join(', ')}; got '${text}'`)
  }
  if (spec.type === 'string' && text === '') problems.push(`--${name} needs a value`)
  return text
}

/** --help text: usage, a summary, then the flag table with defaults and environment names. */
export function renderHelp(usage: string, summary: string, table: FlagTable): string {
  const rows = Object.entries(table).map(([name, spec]) => {
    const arg = spec.type === 'boolean' ? '' : ` ${('arg' in spec && spec.arg) || spec.type.toUpperCase()}`
    const dflt = 'default' in spec && spec.default !== undefined && spec.default !== false
      ? ` (default: ${spec.default})`
      : ''
    const repeat = spec.type === 'list' ? ' (repeatable)' : ''
    return [`  --${name}${arg}`, `${spec.help}${dflt}${repeat}`] as const
  })
  const width = Math.max(...rows.map(([l]) => l.length), 10) + 2
  const lines = rows.map(([l, r]) => `${l.padEnd(width)}${r}`)
  return [
    `Usage: ${usage}`,
    '',
    summary,
    '',
    'Flags:',
    ...lines,
    `  --help${' '.repeat(width - 8)}Print this help`,
    '',
    'Every flag can also be set as IMAGEFLEET_<FLAG> (e.g. IMAGEFLEET_MIN_FREE=20GB); the flag wins.',
    'Sizes: bytes, or 500MB / 20GB (decimal), 20GiB (binary), 30g (docker style, binary).',
    '',
  ].join('\n')
}

/** `90s`, `10m`, `2h`, `500ms`, bare seconds → milliseconds; undefined when not a duration. */
export function parseDuration(text: string): number | undefined {
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$/.exec(text)
  if (!m) return undefined
  return Math.round(Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] ?? 's']!)
}
