// The disk budget: the one owner of the data root's space during a run. It admits an image when the disk can take
// it, decides when a cleanup can help and which, runs every cleanup through one `clean` (serialized, measured by
// the caller in scripts/prune.ts), shares one emergency cleanup among the builds that hit a full disk, and runs the
// cleanup policy after every image. No docker commands here. Its types (what it asks and reports): budget-types.ts.
//
//   free ──────────────────────────────────────────────────────► admit when
//          │ reserve │ in flight (what they still need) │ new │     free ≥ reserve + Σ remaining + cost(new)
//
// cost(image) = r × (its cold layers: not on disk, not pulled by an image in flight) + k, with r and k learned from
// the run (lib/disk/growth.ts). What is on disk, in use and still needed is the ledger's (lib/disk/ledger.ts).
// When an image does not fit: a stale prune that keeps every layer still needed, run only when what it evicts closes
// the gap; otherwise wait for images in flight (what they hold cannot be cleaned); with nothing in flight, deeper
// tiers. Images whose layers a running cleanup does not touch are admitted while it runs.
import type { Layer } from '../fleet/groups.ts'
import { formatBytes } from '../cli/size.ts'
import { GrowthModel } from './growth.ts'
import { LayerLedger } from './ledger.ts'
import type { BudgetOptions, CleanOutcome, CleanRequest, DiskSummary, Ticket, Tier } from './budget-types.ts'

type Flight = {
  label: string
  layers: Layer[]
  coldBytes: number
  cost: number
  based: boolean
  at: number
  waited: number
}

/** Free space also grows without an event (a background free-disk, another process): look again this often. */
const POLL_MS = 1000
/** Seconds between our admission time and BuildKit's own record times that a cutoff leaves for clock skew. */
const CUTOFF_MARGIN_MS = 2000
const IDLE: Tier[] = ['stale', 'cache-cap', 'system', 'full']

export class DiskBudget {
  readonly ledger = new LayerLedger()
  readonly model: GrowthModel
  private readonly flights = new Set<Flight>()
  private readonly queued: string[] = []
  private cleaning?: { done: Promise<CleanOutcome>; evicting: (digest: string) => boolean }
  private emergencyRun?: Promise<CleanOutcome>
  private waiters: Array<() => void> = []
  private readonly startFree: number
  private readonly startGivenBack: number
  private reclaimed = 0
  private doneImages = 0
  private doneLayerBytes = 0
  private idleTriedAt = -1
  readonly stats = {
    admitted: 0,
    waits: 0,
    waitSeconds: 0,
    peakInFlight: 0,
    pulledBytes: 0,
    cleanups: 0,
    overBudget: 0,
    /** planned stale prunes: what the ledger predicted they evict (× r) against what the engine reported */
    stalePredicted: 0,
    staleReported: 0,
  }

  constructor(private readonly o: BudgetOptions) {
    this.model = o.model ?? new GrowthModel()
    this.startFree = o.free()
    this.startGivenBack = o.givenBack?.() ?? 0
  }

  private now = () => this.o.now?.() ?? Date.now()
  private say = (event: string) => this.o.onEvent?.(event)
  get inFlight(): number {
    return this.flights.size
  }

  /** The images the run will build (in schedule order): their layers are needed until they are done. */
  expect(images: Layer[][]): void {
    this.ledger.expect(images)
  }

  /** Bytes of an image's layers it would pull now (a running cleanup's victims count as cold). */
  coldBytes(layers: Layer[]): number {
    return this.ledger.cold(layers, this.cleaning?.evicting).reduce((s, l) => s + l.size, 0)
  }

  /** Bytes that must be free to start an image with these layers now. */
  need(layers: Layer[]): number {
    const remaining = [...this.flights].reduce((s, f) => s + f.cost * (f.based ? 0.1 : 1), 0)
    return this.o.reserve + remaining + this.model.predict(this.coldBytes(layers))
  }

  /** Waits until the disk can take the image (adaptive policy; the others admit at once). */
  async admit(label: string, layers: Layer[] = []): Promise<Ticket> {
    const flight: Flight = { label, layers, coldBytes: 0, cost: 0, based: false, at: 0, waited: 0 }
    await this.waitForRoom(flight)
    const ticket: Ticket = {
      get cost() {
        return flight.cost
      },
      get waitSeconds() {
        return flight.waited
      },
      based: () => {
        flight.based = true
        this.ledger.pulled(layers, this.now())
        this.observe()
      },
      done: (local) => this.finish(flight, local),
      readmit: async () => {
        if (!this.flights.delete(flight)) return
        this.ledger.release(layers, false)
        this.wake()
        await this.waitForRoom(flight)
      },
    }
    this.o.onAdmit?.(label, ticket)
    return ticket
  }

  /**
   * An image that never touches this disk (a remote builder builds and pushes it, the registry assembles it): admitted
   * at once whatever is free, costing nothing and leaving nothing to clean.
   */
  pass(label: string): Ticket {
    this.stats.admitted++
    this.say(`admit ${label}: built off this disk, costs nothing here`)
    return { cost: 0, based: () => {}, done: async () => {}, readmit: async () => {} }
  }

