// Registry retention: keep the newest N keys of a fleet, delete the tags of the older ones, then every manifest that
// nothing kept refers to. A key is the KEY of eval-builder:KEY, eval-base:KEY-DOCKER_ID, eval-agent:KEY-DOCKER_ID.
//
// Which keys are newest: the `created` time of each key's builder image config (eval-builder:KEY is built first, once,
// when its key first builds; docker and buildx write the build time there). A key without a builder image (what an
// earlier retention left of it: a tag on a kept manifest) counts as older than every key with one, ordered by its
// first image's config. Keys with the same time on both sides of the cut (builds with SOURCE_DATE_EPOCH write one
// fixed time) are refused: nothing is deleted.
// Never deleted: a manifest a kept tag points at, or that a kept index refers to (its platform images and attestation
// manifests), or whose OCI `subject` is kept; any repository outside the fleet's own (PREFIX/eval-builder,
// PREFIX/eval-base, PREFIX/eval-agent, and with `mirror` PREFIX/mirror/…); an untagged manifest pushed within the
// hour (a push in progress writes its children before the tag that refers to them).
// A back end lists and deletes (the Registry HTTP API, registry.ts; GitHub Packages, ghcr.ts);
// manifests and configs are read over the Registry v2 API with either.
import pMap from 'p-map'
import type { RegistryClient } from '../registry/client.ts'
import { parseImageRef } from '../registry/ref.ts'
import { keyReader, orderKeys, RetentionError } from './keys.ts'
import { type Doc, type Reader, reader } from './read.ts'

export { RetentionError }

/** One manifest in a repository with the tags on it; GHCR adds its package version id and push time. */
export type Version = { repository: string; digest: string; tags: string[]; id?: number; createdAt?: string }

export interface RetentionBackend {
  readonly kind: 'registry' | 'ghcr'
  /** untagged manifests can be listed (GitHub Packages: yes; the Registry HTTP API lists tags only) */
  readonly listsUntagged: boolean
  /** what must still run before the registry frees the bytes */
  readonly gc: string
  /** every version in a repository ([] when it does not exist) */
  versions(repository: string): Promise<Version[]>
  /** the repositories whose path starts with `under` */
  repositories(under: string): Promise<string[]>
  /** deletes one manifest (and every tag on it) */
  remove(v: Version): Promise<void>
}

export type RetentionOptions = {
  client: RegistryClient
  backend: RetentionBackend
  /** the fleet's prefix, `host/path` as given to --registry */
  prefix: string
  keepKeys: number
  /** also PREFIX/mirror/…: a mirror image no kept base is built FROM goes */
  mirror?: boolean
  now?: number
}

/** A manifest to delete, why, and the version the back end deletes it by (when it lists it). */
export type Doomed = { repository: string; digest: string; tags: string[]; why: string; version?: Version }
export type RetentionPlan = {
  keys: Array<{ key: string; created?: string; keep: boolean }>
  /** tags that go with their manifests */
  tags: Array<{ repository: string; tag: string; digest: string }>
  /** every manifest to delete, each index before the manifests it refers to */
  manifests: Doomed[]
  /** old tags and untagged manifests that stay, and why */
  held: Array<{ repository: string; what: string; why: string }>
  /** blob bytes only deleted manifests refer to (of those read): what the registry's GC may free */
  bytes: number
  notes: string[]
}

/** An untagged manifest younger than this may belong to a push in progress. */
const YOUNG_MS = 60 * 60 * 1000
const KEYED = ['eval-builder', 'eval-base', 'eval-agent'] as const

/** The fleet's repositories and the test every deletion passes: inside them, nowhere else. */
export function fleetRepositories(prefix: string) {
  const base = parseImageRef(`${prefix.replace(/\/+$/, '')}/eval-base`)
  const path = base.repository.replace(/\/?eval-base$/, '')
  const join = (name: string) => (path ? `${path}/${name}` : name)
  const keyed = KEYED.map(join)
  const mirrorUnder = join('mirror/')
  return {
    registry: base.registry,
    path,
    builder: keyed[0],
    keyed,
    mirrorUnder,
    owns: (repository: string) => keyed.includes(repository) || repository.startsWith(mirrorUnder),
  }
}

