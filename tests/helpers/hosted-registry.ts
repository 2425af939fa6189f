// A front that behaves like a hosted registry (GHCR, Docker Hub, ECR, Harbor) in front of a real `docker-registry`
// (distribution, plain HTTP). Storage, digests, uploads and manifests stay the real registry's; the front adds what
// hosted registries do differently, each switchable, and logs every request for tests to read:
//   - Bearer tokens with scopes from its own token server (GET /token; POST answers 404: no OAuth2, as GHCR), pull for
//     anyone, push for a known user; /v2/ itself needs a token, as on GHCR.
//   - Blob GETs redirected (307) to a "CDN" port that refuses any request carrying Authorization, as S3 and
//     CloudFront signed URLs do ("Only one auth mechanism allowed"); HEADs are answered by the registry itself.
//   - Mounts: honoured only with pull on the source in the token (distribution and GHCR otherwise open a session
//     instead, 202), always declined (ECR without its mounting setting), or refused with 401/400 (Harbor).
//   - GHCR's cap on ranged requests: a PATCH or PUT carrying Content-Range over `chunkLimit` gets 416 with GHCR's
//     words (wasmCloud/wash-archive#268). Requests without Content-Range pass at any size: docker push streams each
//     layer in one PATCH with no Content-Range (distribution internal/client/blob_writer.go ReadFrom, then an empty
//     PUT), and containerd/buildx PUT each blob whole (core/remotes/docker/pusher.go), and both work on GHCR.
//   - ECR: an empty closing PUT after ranged PATCHes gets 500 (openai/tart#159).
//   - A proxy's body limit (nginx client_max_body_size): any body over `maxBody` gets 413.
//   - Docker Hub's rate limit: the first HEAD of each manifest gets 429 with Retry-After.
// Upload Locations come back relative (`/v2/…`), as GHCR sends them. Tokens are unsigned JSON: a test double.
import { createHmac } from 'node:crypto'

export type HostedRegistryOptions = {
  /** host:port of the real registry behind the front (plain HTTP). */
  target: string
  /** Users the token server knows (Basic auth at GET /token); only they may push. */
  users?: Record<string, string>
  /** What a mount request gets (default `scoped`). */
  mounts?: 'scoped' | 'declined' | 'unauthorized' | 'bad-request'
  /** Bytes: a request with Content-Range and a bigger body gets 416 (GHCR: 4 MiB). */
  chunkLimit?: number
  /** Bytes: any bigger request body gets 413. */
  maxBody?: number
  /** An empty closing PUT after ranged PATCHes gets 500 (ECR). */
  emptyPutAfterChunks500?: boolean
  /** Redirect blob GETs to the CDN port (default true). */
  cdn?: boolean
  /** The first HEAD of each manifest answers 429 with this Retry-After. */
  firstManifestHead429?: string
}

export type LoggedRequest = {
  at: 'registry' | 'cdn' | 'token'
  method: string
  path: string
  status: number
  /** The scheme of the Authorization header sent, if any. */
  auth?: string
  contentRange?: string
  contentType?: string
  accept?: string
  bodyBytes?: number
  /** For mounts: was it mounted (201)? */
  mount?: 'mounted' | 'declined'
}

export type HostedRegistry = {
  /** host:port clients use, e.g. `127.0.0.1:41234`. */
  address: string
  cdn: string
  log: LoggedRequest[]
  /** Scopes granted per token request, in order. */
  tokens: string[][]
  stop(): Promise<void>
}

type Token = { user?: string; access: Record<string, string[]> }
const SERVICE = 'hosted-test'
const GHCR_416 = {
  errors: [{
    code: 'REQUESTED_RANGE_NOT_SATISFIABLE',
    message: 'the request body is too large and exceeds the maximum permissible limit of 4.00MiB',
  }],
}
const errorJson = (status: number, code: string, message: string, headers: Record<string, string> = {}) =>
  Response.json({ errors: [{ code, message }] }, { status, headers })

