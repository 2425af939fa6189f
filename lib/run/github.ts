// GitHub Actions: where a run's results go besides the log — the job summary ($GITHUB_STEP_SUMMARY,
// markdown up to 1 MiB, renders mermaid) and step outputs ($GITHUB_OUTPUT: `name=value` lines).
// The entry point reads the environment (githubFromEnv); everything else takes paths and data.
import fs from 'node:fs'
import { type DiskEvent, readJsonl } from './records.ts'
import { inGitHubActions } from '../cli/environment.ts'

export type GitHubOptions = {
  /** GITHUB_ACTIONS=true: groups, annotations, forced colour */
  github: boolean
  /** $GITHUB_STEP_SUMMARY: the job summary file (appended) */
  stepSummary?: string
  /** $GITHUB_OUTPUT: the step outputs file (appended) */
  outputFile?: string
}

/** The Actions settings from an environment (the caller passes process.env). */
export function githubFromEnv(env: Record<string, string | undefined>): GitHubOptions {
  const github = inGitHubActions(env)
  return { github, stepSummary: env.GITHUB_STEP_SUMMARY || undefined, outputFile: env.GITHUB_OUTPUT || undefined }
}

const SUMMARY_LIMIT = 1024 * 1024 // GitHub refuses a larger step summary

/** Appends markdown to the job summary, cut to fit GitHub's 1 MiB limit. */
export function appendStepSummary(file: string, markdown: string): void {
  const used = fs.existsSync(file) ? fs.statSync(file).size : 0
  const room = SUMMARY_LIMIT - used - 200
  const bytes = Buffer.from(markdown + '\n')
  const text = bytes.length <= room ? markdown : Buffer.from(markdown).subarray(0, Math.max(0, room)).toString() +
    '\n\n_(cut to fit the 1 MiB job summary; see summary.md)_'
  fs.appendFileSync(file, text + '\n')
}

/** Appends step outputs; multi-line values use the heredoc form GitHub documents. */
export function writeOutputs(file: string, values: Record<string, string | number>): void {
  const lines = Object.entries(values).map(([name, value]) => {
    const text = String(value)
    return text.includes('\n') ? `${name}<<IMAGEFLEET_EOF\n${text}\nIMAGEFLEET_EOF` : `${name}=${text}`
  })
  fs.appendFileSync(file, lines.join('\n') + '\n')
}

export type ChartSeries = { name: string; events: DiskEvent[] }
export type ChartMark = { t: number; reclaimed: number }

/**
 * A mermaid xychart of free disk over time: one line per series (one per shard after --merge), and bars
 * where cleanups ran, as tall as the bytes they reclaimed. Time is cut into at most `buckets` columns;
 * each column shows the lowest free space seen in it (the moment that matters).
 */
export function diskChart(series: ChartSeries[], marks: ChartMark[], buckets = 40): string | undefined {
  const all = series.flatMap((s) => s.events)
  if (!all.length) return undefined
  const end = Math.max(...all.map((e) => e.t), ...marks.map((m) => m.t), 1)
  buckets = Math.max(1, Math.min(buckets, Math.ceil(end))) // at least a second per column: labels stay distinct
  const width = end / buckets
  const column = (t: number) => Math.min(buckets - 1, Math.floor(t / width))
  const gb = (bytes: number) => Number((bytes / 1e9).toFixed(2))
  const lines = series.map((s) => {
    const low: Array<number | undefined> = Array(buckets).fill(undefined)
    for (const e of s.events) low[column(e.t)] = Math.min(low[column(e.t)] ?? Infinity, e.free)
    let last = s.events[0]?.free ?? 0
    return low.map((v) => (last = v ?? last)).map(gb) // an empty column repeats the last value seen
  })
  const bars: number[] = Array(buckets).fill(0)
  for (const m of marks) if (m.reclaimed > 0) bars[column(m.t)] += m.reclaimed
  const top = Math.max(...lines.flat(), ...bars.map(gb), 0.01)
  const labels = Array.from({ length: buckets }, (_, i) => `"${formatClock(i * width)}"`)
  return [
    '```mermaid',
    'xychart-beta',
    `  title "Free disk (GB) over time${
      series.length > 1 ? ` — one line per shard (${series.map((s) => s.name).join(', ')})` : ''
    }; bars: bytes reclaimed by cleanups"`,
    `  x-axis [${labels.join(', ')}]`,
    `  y-axis "GB" 0 --> ${Math.ceil(top * 1.1 * 100) / 100}`,
    ...lines.map((l) => `  line [${l.join(', ')}]`),
    `  bar [${bars.map(gb).join(', ')}]`,
    '```',
  ].join('\n')
}

/** 754 → "12:34" (minutes:seconds since the start). */
export function formatClock(seconds: number): string {
  const s = Math.round(seconds)
  return `${Math.floor(s / 60)}:${String(s % 60).padStart(2, '0')}`
}

/** Reads OUT/disk.jsonl (skipping a line cut by a crash). */
export function readDiskEvents(file: string): DiskEvent[] {
  return readJsonl<DiskEvent>(file)
}
