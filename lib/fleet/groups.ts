// Which instances share an environment: the one definition of a group, used by the in-runner schedule
// (lib/fleet/schedule.ts) and by --shard (lib/fleet/shard.ts).
//
// A group is the instances that share their big upstream layers. In order of preference, from:
//   1. the registry: the layers of each upstream image (digest, compressed size), when it answered. An instance's
//      environment is the list of its layers that other instances of the fleet also have (≥ MIN_SHARED_LAYER each);
//      instances with the same list share everything that costs disk and pulls. SWE-bench images share one OS layer
//      with every image and an environment per repository and version with their group, so this finds exactly the
//      repository + version groups without being told;
//   2. the instances file: a SWE-bench row's `repo` + `version` (the dataset's own environment key);
//   3. the id: SWE-bench ids are `org__repo-NUMBER`, and a repository shares at least its environment images.
// Instances with the same upstream image always end up in one group.
import type { Instance } from './instances.ts'

export type Layer = { digest: string; size: number }

/** Smaller shared layers (a config file, a tiny script) decide nothing about disk or pulls, so they do not split groups. */
export const MIN_SHARED_LAYER = 2 ** 20

export type Group = {
  key: string
  /** In the order of the instances file. */
  members: Instance[]
  /** The layers every member shares (bottom-up), when the registry told them; [] otherwise. */
  shared: Layer[]
  /** Bytes of those shared layers (compressed): what the group pulls once. */
  sharedBytes: number
}

/** The repository part of a SWE-bench id (`django__django-11099` → `django__django`), or undefined. */
export function environmentOf(inst: Pick<Instance, 'id'>): string | undefined {
  const m = /^(.+__.+)-\d+$/.exec(inst.id)
  return m ? m[1].toLowerCase() : undefined
}

/** The shared big layers of each instance whose layers are known (bottom-up, as in the image). */
function sharedLayers(instances: Instance[], layersOf: (i: Instance) => Layer[] | undefined): Map<Instance, Layer[]> {
  const seen = new Map<string, number>()
  for (const inst of instances) {
    for (const l of new Set((layersOf(inst) ?? []).map((l) => l.digest))) seen.set(l, (seen.get(l) ?? 0) + 1)
  }
  const shared = new Map<Instance, Layer[]>()
  for (const inst of instances) {
    const layers = layersOf(inst)
    if (layers) shared.set(inst, layers.filter((l) => (seen.get(l.digest) ?? 0) >= 2 && l.size >= MIN_SHARED_LAYER))
  }
  return shared
}

/** The key of an instance whose layers are unknown (or share nothing): from the row, else the id, else its upstream. */
function fallbackKey(inst: Instance): string {
  if (inst.repo && inst.version) return `env:${inst.repo}@${inst.version}`
  const repo = inst.repo ?? environmentOf(inst)
  return repo ? `env:${repo.toLowerCase()}` : `upstream:${inst.upstream}`
}

/**
 * Groups instances (see the header for the rule). `layersOf` gives the upstream layers the registry told, or
 * undefined. Groups come out in a deterministic order that depends only on the set of instances: groups sharing lower
 * layers side by side (their common layers stay warm), then by key. Members keep the order of the instances file.
 */
export function groupInstances(
  instances: Instance[],
  layersOf: (i: Instance) => Layer[] | undefined = () => undefined,
): Group[] {
  const shared = sharedLayers(instances, layersOf)
  const keyOf = (inst: Instance) => {
    const layers = shared.get(inst)
    return layers?.length
      ? `layers:${layers.map((l) => l.digest.replace(/^sha256:/, '').slice(0, 16)).join('+')}`
      : fallbackKey(inst)
  }
  // instances with one upstream image belong together whatever their keys say (union-find, smaller key as root)
  const parent = new Map<string, string>()
  const find = (k: string): string => {
    while (parent.get(k) !== k) k = parent.get(k)!
    return k
  }
  const union = (a: string, b: string) => {
    for (const k of [a, b]) if (!parent.has(k)) parent.set(k, k)
    const [ra, rb] = [find(a), find(b)]
    if (ra !== rb) parent.set(ra < rb ? rb : ra, ra < rb ? ra : rb)
  }
  for (const inst of instances) union(keyOf(inst), `upstream:${inst.upstream}`)
  const groups = new Map<string, Group>()
  for (const inst of instances) {
    const key = find(keyOf(inst))
    const g = groups.get(key) ?? { key, members: [], shared: shared.get(inst) ?? [], sharedBytes: 0 }
    g.members.push(inst)
    groups.set(key, g)
  }
  for (const g of groups.values()) g.sharedBytes = g.shared.reduce((s, l) => s + l.size, 0)
  return [...groups.values()].sort(byLayersThenKey)
}

/** Lower layers first, digest by digest: groups on one OS or runtime layer sit next to each other. */
function byLayersThenKey(a: Group, b: Group): number {
  for (let i = 0; i < Math.min(a.shared.length, b.shared.length); i++) {
    if (a.shared[i].digest !== b.shared[i].digest) return a.shared[i].digest < b.shared[i].digest ? -1 : 1
  }
  if (a.shared.length !== b.shared.length) return b.shared.length - a.shared.length
  return a.key < b.key ? -1 : a.key > b.key ? 1 : 0
}