export async function planRetention(o: RetentionOptions): Promise<RetentionPlan> {
  const fleet = fleetRepositories(o.prefix)
  const read = reader(o.client, fleet.registry)
  const mirrors = o.mirror ? await o.backend.repositories(fleet.mirrorUnder) : []
  const repos = [...fleet.keyed, ...mirrors.filter(fleet.owns)]
  const versions = new Map(
    await pMap(repos, async (r) => [r, await o.backend.versions(r)] as const, { concurrency: 8 }),
  )
  const keys = await orderKeys(fleet, versions, read, o.keepKeys)
  const kept = new Set(keys.filter((k) => k.keep).map((k) => k.key))
  const plan: RetentionPlan = { keys, tags: [], manifests: [], held: [], bytes: 0, notes: [] }
  const keyOf = keyReader(keys.map((k) => k.key), fleet.builder)
  const keep = (v: Version) => v.tags.some((t) => kept.has(keyOf(v.repository, t)))
  // every manifest read once, 16 at a time; the passes below find them read (they go in order: indexes before children)
  const all = repos.flatMap((r) => versions.get(r)!.map((v) => [r, v.digest] as const))
  await pMap(all, ([r, digest]) => read.doc(r, digest), { concurrency: 16 })
  const guard = new Protected(read)
  for (const r of fleet.keyed) for (const v of versions.get(r)!) if (keep(v)) await guard.add(r, v.digest)
  for (const r of mirrors) {
    for (const v of versions.get(r)!) {
      if (v.tags.length && await mirrorUsed(r, v.digest, guard, read)) await guard.add(r, v.digest)
    }
  }
  for (const r of repos) {
    for (const v of versions.get(r)!) await guard.addReferrer(r, v)
    for (const v of versions.get(r)!.filter((v) => v.tags.length)) await doomTagged(r, v, plan, guard, read, versions)
    for (const v of versions.get(r)!.filter((v) => !v.tags.length)) doomUntagged(r, v, plan, guard, o.now ?? Date.now())
  }
  plan.bytes = await freedBytes(plan.manifests, guard, read)
  if (!o.backend.listsUntagged) {
    plan.notes.push(
      'the Registry HTTP API lists tags only: untagged manifests other than those the deleted indexes refer to cannot be found, and stay',
    )
  }
  return plan
}

/** Manifests kept (by digest, per repository), with what kept image manifests refer to (for the mirror and bytes). */
class Protected {
  readonly digests = new Set<string>()
  readonly images: Doc[] = []
  constructor(private readonly read: Reader) {}
  has = (repository: string, digest: string) => this.digests.has(`${repository}@${digest}`)
  async add(repository: string, digest: string): Promise<void> {
    if (this.has(repository, digest)) return
    this.digests.add(`${repository}@${digest}`)
    const doc = await this.read.doc(repository, digest)
    if (doc.layers) this.images.push(doc)
    for (const child of doc.manifests ?? []) await this.add(repository, child.digest)
  }
  /** An untagged manifest whose OCI subject is kept (a signature, an SBOM) is kept with it. */
  async addReferrer(repository: string, v: Version): Promise<void> {
    if (v.tags.length || this.has(repository, v.digest)) return
    const subject = (await this.read.doc(repository, v.digest)).subject
    if (subject && this.has(repository, subject.digest)) await this.add(repository, v.digest)
  }
}

/** A mirror image is used when its layers begin some kept base image (the base was built FROM it). */
async function mirrorUsed(repository: string, digest: string, guard: Protected, read: Reader): Promise<boolean> {
  const doc = await read.doc(repository, digest)
  const images = doc.layers
    ? [doc]
    : await Promise.all((doc.manifests ?? []).map((m) => read.doc(repository, m.digest)))
  return images.some((img) =>
    img.layers?.length && guard.images.some((b) => img.layers!.every((l, i) => b.layers?.[i]?.digest === l.digest))
  )
}

/** A tagged manifest none of whose tags is kept goes, with what it refers to that nothing kept refers to. */
async function doomTagged(
  repository: string,
  v: Version,
  plan: RetentionPlan,
  guard: Protected,
  read: Reader,
  versions: Map<string, Version[]>,
) {
  const mirror = repository.includes('/mirror/') || repository.startsWith('mirror/')
  if (guard.has(repository, v.digest)) {
    for (const tag of mirror ? [] : v.tags) {
      if (!plan.keys.some((k) => k.keep && (tag === k.key || tag.startsWith(`${k.key}-`)))) {
        plan.held.push({
          repository,
          what: `:${tag}`,
          why: 'its manifest is also a kept one (deleting it deletes that)',
        })
      }
    }
    return
  }
  plan.tags.push(...v.tags.map((tag) => ({ repository, tag, digest: v.digest })))
  const why = mirror ? `mirror image no kept base is built FROM (:${v.tags.join(', :')})` : 'a tag of an older key'
  doom(plan, { repository, digest: v.digest, tags: v.tags, why, version: v })
  for (const child of (await read.doc(repository, v.digest)).manifests ?? []) {
    if (guard.has(repository, child.digest)) continue
    const listed = listedBy(versions, repository).get(child.digest)
    const kind = child.annotations?.['vnd.docker.reference.type'] === 'attestation-manifest' ? 'attestation' : 'image'
    doom(plan, {
      repository,
      digest: child.digest,
      tags: [],
      why: `${kind} in the index of :${v.tags[0]}`,
      version: listed,
    })
  }
}

