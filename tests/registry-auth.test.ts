// Who the registry client talks to and how it proves who it is (issue 17, points 4, 7 and 8): several challenges
// in one WWW-Authenticate, stale headers and credentials, docker's insecure-registries rule, and manifests that are
// not images. Fake registries (small Bun servers) for the protocol logic; a real docker-registry where it can.
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { Assembler } from '../lib/image/assemble-registry.ts'
import { sha256, uploadBlob } from '../lib/registry/blobs.ts'
import { MEDIA, RegistryClient } from '../lib/registry/client.ts'
import { toCommandError } from '../lib/run/errors.ts'
import { preflight } from '../scripts/preflight.ts'
import { type RegistryServer, startRegistry } from './helpers/registry-server.ts'

const bytes = (s: string) => new TextEncoder().encode(s)
type Handler = (req: Request, url: URL) => Response | Promise<Response>
let server: ReturnType<typeof Bun.serve>
let real: RegistryServer
const routes = new Map<string, Handler>()
/** Serves `handler` for /v2/<name>/… and /token/<name>; returns `host:port/name`. */
const fake = (name: string, handler: Handler) => {
  routes.set(name, handler)
  return `127.0.0.1:${server.port}/${name}`
}
const realm = (name: string) => `http://127.0.0.1:${server.port}/token/${name}`
const basicOf = (req: Request) =>
  Buffer.from((req.headers.get('authorization') ?? '').replace(/^Basic /, ''), 'base64').toString()

beforeAll(async () => {
  server = Bun.serve({
    port: 0,
    hostname: '127.0.0.1',
    fetch(req) {
      const url = new URL(req.url)
      const handler = routes.get(url.pathname.split('/')[2])
      return handler ? handler(req, url) : new Response('no such fake', { status: 404 })
    },
  })
  real = await startRegistry()
})
afterAll(async () => {
  server.stop(true)
  await real?.stop()
})

describe('challenges and stale credentials', () => {
  /** A registry that wants a Bearer token from its realm and also offers Basic (at a realm that is not a URL). */
  const twoChallenges = (name: string, headers: Headers) => {
    let tokens = 0
    const ref = fake(name, (req, url) => {
      if (url.pathname.startsWith('/token/')) return tokens++, Response.json({ token: 'tok' })
      if (req.headers.get('authorization') === 'Bearer tok') return new Response(null, { status: 200 })
      return new Response(null, { status: 401, headers })
    })
    return { ref: `${ref}:v1`, tokens: () => tokens }
  }

  test('Basic and Bearer in one WWW-Authenticate header: the Bearer challenge is answered, at its own realm', async () => {
    const headers = new Headers({
      'www-authenticate': `Basic realm="Registry Realm", Bearer realm="${realm('onehdr')}",service="fake"`,
    })
    const registry = twoChallenges('onehdr', headers)
    const client = new RegistryClient({ credentials: async () => ({ username: 'u', password: 'p' }) })
    expect(await client.manifestExists(registry.ref)).toBe(true)
    expect(registry.tokens()).toBe(1)
  })

  test('Bearer and Basic as two header lines (fetch joins them with a comma): Bearer, never the Basic realm', async () => {
    const headers = new Headers()
    headers.append('www-authenticate', `Bearer realm="${realm('twohdr')}",service="fake",scope="repository:x:pull"`)
    headers.append('www-authenticate', 'Basic realm="Registry Realm"')
    const registry = twoChallenges('twohdr', headers)
    expect(await new RegistryClient().manifestExists(registry.ref)).toBe(true)
    expect(registry.tokens()).toBe(1)
  })

  test('a Basic header the registry stops accepting is dropped after the 401 and the credentials read again', async () => {
    let password = 'old'
    let reads = 0
    const ref = fake(
      'rotate',
      (req) =>
        basicOf(req) === `fleet:${password}`
          ? new Response(null, { status: 200 })
          : new Response(null, { status: 401, headers: { 'www-authenticate': 'Basic realm="fake"' } }),
    )
    const client = new RegistryClient({
      credentials: async () => ({ username: 'fleet', password: (reads++, password) }),
    })
    expect(await client.manifestExists(`${ref}:v1`)).toBe(true)
    password = 'new' // rotated, as an ECR login does every 12 h
    expect(await client.manifestExists(`${ref}:v1`)).toBe(true)
    expect(reads).toBe(2)
  })

  test('a Bearer token the registry revokes is dropped after the 401 and a new one fetched', async () => {
    let valid = 'tok-1'
    let issued = 0
    const ref = fake('revoke', (req, url) => {
      if (url.pathname.startsWith('/token/')) return Response.json({ token: `tok-${++issued}`, expires_in: 3600 })
      if (req.headers.get('authorization') === `Bearer ${valid}`) return new Response(null, { status: 200 })
      return new Response(null, { status: 401, headers: { 'www-authenticate': `Bearer realm="${realm('revoke')}"` } })
    })
    const client = new RegistryClient()
    expect(await client.manifestExists(`${ref}:v1`)).toBe(true)
    valid = 'tok-2'
    expect(await client.manifestExists(`${ref}:v1`)).toBe(true)
    expect(issued).toBe(2)
  })

  test('credentials are read again once credentialSeconds have passed, not kept for the whole run', async () => {
    let reads = 0
    const ref = fake(
      'ttl',
      (req) =>
        basicOf(req) === 'fleet:pw'
          ? new Response(null, { status: 200 })
          : new Response(null, { status: 401, headers: { 'www-authenticate': 'Basic realm="fake"' } }),
    )
    const client = new RegistryClient({
      credentialSeconds: 0.2,
      credentials: async () => (reads++, { username: 'fleet', password: 'pw' }),
    })
    expect(await client.manifestExists(`${ref}:v1`)).toBe(true)
    await new Promise((r) => setTimeout(r, 300))
    expect(await client.manifestExists(`${ref}:v1`)).toBe(true)
    expect(reads).toBe(2)
  })
})