  private async waitForRoom(flight: Flight): Promise<void> {
    const started = this.now()
    let waited = false
    while (this.o.policy === 'adaptive') {
      const free = this.o.free()
      const need = this.need(flight.layers)
      if (free >= need) break
      const coming = this.o.pending?.() ?? 0
      if (coming > 0 && free + coming >= need) {
        this.say(`wait ${flight.label}: ${formatBytes(coming)} still to come from free-disk`)
      } else if (!this.cleaning) {
        const request = this.planCleanup(need - free, flight.label)
        if (request) this.startCleaning(request)
        else if (this.inFlight === 0) {
          this.stats.overBudget++
          this.say(
            `admit ${flight.label} over budget: ${formatBytes(free)} free < ${
              formatBytes(need)
            }, nothing left to clean or wait for`,
          )
          break
        } else {this.say(
            `wait ${flight.label}: ${formatBytes(free)} free < ${
              formatBytes(need)
            }; ${this.inFlight} in flight hold the rest`,
          )}
      }
      waited = true
      await this.nextEvent(POLL_MS) // or sooner: an image done, a cleanup started or ended
    }
    if (waited) {
      const seconds = (this.now() - started) / 1000
      this.stats.waits++
      this.stats.waitSeconds += seconds
      flight.waited += seconds
    }
    flight.coldBytes = this.coldBytes(flight.layers)
    flight.cost = this.model.predict(flight.coldBytes)
    flight.based = false
    flight.at = this.now()
    this.ledger.use(flight.layers, flight.at)
    this.flights.add(flight)
    this.stats.admitted++
    this.stats.pulledBytes += flight.coldBytes
    this.stats.peakInFlight = Math.max(this.stats.peakInFlight, this.inFlight)
    this.say(`admit ${flight.label}: pulls ${formatBytes(flight.coldBytes)}, cost ${formatBytes(flight.cost)}`)
  }

  /**
   * What to clean to close `gap` bytes, or undefined to wait. A stale prune that keeps every needed layer, when what
   * it surely evicts closes the gap; with nothing in flight (nothing to wait for), every tier once per finished image.
   */
  private planCleanup(gap: number, label: string): CleanRequest | undefined {
    const now = this.now()
    const cutoff = this.ledger.keepNeededCutoff(now) - CUTOFF_MARGIN_MS
    const evictable = this.ledger.evictable(cutoff, true).reduce((s, l) => s + l.size, 0) * this.model.r
    const why = `${label}: needs ${formatBytes(gap)} more`
    if (evictable >= gap) {
      return {
        why: `${why}; a stale prune frees ~${formatBytes(evictable)} no waiting image needs`,
        images: this.take(),
        tiers: ['stale'],
        staleSeconds: (now - cutoff) / 1000,
        targetFree: Infinity,
      }
    }
    if (this.inFlight > 0 || this.idleTriedAt === this.doneImages) return undefined
    this.idleTriedAt = this.doneImages
    return {
      why: `${why}; nothing in flight: every tier until it fits`,
      images: this.take(),
      tiers: IDLE,
      staleSeconds: 1,
      targetFree: this.o.free() + gap,
    }
  }

  /** Finished: its layers are released; per-image cleans now, adaptive keeps its local tags for the next cleanup. */
  private async finish(flight: Flight, local: string[]): Promise<void> {
    if (!this.flights.delete(flight)) return
    this.ledger.release(flight.layers, true)
    this.doneImages++
    this.doneLayerBytes += flight.coldBytes
    this.observe()
    this.wake()
    if (this.o.policy === 'per-image') {
      const tiers = this.o.perImageTiers ?? ['system', 'full']
      await this.run({
        why: 'per-image policy',
        images: local,
        tiers,
        staleSeconds: 1,
        targetFree: Infinity,
        cacheCap: this.o.cacheCap,
      })
    } else if (this.o.policy === 'adaptive') this.queued.push(...local)
  }

  /**
   * A build hit a full disk: one cleanup for every build that hits it meanwhile (finished images' tags, cache not
   * used since the oldest image in flight was admitted, then everything not in use). Resolves to whether a retry can
   * fit: false when the image's predicted growth exceeds what this disk can ever give it.
   */
  async emergency(why: string, layers: Layer[] = []): Promise<{ reclaimed: number; fits: boolean; need: number }> {
    const need = this.model.predict(layers.reduce((s, l) => s + l.size, 0))
    if (this.o.policy === 'none') return { reclaimed: 0, fits: false, need } // no cleanup, no recovery
    const oldest = Math.min(this.now(), ...[...this.flights].map((f) => f.at))
    this.emergencyRun ??= this.run({
      why: `emergency: ${why}`,
      images: this.take(),
      tiers: ['stale', 'full'],
      staleSeconds: (this.now() - oldest) / 1000 + 1,
      targetFree: Infinity,
    })
      .finally(() => this.emergencyRun = undefined)
    const { reclaimed } = await this.emergencyRun
    return { reclaimed, fits: this.o.free() + this.heldByOthers() >= need + this.o.reserve / 2, need }
  }

