// Mirroring an image from its upstream registry into the fleet's: manifests and blobs copied over the Registry v2
// API, each blob streamed from the source into the target through this process (blobs.ts ensureBlob: nothing
// written to disk, its digest checked as it passes), mounted instead when both are on one registry, and skipped
// when the target has it. Manifests are written only after every blob they name is there, children before the
// index, the tag last: a failure part way leaves no manifest behind.
//
// What lands under the mirror tag:
//   - an upstream image manifest: the same bytes (same digest);
//   - an upstream index with allPlatforms: the whole index, every child (attestation manifests included), same digest;
//   - an upstream index, one platform: that platform's manifest (same bytes, by digest) under a one-entry OCI index
//     that names the upstream digest and platform it came from (MIRROR_SOURCE, MIRROR_PLATFORM), so a rerun can tell
//     with two HEADs and one GET on the mirror — no GET on the upstream, which Docker Hub counts as a pull.
import pMap from 'p-map'
import { blobExists, copyBlob, type CopyOutcome, ensureBlob, mountBlob, sha256, startUpload } from './blobs.ts'
import { MANIFEST_ACCEPT, MEDIA, type RegistryClient, RegistryError, type Repo } from './client.ts'
import {
  type Descriptor,
  encode,
  formatPlatform,
  type Index,
  isIndex,
  json,
  type Manifest,
  matches,
  type Platform,
  platformEntries,
  repoOf,
} from './image.ts'
import { type Allowance, readAllowance } from './pull-budget.ts'
import { formatImageRef, type ImageRef, parseImageRef, refReference } from './ref.ts'

/** Annotations of a one-platform mirror index: the upstream reference@digest it was copied from, and the platform. */
export const MIRROR_SOURCE = 'io.imagefleet.mirror.source'
export const MIRROR_PLATFORM = 'io.imagefleet.mirror.platform'

/**
 * `PREFIX/mirror/<upstream path>:<tag>`, the upstream's registry host dropped:
 * `docker.io/swebench/x:latest` → `PREFIX/mirror/swebench/x:latest`, `ubuntu:22.04` → `PREFIX/mirror/library/ubuntu:22.04`.
 * An upstream pinned by digest alone is mirrored under the tag `sha256-<hex>`.
 */
export function mirrorRef(upstream: string, prefix: string): string {
  const up = parseImageRef(upstream)
  const tag = up.tag ?? (up.digest ? up.digest.replace(':', '-') : 'latest')
  return `${prefix.replace(/\/+$/, '')}/mirror/${up.repository}:${tag}`
}

/** What the target holds for one upstream: already the same image, or not (and why). */
export type MirrorCheck = {
  present: boolean
  why: string
  /** the upstream's digest from its HEAD (undefined when the registry sent none) */
  sourceDigest?: string
  /** the upstream registry's pull allowance, from the same HEAD */
  allowance?: Allowance
}

type Head = { digest?: string; mediaType: string; headers: Headers }

/** HEAD of a manifest: its digest and media type (undefined for 404). Free on Docker Hub. */
async function headManifest(client: RegistryClient, ref: ImageRef): Promise<Head | undefined> {
  const res = await client.send(ref, 'pull', `/v2/${ref.repository}/manifests/${refReference(ref)}`, {
    method: 'HEAD',
    headers: { accept: MANIFEST_ACCEPT },
  })
  await res.body?.cancel()
  if (res.status === 404) return undefined
  if (res.status !== 200) throw await client.statusError(res, `HEAD manifest ${ref.repository}:${refReference(ref)}`)
  const mediaType = (res.headers.get('content-type') ?? '').split(';')[0].trim()
  return { digest: res.headers.get('docker-content-digest') ?? undefined, mediaType, headers: res.headers }
}

/**
 * Is the upstream already mirrored? Two HEADs (and a GET of the mirror's own index when it is a one-platform copy);
 * no GET on the upstream. `platform`: the one platform asked for; undefined: all of them (only the same digest will
 * do). A missing upstream throws a 404 RegistryError (the run records it as upstream_missing).
 */
