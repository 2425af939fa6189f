// --shard I/N: one CI matrix job's part of the fleet. Instances that share an upstream environment stay
// in one shard (its layers are pulled once per runner, not once per shard); shards are balanced by expected
// bytes. The split depends only on the set of instances and their weights — never on their order — so every
// matrix job computes the same split: the union of shards is the fleet and no two shards overlap.
import pMap from 'p-map'
import { UsageError } from '../cli/flags.ts'
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

/**
 * The environment an instance belongs to. SWE-bench ids are `org__repo-NUMBER`: every task of one repository
 * builds on that repository's environment images, so the repository is the group.
 */
export function environmentOf(inst: Pick<Instance, 'id'>): string | undefined {
  const m = /^(.+__.+)-\d+$/.exec(inst.id)
  return m ? m[1].toLowerCase() : undefined
}

export type Group = { key: string; members: Instance[]; weight: number }

/** Groups instances that share an environment or an upstream image (transitively). */
export function groupInstances(instances: Instance[], weight: (i: Instance) => number = () => 1): Group[] {
  const parent = new Map<string, string>()
  const find = (k: string): string => {
    let root = k
    while (parent.get(root) !== root) root = parent.get(root)!
    parent.set(k, root)
    return root
  }
  const union = (a: string, b: string) => {
    const [ra, rb] = [find(a), find(b)]
    if (ra !== rb) parent.set(ra < rb ? rb : ra, ra < rb ? ra : rb) // the smaller key is the root: order-independent
  }
  for (const inst of instances) {
    const keys = [`upstream:${inst.upstream}`, ...(environmentOf(inst) ? [`env:${environmentOf(inst)}`] : [])]
    for (const k of keys) if (!parent.has(k)) parent.set(k, k)
    if (keys.length > 1) union(keys[0], keys[1])
  }
  const groups = new Map<string, Group>()
  for (const inst of instances) {
    const key = find(`upstream:${inst.upstream}`)
    const g = groups.get(key) ?? { key, members: [], weight: 0 }
    g.members.push(inst)
    g.weight += weight(inst)
    groups.set(key, g)
  }
  return [...groups.values()]
}

/**
 * Assigns groups to `count` shards, heaviest group first, each to the lightest shard so far (ties: lower
 * shard, then group key) — the greedy longest-processing-time split, within 4/3 of the best balance.
 * Returns, per shard, its groups.
 */
export function splitGroups(groups: Group[], count: number): Group[][] {
  const shards = Array.from({ length: count }, () => ({ load: 0, groups: [] as Group[] }))
  const order = [...groups].sort((a, b) => b.weight - a.weight || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))
  for (const g of order) {
    let best = shards[0]
    for (const s of shards) if (s.load < best.load) best = s
    best.groups.push(g)
    best.load += g.weight
  }
  return shards.map((s) => s.groups)
}

/** The instances of shard `spec`, in the order of the input list. */
export function shardInstances(instances: Instance[], spec: ShardSpec, weight?: (i: Instance) => number): Instance[] {
  const mine = new Set(
    splitGroups(groupInstances(instances, weight), spec.count)[spec.index - 1].flatMap((g) => g.members),
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
