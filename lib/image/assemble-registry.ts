// Assembly inside the registry (issue 7): the agent layer is built once from the builder image, then per
// instance the base's layers are mounted into the final repository and a new config + manifest written.
// No daemon, no local disk, and never a base layer downloaded.
import { createHash } from 'node:crypto'
import pMap from 'p-map'
import { applySteps, type AssembleStep, type ImageConfig } from './assemble-dockerfile.ts'
import { type CopySpec, extractCopies } from './copy.ts'
import { type BuiltLayer, writeLayer } from './layer.ts'
import { type CopyOutcome, ensureBlob, getBlob, sha256, uploadBlob } from '../registry/blobs.ts'
import { MEDIA, type RegistryClient, RegistryError, type Repo } from '../registry/client.ts'
import {
  encode,
  formatPlatform,
  type Index,
  isIndex,
  json,
  type Manifest,
  matches,
  parsePlatform,
  type Platform,
  platformEntries,
  repoOf,
  resolveImage,
} from '../registry/image.ts'
import { type ImageRef, parseImageRef } from '../registry/ref.ts'

export { formatPlatform, parsePlatform, type Platform, resolveImage } from '../registry/image.ts'
export {
  applySteps,
  type AssemblePlan,
  type AssembleStep,
  parseAssembleDockerfile,
  type ParseResult,
} from './assemble-dockerfile.ts'

/** The agent layer: reproducible bytes plus where it has been pushed (so later instances mount it instead). */
export type AgentLayer = BuiltLayer & {
  /** sha256 of the builder manifest digest + copies + mtime: same key, same bytes. */
  key: string
  builderDigest: string
  files: number
  /** Per registry: the repository that holds the blob once the first instance pushed it. */
  homes: Map<string, Promise<Repo>>
}
export type MakeAgentLayerOptions = {
  client: RegistryClient
  builderRef: string
  copies: CopySpec[]
  /** Which platform of a multi-platform builder (default: this machine's, linux). */
  platform?: Platform | string
  /** mtime of every file in the layer (default 0). */
  mtime?: number
  /** Layers already made, by key: a hit skips the download. */
  cache?: Map<string, AgentLayer>
}

/**
 * Builds the agent layer: the files the COPY instructions take from the builder image, packed reproducibly.
 * Downloads the builder's layers (once; kept in memory, never on disk). A `cache` hit skips everything but one manifest GET.
 */
export async function makeAgentLayer(o: MakeAgentLayerOptions): Promise<AgentLayer> {
  const ref = parseImageRef(o.builderRef)
  const builder = await resolveImage(o.client, ref, o.platform ? parsePlatform(o.platform) : undefined)
  const key = createHash('sha256').update(
    JSON.stringify({ builder: builder.digest, copies: o.copies, mtime: o.mtime ?? 0 }),
  ).digest('hex')
  const hit = o.cache?.get(key)
  if (hit) return hit
  const blobs = await pMap(builder.manifest.layers, (l) => getBlob(o.client, repoOf(ref), l.digest), { concurrency: 4 })
  const files = extractCopies(blobs, o.copies)
  const layer: AgentLayer = {
    ...writeLayer(files, { mtime: o.mtime }),
    key,
    builderDigest: builder.digest,
    files: files.length,
    homes: new Map(),
  }
  o.cache?.set(key, layer)
  return layer
}

export type AssembleOptions = {
  client: RegistryClient
  baseRef: string
  finalRef: string
  /** The agent layer, or one per platform for multi-platform bases. Absent when the Dockerfile has no COPY. */
  layer?: AgentLayer | ((platform: Platform) => Promise<AgentLayer> | AgentLayer)
  steps: AssembleStep[]
  /** Pick this platform from a multi-platform base; absent: assemble every platform into a new index. */
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
  /** Things the summary should say (e.g. a refused mount that fell back to copying). */
  notes: string[]
}
type Tally = Pick<AssembleResult, 'bytesUploaded' | 'mounted' | 'copied' | 'present' | 'notes'>

/**
 * Assembles `finalRef` from `baseRef` inside the registry: reads the base manifest and config (never a layer),
 * mounts the base layers and the agent layer into the final repository (copying when a mount is refused or the
 * registries differ), writes the new config and a manifest of the base's family (docker v2 or OCI).
 */
