// A buildx builder's own cache, bounded (--builder-max-used): a remote or kubernetes builder keeps its cache on its
// own disk, which the local budget neither sees nor should prune. After images finish, its usage is asked (`docker
// buildx du --builder NAME`) and, when it holds more than the bound, it is pruned down to it with the flag it accepts.
// One check at a time: images finishing while one runs are covered by the next. No docker commands here: `usage`
// and `prune` come from scripts/prune.ts.
import { formatBytes } from '../cli/size.ts'

export type BuilderCacheOptions = {
  builder: string
  /** bytes the builder's cache may hold */
  max: number
  /** its usage now, or undefined when it cannot be read */
  usage: () => Promise<number | undefined>
  /** prune it down to `max` */
  prune: (max: number) => Promise<unknown>
  onEvent?: (event: string) => void
}

export class BuilderCacheBound {
  private running?: Promise<void>
  readonly stats = { checks: 0, prunes: 0, unreadable: 0 }

  constructor(private readonly o: BuilderCacheOptions) {}

  /** Checks the builder's usage unless a check is running; prunes it to the bound when it is over. */
  check(): Promise<void> {
    this.running ??= this.once().finally(() => this.running = undefined)
    return this.running
  }

  /** Resolves once no check is running (end of the run). */
  async idle(): Promise<void> {
    while (this.running) await this.running
  }

  private async once(): Promise<void> {
    this.stats.checks++
    const used = await this.o.usage().catch(() => undefined)
    if (used === undefined) {
      this.stats.unreadable++
      return this.o.onEvent?.(`builder ${this.o.builder}: its cache usage could not be read; not pruned`)
    }
    if (used <= this.o.max) return
    this.o.onEvent?.(
      `builder ${this.o.builder}: cache ${formatBytes(used)} over the bound ${formatBytes(this.o.max)}; pruning it`,
    )
    this.stats.prunes++
    await this.o.prune(this.o.max)
  }
}
