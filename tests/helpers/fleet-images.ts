// Images for the mirror and retention tests, pushed over the Registry v2 API (no daemon, fast): SWE-bench-shaped
// upstreams (a shared environment layer under a small layer of each instance's own), indexes the way buildx pushes
// them with provenance (one image per platform plus an attestation manifest per image), and files of a given size.
import fs from 'node:fs'
import { randomBytes } from 'node:crypto'
import type { LayerFile } from '../../lib/image/layer.ts'
import { sha256, uploadBlob } from '../../lib/registry/blobs.ts'
import { MEDIA, type RegistryClient } from '../../lib/registry/client.ts'
import { parseImageRef } from '../../lib/registry/ref.ts'
import { pushTestImage, type TestImage } from './registry-server.ts'
import { file } from './layer-files.ts'

/** Incompressible bytes (gzip cannot shrink them: the layer is as big on the wire as on disk). */
export const noise = (bytes: number) => new Uint8Array(randomBytes(bytes))

/** A static busybox and its sh, so an image made of it runs (`docker run IMAGE cat /instance/id`). */
export function busyboxLayer(): LayerFile[] {
  return [
    file('bin/busybox', fs.readFileSync('/bin/busybox'), 0o755),
    { path: 'bin/sh', type: 'symlink', mode: 0o777, uid: 0, gid: 0, linkname: 'busybox' },
    { path: 'bin/cat', type: 'symlink', mode: 0o777, uid: 0, gid: 0, linkname: 'busybox' },
  ]
}

const ATTESTATION = { 'vnd.docker.reference.type': 'attestation-manifest' }

/**
 * An index the way `buildx build --push` writes it with provenance: the image of each platform, and for each an
 * attestation manifest (platform unknown/unknown, annotated with the digest of the image it describes).
 * Resolves to the index digest and its children's digests (images first, then attestations).
 */
export async function pushAttestedIndex(
  client: RegistryClient,
  ref: string,
  images: Array<{ image: TestImage; platform: { os: string; architecture: string } }>,
): Promise<{ digest: string; images: string[]; attestations: string[] }> {
  const r = parseImageRef(ref)
  const attestations = []
  for (const { image } of images) {
    const statement = new TextEncoder().encode(
      JSON.stringify({ _type: 'https://in-toto.io/Statement/v0.1', subject: image.digest }),
    )
    await uploadBlob(client, r, statement)
    const config = new TextEncoder().encode(
      JSON.stringify({
        architecture: 'unknown',
        os: 'unknown',
        rootfs: { type: 'layers', diff_ids: [sha256(statement)] },
      }),
    )
    await uploadBlob(client, r, config)
    const manifest = new TextEncoder().encode(JSON.stringify({
      schemaVersion: 2,
      mediaType: MEDIA.ociManifest,
      config: { mediaType: MEDIA.ociConfig, digest: sha256(config), size: config.length },
      layers: [{ mediaType: 'application/vnd.in-toto+json', digest: sha256(statement), size: statement.length }],
    }))
    await client.putManifest({ ...r, tag: undefined, digest: sha256(manifest) }, manifest, MEDIA.ociManifest)
    attestations.push({ digest: sha256(manifest), size: manifest.length, subject: image.digest })
  }
  const index = new TextEncoder().encode(JSON.stringify({
    schemaVersion: 2,
    mediaType: MEDIA.ociIndex,
    manifests: [
      ...images.map(({ image, platform }) => ({
        mediaType: image.mediaType,
        digest: image.digest,
        size: image.manifest.length,
        platform,
      })),
      ...attestations.map((a) => ({
        mediaType: MEDIA.ociManifest,
        digest: a.digest,
        size: a.size,
        platform: { os: 'unknown', architecture: 'unknown' },
        annotations: { ...ATTESTATION, 'vnd.docker.reference.digest': a.subject },
      })),
    ],
  }))
  await client.putManifest(r, index, MEDIA.ociIndex)
  return {
    digest: sha256(index),
    images: images.map((i) => i.image.digest),
    attestations: attestations.map((a) => a.digest),
  }
}

/** A SWE-bench-shaped upstream: the group's environment layer, then the instance's own id and a layer of its own. */
export function upstreamImage(
  client: RegistryClient,
  ref: string,
  o: {
    env: LayerFile[]
    id: string
    ownBytes?: number
    oci?: boolean
    platform?: { os: string; architecture: string }
  },
): Promise<TestImage> {
  const own = [file('instance/id', o.id), ...(o.ownBytes ? [file('instance/blob', noise(o.ownBytes))] : [])]
  return pushTestImage(client, ref, { layers: [o.env, own], oci: o.oci, platform: o.platform })
}

