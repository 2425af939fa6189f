// Reading images from a registry: manifests, indexes and platforms (a reference resolved down to one image
// manifest), and an image's size from its manifest. No layer is downloaded. A manifest fetched by digest is checked
// against that digest; asked to, a single-platform image is checked against the platform wanted (its config says).
import { getBlob, sha256 } from './blobs.ts'
import { MEDIA, type RegistryClient, RegistryError, type Repo } from './client.ts'
import { type ImageRef, parseImageRef } from './ref.ts'

export type Platform = { os: string; architecture: string; variant?: string }
export type Descriptor = {
  mediaType: string
  digest: string
  size: number
  platform?: Platform
  urls?: string[]
  annotations?: Record<string, string>
}
export type Manifest = {
  schemaVersion: number
  mediaType?: string
  config: Descriptor
  layers: Descriptor[]
  [k: string]: unknown
}
export type Index = { schemaVersion: number; mediaType?: string; manifests: Descriptor[]; [k: string]: unknown }

export const json = (bytes: Uint8Array) => JSON.parse(new TextDecoder().decode(bytes))
export const encode = (value: unknown) => new TextEncoder().encode(JSON.stringify(value))
export const isIndex = (mediaType: string) => mediaType === MEDIA.ociIndex || mediaType === MEDIA.dockerList
export const repoOf = (ref: ImageRef): Repo => ({ registry: ref.registry, repository: ref.repository })

export function parsePlatform(p: Platform | string): Platform {
  if (typeof p !== 'string') return p
  const [os, architecture, variant] = p.split('/')
  if (!os || !architecture) throw new Error(`platform '${p}' is not os/arch[/variant]`)
  return { os, architecture, ...(variant ? { variant } : {}) }
}
export const formatPlatform = (p: Platform) => [p.os, p.architecture, p.variant].filter(Boolean).join('/')
const hostPlatform = (): Platform => ({
  os: 'linux',
  architecture:
    ({ x64: 'amd64', arm64: 'arm64', arm: 'arm', ppc64: 'ppc64le', s390x: 's390x' } as Record<string, string>)[
      process.arch
    ] ?? process.arch,
})

export function matches(want: Platform, have?: Platform): boolean {
  if (!have || have.os !== want.os || have.architecture !== want.architecture) return false
  const norm = (v?: string) => (want.architecture === 'arm64' ? v ?? 'v8' : v)
  return !want.variant || norm(want.variant) === norm(have.variant)
}

/** Platform entries of an index, without attestation manifests (unknown/unknown). */
export const platformEntries = (index: Index) =>
  index.manifests.filter((m) =>
    m.annotations?.['vnd.docker.reference.type'] !== 'attestation-manifest' && m.platform?.os !== 'unknown'
  )

/** GETs a manifest; one asked for by digest must hash to that digest (a registry or proxy cannot swap it). */
export async function getManifestChecked(client: RegistryClient, ref: ImageRef) {
  const got = await client.getManifest(ref)
  if (ref.digest?.startsWith('sha256:') && sha256(got.bytes) !== ref.digest) {
    throw new RegistryError(
      `manifest ${ref.repository}@${ref.digest} arrived with digest ${sha256(got.bytes)}`,
      'protocol',
    )
  }
  return got
}

/** The platform an image config says it is for. */
export const platformOf = (config: { os?: string; architecture?: string; variant?: string }): Platform => ({
  os: config.os ?? 'linux',
  architecture: config.architecture ?? 'amd64',
  ...(config.variant ? { variant: config.variant } : {}),
})

/** An image is not for the platform asked for: its layers would put the wrong binaries in the result. */
export class PlatformMismatch extends Error {}

export type ResolvedImage = { manifest: Manifest; mediaType: string; digest: string; bytes: Uint8Array }

/**
 * Reads a reference down to one image manifest, picking `platform` out of an index (default: this machine's).
 * With `checkSingle`, a single-platform image is checked against `platform` by reading its config.
 */
export async function resolveImage(
  client: RegistryClient,
  ref: ImageRef,
  platform?: Platform,
  options: { checkSingle?: boolean } = {},
): Promise<ResolvedImage> {
  const top = await getManifestChecked(client, ref)
  const topDigest = ref.digest ?? top.digest ?? sha256(top.bytes)
  if (!isIndex(top.mediaType)) {
    const manifest = json(top.bytes) as Manifest
    if (platform && options.checkSingle) {
      const have = platformOf(json(await getBlob(client, repoOf(ref), manifest.config.digest)))
      if (!matches(platform, have)) {
        throw new PlatformMismatch(
          `${ref.repository}@${topDigest} is for ${formatPlatform(have)}, not ${formatPlatform(platform)}`,
        )
      }
    }
    return { manifest, mediaType: top.mediaType, digest: topDigest, bytes: top.bytes }
  }
  const want = platform ?? hostPlatform()
  const entry = platformEntries(json(top.bytes) as Index).find((m) => matches(want, m.platform))
  if (!entry) throw new PlatformMismatch(`${ref.repository}@${topDigest} has no ${formatPlatform(want)} image`)
  const one = await getManifestChecked(client, { ...ref, tag: undefined, digest: entry.digest })
  return { manifest: json(one.bytes) as Manifest, mediaType: one.mediaType, digest: entry.digest, bytes: one.bytes }
}

export async function compressedImageBytes(
  client: RegistryClient,
  ref: string,
  platform = 'linux/amd64',
): Promise<number> {
  return (await imageLayers(client, ref, platform)).reduce((sum, l) => sum + l.size, 0)
}

/** The image's layers (digest and compressed size), from its manifest (an index resolves to `platform`). */
export async function imageLayers(
  client: RegistryClient,
  ref: string,
  platform = 'linux/amd64',
): Promise<Array<{ digest: string; size: number }>> {
  const image = await resolveImage(client, parseImageRef(ref), parsePlatform(platform))
  return image.manifest.layers.map((l) => ({ digest: l.digest, size: l.size }))
}
