// free-disk's results as one table: on the console, and as markdown for the GitHub step summary.
import fs from 'node:fs'
import { formatBytes } from '../cli/size.ts'

export type Outcome = {
  target: string
  /** What was acted on (paths, or the packages/command for apt, docker, swap). */
  what: string
  /** Bytes given back: du of the removed paths, or the statfs change around a command. */
  bytes?: number
  bytesFrom: 'du' | 'statfs' | 'estimate'
  seconds: number
  status: 'removed' | 'moved aside' | 'would remove' | 'failed' | 'skipped'
  note?: string
}
export type Totals = { freeBefore: number; freeAfter: number; seconds: number; pending: number }

const cell = (o: Outcome) => [
  o.target,
  o.status + (o.note ? ` (${o.note})` : ''),
  o.bytes === undefined ? '—' : `${formatBytes(o.bytes)}${o.bytesFrom === 'du' ? '' : ` ${o.bytesFrom}`}`,
  `${o.seconds.toFixed(1)}s`,
]
const HEAD = ['target', 'result', 'freed', 'seconds']

function totalLines(t: Totals): string[] {
  const delta = t.freeAfter - t.freeBefore
  return [
    `free space: ${formatBytes(t.freeBefore)} → ${formatBytes(t.freeAfter)}: ` +
    `${delta >= 0 ? '+' : ''}${formatBytes(delta)} (${delta} bytes, statfs) in ${t.seconds.toFixed(1)}s`,
    ...(t.pending
      ? [
        `still to come from the background deleter: up to ~${
          formatBytes(t.pending)
        } (typical sizes; the status file has measured ones within seconds)`,
      ]
      : []),
  ]
}

export function renderText(outcomes: Outcome[], totals: Totals): string {
  const rows = [HEAD, ...outcomes.map(cell)]
  const widths = HEAD.map((_, i) => Math.max(...rows.map((r) => r[i].length)))
  const line = (r: string[]) =>
    r.map((c, i) => (i === 2 || i === 3 ? c.padStart(widths[i]) : c.padEnd(widths[i]))).join('  ').trimEnd()
  return [line(rows[0]), ...rows.slice(1).map(line), '', ...totalLines(totals)].join('\n')
}

export function renderMarkdown(outcomes: Outcome[], totals: Totals): string {
  const row = (r: string[]) => `| ${r.map((c) => c.replace(/\|/g, '\\|')).join(' | ')} |`
  return [
    '### free-disk',
    '',
    row(HEAD),
    '|---|---|--:|--:|',
    ...outcomes.map((o) => row(cell(o))),
    '',
    ...totalLines(totals).map((l) => `${l}  `),
    '',
    '_freed: du of each target before removal (targets go in parallel, so one statfs window cannot be split among them); ' +
    'statfs: measured around a command; estimate: typical size, not yet deleted._',
    '',
  ].join('\n')
}

/** Appends the markdown table to $GITHUB_STEP_SUMMARY (the entry point passes the path when in Actions). */
export function appendSummary(file: string, outcomes: Outcome[], totals: Totals): void {
  fs.appendFileSync(file, renderMarkdown(outcomes, totals) + '\n')
}

/**
 * The step outputs ($GITHUB_OUTPUT, free-disk/action.yml): bytes given back now (as the table's freed column),
 * bytes a background deleter still has to give back, free bytes after, and its status file ('' when none runs).
 */
export function stepOutputs(outcomes: Outcome[], totals: Totals, statusFile?: string): Record<string, number | string> {
  const freed = outcomes.filter((o) => o.status === 'removed').reduce((n, o) => n + Math.max(0, o.bytes ?? 0), 0)
  return { freed, pending: totals.pending, free: totals.freeAfter, status: statusFile ?? '' }
}