export async function checkMirror(
  client: RegistryClient,
  source: ImageRef,
  target: ImageRef,
  platform?: Platform,
): Promise<MirrorCheck> {
  const src = await headManifest(client, source)
  if (!src) {
    throw new RegistryError(
      `HEAD manifest ${formatImageRef(source)}: registry answered 404 (no such manifest)`,
      'protocol',
      404,
    )
  }
  const facts = { sourceDigest: src.digest, allowance: readAllowance(src.headers) }
  const tgt = await headManifest(client, target)
  if (!tgt) return { present: false, why: 'not mirrored yet', ...facts }
  if (src.digest && tgt.digest === src.digest) return { present: true, why: 'the mirror has the same digest', ...facts }
  if (src.digest && platform && isIndex(tgt.mediaType)) {
    const notes = (json((await client.getManifest(target)).bytes) as Index).annotations as Record<string, string>
    const samePlatform = notes?.[MIRROR_PLATFORM] === formatPlatform(platform)
    if (notes?.[MIRROR_SOURCE]?.endsWith(`@${src.digest}`) && samePlatform) {
      return { present: true, why: `mirrored from the same upstream digest (${notes[MIRROR_PLATFORM]})`, ...facts }
    }
  }
  return { present: false, why: 'the upstream changed since it was mirrored (or another platform was asked)', ...facts }
}

export type MirrorResult = {
  /** digest of what the mirror tag now points at */
  digest: string
  /** manifests written (children and the tagged one) */
  manifests: number
  blobs: Record<CopyOutcome, number>
  /** bytes of the blobs streamed through this process (those copied, not mounted or present) */
  bytesCopied: number
  /** manifest GETs made on the upstream (what Docker Hub counts: up to two make one pull) */
  manifestGets: number
  platforms: string[]
}

export type CopyImageOptions = {
  /** one platform out of an index (default: linux/amd64); ignored with allPlatforms */
  platform?: Platform
  /** the whole index, every child, attestations included */
  allPlatforms?: boolean
  /** blobs copied at once for this image (default 4) */
  blobConcurrency?: number
  /** the run's record of where blobs already are in the target registry (one per run, shared by every image) */
  landed?: Landed
}

/**
 * Where each blob already is in the target registry during a run. SWE-bench images share their environment layers
 * and each image is its own repository: a blob copied once is mounted into every other mirror repository, never
 * streamed again. Two images wanting the same blob at once: the second waits for the first, then mounts.
 */
export class Landed {
  private readonly at = new Map<string, Promise<Repo>>()

  async ensure(client: RegistryClient, from: Repo, to: Repo, digest: string): Promise<CopyOutcome> {
    const key = `${to.registry} ${digest}`
    const earlier = this.at.get(key)
    const there = earlier && await earlier.catch(() => undefined)
    if (there && there.repository !== to.repository) return mountOrCopy(client, from, to, digest, there)
    const attempt = ensureBlob(client, from, to, digest)
    if (!there) {
      const landed = attempt.then(() => to)
      landed.catch(() => {}) // a failed copy is its image's failure; the next image wanting the blob tries again
      this.at.set(key, landed)
    }
    return attempt
  }
}

/** Present in `to` → 'present'; mounted from `there` (same registry) → 'mounted'; a declined mount → streamed. */
async function mountOrCopy(client: RegistryClient, from: Repo, to: Repo, digest: string, there: Repo) {
  if ((await blobExists(client, to, digest)) !== undefined) return 'present'
  const mount = await mountBlob(client, to, digest, there)
  if (mount.mounted) return 'mounted'
  await copyBlob(client, from, to, digest, mount.location ?? (await startUpload(client, to)))
  return 'copied'
}

type Fetched = { digest: string; bytes: Uint8Array; mediaType: string }

