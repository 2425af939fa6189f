// The disk budget: admit a new build only when free space covers the expected growth of everything in
// flight plus a reserve; otherwise clean up (tiered, in the background) or wait for in-flight work.
//
//   free ────────────────────────────────────────────────────────► admit when
//          │ reserve │ in flight (what they still need) │ new │     free ≥ reserve + Σ remaining + cost(new)
//
// What an image costs: its upstream layers that are not warm (pulled compressed, then unpacked: 2× their
// compressed size) plus a per-image overhead, times a ratio learned from the run (bytes the disk really
// lost, plus bytes cleanups gave back, over the costs predicted for the images done). A layer is warm once
// an image that used it has finished, until a cleanup may have evicted it; a layer an image in flight is
// pulling costs the next image nothing (the daemon pulls a blob once). Without layer facts, every image
// costs the prior (`--expect-growth`) times the learned ratio.
//
// No docker commands here: `clean` is the caller's tiered cleanup.
import { formatBytes } from '../cli/size.ts'

export type Layer = { digest: string; size: number }

export type BudgetOptions = {
  /** free bytes on the data root's filesystem now (statfs) */
  free: () => number
  /** bytes always left free */
  reserve: number
  /** bytes a background deleter (free-disk --background) has still to give back: worth waiting for, not cleaning for */
  pending?: () => number
  /** resolves when the tiers ran (or stopped because enough was free); resolves to bytes reclaimed.
   *  `staleSeconds`: how long ago the oldest image in flight started (cache unused since then is only finished images') */
  clean: (targetFree: number, why: string, staleSeconds: number) => Promise<number>
  /** cost of an image whose layers are unknown; also the overhead added to every layer-based cost */
  prior: number
  overhead?: number
  /** called with a short line for every decision (disk.jsonl events, logs) */
  onEvent?: (event: string) => void
}

/** `progress(f)`: the image has done fraction f of its growth (e.g. 0.9 once its base is built).
 *  `readmit()`: after a full disk, step out of flight and wait to be admitted again (its layers are cold now). */
export type Ticket = { done: () => void; progress: (fraction: number) => void; readmit: () => Promise<void> }
type Flight = { cost: number; layers: Layer[]; progress: number; at: number }

const clamp = (x: number, lo: number, hi: number) => Math.min(hi, Math.max(lo, x))

export class DiskBudget {
  private readonly flights = new Set<Flight>()
  private readonly warm = new Set<string>()
  private completed = 0
  private predictedDone = 0
  private reclaimed = 0
  private readonly startFree: number
  private cleaning?: Promise<number>
  private waiters: Array<() => void> = []
  /** completions counted when the last cleanup ran: cleaning again before anything finished frees nothing new */
  private completedAtLastClean = 0
  /** whether a cleanup ran while nothing was in flight (stale cache from before this run) */
  private cleanedIdle = false
  peakInFlight = 0
  waits = 0

  constructor(private readonly o: BudgetOptions) {
    this.startFree = o.free()
  }

  get inFlight(): number {
    return this.flights.size
  }

  /**
   * Predicted raw growth of an image: cold layers twice (blob + unpacked) plus overhead; prior when unknown.
   * A layer is free when warm, or when an image in flight already pays for it (the daemon pulls a blob once).
   */
  cost(layers?: Layer[]): number {
    if (!layers?.length) return this.o.prior
    const paid = new Set([...this.flights].flatMap((f) => f.layers.map((l) => l.digest)))
    const cold = layers.filter((l) => !this.warm.has(l.digest) && !paid.has(l.digest)).reduce((s, l) => s + l.size, 0)
    return 2 * cold + this.overhead()
  }

  private overhead(): number {
    return this.o.overhead ?? 64 * 2 ** 20
  }

  /** Real growth over predicted growth, learned from the images done so far (1 until then, never less). */
  ratio(): number {
    const inFlight = [...this.flights].reduce((s, f) => s + f.cost * f.progress, 0)
    const predicted = this.predictedDone + inFlight
    if (this.completed === 0 || predicted <= 0) return 1
    const consumed = this.startFree - this.o.free() + this.reclaimed
    // never below 1: a cold layer needs its blob and its unpacked copy at once, even if the blob goes later
    return clamp(consumed / predicted, 1, 4)
  }

  /** Expected growth of one more image with these layers. */
  estimate(layers?: Layer[]): number {
    return this.ratio() * this.cost(layers)
  }

