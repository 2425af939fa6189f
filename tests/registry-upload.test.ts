// How the registry client uploads, copies and mounts blobs on registries that behave like the hosted ones
// (issue 17, points 1 and 6): tests/helpers/hosted-registry.ts in front of a real docker-registry, so the bytes,
// digests and sessions are distribution's own and only the hosted registries' refusals are modelled.
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { randomBytes } from 'node:crypto'
import { blobExists, ensureBlob, getBlob, sha256, uploadBlob } from '../lib/registry/blobs.ts'
import { MEDIA, RegistryClient, type Repo } from '../lib/registry/client.ts'
import { type HostedRegistry, type HostedRegistryOptions, startHostedRegistry } from './helpers/hosted-registry.ts'
import { pushTestImage, type RegistryServer, startRegistry } from './helpers/registry-server.ts'

const MiB = 2 ** 20
const random = (n: number) => new Uint8Array(randomBytes(n))
const bytes = (s: string) => new TextEncoder().encode(s)
const login = { username: 'fleet', password: 's3cret' }
const users = { [login.username]: login.password }
const newClient = () => new RegistryClient({ credentials: async () => login, retryDelayMs: 10 })

let source: RegistryServer // a second registry, plain: where cross-registry copies come from
let backing: RegistryServer // the real registry behind every front
const fronts: HostedRegistry[] = []
const front = (o: Omit<HostedRegistryOptions, 'target'>) => {
  const f = startHostedRegistry({ target: backing.address, users, ...o })
  fronts.push(f)
  return f
}
const at = (registry: string, repository: string): Repo => ({ registry, repository })
/** What the client sent for one blob's upload session: method, Content-Range, body size, answer. */
const uploadsOf = (f: HostedRegistry, repository: string) =>
  f.log.filter((r) => r.path.startsWith(`/v2/${repository}/blobs/uploads/`) && r.method !== 'POST')
    .map((r) => [r.method, r.contentRange ?? null, r.bodyBytes, r.status])

beforeAll(async () => {
  ;[source, backing] = await Promise.all([startRegistry(), startRegistry()])
})
afterAll(async () => {
  for (const f of fronts) await f.stop()
  await Promise.all([source?.stop(), backing?.stop()])
})