/** Copies one upstream image (or index) under the mirror tag; see the file header for what lands there. */
export async function copyImage(
  client: RegistryClient,
  source: ImageRef,
  target: ImageRef,
  o: CopyImageOptions = {},
): Promise<MirrorResult> {
  const top = await fetchManifest(client, source)
  let gets = 1
  let images: Fetched[] = [top]
  let tagged: Fetched = top
  let entries: Descriptor[] = []
  if (isIndex(top.mediaType)) {
    const index = json(top.bytes) as Index
    entries = o.allPlatforms ? index.manifests : [pickPlatform(index, source, o.platform)]
    images = await pMap(entries, (e) => fetchManifest(client, { ...source, tag: undefined, digest: e.digest }), {
      concurrency: 4,
    })
    gets += entries.length
    tagged = o.allPlatforms ? top : oneEntryIndex(entries[0], source, top.digest, o.platform)
  }
  const blobs = uniqueBlobs(images.map((i) => json(i.bytes) as Manifest))
  const outcomes = await pMap(blobs, async (d) => {
    try {
      const ensure = o.landed ? o.landed.ensure.bind(o.landed) : ensureBlob
      return { d, outcome: await ensure(client, repoOf(source), repoOf(target), d.digest) }
    } catch (e) {
      throw describeBlobFailure(e, d, source, target)
    }
  }, { concurrency: o.blobConcurrency ?? 4 })
  const children = images.filter((i) => i !== tagged)
  for (const child of children) {
    await client.putManifest({ ...target, tag: undefined, digest: child.digest }, child.bytes, child.mediaType)
  }
  await client.putManifest(target, tagged.bytes, tagged.mediaType)
  const count = (k: CopyOutcome) => outcomes.filter((x) => x.outcome === k).length
  return {
    digest: tagged.digest,
    manifests: children.length + 1,
    blobs: { copied: count('copied'), mounted: count('mounted'), present: count('present') },
    bytesCopied: outcomes.filter((x) => x.outcome === 'copied').reduce((n, x) => n + x.d.size, 0),
    manifestGets: gets,
    platforms: entries.flatMap((e) => (e.platform && e.platform.os !== 'unknown' ? [formatPlatform(e.platform)] : [])),
  }
}

/** GETs a manifest; one asked by digest must hash to it (a registry or proxy serving other bytes is an error). */
async function fetchManifest(client: RegistryClient, ref: ImageRef): Promise<Fetched> {
  const got = await client.getManifest(ref)
  const digest = sha256(got.bytes)
  if (ref.digest && ref.digest.startsWith('sha256:') && digest !== ref.digest) {
    throw new RegistryError(`manifest ${formatImageRef(ref)} arrived with digest ${digest}`, 'protocol')
  }
  return { digest, bytes: got.bytes, mediaType: got.mediaType }
}

function pickPlatform(index: Index, source: ImageRef, platform: Platform = LINUX_AMD64): Descriptor {
  const entry = platformEntries(index).find((m) => matches(platform, m.platform))
  if (!entry) {
    const have = platformEntries(index).map((m) => (m.platform ? formatPlatform(m.platform) : '?')).join(', ')
    throw new RegistryError(
      `${formatImageRef(source)} has no ${formatPlatform(platform)} image (it has: ${have || 'none'})`,
      'unsupported',
    )
  }
  return entry
}
const LINUX_AMD64: Platform = { os: 'linux', architecture: 'amd64' }

/** The one-platform mirror: an OCI index of that platform's manifest, naming the upstream digest it came from. */
function oneEntryIndex(entry: Descriptor, source: ImageRef, sourceDigest: string, platform = LINUX_AMD64): Fetched {
  const index = {
    schemaVersion: 2,
    mediaType: MEDIA.ociIndex,
    manifests: [entry],
    annotations: {
      [MIRROR_SOURCE]: `${formatImageRef({ ...source, digest: undefined })}@${sourceDigest}`,
      [MIRROR_PLATFORM]: formatPlatform(platform),
    },
  }
  const bytes = encode(index)
  return { digest: sha256(bytes), bytes, mediaType: MEDIA.ociIndex }
}

/** Config and layers of every manifest, each digest once; foreign layers (with `urls`) are not the registry's to copy. */
function uniqueBlobs(manifests: Manifest[]): Descriptor[] {
  const byDigest = new Map<string, Descriptor>()
  for (const m of manifests) {
    for (const d of [m.config, ...m.layers]) if (!d.urls?.length && !byDigest.has(d.digest)) byDigest.set(d.digest, d)
  }
  return [...byDigest.values()]
}

/** A blob that could not be copied, said with the image, the blob and what is left behind (nothing). */
function describeBlobFailure(e: unknown, d: Descriptor, source: ImageRef, target: ImageRef): unknown {
  if (!(e instanceof RegistryError)) return e
  const mismatch = /arrived as/.test(e.message)
  const what = mismatch
    ? `the upstream served blob ${d.digest} (${d.size} bytes) with bytes of another digest: ${e.message}`
    : `blob ${d.digest}: ${e.message}`
  return new RegistryError(
    `mirror ${formatImageRef(source)} → ${formatImageRef(target)}: ${what}; no manifest was written`,
    e.errorClass,
    e.status,
    e.code,
  )
}
