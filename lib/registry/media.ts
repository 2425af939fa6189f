// The media types this client reads and writes, and the check that a manifest the registry sent is an index or an
// image manifest (config + layers) — anything else is a clear `unsupported` error, never a TypeError later.
import { RegistryError } from './http.ts'

export const MEDIA = {
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  dockerConfig: 'application/vnd.docker.container.image.v1+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  dockerLayer: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
  ociLayer: 'application/vnd.oci.image.layer.v1.tar+gzip',
} as const
export const MANIFEST_ACCEPT = [MEDIA.dockerManifest, MEDIA.dockerList, MEDIA.ociManifest, MEDIA.ociIndex].join(', ')

const MANIFESTS = new Set<string>([MEDIA.dockerManifest, MEDIA.ociManifest, MEDIA.dockerList, MEDIA.ociIndex])
const INDEXES = new Set<string>([MEDIA.dockerList, MEDIA.ociIndex])
const IMAGE_CONFIGS = new Set<string>([MEDIA.dockerConfig, MEDIA.ociConfig])
/** Docker's image manifest v2 schema 1 (signed or not): no config blob, deprecated, still served by old registries. */
const SCHEMA1 = /^application\/vnd\.docker\.distribution\.manifest\.v1\+(prettyjws|json)$/

type Document = {
  schemaVersion?: number
  mediaType?: string
  artifactType?: string
  manifests?: unknown[]
  config?: { mediaType?: string; digest?: string }
  layers?: unknown[]
}

/**
 * The media type of a manifest, from the Content-Type the registry sent (when it is a manifest type) or the
 * document's own `mediaType`; throws `unsupported` for a schema 1 manifest or anything that is not an image.
 * `what` names the reference in the message.
 */
export function imageManifestType(bytes: Uint8Array, contentType: string, what: string): string {
  let doc: Document
  try {
    doc = JSON.parse(new TextDecoder().decode(bytes))
  } catch {
    throw new RegistryError(`${what}: the registry sent a manifest that is not JSON`, 'protocol')
  }
  if (!doc || typeof doc !== 'object') throw new RegistryError(`${what}: the manifest is not a JSON object`, 'protocol')
  const mediaType = MANIFESTS.has(contentType) || SCHEMA1.test(contentType) ? contentType : doc?.mediaType ?? ''
  if (SCHEMA1.test(mediaType) || doc?.schemaVersion === 1) {
    throw new RegistryError(
      `${what} is a Docker schema 1 manifest (a format docker deprecated: it has no image config and cannot be ` +
        'assembled); push the image again with a current docker or buildx, which writes schema 2 or OCI',
      'unsupported',
    )
  }
  if (INDEXES.has(mediaType) || Array.isArray(doc.manifests)) return INDEXES.has(mediaType) ? mediaType : MEDIA.ociIndex
  if (typeof doc.config?.digest !== 'string' || !Array.isArray(doc.layers)) {
    throw new RegistryError(
      `${what} is not an image manifest (media type ${mediaType || 'not given'}: no config and layers)`,
      'unsupported',
    )
  }
  if (!IMAGE_CONFIGS.has(doc.config.mediaType ?? '')) {
    throw new RegistryError(
      `${what} is not a container image but an artifact of type ${
        doc.artifactType ?? doc.config.mediaType ?? 'unknown'
      } (its config is not an image config)`,
      'unsupported',
    )
  }
  return MANIFESTS.has(mediaType) ? mediaType : MEDIA.ociManifest
}