describe('uploads: whole where the registry takes it, chunks of at most 4 MiB where it does not', () => {
  test('a 20 MiB blob copied into a registry that caps ranged chunks at 4 MiB (GHCR) goes in one PUT without Content-Range', async () => {
    const ghcr = front({ chunkLimit: 4 * MiB, emptyPutAfterChunks500: true })
    const blob = random(20 * MiB)
    const { digest } = await uploadBlob(newClient(), at(source.address, 'src/big'), blob)
    const client = newClient()
    expect(await ensureBlob(client, at(source.address, 'src/big'), at(ghcr.address, 'dst/big'), digest)).toBe('copied')
    expect(uploadsOf(ghcr, 'dst/big')).toEqual([['PUT', null, blob.length, 201]])
    expect(await blobExists(client, at(backing.address, 'dst/big'), digest)).toBe(blob.length)
  })

  test('a registry that refuses a whole PUT (413, a proxy body limit) gets 4 MiB chunks, the last one in the closing PUT, and is remembered', async () => {
    const proxied = front({ maxBody: 5 * MiB, chunkLimit: 4 * MiB, emptyPutAfterChunks500: true })
    const client = newClient()
    const copied = random(12 * MiB) // a multiple of the chunk: the case that used to end with an empty PUT
    const { digest } = await uploadBlob(client, at(source.address, 'src/twelve'), copied)
    expect(await ensureBlob(client, at(source.address, 'src/twelve'), at(proxied.address, 'dst/twelve'), digest))
      .toBe('copied')
    const four = 4 * MiB
    expect(uploadsOf(proxied, 'dst/twelve')).toEqual([
      ['PUT', null, 12 * MiB, 413],
      ['PATCH', `0-${four - 1}`, four, 202],
      ['PATCH', `${four}-${2 * four - 1}`, four, 202],
      ['PUT', `${2 * four}-${3 * four - 1}`, four, 201],
    ])
    const inMemory = random(9 * MiB) // the next blob goes in chunks straight away
    await uploadBlob(client, at(proxied.address, 'dst/nine'), inMemory)
    expect(uploadsOf(proxied, 'dst/nine')).toEqual([
      ['PATCH', `0-${four - 1}`, four, 202],
      ['PATCH', `${four}-${2 * four - 1}`, four, 202],
      ['PUT', `${2 * four}-${9 * MiB - 1}`, MiB, 201],
    ])
    expect(sha256(await getBlob(client, at(backing.address, 'dst/twelve'), digest))).toBe(digest)
    expect(sha256(await getBlob(client, at(backing.address, 'dst/nine'), sha256(inMemory)))).toBe(sha256(inMemory))
  })

  test('upload Locations work relative (the hosted front) and absolute (distribution)', async () => {
    const ghcr = front({})
    const client = newClient()
    const post = async (registry: string) => {
      const res = await client.send(at(registry, 'loc/probe'), 'pull,push', '/v2/loc/probe/blobs/uploads/', {
        method: 'POST',
      })
      await res.body?.cancel()
      return res.headers.get('location') ?? ''
    }
    expect([(await post(ghcr.address)).startsWith('/v2/'), (await post(source.address)).startsWith('http://')])
      .toEqual([true, true])
    for (const registry of [ghcr.address, source.address]) {
      const blob = bytes(`location ${registry} ${Date.now()}`)
      expect(await uploadBlob(client, at(registry, 'loc/blob'), blob)).toEqual({ digest: sha256(blob), uploaded: true })
      expect(await blobExists(client, at(registry, 'loc/blob'), sha256(blob))).toBe(blob.length)
    }
  })
})

test('an upload Location on another host is sent no Authorization of the registry (fake registry and upload host)', async () => {
  const seen: Array<string | null> = []
  const uploads = Bun.serve({
    port: 0,
    hostname: '127.0.0.1',
    async fetch(req) {
      seen.push(req.headers.get('authorization'))
      await req.arrayBuffer()
      return new Response(null, { status: 201 })
    },
  })
  const registry = Bun.serve({
    port: 0,
    hostname: '127.0.0.1',
    fetch(req) {
      if (req.headers.get('authorization') !== 'Basic ZmxlZXQ6czNjcmV0') {
        return new Response(null, { status: 401, headers: { 'www-authenticate': 'Basic realm="fake"' } })
      }
      const location = `http://127.0.0.1:${uploads.port}/upload/1?state=x`
      return new Response(null, { status: req.method === 'POST' ? 202 : 404, headers: { location } })
    },
  })
  try {
    const blob = bytes('to another host')
    expect(await uploadBlob(newClient(), at(`127.0.0.1:${registry.port}`, 'far/away'), blob)).toEqual({
      digest: sha256(blob),
      uploaded: true,
    })
    expect(seen).toEqual([null])
  } finally {
    uploads.stop(true)
    registry.stop(true)
  }
})

