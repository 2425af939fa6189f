// Tag existence per repository (lib/registry/tags.ts) against a real docker-registry: listing, its pages, an
// unknown repository, and the fall-back to one HEAD per tag where a registry does not list.
import { describe, expect, test } from 'bun:test'
import { checkTags, listTags } from '../lib/registry/tags.ts'
import { RegistryClient } from '../lib/registry/client.ts'
import { pushTestImage } from './helpers/registry-server.ts'
import { registryFixture } from './helpers/fixture.ts'

const fx = registryFixture('registry-tags')
const file = { path: 'x', type: 'file' as const, mode: 0o644, uid: 0, gid: 0, data: new TextEncoder().encode('x') }

describe('tags per repository', () => {
  const repo = () => ({ registry: fx.registry.address, repository: 'tags/many' })
  const tagged = (tag: string) => `${fx.registry.address}/tags/many:${tag}`

  test('listTags reads every tag of a repository; an unknown repository has none', async () => {
    const client = new RegistryClient()
    for (const tag of ['a', 'b', 'c', 'd', 'e']) await pushTestImage(client, tagged(tag), { layers: [[file]] })
    expect(await listTags(client, repo())).toEqual(new Set(['a', 'b', 'c', 'd', 'e']))
    expect(await listTags(client, { registry: fx.registry.address, repository: 'tags/none' })).toEqual(new Set())
  })

  test('listTags follows the Link header page by page (distribution 2.8 never pages: a paging fake in front, for this logic only)', async () => {
    const paging = (async (input: string | URL | Request, init?: RequestInit) => {
      const url = new URL(String(input))
      if (!url.pathname.endsWith('/tags/list')) return globalThis.fetch(input, init)
      const all = ((await (await globalThis.fetch(`${url.origin}${url.pathname}`)).json()) as { tags: string[] }).tags
      const n = Number(url.searchParams.get('n'))
      const page = all.sort().filter((t) => t > (url.searchParams.get('last') ?? '')).slice(0, n)
      const more = all.some((t) => t > page[page.length - 1])
      const link = `<${url.pathname}?n=${n}&last=${page[page.length - 1]}>; rel="next"`
      return new Response(JSON.stringify({ tags: page }), { headers: more ? { link } : {} })
    }) as typeof fetch
    const client = new RegistryClient({ fetch: paging })
    expect(await listTags(client, repo(), 2)).toEqual(new Set(['a', 'b', 'c', 'd', 'e']))
    expect(client.counters.requests).toBe(3) // pages of 2, 2 and 1
  })

  test('checkTags answers as checkMany does, listing a repository asked about many tags once', async () => {
    const client = new RegistryClient()
    const refs = [
      ...['a', 'b', 'c', 'x', 'y', 'z', 'e', 'w'].map(tagged), // 8 in one repository: listed
      `${fx.registry.address}/tags/none:a`, // few: one HEAD each
      `${fx.registry.address}/tags/many@sha256:${'0'.repeat(64)}`, // a digest: a HEAD
    ]
    const expected = await new RegistryClient().checkMany(refs)
    const before = client.counters.requests
    expect(await checkTags(client, refs)).toEqual(expected)
    expect(client.counters.requests - before).toBe(3)
  })

  test('a registry that does not list (a fake 405 in front of the real one, for this logic only) is asked per tag', async () => {
    const refusing =
      ((input: string | URL | Request, init?: RequestInit) =>
        String(input).includes('/tags/list')
          ? Promise.resolve(new Response('', { status: 405 }))
          : globalThis.fetch(input, init)) as typeof fetch
    const client = new RegistryClient({ fetch: refusing })
    const refs = ['a', 'b', 'c', 'd', 'x', 'y', 'z', 'w'].map(tagged)
    const answers = await checkTags(client, refs)
    expect(refs.map((r) => answers.get(r))).toEqual([true, true, true, true, false, false, false, false])
    expect(client.counters.requests).toBe(1 + refs.length)
  })
})
