// The run's account as data: counts per phase and status, cleanups by command, failures, the slowest images with
// where their time went, time by part, throughput, registry assembly's totals. summary.ts writes and prints it.
import type { CleanupRecord, ManifestRecord, Phase, Status } from './records.ts'
import type { DiskSummary } from '../disk/budget-types.ts'
import { type Part, round3, slowestPart, type Telemetry } from './telemetry.ts'
import { type Throughput, throughput } from './throughput.ts'
import { type MirrorTotals, mirrorTotals } from './mirror-totals.ts'

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
  /** the slowest built images, with where their time went (lib/run/telemetry.ts) */
  slowest: Array<
    { phase: Phase; id: string; seconds: number; log: string; slowest?: { part: Part; seconds: number } } & Telemetry
  >
  /** seconds by part, summed over the records that measured it: docker build and push (built), registry checks (built, skipped) */
  time?: { build: number; push: number; check: number }
  /** images built per minute in windows of the run */
  throughput?: Throughput
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
    ).slice(0, SLOWEST).map(slowestEntry),
    ...timeTotals(f.records),
    ...optional('throughput', throughput(f.records, f.startedAt, f.wallSeconds)),
    ...registryTotals(f.records),
    ...mirrorTotals(f.records),
    ...(f.disk ? { disk: f.disk } : {}),
  }
}

const optional = <K extends string, V>(key: K, value: V | undefined) => (value === undefined ? {} : { [key]: value })

/** A slowest image: its time, where it went, and what it did to the disk and the registry. */
function slowestEntry(r: ManifestRecord): Summary['slowest'][number] {
  const fields = ['build_seconds', 'push_seconds', 'check_seconds', 'disk_growth', 'bytes_pushed'] as const
  const telemetry = Object.fromEntries(fields.filter((k) => r[k] !== undefined).map((k) => [k, r[k]]))
  return {
    phase: r.phase,
    id: r.id,
    seconds: r.seconds,
    log: r.log,
    ...telemetry,
    ...optional('budget_wait_seconds', r.budget_wait_seconds),
    ...optional('slowest', slowestPart(r)),
  }
}

/** Seconds of the built images by part, over the records that measured them. */
function timeTotals(records: ManifestRecord[]): Pick<Summary, 'time'> {
  const built = records.filter((r) => r.status === 'built' || r.status === 'skipped')
  if (!built.some((r) => r.build_seconds !== undefined || r.push_seconds !== undefined)) return {}
  const sum = (k: 'build_seconds' | 'push_seconds' | 'check_seconds') =>
    round3(built.reduce((n, r) => n + (r[k] ?? 0), 0))
  return { time: { build: sum('build_seconds'), push: sum('push_seconds'), check: sum('check_seconds') } }
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

/** Images of every phase with this status. */
export const total = (s: Summary, st: Status) => PHASES.reduce((n, p) => n + s.counts[p][st], 0)