describe('mounts: refusals fall back to an upload, and what the target has is never copied again', () => {
  for (const policy of ['unauthorized', 'bad-request'] as const) {
    test(`a mount answered ${policy === 'unauthorized' ? 401 : 400} (Harbor) falls back to a plain upload`, async () => {
      const harbor = front({ mounts: policy })
      const client = newClient()
      const blob = random(64 * 1024)
      const { digest } = await uploadBlob(client, at(backing.address, 'src/harbor'), blob)
      expect(await ensureBlob(client, at(harbor.address, 'src/harbor'), at(harbor.address, `dst/${policy}`), digest))
        .toBe('copied')
      expect(await blobExists(client, at(backing.address, `dst/${policy}`), digest)).toBe(blob.length)
    })
  }

  test('the target is asked first (HEAD): a rerun on a registry that declines mounts (ECR) copies nothing it already has', async () => {
    const ecr = front({ mounts: 'declined' })
    const blob = random(256 * 1024)
    const { digest } = await uploadBlob(newClient(), at(backing.address, 'src/ecr'), blob)
    const from = at(ecr.address, 'src/ecr')
    const to = at(ecr.address, 'dst/ecr')
    expect(await ensureBlob(newClient(), from, to, digest)).toBe('copied')
    const before = ecr.log.length
    expect(await ensureBlob(newClient(), from, to, digest)).toBe('present')
    const rerun = ecr.log.slice(before).filter((r) => r.at === 'registry' && r.path.includes('/blobs/'))
    const head = `/v2/dst/ecr/blobs/${digest}`
    expect(rerun.map((r) => [r.method, r.path, r.status])).toEqual([['HEAD', head, 401], ['HEAD', head, 200]]) // 401: a new run's first request asks for a token
  })

  test('a declined mount (202) streams the blob from the source through the CDN, with no Authorization there', async () => {
    const ecr = front({ mounts: 'declined' })
    const blob = random(300 * 1024)
    const { digest } = await uploadBlob(newClient(), at(backing.address, 'src/declined'), blob)
    const before = ecr.log.length
    expect(await ensureBlob(newClient(), at(ecr.address, 'src/declined'), at(ecr.address, 'dst/declined'), digest))
      .toBe('copied')
    const seen = ecr.log.slice(before)
    expect(seen.filter((r) => r.mount).map((r) => r.mount)).toEqual(['declined'])
    expect(seen.filter((r) => r.at === 'cdn').map((r) => [r.method, r.auth ?? 'none', r.status])).toEqual([
      ['GET', 'none', 200],
    ])
    expect(uploadsOf(ecr, 'dst/declined')).toEqual([['PUT', null, blob.length, 201]])
  })

  test('a mount asks one token scoped push,pull on the target and pull on the source, and is honoured (GHCR)', async () => {
    const ghcr = front({ mounts: 'scoped' })
    const blob = random(1024)
    const { digest } = await uploadBlob(newClient(), at(backing.address, 'src/scoped'), blob)
    const before = ghcr.tokens.length
    expect(await ensureBlob(newClient(), at(ghcr.address, 'src/scoped'), at(ghcr.address, 'dst/scoped'), digest))
      .toBe('mounted')
    expect(ghcr.tokens.slice(before)).toContainEqual(['repository:dst/scoped:pull,push', 'repository:src/scoped:pull'])
  })
})

test('manifest reads send Accept for manifests and indexes; a manifest PUT carries its mediaType as Content-Type', async () => {
  const ghcr = front({})
  const client = newClient()
  const files = [[{ path: 'a', type: 'file' as const, mode: 0o644, uid: 0, gid: 0, data: bytes('a') }]]
  await pushTestImage(client, `${ghcr.address}/media/docker:v1`, { layers: files })
  await pushTestImage(client, `${ghcr.address}/media/oci:v1`, { layers: files, oci: true })
  await client.getManifest(`${ghcr.address}/media/oci:v1`)
  expect(await client.manifestExists(`${ghcr.address}/media/docker:v1`)).toBe(true)
  const manifests = ghcr.log.filter((r) => r.path.includes('/manifests/'))
  expect(manifests.filter((r) => r.method === 'PUT').map((r) => r.contentType)).toEqual([
    MEDIA.dockerManifest,
    MEDIA.ociManifest,
  ])
  const reads = manifests.filter((r) => r.method !== 'PUT')
  expect(reads.length).toBeGreaterThan(0)
  for (const r of reads) {
    expect(r.accept?.split(/,\s*/).sort()).toEqual(
      [MEDIA.dockerManifest, MEDIA.dockerList, MEDIA.ociManifest, MEDIA.ociIndex].sort(),
    )
  }
})
