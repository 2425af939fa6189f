// --merge: the shards of a CI matrix each wrote an OUT dir (manifest.jsonl, disk.jsonl, summary.json);
// the final job merges them into one manifest and one summary, with one free-disk line per shard.
import fs from 'node:fs'
import path from 'node:path'
import { UsageError } from '../cli/flags.ts'
import { type ChartMark, type ChartSeries, type GitHubOptions, readDiskEvents } from './github.ts'
import { mask, report } from '../cli/report.ts'
import { lastPerImage, type ManifestRecord, readJsonl } from './records.ts'
import { cleanupMarks, printTotals, publishToGitHub, summarizeFacts, type Summary, summaryMarkdown } from './summary.ts'

export type Merged = { summary: Summary; series: ChartSeries[]; marks: ChartMark[]; records: ManifestRecord[] }

/** Reads every shard's OUT dir; throws a UsageError naming each dir that is not one. */
export function mergeShards(dirs: string[]): Merged {
  if (!dirs.length) throw new UsageError("--merge needs the shards' OUT dirs as arguments: --merge DIR… --out MERGED")
  const problems = dirs.filter((d) => !fs.existsSync(path.join(d, 'summary.json'))).map((d) =>
    `--merge ${d}: no summary.json (not the OUT dir of a finished shard)`
  )
  if (problems.length) throw new UsageError(problems.join('\n'), problems)
  const shards = dirs.map((dir) => ({
    dir,
    summary: JSON.parse(fs.readFileSync(path.join(dir, 'summary.json'), 'utf8')) as Summary,
    records: readJsonl<ManifestRecord>(path.join(dir, 'manifest.jsonl')),
    events: readDiskEvents(path.join(dir, 'disk.jsonl')),
  }))
  const lowest = shards.map((s) => s.summary.minFree).filter((x): x is number => x !== null)
  const summary = summarizeFacts({
    records: shards.flatMap((s) => [...lastPerImage(s.records).values()]), // a shard rerun or retried: where it ended
    cleanups: shards.flatMap((s) => s.summary.cleanups.total),
    startedAt: shards.map((s) => s.summary.startedAt).sort()[0],
    wallSeconds: Math.max(...shards.map((s) => s.summary.wallSeconds)),
    peakUsed: Math.max(...shards.map((s) => s.summary.peakUsed)),
    minFree: lowest.length ? Math.min(...lowest) : null,
    instances: shards.reduce((n, s) => n + s.summary.instances, 0),
    key: [...new Set(shards.map((s) => s.summary.key).filter(Boolean))].join(', ') || undefined,
  })
  // each shard's clock starts at its own start: the chart compares shards side by side
  return {
    summary,
    series: shards.map((s) => ({ name: path.basename(path.resolve(s.dir)), events: s.events })),
    marks: shards.flatMap((s) => cleanupMarks(s.summary)),
    records: shards.flatMap((s) => s.records),
  }
}

/** Writes OUT/manifest.jsonl (every shard's records), summary.json and summary.md; resolves to the exit code. */
export function writeMerged(m: Merged, out: string, github?: GitHubOptions): number {
  fs.mkdirSync(out, { recursive: true })
  const manifest = path.join(out, 'manifest.jsonl')
  fs.writeFileSync(manifest, m.records.map((r) => JSON.stringify(r) + '\n').join(''))
  const markdown = mask(
    summaryMarkdown(m.summary, { series: m.series, marks: m.marks }, `imagefleet (${m.series.length} shards merged)`),
  )
  fs.writeFileSync(path.join(out, 'summary.json'), mask(JSON.stringify(m.summary, null, 2)) + '\n')
  fs.writeFileSync(path.join(out, 'summary.md'), markdown + '\n')
  if (github) publishToGitHub(m.summary, github, { manifest: path.resolve(manifest), markdown })
  report.info(`merged ${m.series.length} shards: ${m.series.map((s) => s.name).join(', ')}`)
  printTotals(m.summary, path.join(out, 'summary.md'))
  return m.summary.failed.length ? 1 : 0
}