  /** Bytes that must be free to start an image with these layers now. */
  need(layers?: Layer[]): number {
    const r = this.ratio()
    const remaining = [...this.flights].reduce((s, f) => s + f.cost * (1 - f.progress), 0)
    return this.o.reserve + r * (remaining + this.cost(layers))
  }

  /** Waits until the disk can take one more image; the ticket's done() must be called when it finishes. */
  async admit(label = '', layers?: Layer[]): Promise<Ticket> {
    const flight: Flight = { cost: 0, layers: layers ?? [], progress: 0, at: 0 }
    await this.waitForRoom(label, flight)
    return {
      progress: (fraction) => {
        flight.progress = clamp(fraction, 0, 1)
      },
      readmit: async () => {
        if (!this.flights.delete(flight)) return
        for (const wake of this.waiters.splice(0)) wake()
        await this.waitForRoom(`${label} (again)`, flight)
      },
      done: () => {
        if (!this.flights.delete(flight)) return
        this.completed++
        this.predictedDone += flight.cost
        for (const l of flight.layers) this.warm.add(l.digest)
        for (const wake of this.waiters.splice(0)) wake()
      },
    }
  }

  private async waitForRoom(label: string, flight: Flight): Promise<void> {
    const layers = flight.layers
    while (true) {
      // a cleanup under way may evict warm layers: decide after it
      if (this.cleaning) {
        await this.cleaning
        continue
      }
      const need = this.need(layers)
      const free = this.o.free()
      if (free >= need) break
      const coming = this.o.pending?.() ?? 0
      if (coming > 0 && free + coming >= need) {
        this.waits++
        this.o.onEvent?.(`wait ${label}: ${formatBytes(coming)} still to come from free-disk`)
        await Promise.race([new Promise((r) => setTimeout(r, 1000)), this.nextDone()])
        continue
      }
      const idle = this.inFlight === 0 && !this.cleanedIdle
      if (!this.cleaning && (this.completed > this.completedAtLastClean || idle)) {
        if (idle) this.cleanedIdle = true
        this.startCleaning(need, `${label}: ${formatBytes(free)} free < ${formatBytes(need)} needed`)
      }
      if (!this.cleaning && this.inFlight === 0) {
        this.o.onEvent?.(`admit ${label} over budget: nothing left to clean or wait for`)
        break
      }
      this.waits++
      this.o.onEvent?.(`wait ${label}: free ${formatBytes(free)} < need ${formatBytes(need)}`)
      await Promise.race([this.cleaning ?? new Promise(() => {}), this.nextDone()])
    }

    Object.assign(flight, { cost: this.cost(layers), progress: 0, at: Date.now() })
    this.flights.add(flight)
    this.peakInFlight = Math.max(this.peakInFlight, this.inFlight)
    this.o.onEvent?.(`admit ${label} cost ${formatBytes(flight.cost)}`)
  }

  /** A build hit a full disk: clean everything that can go (one cleanup for all who ask at once). */
  emergency(why: string): Promise<number> {
    if (!this.cleaning) this.startCleaning(Infinity, why)
    return this.cleaning!
  }

  /** Waits for a cleanup still running (at the end of a run, so nothing is left behind). */
  async settle(): Promise<void> {
    await this.cleaning
  }

  /** Seconds since the oldest image in flight was admitted (1 when none is: all unused cache is stale then). */
  staleSeconds(): number {
    const oldest = Math.min(...[...this.flights].map((f) => f.at))
    return Number.isFinite(oldest) ? (Date.now() - oldest) / 1000 + 1 : 1
  }

  private startCleaning(targetFree: number, why: string) {
    this.completedAtLastClean = this.completed
    this.cleaning = this.o.clean(targetFree, why, this.staleSeconds())
      .then((bytes) => {
        this.reclaimed += bytes
        this.coolDown()
        return bytes
      })
      .catch(() => 0)
      .finally(() => {
        this.cleaning = undefined
        for (const wake of this.waiters.splice(0)) wake()
      })
  }

  /**
   * After a cleanup only the layers of images past their pull are surely still there (in use, so kept);
   * images still before it may have lost layers they counted as warm: they pay for all of theirs again.
   */
  private coolDown() {
    this.warm.clear()
    for (const f of this.flights) {
      if (f.progress >= 0.9) { for (const l of f.layers) this.warm.add(l.digest) }
      else if (f.layers.length) f.cost = 2 * f.layers.reduce((s, l) => s + l.size, 0) + this.overhead()
    }
  }

  private nextDone(): Promise<void> {
    return new Promise((resolve) => this.waiters.push(resolve))
  }
}
