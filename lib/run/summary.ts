// The run's account: counts per phase and status, wall seconds, peak disk used, every cleanup with the
// bytes it reclaimed, the slowest images and a chart of free disk over time. Written to OUT/summary.json
// and OUT/summary.md, printed, and in GitHub Actions also to the job summary, the step outputs and one
// ::error annotation per failed image.
import fs from 'node:fs'
import path from 'node:path'
import {
  appendStepSummary,
  type ChartMark,
  type ChartSeries,
  diskChart,
  type GitHubOptions,
  readDiskEvents,
  writeOutputs,
} from './github.ts'
import { count, mask, report } from '../cli/report.ts'
import { stepName } from './step.ts'
import { type CleanupRecord, lastPerImage, type ManifestRecord, type Phase, type Run, type Status } from './records.ts'
import { formatBytes } from '../cli/size.ts'
import type { DiskSummary } from '../disk/budget.ts'
import { mirrorLine, type MirrorTotals, mirrorTotals } from './mirror-totals.ts'

export const PHASES: Phase[] = ['mirror', 'builder', 'base', 'assemble']
const STATUSES: Status[] = ['built', 'skipped', 'failed']
const SLOWEST = 10

export type Summary = {
  instances: number
  /** after --retry-failed: how many instances this run retried (the counts cover every instance in OUT) */
  retried?: number
  key?: string
  startedAt: string
  counts: Record<Phase, Record<Status, number>>
  wallSeconds: number
  peakUsed: number
  minFree: number | null
  cleanups: {
    byCommand: Array<{ command: string; runs: number; reclaimed: number; seconds: number; failures: number }>
    total: CleanupRecord[]
  }
  reclaimed: number
  failed: Array<{ phase: Phase; id: string; reason: string; error_class?: string; log: string; attempts: number }>
  slowest: Array<{ phase: Phase; id: string; seconds: number; log: string }>
  /** Final images assembled inside the registry: bytes sent, blobs mounted vs copied (a refused mount is copied) */
  registry?: {
    images: number
    bytesUploaded: number
    mounted: number
    copied: number
    present: number
    notes: string[]
  }
  /** What the disk budget did: pulls and the re-pull factor, cleanups per image, waits, how much disk it used */
  disk?: DiskSummary
  /** Upstream images mirrored into the fleet's registry (scripts/mirror.ts, pipeline --mirror) */
  mirror?: MirrorTotals
}

/** What a summary is made of: a live Run, or the files of one or more finished runs (--merge). */
export type RunFacts = {
  records: ManifestRecord[]
  cleanups: CleanupRecord[]
  startedAt: string
  wallSeconds: number
  peakUsed: number
  minFree: number | null
  instances: number
  key?: string
  disk?: DiskSummary
  retried?: number
}

export function summarizeFacts(f: RunFacts): Summary {
  const counts = Object.fromEntries(
    PHASES.map((p) => [p, Object.fromEntries(STATUSES.map((s) => [s, 0]))]),
  ) as Summary['counts']
  for (const r of f.records) counts[r.phase][r.status]++
  const byCommand = new Map<string, Summary['cleanups']['byCommand'][number]>()
  for (const c of f.cleanups) {
    const key = c.command.replace(/^docker rmi .*/, 'docker rmi …').replace(/until=\S+/, 'until=…') // one row per command, not per argument
    const row = byCommand.get(key) ?? { command: key, runs: 0, reclaimed: 0, seconds: 0, failures: 0 }
    row.runs++
    row.reclaimed += c.reclaimed
    row.seconds += c.seconds
    row.failures += c.exitCode === 0 ? 0 : 1
    byCommand.set(key, row)
  }
  return {
    instances: f.instances,
    ...(f.retried === undefined ? {} : { retried: f.retried }),
    key: f.key,
    startedAt: f.startedAt,
    counts,
    wallSeconds: f.wallSeconds,
    peakUsed: f.peakUsed,
    minFree: f.minFree,
    cleanups: { byCommand: [...byCommand.values()].sort((a, b) => b.reclaimed - a.reclaimed), total: f.cleanups },
    reclaimed: f.cleanups.reduce((s, c) => s + c.reclaimed, 0),
    failed: f.records.filter((r) => r.status === 'failed')
      .map((r) => ({
        phase: r.phase,
        id: r.id,
        reason: r.reason,
        error_class: r.error_class,
        log: r.log,
        attempts: r.attempts,
      })),
    slowest: f.records.filter((r) => r.status === 'built').sort((a, b) =>
      b.seconds - a.seconds || (a.id < b.id ? -1 : 1)
    ).slice(0, SLOWEST)
      .map((r) => ({ phase: r.phase, id: r.id, seconds: r.seconds, log: r.log })),
    ...registryTotals(f.records),
    ...mirrorTotals(f.records),
    ...(f.disk ? { disk: f.disk } : {}),
  }
}

