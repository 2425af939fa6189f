// The disk budget's contract: what it asks of a cleanup (CleanRequest, CleanOutcome), what it is given
// (BudgetOptions), what it hands each image (Ticket) and what it reports at the end (DiskSummary). The logic is in
// budget.ts; run records, summaries and scripts/prune.ts need only these shapes.
import type { GrowthModel } from './growth.ts'

export type Policy = 'adaptive' | 'per-image' | 'none'
/** Cleanup tiers, cheapest first (scripts/prune.ts TIERS says what each runs). */
export type Tier = 'stale' | 'cache-cap' | 'system' | 'full'
/** `images`: docker rmi these first; then `tiers` in order until `targetFree` bytes are free. */
export type CleanRequest = {
  why: string
  images: string[]
  tiers: Tier[]
  staleSeconds: number
  targetFree: number
  /** cache-cap tier: keep this much (per-image --cache-cap); else what the target allows */
  cacheCap?: number
  /** what the budget expects it to reclaim (planned stale prunes), to measure the approximation */
  predicted?: number
}
/** `reclaimed`: what the engine reported removed (statfs around the command where it reports nothing). */
export type CleanOutcome = { reclaimed: number; ran: Tier[] }

export type BudgetOptions = {
  policy: Policy
  /** free bytes on the data root's filesystem now (statfs) */
  free: () => number
  /** bytes always left free */
  reserve: number
  /** bytes a background free-disk still has to give back: worth waiting for, not cleaning for */
  pending?: () => number
  /** bytes that background free-disk has given back so far (they are not negative growth of the images) */
  givenBack?: () => number
  clean: (request: CleanRequest) => Promise<CleanOutcome>
  /** per-image policy: what runs after every image (the field's fix: system prune, then the whole build cache) */
  perImageTiers?: Tier[]
  /** per-image policy with a cache cap: keep this much */
  cacheCap?: number
  model?: GrowthModel
  /** a short line for every decision (disk.jsonl events, logs) */
  onEvent?: (event: string) => void
  /** told each image it admits (its ticket tells how long it waited: the run's records carry that) */
  onAdmit?: (label: string, ticket: Ticket) => void
  now?: () => number
}

/** What the disk did during a run (summary.json `disk`, summary.md). */
export type DiskSummary = {
  policy: Policy
  images: number
  /** compressed bytes the budget counted as pulled (cold layers at admission) */
  pulledBytes: number
  /** compressed bytes of the distinct upstream layers of the images the run built */
  uniqueBytes: number
  /** pulled ÷ unique: 1 when every layer was pulled once */
  repullFactor: number | null
  cleanups: number
  cleanupsPerImage: number | null
  waits: number
  waitSeconds: number
  peakInFlight: number
  overBudget: number
  /** free at the start minus the reserve: what the budget could use */
  usableBytes: number
  /** free at the start minus the lowest free seen */
  peakConsumed: number
  /** peakConsumed ÷ usableBytes */
  utilisation: number | null
  /** the learned growth model: disk bytes per compressed byte pulled, bytes per image besides */
  model: { r: number; k: number }
  /** planned stale prunes: what the ledger predicted they evict against what the engine reported */
  stalePrunes: { predicted: number; reported: number }
}

/** For one image: `based()` once its base is built, `done(local)` when finished (its local tags go to cleanup). */
export type Ticket = {
  /** the disk growth the budget predicted for this image when it admitted it */
  readonly cost: number
  /** seconds it waited for room so far (admission and readmissions; 0 or absent: admitted at once) */
  readonly waitSeconds?: number
  based(): void
  done(localImages: string[]): Promise<void>
  /** after a full disk: step out of flight and wait to be admitted again */
  readmit(): Promise<void>
}
