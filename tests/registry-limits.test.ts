// The registry client's limits and retries (issue 17, points 2, 3 and 5) against fake registries: small servers
// that each play one behaviour (a slow reader, a stalled body, a token server that fails or hangs, a rate
// limiter). Fakes for logic only: what the client decides (wait, retry, give up, and with which class and words).
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import net from 'node:net'
import { copyBlob, getBlob, sha256, uploadBlob } from '../lib/registry/blobs.ts'
import { RegistryClient, type RegistryError } from '../lib/registry/client.ts'
import { classify, toCommandError, TRANSIENT } from '../lib/run/errors.ts'

const MiB = 2 ** 20
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
const blob = new Uint8Array(MiB / 2).map((_, i) => i % 251)
const digest = sha256(blob)
/** Resolves to the call's value or error, or to 'still hanging' when it has not settled long after every limit. */
const settle = <T>(p: Promise<T>, guardMs = 15_000) =>
  Promise.race([p.then((v) => v, (e: RegistryError) => e), sleep(guardMs).then(() => 'still hanging' as const)])

type Handler = (req: Request, url: URL) => Response | Promise<Response>
let server: ReturnType<typeof Bun.serve>
const routes = new Map<string, Handler>()
/** Serves `handler` under /v2/<name>/… and returns the repository on the fake. */
const fake = (name: string, handler: Handler) => {
  routes.set(name, handler)
  return { registry: `127.0.0.1:${server.port}`, repository: name }
}
const bearer = (name: string) =>
  new Response(null, {
    status: 401,
    headers: { 'www-authenticate': `Bearer realm="http://127.0.0.1:${server.port}/token/${name}",service="fake"` },
  })

beforeAll(() => {
  server = Bun.serve({
    port: 0,
    hostname: '127.0.0.1',
    idleTimeout: 0,
    maxRequestBodySize: 2 ** 30,
    fetch(req) {
      const url = new URL(req.url)
      const name = url.pathname.split('/')[2]
      const handler = routes.get(name)
      return handler ? handler(req, url) : new Response('no such fake', { status: 404 })
    },
  })
})
afterAll(() => server.stop(true))

describe('timeouts: an answer limit until the headers, an idle limit while bytes move', () => {
  test('a slow upload that keeps moving is not a timeout: the answer limit starts once the body is sent', async () => {
    // the receiver reads 8 MB/s: 32 MiB take ~4 s, longer than the 3 s answer limit, never idle for 2 s
    const repo = fake('slowreader', async (req) => {
      const reader = req.body!.getReader()
      for (let next = await reader.read(); !next.done; next = await reader.read()) {
        await sleep(next.value.byteLength / 8e3)
      }
      return new Response(null, { status: 201 })
    })
    const data = new Uint8Array(32 * MiB)
    const client = new RegistryClient({ timeoutSeconds: 3, idleSeconds: 2, retries: 0 })
    const location = `http://${repo.registry}/v2/${repo.repository}/blobs/uploads/1`
    expect(await settle(uploadBlob(client, repo, data, location))).toEqual({ digest: sha256(data), uploaded: true })
  })

  test('an upload the registry stops reading fails as timeout within the idle limit, not the answer limit', async () => {
    const silent = net.createServer((socket) => socket.pause()) // accepts, never reads, never answers
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r))
    const registry = `127.0.0.1:${(silent.address() as net.AddressInfo).port}`
    try {
      const client = new RegistryClient({ idleSeconds: 0.5, retries: 0 }) // the answer limit stays 30 s
      const location = `http://${registry}/v2/stalled/up/blobs/uploads/1`
      const error = await settle(
        uploadBlob(client, { registry, repository: 'stalled/up' }, new Uint8Array(32 * MiB), location),
      )
      expect([(error as RegistryError).errorClass, /stalled: no byte sent for 0.5s/.test((error as Error).message)])
        .toEqual(['timeout', true])
    } finally {
      silent.close()
    }
  })

  test('a blob download that stalls fails as timeout within the idle limit, never hangs (getBlob)', async () => {
    const repo = fake('stalledget', () => new Response(stallAfter(blob.subarray(0, 100_000))))
    const client = new RegistryClient({ timeoutSeconds: 5, idleSeconds: 0.5, retries: 0 })
    const error = await settle(getBlob(client, repo, digest)) as RegistryError
    expect([error.errorClass, /stalled: no byte received for 0.5s/.test(error.message)]).toEqual(['timeout', true])
  })

  test('a copy whose source stalls mid-blob fails as timeout, never hangs (copyBlob)', async () => {
    const target = fake('copytarget', async (req) => {
      await req.arrayBuffer()
      return new Response(null, { status: 201 })
    })
    const source = fake('stalledsource', () => new Response(stallAfter(blob.subarray(0, 100_000))))
    const client = new RegistryClient({ timeoutSeconds: 5, idleSeconds: 0.5, retries: 0 })
    const location = `http://${target.registry}/v2/${target.repository}/blobs/uploads/1`
    const error = await settle(copyBlob(client, source, target, digest, location)) as RegistryError
    expect(error.errorClass).toBe('timeout')
  })
})

