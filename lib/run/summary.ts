// The run's account (summary-facts.ts): counts per phase and status, wall seconds, peak disk used, every cleanup with
// the bytes it reclaimed, the slowest images, charts of free disk and throughput over time. Written to OUT/summary.json
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
import { lastPerImage, type Phase, type Run } from './records.ts'
import { formatBytes } from '../cli/size.ts'
import type { DiskSummary } from '../disk/budget-types.ts'
import { mirrorLine } from './mirror-totals.ts'
import { throughputChart } from './throughput.ts'
import { PHASES, summarizeFacts, type Summary, total } from './summary-facts.ts'

export { PHASES, type RunFacts, summarizeFacts, type Summary } from './summary-facts.ts'

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
  if (graph || s.throughput) {
    lines.push(
      `### ${graph ? 'Free disk' : ''}${graph && s.throughput ? ' and ' : ''}${s.throughput ? 'throughput' : ''}`,
      '',
    )
  }
  if (graph) lines.push(graph, '')
  if (s.throughput) lines.push(throughputChart(s.throughput), '')
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
  if (s.time) lines.push(timeLine(s.time), '')
  if (s.slowest.length) {
    lines.push(
      `### Slowest ${count(s.slowest.length, 'image')}`,
      '',
      '| image | seconds | slowest part | disk growth | pushed | waited for disk | log |',
      '|---|---:|---|---:|---:|---:|---|',
      ...s.slowest.map((x) =>
        `| ${imageCell(x)} | ${x.seconds.toFixed(1)} | ${
          x.slowest ? `${x.slowest.part} ${x.slowest.seconds.toFixed(1)}s` : '—'
        } | ${bytesCell(x.disk_growth)} | ${bytesCell(x.bytes_pushed)} | ${
          x.budget_wait_seconds === undefined ? '—' : `${x.budget_wait_seconds.toFixed(1)}s`
        } | \`${x.log}\` |`
      ),
      '',
    )
  }
  return lines.join('\n')
}

const bytesCell = (bytes?: number) => (bytes === undefined ? '—' : formatBytes(bytes))

/** Where the images' time went, summed over images (with --concurrency above 1 they overlap in wall time). */
export function timeLine(t: NonNullable<Summary['time']>): string {
  return `Time summed over images: build ${t.build.toFixed(1)}s · push ${t.push.toFixed(1)}s · registry checks ${
    t.check.toFixed(1)
  }s (with concurrency they overlap; for registry assembly, build is reading the base and push the rest)`
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
