// Per-image telemetry: what a step's seconds went to (build, push), the disk it grew, the bytes it pushed.
// The docker commands stay `$` literals in the scripts; a CommandClock listens beside the step's log file to zx's
// log (every command's start, output and end) and sorts the time by what each command is.
import type { LogEntry } from 'zx'
import type { RegistryClient } from '../registry/client.ts'
import { getBlob } from '../registry/blobs.ts'
import { parsePlatform, repoOf, resolveImage } from '../registry/image.ts'
import { parseImageRef } from '../registry/ref.ts'

/** Where a record's time and bytes went (measured here and in records.ts); each only where it applies. */
export type Telemetry = {
  /** Of `seconds`: in `docker build` / `docker buildx build` (with --push, its push too); registry assembly: reading the base */
  build_seconds?: number
  /** Of `seconds`: in `docker push`; registry assembly: the rest (the layer made, mounts, uploads, manifest) */
  push_seconds?: number
  /** Asking the registry whether the tag exists, before the step (not part of `seconds`; ~0 when the plan's batch answered) */
  check_seconds?: number
  /** Bytes the disk lost around the step, net of cleanups meanwhile (with concurrency, neighbours' writes too) */
  disk_growth?: number
  /** Blob bytes sent: layers `docker push` reported Pushed, or what registry assembly uploaded */
  bytes_pushed?: number
  /** Seconds this instance waited for the disk budget to admit it before (first record) or during this step */
  budget_wait_seconds?: number
}
export type Kind = 'build' | 'push'

/** What a command is, for the record's split of seconds; first match wins, anything else is not split out. */
const KINDS: Array<{ kind: Kind; match: RegExp }> = [
  // `docker buildx build --push` builds and pushes in one command: its whole time counts as build (the push inside
  // cannot be timed apart from outside), so a buildx base has build_seconds and no push_seconds
  { kind: 'build', match: /^docker\s+(buildx\s+)?build\s/ },
  { kind: 'push', match: /^docker\s+push\s/ },
]

/** A layer `docker push` uploaded: off a terminal it prints `<12 hex>: Pushed` (no sizes; progress bars only on a TTY). */
const PUSHED_LINE = /^([0-9a-f]{12}): Pushed\s*$/gm

export const kindOf = (cmd: string): Kind | undefined => KINDS.find((k) => k.match.test(cmd.trim()))?.kind

/**
 * Seconds per kind of command over a step (all its attempts), and the short ids of the layers its `docker push`es
 * uploaded. `see` is a zx log hook: entries carry the command's id, so output and end are matched to their command.
 */
export class CommandClock {
  readonly seconds: Record<Kind, number> = { build: 0, push: 0 }
  readonly ran = new Set<Kind>()
  readonly pushedLayers = new Set<string>()
  private readonly running = new Map<string, { kind?: Kind; out: string }>()

  see = (entry: LogEntry): void => {
    if (entry.kind === 'cmd') this.running.set(entry.id, { kind: kindOf(entry.cmd), out: '' })
    const cmd = 'id' in entry ? this.running.get(entry.id) : undefined
    if (!cmd) return
    if (entry.kind === 'stdout' && cmd.kind === 'push') cmd.out += String(entry.data)
    if (entry.kind !== 'end') return
    this.running.delete(entry.id)
    if (!cmd.kind) return
    this.ran.add(cmd.kind)
    this.seconds[cmd.kind] += entry.duration / 1000
    for (const m of cmd.out.matchAll(PUSHED_LINE)) this.pushedLayers.add(m[1])
  }

  /** The record's fields: a kind's seconds only when such a command ran. */
  fields(): { build_seconds?: number; push_seconds?: number } {
    return {
      ...(this.ran.has('build') ? { build_seconds: round3(this.seconds.build) } : {}),
      ...(this.ran.has('push') ? { push_seconds: round3(this.seconds.push) } : {}),
    }
  }
}

/**
 * Bytes of the layers `docker push` reported `Pushed` (not "Mounted from", not "Layer already exists"): docker prints
 * no sizes off a terminal, so they are read from the pushed image in the registry (its manifest, and its config to
 * map ids). The short ids are diff ids with the classic image store (moby's push descriptor is named after the
 * layer's DiffID) and compressed layer digests with the containerd image store: both are tried.
 */
export async function pushedLayerBytes(
  client: RegistryClient,
  tag: string,
  shortIds: Iterable<string>,
  platform?: string,
): Promise<number> {
  const ids = new Set(shortIds)
  if (!ids.size) return 0
  const ref = parseImageRef(tag)
  const { manifest } = await resolveImage(client, ref, platform ? parsePlatform(platform) : undefined)
  const config = JSON.parse(new TextDecoder().decode(await getBlob(client, repoOf(ref), manifest.config.digest)))
  const diffIds: string[] = config?.rootfs?.diff_ids ?? []
  const short = (digest?: string) => digest?.replace(/^sha256:/, '').slice(0, 12)
  return manifest.layers.reduce(
    (sum, layer, i) => ids.has(short(diffIds[i])!) || ids.has(short(layer.digest)!) ? sum + layer.size : sum,
    0,
  )
}

/**
 * Disk growth of a step: free bytes lost between the samples around it, plus what cleanups that finished meanwhile
 * gave back (they would hide the growth). Images running at the same time write in the same window, so with
 * --concurrency above 1 this is the step's own growth plus its neighbours' (and minus space a background free-disk
 * gave back meanwhile); summed over a run it counts shared writes more than once. Undefined when the data root is
 * not visible from here (free is Infinity).
 */
export function diskGrowth(
  before: { free: number; reclaimed: number },
  after: { free: number; reclaimed: number },
): number | undefined {
  if (!Number.isFinite(before.free) || !Number.isFinite(after.free)) return undefined
  return before.free - after.free + (after.reclaimed - before.reclaimed)
}

/**
 * Registry assembly has no docker commands: reading the base (to place what the steps write) counts as build, the
 * rest of the step — making the layer (once per distinct content), mounts, uploads, config and manifest — as push;
 * what it uploaded is its bytes pushed (config and manifest included).
 */
export function registrySplit(
  seconds: number,
  tally: { bytes_uploaded: number; base_read_seconds?: number },
): { build_seconds: number; push_seconds: number; bytes_pushed: number } {
  const build = Math.min(seconds, tally.base_read_seconds ?? 0)
  return { build_seconds: round3(build), push_seconds: round3(seconds - build), bytes_pushed: tally.bytes_uploaded }
}

export const round3 = (x: number) => Math.round(x * 1000) / 1000

export type Part = 'build' | 'push' | 'check' | 'other'

/**
 * The part of an image's time that took longest: build, push, the registry check, or `other` — the rest of the step
 * (retry backoffs, an emergency cleanup, registry assembly's parsing). Undefined when nothing of the step was split.
 */
export function slowestPart(r: Telemetry & { seconds: number }): { part: Part; seconds: number } | undefined {
  if (r.build_seconds === undefined && r.push_seconds === undefined) return undefined
  const parts: Array<{ part: Part; seconds: number }> = [
    { part: 'build', seconds: r.build_seconds ?? 0 },
    { part: 'push', seconds: r.push_seconds ?? 0 },
    { part: 'check', seconds: r.check_seconds ?? 0 },
    { part: 'other', seconds: Math.max(0, r.seconds - (r.build_seconds ?? 0) - (r.push_seconds ?? 0)) },
  ]
  return parts.reduce((a, b) => (b.seconds > a.seconds ? b : a))
}
