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

export const file = (path: string, data: string | Uint8Array, mode = 0o644): LayerFile => ({
  path,
  type: 'file',
  mode,
  uid: 0,
  gid: 0,
  data: typeof data === 'string' ? new TextEncoder().encode(data) : data,
})

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
