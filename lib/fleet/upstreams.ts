// What the registry says about each instance's upstream image before anything is built: its layers (digest,
// compressed size, from the manifest; no layer downloaded) for the schedule and the disk budget, or that it does
// not exist — a missing upstream fails its instance in the plan, never costs a cleanup.
import pMap from 'p-map'
import { RegistryClient, RegistryError } from '../registry/client.ts'
import { imageLayers } from '../registry/image.ts'
import type { Layer } from './groups.ts'
import type { Instance } from './instances.ts'

/** What the registry said about each instance's upstream image. */
export type Upstreams = {
  /** compressed layers (bottom-up), when the registry told them */
  layers: Map<string, Layer[]>
  /** instances whose upstream image the registry says does not exist */
  missing: Instance[]
}

/**
 * Each distinct upstream image's layers (or, with `refOf`, another image per instance: assemble's bases), read from
 * its manifest (no layer downloaded), 16 at a time.
 */
export async function readUpstreams(
  registry: RegistryClient,
  platform: string | undefined,
  instances: Instance[],
  refOf = (i: Instance) => i.upstream,
): Promise<Upstreams> {
  const answers = new Map<string, Layer[] | 'missing' | undefined>()
  await pMap(new Set(instances.map(refOf)), async (ref) => {
    try {
      answers.set(ref, await imageLayers(registry, ref, platform))
    } catch (e) {
      // 404: the registry says it is not there. Docker Hub answers 401 for unknown repositories, so that stays unknown
      answers.set(ref, e instanceof RegistryError && e.status === 404 ? 'missing' : undefined)
    }
  }, { concurrency: 16 })
  const layers = new Map<string, Layer[]>()
  const missing: Instance[] = []
  for (const inst of instances) {
    const a = answers.get(refOf(inst))
    if (a === 'missing') missing.push(inst)
    else if (a) layers.set(inst.id, a)
  }
  return { layers, missing }
}

/** The layers the disk budget counts for an instance: its upstream's, or one stand-in of the expected size. */
export function costLayers(inst: Instance, upstreams: Upstreams | undefined, expectGrowth?: number): Layer[] {
  const known = upstreams?.layers.get(inst.id)
  if (known) return known
  const sizes = [...(upstreams?.layers.values() ?? [])].map((ls) => ls.reduce((n, l) => n + l.size, 0))
  const mean = sizes.length ? sizes.reduce((a, b) => a + b) / sizes.length : 2 ** 30
  return [{ digest: `unknown:${inst.upstream}`, size: expectGrowth !== undefined ? expectGrowth / 2 : mean }]
}
