// --shard I/N: one CI matrix job's part of the fleet. Instances of one group (lib/fleet/groups.ts: they share an
// environment) stay in one shard, so its layers are pulled once per runner — unless the group alone is bigger than
// a fair share (total ÷ N): then it is cut into as few pieces as make the shards even, because one more pull of a
// shared environment costs far less than a runner doing several times the work while the matrix waits for it.
// The split depends only on the set of instances and their weights — never on their order — so every matrix job
// computes the same split: the union of shards is the fleet and no two shards overlap.
import pMap from 'p-map'
import { UsageError } from '../cli/flags.ts'
import { type Group, groupInstances, type Layer } from './groups.ts'
import type { Instance } from './instances.ts'

export type ShardSpec = { index: number; count: number }

/** `I/N`, 1 ≤ I ≤ N (matrix jobs count from 1). Throws a UsageError (exit 2) otherwise. */
export function parseShard(text: string): ShardSpec {
  const m = /^\s*(\d+)\s*\/\s*(\d+)\s*$/.exec(text)
  const index = Number(m?.[1])
  const count = Number(m?.[2])
  if (!m || count < 1 || index < 1 || index > count) {
    throw new UsageError(
      `--shard wants I/N with 1 ≤ I ≤ N (e.g. 2/4 for the second of four matrix jobs), got '${text}'`,
    )
  }
  return { index, count }
}

/** A group, or a piece of one too big for a fair share, with its weight. */
export type Piece = { key: string; members: Instance[]; weight: number }
export type ShardPlan = {
  /** Per shard, its pieces. */
  shards: Piece[][]
  /** Groups cut into pieces, with how many: each piece past the first pulls that environment once more. */
  split: Array<{ key: string; instances: number; pieces: number }>
  /** The fair share: total weight ÷ shards. */
  fair: number
}

const byKey = (a: { key: string }, b: { key: string }) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0)

/** Cuts a group heavier than `fair` into ⌈weight ÷ fair⌉ pieces of near-equal weight, members in id order. */
function cut(group: Group, weight: (i: Instance) => number, fair: number): Piece[] {
  const total = group.members.reduce((s, i) => s + weight(i), 0)
  const count = total > fair ? Math.ceil(total / fair - 1e-9) : 1
  if (count === 1) return [{ key: group.key, members: group.members, weight: total }]
  const members = [...group.members].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
  const pieces: Piece[] = Array.from(
    { length: count },
    (_, k) => ({ key: `${group.key}#${k + 1}`, members: [], weight: 0 }),
  )
  // each member goes to the piece its weight's midpoint falls in: contiguous pieces of near-equal weight
  let before = 0
  for (const inst of members) {
    const k = Math.min(count - 1, Math.floor((before + weight(inst) / 2) / (total / count)))
    pieces[k].members.push(inst)
    pieces[k].weight += weight(inst)
    before += weight(inst)
  }
  return pieces.filter((p) => p.members.length)
}

/**
 * Splits the fleet into `count` shards: groups heavier than a fair share are cut, then pieces go heaviest first to
 * the lightest shard so far (ties: lower shard; pieces of equal weight by key) — the greedy longest-processing-time
 * split, within 4/3 of the best balance.
 */
export function planShards(
  instances: Instance[],
  count: number,
  weight: (i: Instance) => number = () => 1,
  layersOf?: (i: Instance) => Layer[] | undefined,
): ShardPlan {
  const groups = groupInstances(instances, layersOf)
  const fair = instances.reduce((s, i) => s + weight(i), 0) / count
  const pieces = groups.flatMap((g) => cut(g, weight, fair))
  const split = groups.map((g) => ({
    key: g.key,
    instances: g.members.length,
    pieces: pieces.filter((p) => p.key.startsWith(`${g.key}#`)).length,
  }))
    .filter((g) => g.pieces > 1)
  const shards = Array.from({ length: count }, () => ({ load: 0, pieces: [] as Piece[] }))
  for (const p of [...pieces].sort((a, b) => b.weight - a.weight || byKey(a, b))) {
    let best = shards[0]
    for (const s of shards) if (s.load < best.load) best = s
    best.pieces.push(p)
    best.load += p.weight
  }
  return { shards: shards.map((s) => s.pieces), split, fair }
}

/** The instances of shard `spec`, in the order of the input list. */
export function shardInstances(
  instances: Instance[],
  spec: ShardSpec,
  weight?: (i: Instance) => number,
  layersOf?: (i: Instance) => Layer[] | undefined,
): Instance[] {
  const mine = new Set(
    planShards(instances, spec.count, weight, layersOf).shards[spec.index - 1].flatMap((p) => p.members),
  )
  return instances.filter((i) => mine.has(i))
}

/**
 * Bytes of every distinct upstream image (its compressed layers, from the registry; nothing is pulled).
 * Strict: if any size cannot be read this throws, because a shard that fell back to counting would split
 * the fleet differently from the others — overlapping some instances and dropping others.
 */
export async function upstreamWeights(
  instances: Instance[],
  bytesOf: (ref: string) => Promise<number>,
  concurrency = 32,
): Promise<Map<string, number>> {
  const refs = [...new Set(instances.map((i) => i.upstream))]
  const sizes = new Map<string, number>()
  const problems: string[] = []
  await pMap(refs, async (ref) => {
    try {
      sizes.set(ref, Math.max(1, await bytesOf(ref)))
    } catch (e) {
      problems.push(`${ref}: ${(e as Error).message}`)
    }
  }, { concurrency })
  if (problems.length) {
    throw new UsageError(
      `--shard-by bytes: ${problems.length} of ${refs.length} upstream sizes could not be read (use --shard-by count)`,
      problems.slice(0, 10),
    )
  }
  return sizes
}