describe('token requests: retried, limited, POST falling back to GET', () => {
  test('a token server that answers 503 once is retried and the call succeeds', async () => {
    let tokenCalls = 0
    const repo = fake('token503', (req, url) => {
      if (url.pathname.startsWith('/v2/')) {
        return req.headers.get('authorization') ? new Response(null) : bearer('token503')
      }
      return ++tokenCalls === 1 ? new Response('busy', { status: 503 }) : Response.json({ token: 't' })
    })
    const client = new RegistryClient({ retryDelayMs: 10 })
    expect(await client.manifestExists(`${repo.registry}/${repo.repository}:x`)).toBe(true)
    expect(tokenCalls).toBe(2)
  })

  test('a token server that never answers fails as timeout after the retries, never hangs', async () => {
    let tokenCalls = 0
    const repo = fake('tokenhang', (_req, url) => {
      if (url.pathname.startsWith('/v2/')) return bearer('tokenhang')
      tokenCalls++
      return new Promise<Response>(() => {})
    })
    const client = new RegistryClient({ timeoutSeconds: 0.3, retries: 1, retryDelayMs: 10 })
    const error = await settle(client.manifestExists(`${repo.registry}/${repo.repository}:x`)) as RegistryError
    expect([error.errorClass, tokenCalls]).toEqual(['timeout', 2])
  })

  test('POST to a token server without OAuth2 (404) falls back to GET with the identity token as password', async () => {
    const methods: string[] = []
    const repo = fake('oauth404', (req, url) => {
      if (url.pathname.startsWith('/v2/')) {
        return req.headers.get('authorization') ? new Response(null) : bearer('oauth404')
      }
      methods.push(req.method)
      if (req.method === 'POST') return new Response('404 page not found', { status: 404 })
      const sent = Buffer.from((req.headers.get('authorization') ?? '').replace(/^Basic /, ''), 'base64').toString()
      return sent === 'robot:refresh-me' ? Response.json({ token: 't' }) : new Response(null, { status: 401 })
    })
    const client = new RegistryClient({ credentials: async () => ({ username: 'robot', identityToken: 'refresh-me' }) })
    expect(await client.manifestExists(`${repo.registry}/${repo.repository}:x`)).toBe(true)
    expect(methods).toEqual(['POST', 'GET'])
  })
})

