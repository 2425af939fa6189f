// What the disk budget believes is on the data root, layer by layer: which upstream layers are resident, which
// images in flight use them, when one was last used, and how many images of the run still need it. From this
// follow what an image costs (only its cold layers), what a cleanup can give back before it runs, and which
// layers a time-based prune would evict.
//
// Every build-cache prune the engines offer works by record age (`--filter until=`), size caps or all-at-once; none
// removes "the layers of finished groups" by name (dockerd 20.10 refuses `--filter description~=` and takes one
// `id=` per call). A stale prune with cutoff C approximates it: the schedule runs a group's instances together, so
// the layers of finished groups were last used before those any waiting or running image needs; C is set just
// before the oldest `lastUsed` among layers still needed, so needed layers survive and finished ones go. How close
// that gets is measured per cleanup (predicted bytes vs what the engine reports) and logged.
import type { Layer } from '../fleet/groups.ts'

type Entry = {
  size: number
  resident: boolean
  /** admitted images (not yet done) that have this layer: it is in use or referenced by their images */
  users: number
  /** ms: admission of the last image that used it — never later than BuildKit's own last use of the record */
  lastAdmitted: number
  /** ms: when the last image that used it had its base built — never earlier than BuildKit's last use */
  lastBuilt: number
  /** images of the run, not yet done, that have this layer */
  demand: number
}

export class LayerLedger {
  private readonly layers = new Map<string, Entry>()

  private entry(l: Layer): Entry {
    let e = this.layers.get(l.digest)
    if (!e) {
      this.layers.set(
        l.digest,
        e = { size: l.size, resident: false, users: 0, lastAdmitted: 0, lastBuilt: 0, demand: 0 },
      )
    }
    return e
  }

  /** The images the run will build: each of their layers is needed until they are done. */
  expect(images: Layer[][]): void {
    for (const layers of images) for (const l of layers) this.entry(l).demand++
  }

  /** Layers an image would pull now: not resident (or about to be evicted) and not pulled by an image in flight. */
  cold(layers: Layer[], evicting?: (digest: string) => boolean): Layer[] {
    return layers.filter((l) => {
      const e = this.layers.get(l.digest)
      if (!e) return true
      if (e.users > 0) return false // an image in flight pulls or holds it: the daemon pulls a blob once
      return !e.resident || Boolean(evicting?.(l.digest))
    })
  }

  /** An image was admitted: its layers are in use from now on (resident once its base is built). */
  use(layers: Layer[], now: number): void {
    for (const l of layers) {
      const e = this.entry(l)
      e.users++
      e.lastAdmitted = Math.max(e.lastAdmitted, now)
    }
  }

  /** Its base is built: its layers are on disk. */
  pulled(layers: Layer[], now: number): void {
    for (const l of layers) {
      const e = this.entry(l)
      e.resident = true
      e.lastBuilt = Math.max(e.lastBuilt, now)
    }
  }

  /** It stepped out of flight (done, or waiting again after a full disk); `done`: it needs its layers no more. */
  release(layers: Layer[], done: boolean): void {
    for (const l of layers) {
      const e = this.entry(l)
      e.users = Math.max(0, e.users - 1)
      if (done) e.demand = Math.max(0, e.demand - 1)
    }
  }

  /**
   * Resident layers nobody in flight holds that a stale prune with `cutoff` (ms) evicts: `surely` those whose last
   * use ended before it (what the prune is predicted to give back), otherwise also those whose last use may have
   * (what later images must count as cold).
   */
  evictable(cutoff: number, surely: boolean): Array<{ digest: string; size: number }> {
    return [...this.layers].filter(([, e]) =>
      e.resident && e.users === 0 && (surely ? e.lastBuilt : e.lastAdmitted) < cutoff
    )
      .map(([digest, e]) => ({ digest, size: e.size }))
  }

  /**
   * The latest cutoff that keeps every layer still needed: the oldest admission among resident layers that images
   * not yet done need and nobody holds (BuildKit used them no earlier). `now` when no needed layer is exposed.
   */
  keepNeededCutoff(now: number): number {
    const needed = [...this.layers.values()].filter((e) => e.resident && e.users === 0 && e.demand > 0)
    return needed.length ? Math.min(...needed.map((e) => e.lastAdmitted)) : now
  }

  /** After a prune with `cutoff` (`Infinity`: an all-at-once prune): what it may have removed is cold again. */
  evict(cutoff: number): void {
    for (const { digest } of this.evictable(cutoff, false)) this.layers.get(digest)!.resident = false
  }

  /** Compressed bytes of the distinct layers the run expects: the re-pull factor's denominator. */
  uniqueBytes(): number {
    let bytes = 0
    for (const e of this.layers.values()) bytes += e.size
    return bytes
  }

  isResident(digest: string): boolean {
    return this.layers.get(digest)?.resident ?? false
  }
}
