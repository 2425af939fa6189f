// Retention's back end for registries that speak the Registry HTTP API to the end (distribution, Harbor, Zot, most
// self-hosted ones): tags from GET /v2/<name>/tags/list (paged by its Link header), each tag's digest from a HEAD,
// repositories from GET /v2/_catalog, deletion by DELETE /v2/<name>/manifests/<digest>. distribution deletes by
// digest only (a DELETE by tag is UNSUPPORTED before v3) and removes every tag on that digest with it; it needs
// `storage.delete.enabled: true`, and a token with the `delete` action where tokens are used.
import pMap from 'p-map'
import { MANIFEST_ACCEPT, type RegistryClient, RegistryError } from '../registry/client.ts'
import type { RetentionBackend, Version } from './retention.ts'

/**
 * What frees the bytes. Not `--delete-untagged` on distribution 2.x: it also deletes the untagged images and
 * attestation manifests that kept indexes refer to (distribution/distribution#3178, #3004; fixed in v3 by #3822).
 * Retention deleted its manifests outright, so the plain GC frees their blobs.
 */
const GC = 'the registry frees the blobs only when its garbage collection runs — distribution: ' +
  '`registry garbage-collect <config.yml>` with the registry stopped or read-only (not --delete-untagged on 2.x: ' +
  'it deletes the images and attestations of kept indexes too, distribution#3178); Harbor: Administration → Clean Up'

export function registryBackend(client: RegistryClient, registry: string): RetentionBackend {
  const at = (repository: string) => ({ registry, repository })
  /** GETs a paged list (`n`, Link rel="next"), collecting `pick` of each page; undefined for 404 (no such name). */
  async function paged(repository: string, first: string, pick: (body: unknown) => string[], scopes?: string[]) {
    const items: string[] = []
    for (let path: string | undefined = first; path;) {
      const res = await client.send(at(repository), 'pull', path, { scopes })
      if (res.status === 404) return (await res.body?.cancel(), undefined)
      if (res.status !== 200) throw await client.statusError(res, `GET ${path}`)
      items.push(...pick(JSON.parse(new TextDecoder().decode(await client.readBody(res)))))
      path = /<([^>]+)>;\s*rel="?next"?/.exec(res.headers.get('link') ?? '')?.[1]
    }
    return items
  }
  return {
    kind: 'registry',
    listsUntagged: false,
    gc: GC,
    async versions(repository) {
      const tags = await paged(
        repository,
        `/v2/${repository}/tags/list?n=1000`,
        (b) => (b as { tags?: string[] }).tags ?? [],
      )
      const digests = await pMap(tags ?? [], async (tag) => {
        const res = await client.send(at(repository), 'pull', `/v2/${repository}/manifests/${tag}`, {
          method: 'HEAD',
          headers: { accept: MANIFEST_ACCEPT },
        })
        await res.body?.cancel()
        if (res.status === 404) return undefined // deleted since the list was read
        const digest = res.headers.get('docker-content-digest')
        if (res.status !== 200 || !digest) throw await client.statusError(res, `HEAD manifest ${repository}:${tag}`)
        return { tag, digest }
      }, { concurrency: 16 })
      const byDigest = new Map<string, Version>()
      for (const d of digests) {
        if (!d) continue
        const v = byDigest.get(d.digest) ?? { repository, digest: d.digest, tags: [] }
        v.tags.push(d.tag)
        byDigest.set(d.digest, v)
      }
      return [...byDigest.values()]
    },
    async repositories(under) {
      const list = (b: unknown) => (b as { repositories?: string[] }).repositories ?? []
      const all = await paged(under.replace(/\/$/, ''), '/v2/_catalog?n=1000', list, ['registry:catalog:*'])
      return (all ?? []).filter((r) => r.startsWith(under))
    },
    async remove(v) {
      const res = await client.send(at(v.repository), 'pull', `/v2/${v.repository}/manifests/${v.digest}`, {
        method: 'DELETE',
        scopes: [`repository:${v.repository}:delete`],
      })
      if (res.status === 202 || res.status === 200 || res.status === 404) return void (await res.body?.cancel())
      const error = await client.statusError(res, `DELETE manifest ${v.repository}@${v.digest}`)
      if (res.status === 405) {
        throw new RegistryError(
          `${error.message} — the registry has deletes disabled (distribution: storage.delete.enabled: true)`,
          'protocol',
          405,
          error.code,
        )
      }
      throw error
    },
  }
}
