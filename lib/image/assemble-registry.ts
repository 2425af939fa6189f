// Assembly inside the registry (issues 7, 15): per instance, the base's layers are mounted into the final repository,
// the layer the final stage adds is placed next to them, and a new config + manifest written. No daemon, no local
// disk. The base is read, not pulled: only the members the steps touch are kept (agent-layer.ts, base-files.ts).
import pMap from 'p-map'
import { type AgentLayer, AgentLayers, type BaseCost } from './agent-layer.ts'
import type { AssemblePlan } from './assemble-dockerfile.ts'
import { BaseReader } from './base-files.ts'
import { copyRules } from './buildkit-rules.ts'
import { attachLayer, evaluateSteps, type ImageConfig } from './image-config.ts'
import { type CopyOutcome, ensureBlob, getBlob, sha256, uploadBlob } from '../registry/blobs.ts'
import { MEDIA, type RegistryClient, RegistryError, type Repo } from '../registry/client.ts'
import {
  encode,
  formatPlatform,
  getManifestChecked,
  type Index,
  isIndex,
  json,
  type Manifest,
  matches,
  parsePlatform,
  type Platform,
  platformEntries,
  PlatformMismatch,
  platformOf,
  repoOf,
} from '../registry/image.ts'
import { type ImageRef, parseImageRef } from '../registry/ref.ts'

export { formatPlatform, parsePlatform, type Platform } from '../registry/image.ts'
export { type AssemblePlan, parseAssembleDockerfile, type ParseResult } from './assemble-dockerfile.ts'

export type AssemblerOptions = {
  client: RegistryClient
  /** The BuildKit version `docker build` uses here (preflight); picks the rules that changed between versions. */
  buildkit?: string
  /** Pick this platform from a multi-platform base; absent: every platform of an index, a single image's own. */
  platform?: Platform | string
  /** `created` of the new config and history (default 1970-01-01T00:00:00Z: reproducible digests). */
  created?: string
  /** Concurrent blob mounts per image (default 8). */
  concurrency?: number
}
export type AssembleResult = {
  digest: string
  mediaType: string
  platforms: string[]
  /** Bytes this call sent: config, manifests, and any blob it had to upload or copy. */
  bytesUploaded: number
  mounted: number
  copied: number
  present: number
  seconds: number
  /** What reading the base cost (bytes of its layers streamed, seconds, layers read or answered from the run's cache). */
  base: BaseCost
  /** The added layer (per platform the last one), and whether an earlier instance had already built it. */
  layer?: { digest: string; size: number; files: number; reused: boolean }
  /** Things the summary should say (e.g. a refused mount that fell back to copying). */
  notes: string[]
}
type Tally = Pick<AssembleResult, 'bytesUploaded' | 'mounted' | 'copied' | 'present' | 'notes' | 'base' | 'layer'>

/** One per run: it keeps the source images, the base layers' answers and the built layers for every instance. */
export class Assembler {
  private readonly layers: AgentLayers

  constructor(private readonly o: AssemblerOptions) {
    this.layers = new AgentLayers(o.client, new BaseReader(o.client), copyRules(o.buildkit))
  }

  /** Assembles `finalRef` from the plan's base image inside the registry. */
  async assemble(plan: AssemblePlan, finalRef: string): Promise<AssembleResult> {
    const started = performance.now()
    const base = parseImageRef(plan.baseImage)
    const final = parseImageRef(finalRef)
    const tally: Tally = {
      bytesUploaded: 0,
      mounted: 0,
      copied: 0,
      present: 0,
      notes: [],
      base: { bytesRead: 0, layersRead: 0, layersCached: 0, seconds: 0, rounds: 0 },
    }
    const want = this.o.platform ? parsePlatform(this.o.platform) : undefined
    const top = await getManifestChecked(this.o.client, base)
    let put: { bytes: Uint8Array; mediaType: string; platforms: string[] }
    if (!isIndex(top.mediaType)) {
      const one = await this.one(plan, base, final, json(top.bytes), top.mediaType, tally, want)
      put = { ...one, platforms: [one.platform] }
    } else {
      const index = json(top.bytes) as Index
      const entries = platformEntries(index).filter((m) => !want || matches(want, m.platform))
      if (!entries.length) {
        throw new PlatformMismatch(`${plan.baseImage} has no ${want ? formatPlatform(want) : ''} platform image`)
      }
      const built = await pMap(entries, async (entry) => {
        const m = await getManifestChecked(this.o.client, { ...base, tag: undefined, digest: entry.digest })
        const one = await this.one(plan, base, final, json(m.bytes), m.mediaType, tally, entry.platform)
        if (!want) await this.putManifest({ ...final, tag: undefined, digest: sha256(one.bytes) }, one, tally)
        return { ...one, entry }
      }, { concurrency: 4 })
      if (want) put = { ...built[0], platforms: [built[0].platform] }
      else {
        const manifests = built.map((b) => ({
          mediaType: b.mediaType,
          digest: sha256(b.bytes),
          size: b.bytes.length,
          platform: b.entry.platform,
        }))
        const newIndex = { schemaVersion: 2, mediaType: index.mediaType ?? top.mediaType, manifests }
        put = { bytes: encode(newIndex), mediaType: top.mediaType, platforms: built.map((b) => b.platform) }
      }
    }
    await this.putManifest(final, put, tally)
    const seconds = (performance.now() - started) / 1000
    return { digest: sha256(put.bytes), mediaType: put.mediaType, platforms: put.platforms, seconds, ...tally }
  }