describe('429: Retry-After honoured, a persistent 429 is rate_limited, the registry words reach the user', () => {
  /** A rate limiter: 429 with Retry-After until the time it named has come (a retry before it is refused too). */
  const limiter = (name: string, retryAfter: (now: number) => { header: string; openAt: number }) => {
    let openAt: number | undefined
    return fake(name, () => {
      const now = Date.now()
      if (openAt !== undefined && now >= openAt) return new Response(null, { status: 200 })
      const asked = retryAfter(now)
      openAt ??= asked.openAt
      return new Response(null, { status: 429, headers: { 'retry-after': asked.header } })
    })
  }

  test('a 429 with Retry-After in seconds is waited out, then the call succeeds', async () => {
    const repo = limiter('after-seconds', (now) => ({ header: '1', openAt: now + 1000 }))
    const client = new RegistryClient({ retries: 1 })
    expect(await client.manifestExists(`${repo.registry}/${repo.repository}:x`)).toBe(true)
  })

  test('a 429 with Retry-After as an HTTP date is waited out, then the call succeeds', async () => {
    const repo = limiter('after-date', (now) => {
      const at = Math.ceil((now + 1000) / 1000) * 1000 // HTTP dates have whole seconds
      return { header: new Date(at).toUTCString(), openAt: at }
    })
    const client = new RegistryClient({ retries: 1 })
    expect(await client.manifestExists(`${repo.registry}/${repo.repository}:x`)).toBe(true)
  })

  test('a Retry-After longer than the cap is cut to it', async () => {
    const repo = limiter('after-hour', (now) => ({ header: '3600', openAt: now + 500 }))
    const client = new RegistryClient({ retries: 1, maxRetryAfterSeconds: 1 })
    expect(await settle(client.manifestExists(`${repo.registry}/${repo.repository}:x`), 10_000)).toBe(true)
  })

  const always429 = () =>
    fake(
      'always429',
      () =>
        Response.json({ errors: [{ code: 'TOOMANYREQUESTS', message: 'You have reached your pull rate limit' }] }, {
          status: 429,
          headers: { 'retry-after': '0' },
        }),
    )

  test("a persistent 429 is class rate_limited and carries the registry's code, message and Retry-After", async () => {
    const repo = always429()
    const client = new RegistryClient({ retries: 2 })
    const error = await client.getManifest(`${repo.registry}/${repo.repository}:x`).catch((e) => e)
    expect([error.errorClass, error.status, error.code]).toEqual(['rate_limited', 429, 'TOOMANYREQUESTS'])
    expect(error.message).toContain('TOOMANYREQUESTS: You have reached your pull rate limit (Retry-After: 0)')
    expect(client.counters.retries).toBe(2)
  })

  test('for the run, rate_limited is its own transient class (from the client, or from docker output), not a build failure', async () => {
    const repo = always429()
    const error = await new RegistryClient({ retries: 0 }).getManifest(`${repo.registry}/${repo.repository}:x`)
      .catch((e) => e)
    const failed = toCommandError('assemble x', error)
    expect([failed.errorClass, TRANSIENT.has(failed.errorClass)]).toEqual(['rate_limited', true])
    expect(failed.message).toContain('TOOMANYREQUESTS: You have reached your pull rate limit')
    const buildkit = 'failed to resolve source metadata for r.io/x:1: unexpected status: 429 Too Many Requests - ' +
      'Server message: toomanyrequests: You have reached your unauthenticated pull rate limit'
    expect(classify(buildkit)).toBe('rate_limited')
  })

  test("other refusals carry the registry's words too (DENIED, MANIFEST_BLOB_UNKNOWN)", async () => {
    const repo = fake(
      'refusals',
      (req) =>
        req.method === 'PUT'
          ? Response.json({ errors: [{ code: 'MANIFEST_BLOB_UNKNOWN', message: 'blob unknown to registry' }] }, {
            status: 400,
          })
          : Response.json({ errors: [{ code: 'DENIED', message: 'requested access to the resource is denied' }] }, {
            status: 403,
          }),
    )
    const client = new RegistryClient()
    const denied = await client.getManifest(`${repo.registry}/${repo.repository}:x`).catch((e) => e)
    expect([denied.errorClass, denied.code]).toEqual(['auth', 'DENIED'])
    expect(denied.message).toContain('DENIED: requested access to the resource is denied')
    const put = await client.putManifest(`${repo.registry}/${repo.repository}:x`, new Uint8Array([123, 125]), 'x/y')
      .catch((e) => e)
    expect(put.message).toContain('MANIFEST_BLOB_UNKNOWN: blob unknown to registry')
  })
})

/** A body that sends `first` and then nothing, never ending. */
function stallAfter(first: Uint8Array): ReadableStream<Uint8Array> {
  let sent = false
  return new ReadableStream({
    pull(controller) {
      if (sent) return new Promise(() => {})
      sent = true
      controller.enqueue(first)
    },
  })
}
