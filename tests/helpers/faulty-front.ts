// A front before a real `docker-registry` that misbehaves on purpose, for the mirror's tests. Storage, digests and
// manifests stay the real registry's; the front only (each switchable) flips one byte of one blob as it is served
// (same length, another digest), answers 429 with Retry-After to chosen requests — and answers any retry that comes
// before the time it named with 429 again, so a copy that succeeds proves the wait — and adds Docker Hub's ratelimit
// headers to manifest answers. Every request is logged. Read-only use (HEAD/GET): it stands for an upstream.
export type FaultyFrontOptions = {
  /** host:port of the real registry behind it (plain HTTP) */
  target: string
  /** this blob's bytes are served with one byte flipped */
  corruptBlob?: string
  /** requests `when` picks are answered 429 with Retry-After (seconds), `times` times (Infinity: always) */
  rateLimit?: { when: (method: string, path: string) => boolean; times: number; retryAfter: number }
  /** Docker Hub's `ratelimit-limit` / `ratelimit-remaining` on every manifest answer */
  allowance?: { limit: number; remaining: number }
}

export type FrontRequest = { method: string; path: string; status: number }
export type FaultyFront = {
  address: string
  log: FrontRequest[]
  /** requests that came back before the Retry-After they were given had passed */
  early: number
  stop(): void
}

export function startFaultyFront(o: FaultyFrontOptions): FaultyFront {
  const log: FrontRequest[] = []
  let limited = 0
  let openAt = 0
  const state = { early: 0 }
  const server = Bun.serve({
    port: 0,
    hostname: '127.0.0.1',
    idleTimeout: 0,
    async fetch(req) {
      const url = new URL(req.url)
      const entry: FrontRequest = { method: req.method, path: url.pathname, status: 0 }
      log.push(entry)
      const res = await answer(req, url)
      entry.status = res.status
      return res
    },
  })

  async function answer(req: Request, url: URL): Promise<Response> {
    const rl = o.rateLimit
    if (rl?.when(req.method, url.pathname)) {
      if (Date.now() < openAt) state.early++
      if (limited < rl.times || Date.now() < openAt) {
        limited++
        openAt = Date.now() + rl.retryAfter * 1000
        return Response.json(
          { errors: [{ code: 'TOOMANYREQUESTS', message: 'You have reached your pull rate limit' }] },
          { status: 429, headers: { 'retry-after': String(rl.retryAfter) } },
        )
      }
    }
    const headers = new Headers(req.headers)
    headers.delete('host')
    const upstream = await fetch(`http://${o.target}${url.pathname}${url.search}`, {
      method: req.method,
      headers,
      redirect: 'manual',
    })
    const out = new Headers(upstream.headers)
    out.delete('content-encoding')
    if (o.allowance && url.pathname.includes('/manifests/')) {
      out.set('ratelimit-limit', `${o.allowance.limit};w=21600`)
      out.set('ratelimit-remaining', `${o.allowance.remaining};w=21600`)
      out.set('docker-ratelimit-source', '203.0.113.7')
    }
    const corrupt = req.method === 'GET' && o.corruptBlob && url.pathname.endsWith(`/blobs/${o.corruptBlob}`)
    const body = req.method === 'HEAD' ? null : corrupt ? flipFirstByte(upstream.body!) : upstream.body
    return new Response(body, { status: upstream.status, headers: out })
  }

  return {
    address: `127.0.0.1:${server.port}`,
    log,
    get early() {
      return state.early
    },
    stop: () => server.stop(true),
  }
}

function flipFirstByte(body: ReadableStream<Uint8Array>): ReadableStream<Uint8Array> {
  let first = true
  return body.pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, controller) {
        if (first && chunk.byteLength) {
          chunk = chunk.slice()
          chunk[0] ^= 0xff
          first = false
        }
        controller.enqueue(chunk)
      },
    }),
  )
}
