// One run's records in OUT: manifest.jsonl (an object per image per phase), disk.jsonl (statfs samples
// with events), logs/PHASE/DOCKER_ID.log, and the cleanups each step measured. summary.ts turns them into
// summary.json and summary.md.
import fs from 'node:fs'
import path from 'node:path'
import type { ErrorClass } from './errors.ts'
import { sampleDisk } from '../disk/statfs.ts'
import { mask } from '../cli/report.ts'
import type { DiskSummary } from '../disk/budget-types.ts'
import { registrySplit, round3, type Telemetry } from './telemetry.ts'

export type Phase = 'mirror' | 'builder' | 'base' | 'assemble'
export type Status = 'built' | 'skipped' | 'failed'

export type ManifestRecord = {
  phase: Phase
  id: string
  tag: string
  status: Status
  reason: string
  attempts: number
  started_at: string
  finished_at: string
  seconds: number
  log: string
  error_class?: ErrorClass
  /** An image assembled inside the registry: bytes it sent, and how its blobs got there (a refused mount → copied) */
  registry?: RegistryTally
  /** An upstream image mirrored into the fleet's registry (scripts/mirror.ts): manifests written, blobs and bytes */
  mirror?: MirrorTally
} & Telemetry

export type MirrorTally = {
  manifests: number
  copied: number
  mounted: number
  present: number
  bytes_copied: number
  manifest_gets: number
}
export type RegistryTally = {
  bytes_uploaded: number
  mounted: number
  copied: number
  present: number
  /** what reading the base cost: bytes streamed, seconds */
  base_bytes_read?: number
  base_read_seconds?: number
  notes?: string[]
}
/** What the disk budget's admission tells a record (lib/disk/budget-types.ts Ticket): seconds waited so far. */
export type Admission = { readonly waitSeconds?: number }

export type CleanupRecord = {
  command: string
  tier: string
  /** the larger of what the command reported removing (`reported`) and the statfs difference around it (signed) */
  reclaimed: number
  reported?: number
  seconds: number
  exitCode: number | null
  freeBefore: number
  freeAfter: number
  at: string
  timedOut?: boolean
}

export type DiskEvent = { t: number; free: number; used: number; event: string }

export class Run {
  readonly records: ManifestRecord[] = []
  /** --retry-failed: the records in OUT of the run this one retries (the summary covers them with this run's) */
  readonly earlier: ManifestRecord[] = []
  readonly cleanups: CleanupRecord[] = []
  /** what the disk budget did (set at the end of a run that had one) */
  disk?: DiskSummary
  readonly started = Date.now()
  peakUsed = 0
  minFree = Infinity
  /** Told every event (step start/done/failed, cleanups, budget decisions): the progress line listens. */
  onEvent?: (event: string) => void
  private readonly manifestFile: string
  private readonly attached = new Map<string, Pick<ManifestRecord, 'registry' | 'mirror'>>()
  /** seconds each tag's existence check took (alreadyPushed), for its next record */
  private readonly checks = new Map<string, number>()
  /** per instance: its admission, and how much of its wait records have told */
  private readonly admissions = new Map<string, { admission: Admission; told: number }>()
  private readonly diskFile: string
  /** bytes every cleanup so far gave back (for a step's disk growth net of cleanups) */
  reclaimed = 0

  /** `dataRoot`: a path on the filesystem holding Docker's data root (sampled with statfs); undefined when not visible here. */
  constructor(readonly out: string, readonly dataRoot: string | undefined, readonly dry = false) {
    if (!dry) fs.mkdirSync(path.join(out, 'logs'), { recursive: true })
    this.manifestFile = path.join(out, 'manifest.jsonl')
    this.diskFile = path.join(out, 'disk.jsonl')
    if (!dry) fs.writeFileSync(this.diskFile, '')
  }

  logFile(phase: Phase, dockerId: string): string {
    const file = path.join(this.out, 'logs', phase, `${dockerId}.log`)
    if (this.dry) return '/dev/null'
    fs.mkdirSync(path.dirname(file), { recursive: true })
    return file
  }

