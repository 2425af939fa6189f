// The synthetic fleet's shape, decided before anything is pushed: which environments there are and how big,
// which instance ids each serves (named as SWE-bench names them), and the order of the instance list.
// Pure: no registry, no disk. generate.ts pushes what this plans.
import { dockerIdOf } from '../../lib/fleet/instances.ts'

export type ShapeOptions = {
  /** Environments: each is one layer shared by its instances (SWE-bench: a repository at one version). */
  groups: number
  /** Instances per environment, cycled over the environments (`[40, 10, 3]`: uneven, like SWE-bench's repositories). */
  perGroup: number[]
  /** Bytes of each environment layer, cycled over the environments (`[300e6, 120e6]`: environments of different sizes). */
  envSizes: number[]
  /** Bytes of each instance's own layer. */
  instanceSize: number
  /** Incompressible bytes in the shared base layer, besides busybox. */
  baseSize: number
  /** Environments that share one repository name: its instance numbers interleave them, as versions of a repository do. */
  envsPerRepo: number
  /** `id`: repository by repository, numbers ascending, as SWE-bench lists them (a repository's environments
   * interleave); `grouped`: environment by environment. */
  order: 'id' | 'grouped'
}
export const ORDERS = ['id', 'grouped'] as const

export type PlannedInstance = { id: string; group: number; image: string }
export type Environment = { index: number; bytes: number; image: string; instances: PlannedInstance[] }
export type FleetPlan = {
  /** The image every environment is layered on: busybox and the applet links, plus `baseSize` bytes. */
  baseImage: string
  environments: Environment[]
  /** Every instance, in the order of the instance list. */
  instances: PlannedInstance[]
}

/** The pipeline's --upstream template for the instance images: SWE-bench's naming under REGISTRY. */
export const upstreamTemplate = (registry: string) => `${registry}/sweb.eval.x86_64.{docker_id}:latest`
const cycle = <T>(list: T[], i: number) => list[i % list.length]

/**
 * Repository r holds environments r·k … r·k+k−1 (k = envsPerRepo); its instances are numbered from 101, handed
 * round-robin to those of its environments that still want some. With k = 1 the ids are `org{g}__proj{g}-{101+i}`.
 */
export function planFleet(o: ShapeOptions, registry: string): FleetPlan {
  const environments: Environment[] = Array.from({ length: o.groups }, (_, g) => ({
    index: g,
    bytes: cycle(o.envSizes, g),
    image: `${registry}/imagefleet/synthetic-env:g${g}`,
    instances: [],
  }))
  const byId: PlannedInstance[] = []
  for (let first = 0; first < o.groups; first += o.envsPerRepo) {
    const repo = first / o.envsPerRepo
    const members = environments.slice(first, first + o.envsPerRepo)
    let number = 101
    for (let round = 0; members.some((e) => e.instances.length < cycle(o.perGroup, e.index)); round++) {
      for (const env of members) {
        if (round >= cycle(o.perGroup, env.index)) continue
        const id = `org${repo}__proj${repo}-${number++}`
        const instance = {
          id,
          group: env.index,
          image: upstreamTemplate(registry).replace('{docker_id}', dockerIdOf(id)),
        }
        env.instances.push(instance)
        byId.push(instance)
      }
    }
  }
  const grouped = environments.flatMap((e) => e.instances)
  return {
    baseImage: `${registry}/imagefleet/synthetic-base:latest`,
    environments,
    instances: o.order === 'grouped' ? grouped : byId,
  }
}

/** What the list's order looks like: `0 1 2 0 1 2 …` (interleaved) or `0 0 0 1 1 …` (grouped), first `n` instances. */
export const orderSketch = (plan: FleetPlan, n = 12) =>
  plan.instances.slice(0, n).map((i) => i.group).join(' ') + (plan.instances.length > n ? ' …' : '')