export async function assembleInRegistry(o: AssembleOptions): Promise<AssembleResult> {
  const started = performance.now()
  const base = parseImageRef(o.baseRef)
  const final = parseImageRef(o.finalRef)
  const tally: Tally = { bytesUploaded: 0, mounted: 0, copied: 0, present: 0, notes: [] }
  const top = await o.client.getManifest(base)
  let put: { bytes: Uint8Array; mediaType: string; platforms: string[] }
  if (!isIndex(top.mediaType)) {
    const one = await assembleOne(o, base, final, json(top.bytes), top.mediaType, tally)
    put = { ...one, platforms: one.platform ? [one.platform] : [] }
  } else {
    const index = json(top.bytes) as Index
    const entries = platformEntries(index).filter((m) => !o.platform || matches(parsePlatform(o.platform), m.platform))
    if (!entries.length) {
      throw new Error(
        `${o.baseRef} has no ${o.platform ? formatPlatform(parsePlatform(o.platform)) : ''} platform image`,
      )
    }
    const built = await pMap(entries, async (entry) => {
      const m = await o.client.getManifest({ ...base, tag: undefined, digest: entry.digest })
      const one = await assembleOne(o, base, final, json(m.bytes), m.mediaType, tally, entry.platform)
      if (o.platform) return { ...one, entry }
      await putManifest(o.client, { ...final, tag: undefined, digest: sha256(one.bytes) }, one.bytes, one.mediaType)
      tally.bytesUploaded += one.bytes.length
      return { ...one, entry }
    }, { concurrency: 4 })
    if (o.platform) put = { ...built[0], platforms: [formatPlatform(parsePlatform(o.platform))] }
    else {
      const manifests = built.map((b) => ({
        mediaType: b.mediaType,
        digest: sha256(b.bytes),
        size: b.bytes.length,
        platform: b.entry.platform,
      }))
      const newIndex = { schemaVersion: 2, mediaType: index.mediaType ?? top.mediaType, manifests }
      put = { bytes: encode(newIndex), mediaType: top.mediaType, platforms: built.map((b) => b.platform ?? '') }
    }
  }
  await putManifest(o.client, final, put.bytes, put.mediaType)
  tally.bytesUploaded += put.bytes.length
  const seconds = (performance.now() - started) / 1000
  return { digest: sha256(put.bytes), mediaType: put.mediaType, platforms: put.platforms, seconds, ...tally }
}

/** One platform: blobs into place, new config, new manifest bytes (not yet pushed). */
async function assembleOne(
  o: AssembleOptions,
  base: ImageRef,
  final: ImageRef,
  manifest: Manifest,
  mediaType: string,
  tally: Tally,
  platform?: Platform,
): Promise<{ bytes: Uint8Array; mediaType: string; platform?: string }> {
  const oci = mediaType === MEDIA.ociManifest
  const config = json(await getBlob(o.client, repoOf(base), manifest.config.digest)) as ImageConfig
  const imagePlatform = platform ??
    {
      os: config.os ?? 'linux',
      architecture: config.architecture ?? 'amd64',
      ...(config.variant ? { variant: config.variant } : {}),
    }
  const layer = typeof o.layer === 'function' ? await o.layer(imagePlatform) : o.layer
  await pMap(manifest.layers.filter((l) => !l.urls?.length), async (l) => {
    const outcome = await placeOnce(o.client, repoOf(base), repoOf(final), l.digest)
    count(tally, outcome, l.size, `base layer ${l.digest.slice(7, 19)}`)
  }, { concurrency: o.concurrency ?? 8 })
  if (layer) await placeAgentLayer(o.client, layer, repoOf(final), tally)
  const created = o.created ?? '1970-01-01T00:00:00Z'
  const newConfig = encode(applySteps(config, o.steps, { created, layerDiffId: layer?.diffId }))
  if ((await uploadBlob(o.client, repoOf(final), newConfig)).uploaded) tally.bytesUploaded += newConfig.length
  const layerDescriptor = layer &&
    { mediaType: oci ? MEDIA.ociLayer : MEDIA.dockerLayer, digest: layer.digest, size: layer.size }
  const next: Manifest = {
    ...manifest,
    config: { ...manifest.config, digest: sha256(newConfig), size: newConfig.length },
    layers: layerDescriptor ? [...manifest.layers, layerDescriptor] : manifest.layers,
  }
  return { bytes: encode(next), mediaType, platform: formatPlatform(imagePlatform) }
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

/** PUT a manifest; a 400 (blob unknown while another process is still linking a shared blob) is retried twice. */
async function putManifest(client: RegistryClient, ref: ImageRef, bytes: Uint8Array, mediaType: string): Promise<void> {
  for (let attempt = 0;; attempt++) {
    try {
      return void (await client.putManifest(ref, bytes, mediaType))
    } catch (e) {
      if (!(e instanceof RegistryError && e.status === 400) || attempt >= 2) throw e
      await new Promise((r) => setTimeout(r, 250 * 2 ** attempt))
    }
  }
}

function count(tally: Tally, outcome: 'present' | 'mounted' | 'copied', size: number, what: string) {
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