/** The disk budget in one line: what it pulled against what was unique, cleanups per image, waits, disk used. */
export function diskLine(d: DiskSummary): string {
  const pct = (x: number | null) => (x === null ? 'n/a' : `${Math.round(x * 100)}%`)
  return `Disk (${d.policy}): pulled ${formatBytes(d.pulledBytes)} for ${
    formatBytes(d.uniqueBytes)
  } of unique upstream layers ` +
    `(re-pull factor ${d.repullFactor === null ? 'n/a' : d.repullFactor.toFixed(2)}), ${d.cleanups} cleanups ` +
    `(${
      d.cleanupsPerImage === null ? 'n/a' : d.cleanupsPerImage.toFixed(2)
    } per image), ${d.waits} images waited ${d.waitSeconds}s for room, ` +
    `peak use ${formatBytes(d.peakConsumed)} of ${formatBytes(d.usableBytes)} usable (${pct(d.utilisation)}); ` +
    `learned ${d.model.r.toFixed(2)} disk bytes per pulled byte + ${formatBytes(d.model.k)} per image`
}

function registryTotals(records: ManifestRecord[]): Pick<Summary, 'registry'> {
  const tallies = records.flatMap((r) => (r.registry ? [{ id: r.id, ...r.registry }] : []))
  if (!tallies.length) return {}
  const sum = (k: 'bytes_uploaded' | 'mounted' | 'copied' | 'present') => tallies.reduce((n, t) => n + t[k], 0)
  return {
    registry: {
      images: tallies.length,
      bytesUploaded: sum('bytes_uploaded'),
      mounted: sum('mounted'),
      copied: sum('copied'),
      present: sum('present'),
      notes: tallies.flatMap((t) => (t.notes ?? []).map((n) => `${t.id}: ${n}`)),
    },
  }
}

/** Registry assembly in one line; copies (a refused mount, or another registry) are called out. */
export function registryLine(r: NonNullable<Summary['registry']>): string {
  return `Assembled in the registry: ${count(r.images, 'image')}, ${formatBytes(r.bytesUploaded)} uploaded, ${
    count(r.mounted, 'blob')
  } mounted, ${r.copied} copied, ${r.present} already there` +
    (r.copied ? ` (${count(r.copied, 'blob')} could not be mounted and were copied through this runner)` : '')
}

/** The run's summary; after --retry-failed (run.earlier), of the whole fleet in OUT: the last record of every image. */
export function summarize(run: Run, fleet?: { instances: unknown[]; key?: string }): Summary {
  const retry = run.earlier.length > 0
  const records = retry ? [...lastPerImage([...run.earlier, ...run.records]).values()] : run.records
  return summarizeFacts({
    records,
    cleanups: run.cleanups,
    startedAt: new Date(run.started).toISOString(),
    wallSeconds: Number(((Date.now() - run.started) / 1000).toFixed(1)),
    peakUsed: run.peakUsed,
    minFree: Number.isFinite(run.minFree) ? run.minFree : null,
    instances: retry
      ? new Set(records.filter((r) => r.phase !== 'builder').map((r) => r.id)).size
      : fleet?.instances.length ?? 0,
    key: fleet?.key,
    disk: run.disk,
    retried: retry ? fleet?.instances.length ?? 0 : undefined,
  })
}

/** `base \`django__django-11099\``; the builder is just `builder`. */
const imageCell = (x: { phase: Phase; id: string }) => (x.phase === x.id ? x.phase : `${x.phase} \`${x.id}\``)
const total = (s: Summary, st: Status) => PHASES.reduce((n, p) => n + s.counts[p][st], 0)
/** The phases to show: the mirror only in runs that mirrored */
const shown = (s: Summary) => PHASES.filter((p) => p !== 'mirror' || s.mirror)
const cell = (text: string) => text.replace(/\|/g, '\\|').replace(/\n/g, ' ')

/** Cleanups as chart marks: seconds since the run started, bytes reclaimed. */
export function cleanupMarks(s: Summary): ChartMark[] {
  const t0 = Date.parse(s.startedAt)
  return s.cleanups.total.map((c) => ({ t: Math.max(0, (Date.parse(c.at) - t0) / 1000), reclaimed: c.reclaimed }))
}

