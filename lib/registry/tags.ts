// Which tags exist, asked per repository: `GET /v2/<name>/tags/list` (distribution spec, "Listing Tags"; paginated
// with `n` and a `Link: <…>; rel="next"` header) answers for every tag of a repository in one request per page,
// where a HEAD per tag takes one each — a 500-instance plan asks about 1001 tags that live in 3 repositories.
import pMap from 'p-map'
import type { RegistryClient, RegistryError, Repo } from './client.ts'
import { parseImageRef } from './ref.ts'

/**
 * Every tag of `repo`; an empty set when the registry says the repository does not exist (404 NAME_UNKNOWN);
 * undefined when it does not list (another status, or a 404 without that code): the caller asks per tag instead.
 */
export async function listTags(client: RegistryClient, repo: Repo, pageSize = 1000): Promise<Set<string> | undefined> {
  const tags = new Set<string>()
  let url: string | undefined = `${await client.baseUrl(repo.registry)}/v2/${repo.repository}/tags/list?n=${pageSize}`
  while (url) {
    const res = await client.send(repo, 'pull', '', { url })
    if (res.status !== 200 && res.status !== 404) {
      await res.body?.cancel()
      return undefined
    }
    const text = new TextDecoder().decode(await client.readBody(res))
    const answer = JSON.parse(text || '{}') as { tags?: string[] | null; errors?: Array<{ code: string }> }
    if (res.status === 404) return answer.errors?.some((e) => e.code === 'NAME_UNKNOWN') ? tags : undefined
    for (const tag of answer.tags ?? []) tags.add(tag)
    const next = /<([^>]+)>\s*;\s*rel="?next"?/.exec(res.headers.get('link') ?? '')?.[1]
    url = next ? new URL(next, url).toString() : undefined
  }
  return tags
}

/**
 * Like `client.checkMany`: each reference maps to true/false or the RegistryError it met (never throws). A repository
 * asked about `listFrom` or more tags is listed once; the rest (and a repository that does not list) get a HEAD each.
 */
export async function checkTags(
  client: RegistryClient,
  refs: string[],
  listFrom = 8,
): Promise<Map<string, boolean | RegistryError>> {
  const byRepo = new Map<string, { repo: Repo; refs: Array<[string, string]> }>()
  const one: string[] = []
  for (const ref of refs) {
    const r = parseImageRef(ref)
    if (!r.tag || r.digest) {
      one.push(ref)
      continue
    }
    const key = `${r.registry}/${r.repository}`
    if (!byRepo.has(key)) byRepo.set(key, { repo: { registry: r.registry, repository: r.repository }, refs: [] })
    byRepo.get(key)!.refs.push([ref, r.tag])
  }
  const answers = new Map<string, boolean | RegistryError>()
  await pMap(byRepo.values(), async ({ repo, refs }) => {
    const tags = refs.length >= listFrom ? await listTags(client, repo).catch(() => undefined) : undefined
    if (!tags) return void one.push(...refs.map(([ref]) => ref))
    for (const [ref, tag] of refs) answers.set(ref, tags.has(tag))
  }, { concurrency: 8 })
  for (const [ref, answer] of await client.checkMany(one)) answers.set(ref, answer)
  return answers
}