  /** One platform: its config checked and evaluated, its layer made, blobs placed, the new manifest's bytes. */
  private async one(
    plan: AssemblePlan,
    base: ImageRef,
    final: ImageRef,
    manifest: Manifest,
    mediaType: string,
    tally: Tally,
    platform?: Platform,
  ): Promise<{ bytes: Uint8Array; mediaType: string; platform: string }> {
    const config = json(await getBlob(this.o.client, repoOf(base), manifest.config.digest)) as ImageConfig
    const own = platformOf(config)
    if (platform && !matches(platform, own)) {
      throw new PlatformMismatch(`${plan.baseImage} is for ${formatPlatform(own)}, not ${formatPlatform(platform)}`)
    }
    const created = this.o.created ?? '1970-01-01T00:00:00Z'
    const evaluated = evaluateSteps(config, plan.steps, created)
    const made = await this.layers.forBase(repoOf(base), manifest.layers, evaluated.ops, platform ?? own)
    for (const k of ['bytesRead', 'layersRead', 'layersCached', 'seconds', 'rounds'] as const) {
      tally.base[k] += made.base[k]
    }
    await pMap(manifest.layers.filter((l) => !l.urls?.length), async (l) => {
      const outcome = await placeOnce(this.o.client, repoOf(base), repoOf(final), l.digest)
      count(tally, outcome, l.size, `base layer ${l.digest.slice(7, 19)}`)
    }, { concurrency: this.o.concurrency ?? 8 })
    const layer = made.layer
    if (layer) {
      await placeAgentLayer(this.o.client, layer, repoOf(final), tally)
      tally.layer = { digest: layer.digest, size: layer.size, files: layer.files, reused: made.reused }
    }
    const image = attachLayer(evaluated, layer && { diffId: layer.diffId, op: made.op! })
    const newConfig = encode(image)
    if ((await uploadBlob(this.o.client, repoOf(final), newConfig)).uploaded) tally.bytesUploaded += newConfig.length
    const oci = mediaType === MEDIA.ociManifest
    const added = layer &&
      { mediaType: oci ? MEDIA.ociLayer : MEDIA.dockerLayer, digest: layer.digest, size: layer.size }
    const next: Manifest = {
      ...manifest,
      config: { ...manifest.config, digest: sha256(newConfig), size: newConfig.length },
      layers: added ? [...manifest.layers, added] : manifest.layers,
    }
    return { bytes: encode(next), mediaType, platform: formatPlatform(platform ?? own) }
  }

  /** PUT a manifest; a 400 (blob unknown while another process is still linking a shared blob) is retried twice. */
  private async putManifest(ref: ImageRef, m: { bytes: Uint8Array; mediaType: string }, tally: Tally): Promise<void> {
    for (let attempt = 0;; attempt++) {
      try {
        await this.o.client.putManifest(ref, m.bytes, m.mediaType)
        tally.bytesUploaded += m.bytes.length
        return
      } catch (e) {
        if (!(e instanceof RegistryError && e.status === 400) || attempt >= 2) throw e
        await new Promise((r) => setTimeout(r, 250 * 2 ** attempt))
      }
    }
  }
}

/**
 * Blobs placed per client (one client per run): each digest is mounted or copied into a repository once, and
 * every other instance that shares the layer waits for that and counts it as present. Concurrent mounts of one
 * digest into one repository race in distribution (the repository's link is rewritten while another request
 * reads it, and a manifest PUT then fails with 400 blob unknown); base images of a fleet share most layers.
 */
const placements = new WeakMap<RegistryClient, Map<string, Promise<CopyOutcome>>>()

async function placeOnce(client: RegistryClient, from: Repo, to: Repo, digest: string): Promise<CopyOutcome> {
  let placed = placements.get(client)
  if (!placed) placements.set(client, placed = new Map())
  const key = `${to.registry}/${to.repository}@${digest}`
  const first = placed.get(key)
  if (first) return first.then(() => 'present' as const)
  const outcome = ensureBlob(client, from, to, digest)
  placed.set(key, outcome)
  outcome.catch(() => placed.delete(key)) // a failed placement lets the next instance try again
  return outcome
}

function count(tally: Tally, outcome: CopyOutcome, size: number, what: string) {
  tally[outcome]++
  if (outcome === 'copied') {
    tally.bytesUploaded += size
    tally.notes.push(`${what}: mount not possible, copied ${size} bytes through this runner`)
  }
}

/** The first instance per registry uploads the agent layer; the rest mount it from that repository. */
async function placeAgentLayer(client: RegistryClient, layer: AgentLayer, to: Repo, tally: Tally): Promise<void> {
  const home = layer.homes.get(to.registry)
  if (!home) {
    const upload = uploadBlob(client, to, layer.gzip)
    const pushed = upload.then(() => to)
    layer.homes.set(to.registry, pushed)
    pushed.catch(() => layer.homes.delete(to.registry)) // a failed first push lets the next instance try again
    if ((await upload).uploaded) tally.bytesUploaded += layer.size
    return
  }
  const from = await home
  count(tally, await ensureBlob(client, from, to, layer.digest), layer.size, 'agent layer')
}