function doomUntagged(repository: string, v: Version, plan: RetentionPlan, guard: Protected, now: number) {
  if (guard.has(repository, v.digest) || doomedIn(plan).has(`${repository}@${v.digest}`)) return
  if (v.createdAt && now - Date.parse(v.createdAt) < YOUNG_MS) {
    return void plan.held.push({
      repository,
      what: `@${v.digest}`,
      why: 'untagged, pushed within the hour (a push in progress?)',
    })
  }
  doom(plan, { repository, digest: v.digest, tags: [], why: 'untagged: no kept tag or index refers to it', version: v })
}

function doom(plan: RetentionPlan, d: Doomed) {
  const same = doomedIn(plan).get(`${d.repository}@${d.digest}`)
  if (same) return void (same.version ??= d.version)
  plan.manifests.push(d)
  doomedIn(plan).set(`${d.repository}@${d.digest}`, d)
}

// lookups by digest (a fleet's registry holds 100k+ tags: no scanning lists per manifest)
const doomedIndex = new WeakMap<RetentionPlan, Map<string, Doomed>>()
const doomedIn = (plan: RetentionPlan) => {
  if (!doomedIndex.has(plan)) doomedIndex.set(plan, new Map())
  return doomedIndex.get(plan)!
}
const listedIndex = new WeakMap<Map<string, Version[]>, Map<string, Map<string, Version>>>()
function listedBy(versions: Map<string, Version[]>, repository: string): Map<string, Version> {
  if (!listedIndex.has(versions)) listedIndex.set(versions, new Map())
  const byRepo = listedIndex.get(versions)!
  if (!byRepo.has(repository)) byRepo.set(repository, new Map(versions.get(repository)!.map((v) => [v.digest, v])))
  return byRepo.get(repository)!
}

/** Bytes of the blobs that deleted image manifests refer to and no kept one does (each blob once). */
async function freedBytes(doomed: Doomed[], guard: Protected, read: Reader): Promise<number> {
  const keptBlobs = new Set(guard.images.flatMap((d) => [d.config!, ...d.layers!].map((b) => b.digest)))
  const gone = new Map<string, number>()
  for (const d of doomed) {
    const doc = await read.doc(d.repository, d.digest)
    for (const b of doc.layers ? [doc.config!, ...doc.layers] : []) {
      if (!keptBlobs.has(b.digest)) gone.set(b.digest, b.size)
    }
  }
  return [...gone.values()].reduce((a, b) => a + b, 0)
}

/** Deletes the plan's manifests: each index before what it refers to, 8 indexes at a time; every one checked to be the fleet's. */
export async function applyRetention(
  plan: RetentionPlan,
  o: Pick<RetentionOptions, 'backend' | 'prefix'>,
): Promise<{ deleted: Doomed[]; failed: Array<{ item: Doomed; error: string }> }> {
  const fleet = fleetRepositories(o.prefix)
  const units: Doomed[][] = [] // an index and the manifests it refers to, in that order
  for (const d of plan.manifests) {
    if (units.length && d.why.includes(' in the index of ')) units.at(-1)!.push(d)
    else units.push([d])
  }
  const deleted: Doomed[] = []
  const failed: Array<{ item: Doomed; error: string }> = []
  await pMap(units, async (unit) => {
    for (const item of unit) {
      if (!fleet.owns(item.repository)) {
        throw new RetentionError(`refusing to delete outside the fleet: ${item.repository}`)
      }
      try {
        await o.backend.remove(item.version ?? { repository: item.repository, digest: item.digest, tags: item.tags })
        deleted.push(item)
      } catch (e) {
        failed.push({ item, error: (e as Error).message })
      }
    }
  }, { concurrency: 8 })
  return { deleted, failed }
}
