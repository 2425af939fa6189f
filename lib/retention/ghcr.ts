// Retention's back end for GitHub Container Registry: GHCR's Registry API does not delete; GitHub's Packages REST
// API does (docs.github.com/rest/packages, API version 2022-11-28). A repository `OWNER/fleet/eval-base` is the
// container package `fleet/eval-base` of OWNER (a user or an organization, asked once from GET /users/OWNER); its
// versions (id, name = the manifest digest, metadata.container.tags, created_at) are listed 100 a page, untagged
// ones included — the attestation manifests and platform images of indexes, and what an overwritten tag left — and
// one is deleted with DELETE …/versions/ID. The token needs read:packages and delete:packages.
import { type Limits, RegistryError, retryAfterMs, timedFetch } from '../registry/http.ts'
import type { RetentionBackend, Version } from './retention.ts'

export type GhcrOptions = {
  /** the GitHub REST API (default https://api.github.com) */
  api?: string
  token: string
  /** the first path component of the fleet's repositories */
  owner: string
  fetch?: typeof fetch
  retries?: number
}

type PackageVersion = { id: number; name: string; created_at?: string; metadata?: { container?: { tags?: string[] } } }
const GC = 'GitHub frees the storage of deleted versions itself (they can be restored for 30 days); nothing to run'
const LIMITS: Limits = { answerMs: 30_000, idleMs: 60_000 }
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

export function ghcrBackend(o: GhcrOptions): RetentionBackend {
  const api = (o.api ?? 'https://api.github.com').replace(/\/+$/, '')
  const fetchFn = o.fetch ?? globalThis.fetch.bind(globalThis)
  let base: Promise<string> | undefined
  const headers = {
    authorization: `Bearer ${o.token}`,
    accept: 'application/vnd.github+json',
    'x-github-api-version': '2022-11-28',
  }

  /** One call, retried on 5xx and on rate limits (429, or 403 with Retry-After), waiting what GitHub asks. */
  async function call(method: string, path: string): Promise<Response> {
    for (let attempt = 0;; attempt++) {
      const res = await timedFetch(fetchFn, `${api}${path}`, { method, headers }, LIMITS)
      const limited = res.status === 429 || (res.status === 403 && res.headers.has('retry-after'))
      if ((!limited && res.status < 500) || attempt >= (o.retries ?? 2)) return res
      await res.body?.cancel()
      await sleep(Math.min(60_000, retryAfterMs(res.headers.get('retry-after')) ?? 1000 * 2 ** attempt))
    }
  }
  async function fail(res: Response, what: string): Promise<never> {
    const body = (await res.text().catch(() => '')).slice(0, 300)
    const cls = res.status === 401 || res.status === 403 ? 'auth' : res.status === 429 ? 'rate_limited' : 'protocol'
    throw new RegistryError(`GitHub API ${what}: ${res.status} ${body}`, cls, res.status)
  }
  /** /users/OWNER or /orgs/OWNER, as GitHub says which OWNER is. */
  function owner(): Promise<string> {
    base ??= (async () => {
      const res = await call('GET', `/users/${o.owner}`)
      if (res.status !== 200) return fail(res, `GET /users/${o.owner}`)
      const { type } = await res.json() as { type?: string }
      return type === 'Organization' ? `/orgs/${o.owner}` : `/users/${o.owner}`
    })()
    return base
  }
  /** Every item of a paged list (100 a page, until a short page); undefined for 404. */
  async function all<T>(path: string): Promise<T[] | undefined> {
    const items: T[] = []
    for (let page = 1;; page++) {
      const res = await call('GET', `${path}${path.includes('?') ? '&' : '?'}per_page=100&page=${page}`)
      if (res.status === 404) return (await res.body?.cancel(), undefined)
      if (res.status !== 200) return fail(res, `GET ${path}`)
      const got = await res.json() as T[]
      items.push(...got)
      if (got.length < 100) return items
    }
  }
  const packageOf = (repository: string) => encodeURIComponent(repository.slice(o.owner.length + 1))

  return {
    kind: 'ghcr',
    listsUntagged: true,
    gc: GC,
    async versions(repository) {
      const list = await all<PackageVersion>(`${await owner()}/packages/container/${packageOf(repository)}/versions`)
      return (list ?? []).map((v): Version => ({
        repository,
        digest: v.name,
        tags: v.metadata?.container?.tags ?? [],
        id: v.id,
        createdAt: v.created_at,
      }))
    },
    async repositories(under) {
      const list = await all<{ name: string }>(`${await owner()}/packages?package_type=container`)
      return (list ?? []).map((p) => `${o.owner}/${p.name}`).filter((r) => r.startsWith(under))
    },
    async remove(v) {
      if (v.id === undefined) {
        throw new RegistryError(`${v.repository}@${v.digest}: GitHub lists no version id for it`, 'protocol')
      }
      const path = `${await owner()}/packages/container/${packageOf(v.repository)}/versions/${v.id}`
      const res = await call('DELETE', path)
      if (res.status === 204 || res.status === 404) return void (await res.body?.cancel())
      return fail(res, `DELETE ${path}`)
    },
  }
}