describe("plain HTTP where docker would speak it (the daemon's insecure-registries), HTTPS elsewhere", () => {
  let dir: string
  const oldPath = process.env.PATH
  beforeAll(() => {
    // a fake `docker` for preflight (one `docker info --format {{json .}}`): a daemon whose insecure-registries are one
    // name and two CIDRs
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'insecure-docker-'))
    const config = {
      IndexConfigs: {
        'docker.io': { Name: 'docker.io', Secure: true, Official: true },
        'registry:5000': { Name: 'registry:5000', Secure: false, Official: false },
      },
      InsecureRegistryCIDRs: ['127.0.0.0/8', '10.0.0.0/8'],
    }
    fs.writeFileSync(
      path.join(dir, 'docker'),
      `#!/bin/sh\ncase "$1 $3" in\n  "version "*) echo '{"Client":{"Version":"28.0.1"},"Server":{"Version":"28.0.1"}}' ;;\n` +
        `  "info {{json .}}") echo '${JSON.stringify({ DockerRootDir: dir, RegistryConfig: config })}' ;;\n` +
        `  *) exit 1 ;;\nesac\n`,
      { mode: 0o755 },
    )
    process.env.PATH = `${dir}:${oldPath}`
  })
  afterAll(() => {
    process.env.PATH = oldPath
    fs.rmSync(dir, { recursive: true, force: true })
  })

  test("preflight reads the daemon's insecure registries (docker info) and the client follows docker's rule", async () => {
    const pre = await preflight({ minFree: 0, insecureRegistry: ['mirror.internal:5000'] })
    expect(pre.insecure).toEqual({
      names: ['registry:5000', 'mirror.internal:5000'],
      cidrs: ['127.0.0.0/8', '10.0.0.0/8'],
    })
    const client = new RegistryClient({ insecure: pre.insecure })
    const hosts = [
      'registry:5000', // named by the daemon
      'mirror.internal:5000', // named by --insecure-registry
      '10.1.2.3:5000', // inside an insecure CIDR
      '127.0.0.1:5000', // loopback
      'ghcr.io',
      '192.168.1.2:5000',
      'no-such-host.invalid:5000', // a name that does not resolve is secure, as for docker
    ]
    const urls = await Promise.all(hosts.map((h) => client.baseUrl(h)))
    expect(urls.map((u) => u.split(':')[0])).toEqual(['http', 'http', 'http', 'http', 'https', 'https', 'https'])
  })

  test('a host name is matched against the insecure CIDRs by the addresses it resolves to', async () => {
    const name = os.hostname() // resolves through /etc/hosts on any machine that runs these tests
    const client = new RegistryClient({ insecure: { cidrs: ['0.0.0.0/0', '::/0'] } })
    expect(await client.baseUrl(`${name}:5000`)).toBe(`http://${name}:5000`)
    expect(await new RegistryClient({ insecure: { cidrs: ['10.0.0.0/8'] } }).baseUrl(`${name}:5000`))
      .toBe(`https://${name}:5000`)
  })
})

