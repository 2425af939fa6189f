// Throughput over a run: images built per minute in fixed windows, from the records' finish times, drawn as a
// mermaid bar chart for the job summary beside the free-disk chart (lib/run/github.ts diskChart).
import type { ManifestRecord } from './records.ts'
import { formatClock } from './github.ts'

export type Throughput = {
  /** window width in seconds (the last window may be shorter: the run ended inside it) */
  windowSeconds: number
  /** images built (every phase: as the `built` output counts them) per minute, window by window from the start */
  perMinute: number[]
}

/** Window widths a reader takes in at a glance; the narrowest that keeps the chart to MAX_WINDOWS columns wins. */
const WIDTHS = [5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200]
const MAX_WINDOWS = 20

/** Images built per minute in windows from `startedAt` to `wallSeconds` (or the last finish, if later). */
export function throughput(records: ManifestRecord[], startedAt: string, wallSeconds: number): Throughput | undefined {
  const t0 = Date.parse(startedAt)
  const done = records.filter((r) => r.status === 'built').map((r) => (Date.parse(r.finished_at) - t0) / 1000)
    .filter((t) => t >= 0) // records of an earlier run (--retry-failed covers them) are not this run's throughput
  if (!done.length) return undefined
  const end = Math.max(wallSeconds, ...done, 1)
  const width = WIDTHS.find((w) => Math.ceil(end / w) <= MAX_WINDOWS) ?? Math.ceil(end / MAX_WINDOWS)
  const windows = Math.ceil(end / width)
  const counts: number[] = Array(windows).fill(0)
  for (const t of done) counts[Math.min(windows - 1, Math.floor(t / width))]++
  // a rate over the part of the last window the run lasted, at least a second (a finish at the very end is not ∞/min)
  const span = (i: number) => Math.max(1, Math.min(width, end - i * width))
  return { windowSeconds: width, perMinute: counts.map((n, i) => Number((n * 60 / span(i)).toFixed(1))) }
}

/** A mermaid bar chart of images built per minute, one bar per window, labelled with the window's start. */
export function throughputChart(t: Throughput): string {
  const labels = t.perMinute.map((_, i) => `"${formatClock(i * t.windowSeconds)}"`)
  const top = Math.max(...t.perMinute, 1)
  return [
    '```mermaid',
    'xychart-beta',
    `  title "Images built per minute, windows of ${formatClock(t.windowSeconds)} (min:s)"`,
    `  x-axis [${labels.join(', ')}]`,
    `  y-axis "images/min" 0 --> ${Math.ceil(top * 1.1)}`,
    `  bar [${t.perMinute.join(', ')}]`,
    '```',
  ].join('\n')
}
