// The run's account: counts per phase and status, wall seconds, peak disk used, every cleanup with the
// bytes it reclaimed. Written to OUT/summary.json and OUT/summary.md, and printed.
import fs from 'node:fs'
import path from 'node:path'
import type { Fleet } from './fleet.ts'
import { mask, report } from './report.ts'
import type { CleanupRecord, ManifestRecord, Phase, Run, Status } from './run.ts'
import { formatBytes } from './size.ts'

const PHASES: Phase[] = ['builder', 'base', 'assemble']
const STATUSES: Status[] = ['built', 'skipped', 'failed']

export type Summary = {
  instances: number
  key?: string
  counts: Record<Phase, Record<Status, number>>
  wallSeconds: number
  peakUsed: number
  minFree: number | null
  cleanups: { byCommand: Array<{ command: string; runs: number; reclaimed: number; seconds: number; failures: number }>; total: CleanupRecord[] }
  reclaimed: number
  failed: Array<{ phase: Phase; id: string; reason: string; error_class?: string; log: string }>
  slowest: Array<{ phase: Phase; id: string; seconds: number }>
}

export function summarize(run: Run, fleet?: Fleet): Summary {
  const counts = Object.fromEntries(PHASES.map((p) => [p, Object.fromEntries(STATUSES.map((s) => [s, 0]))])) as Summary['counts']
  for (const r of run.records) counts[r.phase][r.status]++
  const byCommand = new Map<string, Summary['cleanups']['byCommand'][number]>()
  for (const c of run.cleanups) {
    const key = c.command.replace(/^docker rmi .*/, 'docker rmi …')
    const row = byCommand.get(key) ?? { command: key, runs: 0, reclaimed: 0, seconds: 0, failures: 0 }
    row.runs++; row.reclaimed += c.reclaimed; row.seconds += c.seconds; row.failures += c.exitCode === 0 ? 0 : 1
    byCommand.set(key, row)
  }
  const failed = run.records.filter((r) => r.status === 'failed')
  return {
    instances: fleet?.instances.length ?? 0,
    key: fleet?.key,
    counts,
    wallSeconds: Number(((Date.now() - run.started) / 1000).toFixed(1)),
    peakUsed: run.peakUsed,
    minFree: Number.isFinite(run.minFree) ? run.minFree : null,
    cleanups: { byCommand: [...byCommand.values()], total: run.cleanups },
    reclaimed: run.cleanups.reduce((s, c) => s + c.reclaimed, 0),
    failed: failed.map((r) => ({ phase: r.phase, id: r.id, reason: r.reason, error_class: r.error_class, log: r.log })),
    slowest: [...run.records].filter((r) => r.status === 'built').sort((a, b) => b.seconds - a.seconds).slice(0, 5)
      .map((r: ManifestRecord) => ({ phase: r.phase, id: r.id, seconds: r.seconds })),
  }
}

export function summaryMarkdown(s: Summary): string {
  const lines = [
    `## imagefleet: ${s.instances} instances${s.key ? ` (key ${s.key})` : ''}`, '',
    '| phase | built | skipped | failed |', '|---|---:|---:|---:|',
    ...PHASES.map((p) => `| ${p} | ${s.counts[p].built} | ${s.counts[p].skipped} | ${s.counts[p].failed} |`), '',
    `Wall time ${s.wallSeconds}s · peak disk used ${formatBytes(s.peakUsed)} · lowest free ${s.minFree === null ? 'n/a' : formatBytes(s.minFree)} · reclaimed ${formatBytes(s.reclaimed)}`, '',
  ]
  if (s.cleanups.byCommand.length) {
    lines.push('| cleanup | runs | reclaimed | seconds | failed |', '|---|---:|---:|---:|---:|',
      ...s.cleanups.byCommand.map((c) => `| \`${c.command}\` | ${c.runs} | ${formatBytes(c.reclaimed)} | ${c.seconds.toFixed(1)} | ${c.failures} |`), '')
  }
  if (s.failed.length) {
    lines.push('| failed | class | reason | log |', '|---|---|---|---|',
      ...s.failed.map((f) => `| ${f.phase} ${f.id} | ${f.error_class ?? ''} | ${f.reason.replace(/\|/g, '\\|')} | ${f.log} |`), '')
  }
  if (s.slowest.length) lines.push('Slowest: ' + s.slowest.map((x) => `${x.phase} ${x.id} ${x.seconds}s`).join(', '), '')
  return lines.join('\n')
}

/** Writes summary.json and summary.md, prints the totals; resolves to the exit code. */
export function writeSummary(run: Run, o: { out: string; fleet?: Fleet }): number {
  const s = summarize(run, o.fleet)
  if (!run.dry) {
    fs.writeFileSync(path.join(o.out, 'summary.json'), mask(JSON.stringify(s, null, 2)) + '\n')
    fs.writeFileSync(path.join(o.out, 'summary.md'), mask(summaryMarkdown(s)) + '\n')
  }
  report.endPhase()
  const total = (st: Status) => PHASES.reduce((n, p) => n + s.counts[p][st], 0)
  report.info(`\n${PHASES.map((p) => `${p}: ${s.counts[p].built} built, ${s.counts[p].skipped} skipped, ${s.counts[p].failed} failed`).join(' · ')}`)
  report.info(`${total('built') + total('skipped')} ok, ${total('failed')} failed in ${s.wallSeconds}s · peak disk used ${formatBytes(s.peakUsed)} · ${run.cleanups.length} cleanups reclaimed ${formatBytes(s.reclaimed)}${run.dry ? '' : ` · ${path.join(o.out, 'summary.md')}`}`)
  return total('failed') ? 1 : 0
}