export function summaryMarkdown(
  s: Summary,
  chart?: { series: ChartSeries[]; marks: ChartMark[] },
  title = 'imagefleet',
): string {
  const lines = [
    `## ${title}: ${count(s.instances, 'instance')}${s.key ? ` (key \`${s.key}\`)` : ''} — ${
      total(s, 'built')
    } built, ${total(s, 'skipped')} skipped, ${total(s, 'failed')} failed`,
    '',
    ...(s.retried === undefined ? [] : [
      `After \`--retry-failed\` of ${
        count(s.retried, 'instance')
      }: every instance in this output directory, as its last record says.`,
      '',
    ]),
    '| phase | built | skipped | failed |',
    '|---|---:|---:|---:|',
    ...shown(s).map((p) => `| ${p} | ${s.counts[p].built} | ${s.counts[p].skipped} | ${s.counts[p].failed} |`),
    '',
    `Wall time ${s.wallSeconds}s · peak disk used ${formatBytes(s.peakUsed)} · lowest free ${
      s.minFree === null ? 'n/a' : formatBytes(s.minFree)
    } · reclaimed ${formatBytes(s.reclaimed)}`,
    '',
  ]
  if (s.failed.length) {
    lines.push(
      '### Failed',
      '',
      '| image | class | reason | log |',
      '|---|---|---|---|',
      ...s.failed.map((f) =>
        `| ${imageCell(f)} | ${f.error_class ?? ''} | ${cell(f.reason)} | ${f.log ? `\`${f.log}\`` : ''} |`
      ),
      '',
    )
  }
  const graph = chart && diskChart(chart.series, chart.marks)
  if (graph) lines.push('### Free disk', '', graph, '')
  if (s.cleanups.byCommand.length) {
    lines.push(
      '### Cleanups',
      '',
      '| command | runs | reclaimed | seconds | failed |',
      '|---|---:|---:|---:|---:|',
      ...s.cleanups.byCommand.map((c) =>
        `| \`${c.command}\` | ${c.runs} | ${formatBytes(c.reclaimed)} | ${c.seconds.toFixed(1)} | ${c.failures} |`
      ),
      '',
    )
  }
  if (s.disk) lines.push(diskLine(s.disk), '')
  if (s.mirror) lines.push(mirrorLine(s.mirror), '')
  if (s.registry) {
    lines.push(
      registryLine(s.registry),
      '',
      ...s.registry.notes.slice(0, 20).map((n) => `- ${n}`),
      ...(s.registry.notes.length ? [''] : []),
    )
  }
  if (s.slowest.length) {
    lines.push(
      `### Slowest ${count(s.slowest.length, 'image')}`,
      '',
      '| image | seconds | log |',
      '|---|---:|---|',
      ...s.slowest.map((x) => `| ${imageCell(x)} | ${x.seconds.toFixed(1)} | \`${x.log}\` |`),
      '',
    )
  }
  return lines.join('\n')
}

/** In Actions: one ::error per image that failed when tried (naming its log), one for all blocked ones. */
export function annotateFailures(s: Summary): void {
  const tried = s.failed.filter((f) => f.attempts > 0)
  for (const f of tried) report.error(`${f.reason} — log: ${f.log}`, { title: `imagefleet: ${stepName(f)} failed` })
  const blocked = s.failed.length - tried.length
  if (blocked) {
    report.error(
      `not tried because something they need failed: ${count(blocked, 'image')} (listed in the job summary)`,
      {
        title: 'imagefleet: blocked images',
      },
    )
  }
}

/** Job summary and step outputs (built/skipped/failed count images of every phase; manifest is a path). */
export function publishToGitHub(s: Summary, gh: GitHubOptions, files: { manifest: string; markdown: string }): void {
  if (gh.github) annotateFailures(s)
  if (gh.stepSummary) appendStepSummary(gh.stepSummary, files.markdown)
  if (gh.outputFile) {
    writeOutputs(gh.outputFile, {
      built: total(s, 'built'),
      skipped: total(s, 'skipped'),
      failed: total(s, 'failed'),
      manifest: files.manifest,
    })
  }
}

/** Writes summary.json and summary.md (and the GitHub outputs), prints the totals; resolves to the exit code. */
export function writeSummary(
  run: Run,
  o: { out: string; fleet?: { instances: unknown[]; key?: string }; github?: GitHubOptions },
): number {
  const s = summarize(run, o.fleet)
  report.endPhase()
  if (!run.dry) {
    const markdown = mask(
      summaryMarkdown(s, {
        series: [{ name: 'free', events: readDiskEvents(path.join(o.out, 'disk.jsonl')) }],
        marks: cleanupMarks(s),
      }),
    )
    fs.writeFileSync(path.join(o.out, 'summary.json'), mask(JSON.stringify(s, null, 2)) + '\n')
    fs.writeFileSync(path.join(o.out, 'summary.md'), markdown + '\n')
    if (o.github) publishToGitHub(s, o.github, { manifest: path.resolve(o.out, 'manifest.jsonl'), markdown })
  }
  printTotals(s, run.dry ? undefined : path.join(o.out, 'summary.md'), run.dry)
  return total(s, 'failed') ? 1 : 0
}

/** The closing lines; a dry run leaves out what varies (seconds, disk) so its plan is the same every time. */
export function printTotals(s: Summary, file?: string, dry = false): void {
  if (s.registry) report.info(registryLine(s.registry))
  if (s.mirror && !dry) report.info(mirrorLine(s.mirror))
  if (s.disk && !dry) report.info(diskLine(s.disk))
  report.info(
    `\n${s.retried === undefined ? '' : 'every instance in --out after the retry: '}${
      shown(s).map((p) =>
        `${p}: ${s.counts[p].built} built, ${s.counts[p].skipped} skipped, ${s.counts[p].failed} failed`
      ).join(' · ')
    }`,
  )
  report.info(
    `${total(s, 'built') + total(s, 'skipped')} ok, ${total(s, 'failed')} failed${
      dry
        ? ' (dry run: nothing ran)'
        : ` in ${s.wallSeconds}s · peak disk used ${formatBytes(s.peakUsed)} · ${
          count(s.cleanups.total.length, 'cleanup')
        } reclaimed ${formatBytes(s.reclaimed)}`
    }${file ? ` · ${file}` : ''}`,
  )
}