/** Starts the front (and its CDN) on 127.0.0.1; `stop()` closes both. */
export function startHostedRegistry(o: HostedRegistryOptions): HostedRegistry {
  const log: LoggedRequest[] = []
  const tokens: string[][] = []
  const secret = crypto.randomUUID()
  const headSeen = new Set<string>()
  const rangedUploads = new Set<string>()
  const sign = (path: string) => createHmac('sha256', secret).update(path).digest('hex').slice(0, 32)
  const serve = (fetch: (req: Request) => Promise<Response>) =>
    Bun.serve({ port: 0, hostname: '127.0.0.1', maxRequestBodySize: 2 ** 31, idleTimeout: 0, fetch })

  const cdn = serve(async (req) => {
    const url = new URL(req.url)
    const entry: LoggedRequest = { at: 'cdn', method: req.method, path: url.pathname, status: 0, auth: scheme(req) }
    log.push(entry)
    if (req.headers.get('authorization')) {
      entry.status = 400
      return new Response(
        '<Error><Code>InvalidArgument</Code><Message>Only one auth mechanism allowed</Message></Error>',
        {
          status: 400,
        },
      )
    }
    if (url.searchParams.get('sig') !== sign(url.pathname)) {
      return new Response('bad signature', { status: entry.status = 403 })
    }
    const res = await fetch(`http://${o.target}/v2${url.pathname}`, { method: req.method })
    entry.status = res.status
    return new Response(res.body, {
      status: res.status,
      headers: pick(res.headers, ['content-length', 'content-type']),
    })
  })

  const front = serve(async (req) => {
    const url = new URL(req.url)
    if (url.pathname === '/token') return tokenServer(req, url)
    const entry: LoggedRequest = {
      at: 'registry',
      method: req.method,
      path: url.pathname,
      status: 0,
      auth: scheme(req),
      contentRange: req.headers.get('content-range') ?? undefined,
      contentType: req.headers.get('content-type') ?? undefined,
      accept: req.headers.get('accept') ?? undefined,
    }
    log.push(entry)
    const res = await registry(req, url, entry)
    entry.status = res.status
    return res
  })
  const address = `127.0.0.1:${front.port}`

  function tokenServer(req: Request, url: URL): Response {
    const entry: LoggedRequest = { at: 'token', method: req.method, path: url.pathname, status: 200, auth: scheme(req) }
    log.push(entry)
    if (req.method !== 'GET') return errorJson(entry.status = 404, 'NOT_FOUND', 'no OAuth2 here: use GET')
    let user: string | undefined
    const basic = /^Basic (.+)$/i.exec(req.headers.get('authorization') ?? '')
    if (basic) {
      const [name, ...rest] = Buffer.from(basic[1], 'base64').toString().split(':')
      if (o.users?.[name] !== rest.join(':')) {
        return errorJson(entry.status = 401, 'UNAUTHORIZED', 'incorrect username or password')
      }
      user = name
    }
    const token: Token = { user, access: {} }
    const granted: string[] = []
    for (const scope of url.searchParams.getAll('scope').flatMap((s) => s.split(' ')).filter(Boolean)) {
      const [type, name, actions] = scope.split(':')
      if (type !== 'repository') continue
      const allowed = actions.split(',').filter((a) => a === 'pull' || (a === 'push' && user))
      token.access[name] = [...new Set([...(token.access[name] ?? []), ...allowed])]
      granted.push(`repository:${name}:${allowed.join(',')}`)
    }
    tokens.push(granted)
    const text = Buffer.from(JSON.stringify(token)).toString('base64url')
    return Response.json({ token: text, access_token: text, expires_in: 300 })
  }

  function challenge(scope?: string) {
    const realm = `http://${address}/token`
    return errorJson(401, 'UNAUTHORIZED', 'authentication required', {
      'www-authenticate': `Bearer realm="${realm}",service="${SERVICE}"${scope ? `,scope="${scope}"` : ''}`,
    })
  }

  async function registry(req: Request, url: URL, entry: LoggedRequest): Promise<Response> {
    const token = readToken(req)
    const m = /^\/v2\/(.+?)\/(manifests|blobs|tags)\/(.*)$/.exec(url.pathname)
    if (!m) return token ? forward(req, url) : challenge()
    const [, name, kind, rest] = m
    const action = req.method === 'GET' || req.method === 'HEAD' ? 'pull' : 'push'
    if (!token?.access[name]?.includes(action)) {
      return challenge(`repository:${name}:${action === 'pull' ? 'pull' : 'pull,push'}`)
    }
    if (kind === 'manifests' && req.method === 'HEAD' && o.firstManifestHead429 && !headSeen.has(url.pathname)) {
      headSeen.add(url.pathname)
      return new Response(null, { status: 429, headers: { 'retry-after': o.firstManifestHead429 } })
    }
    if (kind === 'blobs' && req.method === 'GET' && !rest.startsWith('uploads') && o.cdn !== false) {
      const path = `/${name}/blobs/${rest}`
      return new Response(null, {
        status: 307,
        headers: { location: `http://127.0.0.1:${cdn.port}${path}?sig=${sign(path)}` },
      })
    }
    const body = ['GET', 'HEAD'].includes(req.method) ? undefined : new Uint8Array(await req.arrayBuffer())
    entry.bodyBytes = body?.byteLength
    const upload = rest.startsWith('uploads/') ? rest.slice('uploads/'.length) : undefined
    if (o.maxBody !== undefined && (body?.byteLength ?? 0) > o.maxBody) {
      return new Response('<html><center><h1>413 Request Entity Too Large</h1></center></html>', { status: 413 })
    }
    if (entry.contentRange && o.chunkLimit !== undefined && (body?.byteLength ?? 0) > o.chunkLimit) {
      return Response.json(GHCR_416, { status: 416 })
    }
    if (upload && entry.contentRange && req.method === 'PATCH') rangedUploads.add(upload)
    if (upload && req.method === 'PUT' && !body?.byteLength && rangedUploads.has(upload) && o.emptyPutAfterChunks500) {
      return new Response(null, { status: 500 })
    }
    if (upload === '' && req.method === 'POST' && url.searchParams.has('mount')) {
      return mount(req, url, token, entry)
    }
    return forward(req, url, body)
  }

  async function mount(req: Request, url: URL, token: Token, entry: LoggedRequest): Promise<Response> {
    const from = url.searchParams.get('from') ?? ''
    const policy = o.mounts ?? 'scoped'
    if (policy === 'unauthorized') return errorJson(401, 'UNAUTHORIZED', 'unauthorized to access repository')
    if (policy === 'bad-request') return errorJson(400, 'BAD_REQUEST', 'mount is not supported')
    if (policy === 'declined' || !token.access[from]?.includes('pull')) {
      url.searchParams.delete('mount')
      url.searchParams.delete('from')
    }
    const res = await forward(req, url)
    entry.mount = res.status === 201 ? 'mounted' : 'declined'
    return res
  }

  async function forward(req: Request, url: URL, body?: Uint8Array): Promise<Response> {
    const headers = new Headers(req.headers)
    for (const h of ['host', 'authorization', 'content-length', 'transfer-encoding']) headers.delete(h)
    const res = await fetch(`http://${o.target}${url.pathname}${url.search}`, {
      method: req.method,
      headers,
      body,
      redirect: 'manual',
    })
    const out = new Headers(res.headers)
    const location = out.get('location')
    if (location) out.set('location', location.replace(`http://${o.target}`, ''))
    out.delete('content-encoding')
    return new Response(req.method === 'HEAD' ? null : res.body, { status: res.status, headers: out })
  }

  function readToken(req: Request): Token | undefined {
    const bearer = /^Bearer (.+)$/i.exec(req.headers.get('authorization') ?? '')
    if (!bearer) return undefined
    try {
      return JSON.parse(Buffer.from(bearer[1], 'base64url').toString()) as Token
    } catch {
      return undefined
    }
  }

  return {
    address,
    cdn: `127.0.0.1:${cdn.port}`,
    log,
    tokens,
    async stop() {
      front.stop(true)
      cdn.stop(true)
    },
  }
}

const scheme = (req: Request) => req.headers.get('authorization')?.split(' ')[0]
const pick = (headers: Headers, names: string[]) =>
  Object.fromEntries(names.flatMap((n) => (headers.get(n) ? [[n, headers.get(n)!]] : [])))
