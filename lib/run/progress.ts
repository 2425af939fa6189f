// Progress while a fleet builds: done/total per phase, images in flight, failures, ETA and free disk.
// On a TTY one live line under the log, redrawn every second; off a TTY (CI logs) the same facts as a
// heartbeat line every --heartbeat. The longest-running step is named with its age and its log's size,
// so a 20-minute push shows it is alive (its log grows) or stuck (it does not).
import fs from 'node:fs'
import path from 'node:path'
import { dockerIdOf } from '../fleet/instances.ts'
import { drawLive, report, setLiveLine } from '../cli/report.ts'
import type { Phase, Run } from './records.ts'
import { stepName } from './step.ts'
import { formatBytes } from '../cli/size.ts'

export type ProgressOptions = {
  /** instances in the fleet: the total of the base and assemble phases */
  instances: number
  /** stdout is a terminal: a live line; otherwise heartbeat lines */
  tty: boolean
  /** milliseconds between heartbeat lines; 0: none */
  heartbeatMs: number
  now?: () => number
}

type Flight = { phase: Phase; id: string; since: number }
const PHASE_ORDER: Phase[] = ['builder', 'base', 'assemble']

export class Progress {
  private readonly flights = new Map<string, Flight>()
  private firstStart?: number
  private timer?: ReturnType<typeof setInterval>
  private readonly now: () => number

  constructor(private readonly run: Run, private readonly o: ProgressOptions) {
    this.now = o.now ?? Date.now
  }

  /** Listens to the run's events and starts the live line or the heartbeat. */
  start(): this {
    const previous = this.run.onEvent
    this.run.onEvent = (event) => {
      previous?.(event)
      this.onEvent(event)
    }
    if (this.o.tty) {
      setLiveLine(() => this.line())
      this.timer = setInterval(drawLive, 1000)
    } else if (this.o.heartbeatMs > 0) {
      this.timer = setInterval(() => report.dim(`heartbeat ${this.line()}`), this.o.heartbeatMs)
    }
    this.timer?.unref?.()
    return this
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer)
    this.timer = undefined
    if (this.o.tty) setLiveLine(undefined)
  }

  /** `start base x`, `done base x`, `failed base x` come from runStep; everything else is ignored. */
  onEvent(event: string): void {
    const m = /^(start|done|failed) (builder|base|assemble) (\S+)$/.exec(event)
    if (!m) return
    const key = `${m[2]} ${m[3]}`
    if (m[1] === 'start') {
      this.firstStart ??= this.now()
      this.flights.set(key, { phase: m[2] as Phase, id: m[3], since: this.now() })
    } else this.flights.delete(key)
    if (this.o.tty) drawLive()
  }

  /** The facts, in one line: `12:04 base 120/500 · assemble 110/500 · 4 in flight · 2 failed · ETA 41m · 23.4 GiB free · longest …` */
  line(): string {
    const done: Record<Phase, number> = { mirror: 0, builder: 0, base: 0, assemble: 0 }
    let failed = 0
    for (const r of this.run.records) {
      done[r.phase]++
      if (r.status === 'failed') failed++
    }
    const totals: Record<Phase, number> = { mirror: 0, builder: 1, base: this.o.instances, assemble: this.o.instances }
    const phases = PHASE_ORDER.filter((p) => done[p] > 0 || [...this.flights.values()].some((f) => f.phase === p))
      .filter((p) => p !== 'builder' || done.builder === 0)
    const parts = [
      clock(this.now() - this.run.started),
      ...(phases.length ? phases.map((p) => `${p} ${done[p]}/${totals[p]}`) : ['starting']),
      `${this.flights.size} in flight`,
      `${failed} failed`,
      this.eta(done),
      `${Number.isFinite(this.run.free()) ? formatBytes(this.run.free()) : '?'} free`,
      this.longest(),
    ]
    return parts.filter(Boolean).join(' · ')
  }

  /** From the pace of the last phase so far: images worked on (not skipped) per second since the first start. */
  private eta(done: Record<Phase, number>): string {
    const last = done.assemble > 0 || !done.base ? 'assemble' : 'base'
    const worked = this.run.records.filter((r) => r.phase === last && r.attempts > 0).length
    const remaining = this.o.instances - done[last]
    if (!this.firstStart || worked === 0 || remaining <= 0) return remaining <= 0 && done[last] ? 'ETA 0s' : 'ETA ?'
    const perImage = (this.now() - this.firstStart) / worked
    return `ETA ${clock(perImage * remaining)}`
  }

  private longest(): string {
    let oldest: Flight | undefined
    for (const f of this.flights.values()) if (!oldest || f.since < oldest.since) oldest = f
    if (!oldest || this.now() - oldest.since < 30_000) return ''
    const log = path.join(this.run.out, 'logs', oldest.phase, `${dockerIdOf(oldest.id)}.log`)
    const size = fs.existsSync(log) ? `, log ${formatBytes(fs.statSync(log).size)}` : ''
    return `longest: ${stepName(oldest)} ${clock(this.now() - oldest.since)}${size}`
  }
}

/** 754_000 ms → "12m34s", 4_000_000 → "1h06m". */
export function clock(ms: number): string {
  const s = Math.max(0, Math.round(ms / 1000))
  if (s >= 3600) return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`
  return s >= 60 ? `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s` : `${s}s`
}