describe('not an image: a clear error with class and words, never a TypeError', () => {
  const schema1 = {
    schemaVersion: 1,
    name: 'legacy/app',
    tag: 'v1',
    architecture: 'amd64',
    fsLayers: [{ blobSum: `sha256:${'a'.repeat(64)}` }],
    history: [{ v1Compatibility: '{}' }],
    signatures: [],
  }

  test('a schema 1 manifest is class unsupported, in words that say so, also when assembling', async () => {
    const ref = fake('legacy', () =>
      new Response(JSON.stringify(schema1), {
        headers: { 'content-type': 'application/vnd.docker.distribution.manifest.v1+prettyjws' },
      }))
    const client = new RegistryClient()
    const error = await client.getManifest(`${ref}:v1`).catch((e) => e)
    expect([error.errorClass, /Docker schema 1 manifest/.test(error.message)]).toEqual(['unsupported', true])
    const plan = { ok: true as const, steps: [], baseImage: `${ref}:v1`, sources: [] }
    const assembling = await new Assembler({ client }).assemble(plan, `${ref}:v2`).catch((e: Error) => e)
    const failed = toCommandError('assemble legacy', assembling)
    expect([failed.errorClass, /schema 1/.test(failed.message)]).toEqual(['unsupported_image', true])
  })

  test('an OCI artifact (a Helm chart) in a real registry is class unsupported, naming its type', async () => {
    const client = new RegistryClient()
    const repo = { registry: real.address, repository: 'charts/app' }
    const config = bytes('{"name":"app","version":"1.0.0"}')
    const chart = bytes('not really a tarball')
    await uploadBlob(client, repo, config)
    await uploadBlob(client, repo, chart)
    const manifest = bytes(JSON.stringify({
      schemaVersion: 2,
      mediaType: MEDIA.ociManifest,
      config: { mediaType: 'application/vnd.cncf.helm.config.v1+json', digest: sha256(config), size: config.length },
      layers: [{ mediaType: 'application/vnd.cncf.helm.chart.content.v1.tar+gzip', digest: sha256(chart), size: 20 }],
    }))
    await client.putManifest(`${real.address}/charts/app:1.0.0`, manifest, MEDIA.ociManifest)
    const plan = { ok: true as const, steps: [], baseImage: `${real.address}/charts/app:1.0.0`, sources: [] }
    const assembling = (await new Assembler({ client }).assemble(plan, `${real.address}/charts/app:agent`)
      .catch((e: Error) => e)) as Error & { errorClass?: string }
    expect([assembling.errorClass, assembling.message]).toEqual([
      'unsupported',
      `${real.address}/charts/app:1.0.0 is not a container image but an artifact of type ` +
      'application/vnd.cncf.helm.config.v1+json (its config is not an image config)',
    ])
    expect(toCommandError('assemble chart', assembling).errorClass).toBe('unsupported_image')
  })
})
