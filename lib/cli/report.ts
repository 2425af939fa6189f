// The console: steps, ✓/✗ lines, warnings and errors. In GitHub Actions warnings and errors
// become annotations, groups fold each phase and colour is forced. Every line passes through the secret
// mask. On a terminal a live progress line (lib/progress.ts) stays under the printed lines.
import chalk from 'chalk'

/** comments: every line but commands is printed as a `# ` comment, so a --dry-run's output pastes into a shell */
export type ReportOptions = { github: boolean; secrets: string[]; quiet?: boolean; comments?: boolean }
const state: ReportOptions = { github: false, secrets: [] }
let groupOpen = false

/** Called once by the entry point with what it read from the environment. */
export function configureReport(options: Partial<ReportOptions>): void {
  Object.assign(state, options)
  state.secrets = (state.secrets ?? []).filter((s) => s.length >= 3)
  if (state.github) { for (const s of state.secrets) process.stdout.write(`::add-mask::${s}\n`) }
  if (state.github && chalk.level === 0) chalk.level = 1 // Actions logs render colour; they are not a TTY
}

let live: (() => string) | undefined
let liveShown = false
/** On a TTY: a line redrawn under everything printed (undefined removes it). */
export function setLiveLine(render: (() => string) | undefined): void {
  clearLive()
  live = render
  drawLive()
}
/** Redraws the live line (its facts changed). */
export function drawLive(): void {
  if (!live || state.quiet) return
  const width = process.stdout.columns || 120
  process.stdout.write(`\r\x1b[2K${mask(live()).slice(0, width - 1)}`)
  liveShown = true
}
function clearLive() {
  if (liveShown) process.stdout.write('\r\x1b[2K')
  liveShown = false
}

/** Values of variables named like secrets (TOKEN, PASSWORD, SECRET, KEY) — the entry point passes them to configureReport. */
export function secretValues(env: Record<string, string | undefined>): string[] {
  return Object.entries(env)
    .filter(([name, v]) =>
      /TOKEN|PASSWORD|SECRET|KEY/i.test(name) && !/^IMAGEFLEET_(?!.*(TOKEN|PASSWORD|SECRET))/.test(name) && v &&
      v.length >= 3
    )
    .map(([, v]) => v as string)
}

export function mask(text: string): string {
  let out = text
  for (const s of state.secrets) out = out.split(s).join('***')
  return out
}

const write = (line: string) => {
  if (state.quiet) return
  const text = state.comments ? line.split('\n').map((l) => (l.trim() ? `# ${l}` : l)).join('\n') : line
  clearLive()
  process.stdout.write(mask(text) + '\n')
  drawLive()
}
const writeErr = (line: string) => {
  clearLive()
  process.stderr.write(mask(line) + '\n')
  drawLive()
}
/** `::error title=…::text`: properties are escaped as GitHub documents (%, CR, LF, `:` and `,`). */
const escapeData = (text: string) => text.replace(/%/g, '%25').replace(/\r/g, '%0D').replace(/\n/g, '%0A')
const escapeProperty = (text: string) => escapeData(text).replace(/:/g, '%3A').replace(/,/g, '%2C')

export const report = {
  /** A phase heading; in Actions a collapsible group (groups do not nest: the previous one is closed). */
  phase(title: string) {
    if (state.github) {
      if (groupOpen) write('::endgroup::')
      write(`::group::${title}`)
      groupOpen = true
    } else write(chalk.bold(`\n== ${title}`))
  },
  endPhase() {
    if (state.github && groupOpen) {
      write('::endgroup::')
      groupOpen = false
    }
  },
  info(text: string) {
    write(text)
  },
  // A dry run ran nothing: its ✓ lines and measurements (seconds, bytes, free space) would be made up and
  // would differ from run to run; it prints the plan — phases, commands, skips and problems — and nothing else.
  dim(text: string) {
    if (!state.comments) write(chalk.dim(text))
  },
  ok(text: string) {
    if (!state.comments) write(`${chalk.green('✓')} ${text}`)
  },
  skip(text: string) {
    write(`${chalk.dim('·')} ${text}`)
  },
  fail(text: string) {
    write(`${chalk.red('✗')} ${text}`)
  },
  warn(text: string) {
    if (state.github) write(`::warning::${escapeData(text)}`)
    else writeErr(chalk.yellow(`warning: ${text}`))
  },
  /** `where.file` is a source file in the repository; `where.title` titles the annotation. */
  error(text: string, where: { file?: string; title?: string } = {}) {
    const props = Object.entries(where).filter(([, v]) => v).map(([k, v]) => `${k}=${escapeProperty(v!)}`).join(',')
    if (state.github) write(`::error${props ? ` ${props}` : ''}::${escapeData(text)}`)
    else writeErr(chalk.red(`error: ${text}`))
  },
}

export const seconds = (ms: number) => `${(ms / 1000).toFixed(1)}s`

/** `1 image`, `2 images`: a count with its noun (`plural` when the noun does not just take an s). */
export const count = (n: number, noun: string, plural = `${noun}s`) => `${n} ${n === 1 ? noun : plural}`
