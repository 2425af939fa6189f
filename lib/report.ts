// The console: steps, ✓/✗ lines, warnings and errors. In GitHub Actions warnings and errors
// become annotations and groups fold each phase. Every line passes through the secret mask.
import chalk from 'chalk'

/** comments: every line but commands is printed as a `# ` comment, so a --dry-run's output pastes into a shell */
export type ReportOptions = { github: boolean; secrets: string[]; quiet?: boolean; comments?: boolean }
const state: ReportOptions = { github: false, secrets: [] }
let groupOpen = false

/** Called once by the entry point with what it read from the environment. */
export function configureReport(options: Partial<ReportOptions>): void {
  Object.assign(state, options)
  state.secrets = (state.secrets ?? []).filter((s) => s.length >= 3)
  if (state.github) for (const s of state.secrets) process.stdout.write(`::add-mask::${s}\n`)
}

/** Values of variables named like secrets (TOKEN, PASSWORD, SECRET, KEY) — the entry point passes them to configureReport. */
export function secretValues(env: Record<string, string | undefined>): string[] {
  return Object.entries(env)
    .filter(([name, v]) => /TOKEN|PASSWORD|SECRET|KEY/i.test(name) && v && v.length >= 3)
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
  process.stdout.write(mask(text) + '\n')
}
const writeErr = (line: string) => process.stderr.write(mask(line) + '\n')

export const report = {
  /** A phase heading; in Actions a collapsible group (groups do not nest: the previous one is closed). */
  phase(title: string) {
    if (state.github) {
      if (groupOpen) write('::endgroup::')
      write(`::group::${title}`)
      groupOpen = true
    } else write(chalk.bold(`\n== ${title}`))
  },
  endPhase() { if (state.github && groupOpen) { write('::endgroup::'); groupOpen = false } },
  info(text: string) { write(text) },
  dim(text: string) { write(chalk.dim(text)) },
  ok(text: string) { write(`${chalk.green('✓')} ${text}`) },
  skip(text: string) { write(`${chalk.dim('·')} ${text}`) },
  fail(text: string) { write(`${chalk.red('✗')} ${text}`) },
  warn(text: string) {
    if (state.github) write(`::warning::${text}`)
    else writeErr(chalk.yellow(`warning: ${text}`))
  },
  error(text: string, file?: string) {
    if (state.github) write(`::error${file ? ` file=${file}` : ''}::${text.replace(/\n/g, '%0A')}`)
    else writeErr(chalk.red(`error: ${text}`))
  },
}

export const seconds = (ms: number) => `${(ms / 1000).toFixed(1)}s`