  /** End of the run: the local tags still queued are removed (measured like every cleanup); running cleanups settle. */
  async settle(): Promise<void> {
    while (this.cleaning) await this.cleaning.done
    if (this.queued.length) {
      await this.run({
        why: 'end of run: remove local images',
        images: this.take(),
        tiers: [],
        staleSeconds: 1,
        targetFree: Infinity,
      })
    }
  }

  /** Bytes of pulls per unique byte the run needed: 1 when every layer was pulled once. */
  repullFactor(): number | undefined {
    const unique = this.ledger.uniqueBytes()
    return unique > 0 ? this.stats.pulledBytes / unique : undefined
  }

  /** What the run's disk did, for the summary: pulls, re-pull factor, cleanups, waits, how much of the disk it used. */
  summary(facts: { minFree: number; cleanupRecords: number }): DiskSummary {
    const usable = this.startFree - this.o.reserve
    const peak = Number.isFinite(facts.minFree) ? this.startFree - facts.minFree : 0
    return {
      policy: this.o.policy,
      images: this.doneImages,
      pulledBytes: this.stats.pulledBytes,
      uniqueBytes: this.ledger.uniqueBytes(),
      repullFactor: this.repullFactor() ?? null,
      cleanups: facts.cleanupRecords,
      cleanupsPerImage: this.doneImages ? facts.cleanupRecords / this.doneImages : null,
      waits: this.stats.waits,
      waitSeconds: Number(this.stats.waitSeconds.toFixed(1)),
      peakInFlight: this.stats.peakInFlight,
      overBudget: this.stats.overBudget,
      usableBytes: usable,
      peakConsumed: peak,
      utilisation: usable > 0 ? peak / usable : null,
      model: { r: Number(this.model.r.toFixed(3)), k: Math.round(this.model.k) },
      stalePrunes: { predicted: this.stats.stalePredicted, reported: this.stats.staleReported },
    }
  }

  private take(): string[] {
    return this.queued.splice(0)
  }

  private heldByOthers(): number {
    return [...this.flights].reduce((s, f) => s + f.cost, 0)
  }

  private startCleaning(request: CleanRequest): void {
    const cutoff = this.now() - request.staleSeconds * 1000
    const deep = request.tiers.some((t) => t !== 'stale')
    const victims = new Set(this.ledger.evictable(deep ? Infinity : cutoff, false).map((l) => l.digest))
    const done = this.run(request).finally(() => {
      this.cleaning = undefined
      this.wake()
    })
    this.cleaning = { done, evicting: (digest) => victims.has(digest) }
    this.wake() // waiting images whose layers it does not touch may start now
  }

  /** Every cleanup goes through here: one at a time (the caller's lock), its evictions written into the ledger. */
  private async run(request: CleanRequest): Promise<CleanOutcome> {
    this.stats.cleanups++
    this.say(`cleanup: ${request.why}`)
    const cutoff = this.now() - request.staleSeconds * 1000
    const outcome = await this.o.clean(request).catch((): CleanOutcome => ({ reclaimed: 0, ran: [] }))
    this.reclaimed += Math.max(0, outcome.reclaimed)
    if (request.predicted !== undefined) {
      this.stats.stalePredicted += request.predicted
      this.stats.staleReported += Math.max(0, outcome.reclaimed)
      this.say(
        `cleanup done: predicted ${formatBytes(request.predicted)}, the engine reported ${
          formatBytes(outcome.reclaimed)
        }`,
      )
    }
    this.ledger.evict(outcome.ran.some((t) => t !== 'stale') ? Infinity : outcome.ran.length ? cutoff : -Infinity)
    return outcome
  }

  /** Teaches the growth model: cold bytes and images so far against the disk they consumed, net of cleanups. */
  /** Disk the run has consumed so far, net of what cleanups and a background free-disk gave back. */
  consumed(): number {
    const givenBack = (this.o.givenBack?.() ?? 0) - this.startGivenBack
    return this.startFree - this.o.free() + this.reclaimed + givenBack
  }

  private observe(): void {
    let layerBytes = this.doneLayerBytes
    let images = this.doneImages
    for (const f of this.flights) {
      layerBytes += f.based ? f.coldBytes : f.coldBytes / 2 // half-way through its pull, on average
      images += f.based ? 1 : 0.5
    }
    this.model.observe({ layerBytes, images, consumed: this.consumed() })
  }

  private wake(): void {
    for (const wake of this.waiters.splice(0)) wake()
  }

  private nextEvent(timeoutMs?: number): Promise<void> {
    return new Promise((resolve) => {
      this.waiters.push(resolve)
      if (timeoutMs) setTimeout(resolve, timeoutMs)
    })
  }
}
