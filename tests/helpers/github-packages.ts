// A recording stand-in for GitHub's Packages REST API — the calls retention's GHCR back end makes: who an owner is,
// its container packages, their versions (100 a page), and deleting one. It is not GitHub: the versions it serves are
// the ones the test hands it (read from a real registry, which serves the manifests), every call is recorded, and a
// DELETE only removes a version from what it serves. It proves what the back end asks, in which order, with which
// headers — not what GitHub does with it.
export type PackageVersionSeed = { digest: string; tags: string[]; createdAt: string }
export type RecordedCall = { method: string; path: string; auth?: string; apiVersion?: string; status: number }
export type GitHubPackages = {
  url: string
  calls: RecordedCall[]
  /** version id → package name and digest, for the test to read the DELETE calls back */
  byId: Map<number, { name: string; digest: string }>
  stop(): void
}

export function startGitHubPackages(o: {
  owner: string
  type: 'User' | 'Organization'
  token: string
  /** package name (`fleet/eval-base`) → its versions */
  packages: Record<string, PackageVersionSeed[]>
}): GitHubPackages {
  let next = 1000
  const byId = new Map<number, { name: string; digest: string }>()
  const live = new Map<string, Array<PackageVersionSeed & { id: number }>>()
  for (const [name, versions] of Object.entries(o.packages)) {
    live.set(name, versions.map((v) => (byId.set(++next, { name, digest: v.digest }), { ...v, id: next })))
  }
  const calls: RecordedCall[] = []
  const kind = o.type === 'Organization' ? 'orgs' : 'users'
  const page = <T>(items: T[], url: URL) => {
    const per = Number(url.searchParams.get('per_page') ?? 30)
    const at = Number(url.searchParams.get('page') ?? 1)
    return Response.json(items.slice((at - 1) * per, at * per))
  }
  const server = Bun.serve({
    port: 0,
    hostname: '127.0.0.1',
    fetch(req) {
      const url = new URL(req.url)
      const call: RecordedCall = {
        method: req.method,
        path: `${url.pathname}${url.search}`,
        auth: req.headers.get('authorization') ?? undefined,
        apiVersion: req.headers.get('x-github-api-version') ?? undefined,
        status: 0,
      }
      calls.push(call)
      const res = answer(req, url)
      call.status = res.status
      return res
    },
  })
  function answer(req: Request, url: URL): Response {
    if (req.headers.get('authorization') !== `Bearer ${o.token}`) {
      return Response.json({ message: 'Bad credentials' }, { status: 401 })
    }
    if (req.method === 'GET' && url.pathname === `/users/${o.owner}`) {
      return Response.json({ login: o.owner, type: o.type })
    }
    const base = `/${kind}/${o.owner}/packages`
    if (req.method === 'GET' && url.pathname === base && url.searchParams.get('package_type') === 'container') {
      return page([...live.keys()].map((name) => ({ name, package_type: 'container' })), url)
    }
    const m = new RegExp(`^${base}/container/([^/]+)/versions(?:/(\\d+))?$`).exec(url.pathname)
    const versions = m && live.get(decodeURIComponent(m[1]))
    if (!m || !versions) return Response.json({ message: 'Not Found' }, { status: 404 })
    if (req.method === 'GET' && !m[2]) {
      return page(
        versions.map((v) => ({
          id: v.id,
          name: v.digest,
          created_at: v.createdAt,
          metadata: { package_type: 'container', container: { tags: v.tags } },
        })),
        url,
      )
    }
    if (req.method === 'DELETE' && m[2]) {
      const at = versions.findIndex((v) => v.id === Number(m[2]))
      if (at < 0) return Response.json({ message: 'Not Found' }, { status: 404 })
      versions.splice(at, 1)
      return new Response(null, { status: 204 })
    }
    return Response.json({ message: 'Not Found' }, { status: 404 })
  }
  return { url: `http://127.0.0.1:${server.port}`, calls, byId, stop: () => server.stop(true) }
}