  record(rec: ManifestRecord): void {
    const key = `${rec.phase}:${rec.id}`
    if (this.attached.has(key)) {
      rec = { ...rec, ...(rec.status === 'built' ? this.attached.get(key) : {}) }
      this.attached.delete(key)
    }
    rec = { ...rec, ...this.telemetryFor(rec) }
    this.records.push(rec)
    if (!this.dry) fs.appendFileSync(this.manifestFile, mask(JSON.stringify(rec)) + '\n')
  }

  /** Samples free/used bytes of the data root now, tagged with an event name; returns free bytes. */
  sample(event: string): number {
    this.onEvent?.(event)
    if (!this.dataRoot) return Infinity
    const { free, used } = sampleDisk(this.dataRoot)
    this.peakUsed = Math.max(this.peakUsed, used)
    this.minFree = Math.min(this.minFree, free)
    const line: DiskEvent = { t: Number(((Date.now() - this.started) / 1000).toFixed(2)), free, used, event }
    if (!this.dry) fs.appendFileSync(this.diskFile, JSON.stringify(line) + '\n')
    return free
  }

  free(): number {
    return this.dataRoot ? sampleDisk(this.dataRoot).free : Infinity
  }

  addCleanup(rec: CleanupRecord): void {
    this.cleanups.push(rec)
    this.reclaimed += Math.max(0, rec.reclaimed)
  }

  /** How long asking the registry about `tag` took; its next record carries it. */
  checked(tag: string, seconds: number): void {
    this.checks.set(tag, seconds)
  }

  /** The disk budget admitted this instance: its records carry the wait (lib/disk/budget-types.ts Ticket). */
  admitted(id: string, admission: Admission): void {
    this.admissions.set(id, { admission, told: 0 })
  }

  /** The telemetry a record gets from the run: its check, its share of the budget wait, registry assembly's split. */
  private telemetryFor(rec: ManifestRecord): Telemetry {
    const check = this.checks.get(rec.tag)
    this.checks.delete(rec.tag)
    const admitted = rec.phase === 'builder' ? undefined : this.admissions.get(rec.id)
    let wait: number | undefined
    if (admitted) {
      const soFar = admitted.admission.waitSeconds ?? 0
      wait = soFar - admitted.told
      admitted.told = soFar
    }
    return {
      ...(check === undefined ? {} : { check_seconds: round3(check) }),
      ...(wait === undefined ? {} : { budget_wait_seconds: round3(wait) }),
      ...(rec.registry && rec.status === 'built' ? registrySplit(rec.seconds, rec.registry) : {}),
    }
  }

  /** Fields for the next record of this phase and id (the step that writes it does not know them). */
  attach(phase: Phase, id: string, fields: Pick<ManifestRecord, 'registry' | 'mirror'>): void {
    this.attached.set(`${phase}:${id}`, fields)
  }
}

/** The objects of a JSON-lines file, skipping blank lines and a line cut by a crash; [] when there is no file. */
export function readJsonl<T>(file: string): T[] {
  if (!fs.existsSync(file)) return []
  return fs.readFileSync(file, 'utf8').split('\n').flatMap((l) => {
    try {
      return l.trim() ? [JSON.parse(l) as T] : []
    } catch {
      return []
    }
  })
}

/** The last record per phase and id: where each image stands after these records, in order. */
export function lastPerImage(records: ManifestRecord[]): Map<string, ManifestRecord> {
  const last = new Map<string, ManifestRecord>()
  for (const rec of records) last.set(`${rec.phase}:${rec.id}`, rec)
  return last
}

/** Records of the previous runs in OUT (for resume and --retry-failed): the last record per phase and id. */
export const previousRecords = (out: string) =>
  lastPerImage(readJsonl<ManifestRecord>(path.join(out, 'manifest.jsonl')))

/** A zx `$.log` that appends each command and its output to a log file (masked). */
export function logTo(file: string) {
  return (
    entry: { kind: string; cmd?: string; data?: Buffer | string; exitCode?: number | null; duration?: number },
  ) => {
    const line = entry.kind === 'cmd'
      ? `$ ${entry.cmd}\n`
      : entry.kind === 'stdout' || entry.kind === 'stderr'
      ? String(entry.data)
      : entry.kind === 'end'
      ? `[exit ${entry.exitCode} after ${((entry.duration ?? 0) / 1000).toFixed(1)}s]\n`
      : ''
    if (line) fs.appendFileSync(file, mask(line))
  }
}

export const now = () => new Date().toISOString()
