// The disk budget: admit a new build only when free space covers the expected growth of everything in
// flight plus a reserve; otherwise clean up (tiered, in the background) or wait for in-flight work.
// The per-image growth is learned from the run itself: bytes consumed so far (free space lost plus
// bytes reclaimed) over images done (in-flight ones count half).
//
//   free ──────────────────────────────────────────────► admit when free ≥ reserve + growth × (in flight + 1)
//          │ reserve │ growth │ growth │ growth(new) │
//
// No docker commands here: `clean` is the caller's tiered cleanup.
import { formatBytes } from './size.ts'

export type BudgetOptions = {
  /** free bytes on the data root's filesystem now (statfs) */
  free: () => number
  /** bytes always left free */
  reserve: number
  /** resolves when the tiers ran (or stopped because enough was free); resolves to bytes reclaimed.
   *  `staleSeconds`: how long ago the oldest image in flight started (cache unused since then is only finished images') */
  clean: (targetFree: number, why: string, staleSeconds: number) => Promise<number>
  /** per-image growth assumed before any image is done */
  prior: number
  /** called with a short line for every decision (disk.jsonl events, logs) */
  onEvent?: (event: string) => void
}

export type Ticket = { done: () => void }

export class DiskBudget {
  private inFlight = 0
  private readonly admittedAt = new Set<number>()
  private completed = 0
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

  /** Expected disk growth of one more image, learned from the images done so far. */
  estimate(): number {
    const weight = this.completed + this.inFlight * 0.5
    if (this.completed === 0 || weight <= 0) return this.o.prior
    const consumed = this.startFree - this.o.free() + this.reclaimed
    return Math.max(0, consumed / weight)
  }

  /** Bytes that must be free to start one more image now. */
  need(): number {
    return this.o.reserve + this.estimate() * (this.inFlight + 1)
  }

  /** Waits until the disk can take one more image; the ticket's done() must be called when it finishes. */
  async admit(label = ''): Promise<Ticket> {
    while (true) {
      const need = this.need()
      const free = this.o.free()
      if (free >= need) break
      const idle = this.inFlight === 0 && !this.cleanedIdle
      const canClean = this.completed > this.completedAtLastClean || idle
      if (!this.cleaning && canClean) {
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
    this.inFlight++
    const at = Date.now() + Math.random() / 1000
    this.admittedAt.add(at)
    this.peakInFlight = Math.max(this.peakInFlight, this.inFlight)
    this.o.onEvent?.(`admit ${label}`)
    let finished = false
    return {
      done: () => {
        if (finished) return
        finished = true
        this.admittedAt.delete(at)
        this.inFlight--
        this.completed++
        for (const wake of this.waiters.splice(0)) wake()
      },
    }
  }

  /** Counts bytes reclaimed outside the budget's own cleanups (rmi after push), for the growth estimate. */
  credit(bytes: number): void {
    this.reclaimed += bytes
  }

  /** Waits for a cleanup still running (at the end of a run, so nothing is left behind). */
  async settle(): Promise<void> {
    await this.cleaning
  }

  /** Seconds since the oldest image in flight was admitted (1 when none is: all unused cache is stale then). */
  staleSeconds(): number {
    const oldest = Math.min(...this.admittedAt)
    return Number.isFinite(oldest) ? (Date.now() - oldest) / 1000 + 1 : 1
  }

  private startCleaning(targetFree: number, why: string) {
    this.completedAtLastClean = this.completed
    this.cleaning = this.o.clean(targetFree, why, this.staleSeconds())
      .then((bytes) => { this.reclaimed += bytes; return bytes })
      .catch(() => 0)
      .finally(() => { this.cleaning = undefined; for (const wake of this.waiters.splice(0)) wake() })
  }

  private nextDone(): Promise<void> {
    return new Promise((resolve) => this.waiters.push(resolve))
  }
}
