// Retention reads manifests and image configs over the Registry v2 API, each once: as JSON whatever their type
// (an artifact's too: retention must see every manifest's references, not only images'), and the config `created`
// time that orders a fleet's keys (keys.ts).
import { getBlob } from '../registry/blobs.ts'
import { MANIFEST_ACCEPT, type RegistryClient } from '../registry/client.ts'
import type { Descriptor } from '../registry/image.ts'

/** What retention reads of a manifest: an index's children, an image's config and layers, an OCI referrer's subject. */
export type Doc = {
  mediaType?: string
  manifests?: Descriptor[]
  config?: Descriptor
  layers?: Descriptor[]
  subject?: Descriptor
}

export type Reader = ReturnType<typeof reader>

/** Manifests read once each, as JSON whatever their type (artifacts too), and the config `created` of an image. */
export function reader(client: RegistryClient, registry: string) {
  const docs = new Map<string, Promise<Doc>>()
  const doc = (repository: string, digest: string): Promise<Doc> => {
    const key = `${repository}@${digest}`
    let got = docs.get(key)
    if (!got) {
      got = (async () => {
        const res = await client.send({ registry, repository }, 'pull', `/v2/${repository}/manifests/${digest}`, {
          headers: { accept: `${MANIFEST_ACCEPT}, application/vnd.oci.artifact.manifest.v1+json` },
        })
        if (res.status !== 200) throw await client.statusError(res, `GET manifest ${repository}@${digest}`)
        return JSON.parse(new TextDecoder().decode(await client.readBody(res))) as Doc
      })()
      docs.set(key, got)
    }
    return got
  }
  const created = async (repository: string, digest: string): Promise<string | undefined> => {
    const top = await doc(repository, digest)
    const image = top.manifests
      ? await doc(repository, top.manifests.find((m) => m.platform?.os !== 'unknown')?.digest ?? '')
      : top
    if (!image.config) return undefined
    const config = JSON.parse(
      new TextDecoder().decode(await getBlob(client, { registry, repository }, image.config.digest)),
    )
    return typeof config.created === 'string' ? new Date(config.created).toISOString() : undefined
  }
  return { doc, created }
}