export type KeyedFleet = {
  /** oldest first */
  keys: string[]
  dockerIds: string[]
  /** repository → tag → digest, for every tag pushed */
  tags: Map<string, Map<string, string>>
  /** repository:tag of an attested base → the digests its index refers to (its image, its attestation) */
  children: Map<string, string[]>
  /** an old key's tag on the very manifest of a kept key's tag (what deleting it by digest would take along) */
  shared: { repository: string; oldTag: string; keptTag: string }
  /** mirror images: one every base is built FROM, one no base is */
  mirrors: { used: string; unused: string }
}

/**
 * A fleet of several keys the way the pipeline leaves it in a registry, pushed over the API: per key a builder
 * (its config `created` says when the key was built), and per instance a base (FROM the instance's upstream: busybox,
 * its group's environment, its own layer; with `attested`, an index with an attestation manifest as buildx pushes
 * with provenance) and a final image (the base plus the key's agent). Every image runs (`cat /instance/id`).
 */
export async function pushKeyedFleet(
  client: RegistryClient,
  prefix: string,
  o: { keys: Array<{ key: string; created: string; attested: boolean }>; instances: number; groups: number },
): Promise<KeyedFleet> {
  const fleet: KeyedFleet = {
    keys: o.keys.map((k) => k.key),
    dockerIds: Array.from({ length: o.instances }, (_, i) => `org${i % o.groups}_1776_proj-${100 + i}`),
    tags: new Map(),
    children: new Map(),
    shared: { repository: `${prefixPath(prefix)}/eval-agent`, oldTag: '', keptTag: '' },
    mirrors: { used: '', unused: '' },
  }
  const note = (ref: string, digest: string) => {
    const r = parseImageRef(ref)
    if (!fleet.tags.has(r.repository)) fleet.tags.set(r.repository, new Map())
    fleet.tags.get(r.repository)!.set(r.tag!, digest)
  }
  const busybox = busyboxLayer()
  const envOf = (i: number) => [file('env/group', `group ${i % o.groups}`), file('env/blob', noise(4096))]
  const envs = Array.from({ length: o.groups }, (_, g) => envOf(g))
  const upstream = (i: number) => [busybox, envs[i % o.groups], [file('instance/id', fleet.dockerIds[i])]]
  for (const { key, created, attested } of o.keys) {
    const builder = `${prefix}/eval-builder:${key}`
    const agent = [file('opt/agent/VERSION', `agent ${key}`)]
    note(builder, (await pushTestImage(client, builder, { layers: [busybox, agent], created })).digest)
    for (const [i, id] of fleet.dockerIds.entries()) {
      const layers = [...upstream(i), [file('etc/imagefleet-base', key)]]
      const base = `${prefix}/eval-base:${key}-${id}`
      if (attested) {
        // the image first under the tag, then the index over it: the tag moves, the image stays (the index needs it)
        const image = await pushTestImage(client, base, { layers, oci: true, created })
        const index = await pushAttestedIndex(client, base, [{
          image,
          platform: { os: 'linux', architecture: 'amd64' },
        }])
        note(base, index.digest)
        fleet.children.set(`${parseImageRef(base).repository}:${key}-${id}`, [...index.images, ...index.attestations])
      } else note(base, (await pushTestImage(client, base, { layers, created })).digest)
      const final = `${prefix}/eval-agent:${key}-${id}`
      note(final, (await pushTestImage(client, final, { layers: [...layers, agent], created })).digest)
    }
  }
  // an old key's final that is byte for byte a kept key's: one manifest, two tags
  const [old, kept] = [o.keys.at(-2)!.key, o.keys.at(-1)!.key]
  const id = fleet.dockerIds[0]
  const same = await client.getManifest(`${prefix}/eval-agent:${kept}-${id}`)
  await client.putManifest(parseImageRef(`${prefix}/eval-agent:${old}-${id}`), same.bytes, same.mediaType)
  note(`${prefix}/eval-agent:${old}-${id}`, same.digest!)
  fleet.shared = { ...fleet.shared, oldTag: `${old}-${id}`, keptTag: `${kept}-${id}` }
  fleet.mirrors = { used: `${prefix}/mirror/up/${id}:latest`, unused: `${prefix}/mirror/up/gone:latest` }
  note(fleet.mirrors.used, (await pushTestImage(client, fleet.mirrors.used, { layers: upstream(0) })).digest)
  const gone = [busybox, [file('env/group', 'an environment no base uses')]]
  note(fleet.mirrors.unused, (await pushTestImage(client, fleet.mirrors.unused, { layers: gone })).digest)
  return fleet
}

const prefixPath = (prefix: string) => parseImageRef(`${prefix}/x`).repository.replace(/\/x$/, '')
