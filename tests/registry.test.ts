import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { writeLayer } from '../lib/image/layer.ts'
import {
  blobExists,
  copyBlob,
  ensureBlob,
  getBlob,
  mountBlob,
  sha256,
  startUpload,
  uploadBlob,
} from '../lib/registry/blobs.ts'
import { isLoopback, parseImageRef } from '../lib/registry/ref.ts'
import { RegistryClient, RegistryError } from '../lib/registry/client.ts'
import { freePort, pushTestImage, type RegistryServer, startRegistry } from './helpers/registry-server.ts'

const bytes = (s: string) => new TextEncoder().encode(s)
const tinyImage = {
  layers: [[{ path: 'hello.txt', type: 'file' as const, mode: 0o644, uid: 0, gid: 0, data: bytes('hi') }]],
}

describe('parseImageRef', () => {
  const table: [string, object][] = [
    ['ubuntu', { registry: 'registry-1.docker.io', repository: 'library/ubuntu' }],
    ['ubuntu:22.04', { registry: 'registry-1.docker.io', repository: 'library/ubuntu', tag: '22.04' }],
    ['docker.io/library/ubuntu', { registry: 'registry-1.docker.io', repository: 'library/ubuntu' }],
    ['docker.io/ubuntu', { registry: 'registry-1.docker.io', repository: 'library/ubuntu' }],
    ['index.docker.io/swebench/sweb.eval.x86_64.django:latest', {
      registry: 'registry-1.docker.io',
      repository: 'swebench/sweb.eval.x86_64.django',
      tag: 'latest',
    }],
    ['swebench/base', { registry: 'registry-1.docker.io', repository: 'swebench/base' }],
    ['localhost/x', { registry: 'localhost', repository: 'x' }],
    ['localhost:5000/x', { registry: 'localhost:5000', repository: 'x' }],
    ['127.0.0.1:5123/a/b:tag', { registry: '127.0.0.1:5123', repository: 'a/b', tag: 'tag' }],
    ['ghcr.io/owner/repo/sub:v1.2-rc_3', { registry: 'ghcr.io', repository: 'owner/repo/sub', tag: 'v1.2-rc_3' }],
    ['[::1]:5000/a', { registry: '[::1]:5000', repository: 'a' }],
    [`alpine@sha256:${'a'.repeat(64)}`, {
      registry: 'registry-1.docker.io',
      repository: 'library/alpine',
      digest: `sha256:${'a'.repeat(64)}`,
    }],
    [`r.io/a:t@sha256:${'b'.repeat(64)}`, {
      registry: 'r.io',
      repository: 'a',
      tag: 't',
      digest: `sha256:${'b'.repeat(64)}`,
    }],
  ]
  for (const [ref, want] of table) test(`normalizes ${ref}`, () => expect(parseImageRef(ref)).toEqual(want as never))

  for (
    const bad of [
      '',
      'Ubuntu:1',
      'a//b',
      'a:',
      'ubuntu:-bad',
      'a@sha256:123',
      'x/ y',
      'a/b:t:t',
      `r.io/${'a'.repeat(256)}`,
    ]
  ) {
    test(`rejects '${bad}' with a clear error`, () =>
      expect(() => parseImageRef(bad)).toThrow('invalid image reference'))
  }

  test('loopback registries are plain HTTP, others https', async () => {
    expect(['127.0.0.1:5000', 'localhost', '127.3.2.1:1', '[::1]:5000'].every(isLoopback)).toBe(true)
    expect(['ghcr.io', '10.0.0.1:5000', 'localhost.example.com'].some(isLoopback)).toBe(false)
    const client = new RegistryClient({ insecure: { names: ['10.0.0.1:5000'] } })
    expect(
      await Promise.all([client.baseUrl('127.0.0.1:5000'), client.baseUrl('ghcr.io'), client.baseUrl('10.0.0.1:5000')]),
    ).toEqual(['http://127.0.0.1:5000', 'https://ghcr.io', 'http://10.0.0.1:5000'])
  })
})

describe('against a local registry', () => {
  let reg: RegistryServer
  let other: RegistryServer
  const client = new RegistryClient()
  beforeAll(async () => {
    ;[reg, other] = await Promise.all([startRegistry(), startRegistry()])
    await pushTestImage(client, `${reg.address}/fleet/app:present`, tinyImage)
  })
  afterAll(async () => {
    await reg?.stop()
    await other?.stop()
  })

  test('manifestExists: true for a pushed tag, false for a missing tag or repository', async () => {
    expect(await client.manifestExists(`${reg.address}/fleet/app:present`)).toBe(true)
    expect(await client.manifestExists(`${reg.address}/fleet/app:absent`)).toBe(false)
    expect(await client.manifestExists(`${reg.address}/nobody/here:x`)).toBe(false)
  })

  test('checkMany answers 500 references at once: each present tag true, each missing one false', async () => {
    const image = await pushTestImage(client, `${reg.address}/fleet/many:t0`, tinyImage)
    for (let i = 1; i < 250; i++) {
      await client.putManifest(parseImageRef(`${reg.address}/fleet/many:t${i}`), image.manifest, image.mediaType)
    }
    const refs = Array.from({ length: 500 }, (_, i) => `${reg.address}/fleet/many:t${i}`)
    // how long 500 checks take is bench/plan.ts's to measure (the plan's registry checks), not a test's
    const results = await new RegistryClient().checkMany(refs, 64)
    expect(refs.filter((r) => results.get(r) === true).length).toBe(250)
    expect(refs.filter((r) => results.get(r) === false).length).toBe(250)
  })

  test('mounts a blob across repositories of one registry (201)', async () => {
    const blob = bytes('mount me ' + Date.now())
    const { digest } = await uploadBlob(client, { registry: reg.address, repository: 'src/one' }, blob)
    expect(
      await mountBlob(client, { registry: reg.address, repository: 'dst/two' }, digest, {
        registry: reg.address,
        repository: 'src/one',
      }),
    ).toEqual({ mounted: true })
    expect(await blobExists(client, { registry: reg.address, repository: 'dst/two' }, digest)).toBe(blob.length)
    expect(
      await ensureBlob(client, { registry: reg.address, repository: 'src/one' }, {
        registry: reg.address,
        repository: 'dst/three',
      }, digest),
    ).toBe('mounted')
  })

  test('copies a blob to another registry in chunks, streaming, and verifies the digest', async () => {
    const blob = writeLayer([{
      path: 'big',
      type: 'file',
      mode: 0o644,
      uid: 0,
      gid: 0,
      data: crypto.getRandomValues(new Uint8Array(50_000)),
    }]).gzip
    const from = { registry: reg.address, repository: 'src/big' }
    const to = { registry: other.address, repository: 'dst/big' }
    const { digest } = await uploadBlob(client, from, blob)
    const before = client.counters.bytesUploaded
    expect(await ensureBlob(client, from, to, digest, { chunkBytes: 8192 })).toBe('copied')
    expect(client.counters.bytesUploaded - before).toBeGreaterThanOrEqual(blob.length)
    expect(sha256(await getBlob(client, to, digest))).toBe(digest)
    expect(await ensureBlob(client, from, to, digest)).toBe('present')
  })

  test('a registry that refuses mounts (202) gets the blob copied instead', async () => {
    const proxy = refuseMounts(reg.address)
    try {
      const blob = bytes('refused mount ' + Date.now())
      const { digest } = await uploadBlob(client, { registry: reg.address, repository: 'src/refused' }, blob)
      const from = { registry: proxy.address, repository: 'src/refused' }
      const to = { registry: proxy.address, repository: 'dst/refused' }
      expect((await mountBlob(client, to, digest, from)).mounted).toBe(false)
      expect(await ensureBlob(client, from, { ...to, repository: 'dst/refused2' }, digest)).toBe('copied')
      expect(await blobExists(client, { registry: reg.address, repository: 'dst/refused2' }, digest)).toBe(blob.length)
    } finally {
      proxy.stop()
    }
  })

  test('copyBlob into an open upload rejects a blob whose bytes do not match its digest', async () => {
    const to = { registry: reg.address, repository: 'dst/bad' }
    const location = await startUpload(client, to)
    const { digest } = await uploadBlob(client, { registry: reg.address, repository: 'src/ok' }, bytes('good'))
    await expect(
      copyBlob(client, { registry: reg.address, repository: 'src/ok' }, to, `sha256:${'0'.repeat(64)}`, location),
    ).rejects.toThrow()
    expect(digest).toStartWith('sha256:')
  })
})

/** An in-process proxy in front of a real registry that drops ?mount= (as registries that refuse mounts do). */
function refuseMounts(target: string) {
  const server = Bun.serve({
    port: 0,
    hostname: '127.0.0.1',
    async fetch(req) {
      const url = new URL(req.url)
      url.searchParams.delete('mount')
      url.searchParams.delete('from')
      const headers = new Headers(req.headers)
      headers.delete('host')
      const body = req.method === 'GET' || req.method === 'HEAD' ? undefined : await req.arrayBuffer()
      const res = await fetch(`http://${target}${url.pathname}${url.search}`, {
        method: req.method,
        headers,
        body,
        redirect: 'manual',
      })
      return new Response(res.body, { status: res.status, headers: res.headers })
    },
  })
  return { address: `127.0.0.1:${server.port}`, stop: () => server.stop(true) }
}

describe('authentication', () => {
  let reg: RegistryServer
  let configDir: string
  const user = { username: 'fleet', password: 's3cret-pass' }
  beforeAll(async () => {
    reg = await startRegistry({ auth: user })
    configDir = fs.mkdtempSync(path.join(os.tmpdir(), 'imagefleet-dockercfg-'))
    const auth = Buffer.from(`${user.username}:${user.password}`).toString('base64')
    fs.writeFileSync(
      path.join(configDir, 'config.json'),
      JSON.stringify({ auths: { [`http://${reg.address}`]: { auth } } }),
    )
  })
  afterAll(async () => {
    await reg?.stop()
    fs.rmSync(configDir, { recursive: true, force: true })
  })

  test('basic auth with credentials from docker config.json (auths.auth base64) works', async () => {
    const client = new RegistryClient({ dockerConfigDir: configDir })
    await pushTestImage(client, `${reg.address}/private/app:v1`, tinyImage)
    expect(await client.manifestExists(`${reg.address}/private/app:v1`)).toBe(true)
    expect(await client.manifestExists(`${reg.address}/private/app:v2`)).toBe(false)
  })

  test('no credentials or wrong ones give error class auth, never false', async () => {
    const anonymous = new RegistryClient()
    const wrong = new RegistryClient({ credentials: async () => ({ username: 'fleet', password: 'nope' }) })
    for (const client of [anonymous, wrong]) {
      const error = await client.manifestExists(`${reg.address}/private/app:v1`).catch((e) => e)
      expect(error).toBeInstanceOf(RegistryError)
      expect(error.errorClass).toBe('auth')
    }
  })
})

describe('bearer tokens, retries and failure classes (fake registry)', () => {
  let server: ReturnType<typeof Bun.serve>
  const seen = {
    token: 0,
    tokenAuth: [] as (string | null)[],
    scopes: [] as string[],
    methods: [] as string[],
    failures: 0,
  }
  let helperDir: string
  beforeAll(() => {
    server = Bun.serve({
      port: 0,
      hostname: '127.0.0.1',
      async fetch(req) {
        const url = new URL(req.url)
        if (url.pathname === '/token') {
          seen.token++
          seen.tokenAuth.push(req.headers.get('authorization'))
          seen.methods.push(req.method)
          const scope = req.method === 'POST'
            ? new URLSearchParams(await req.text()).get('scope') ?? ''
            : url.searchParams.getAll('scope').join(' ')
          seen.scopes.push(scope)
          return Response.json({ token: `tok:${scope}`, expires_in: 300 })
        }
        if (url.pathname.startsWith('/v2/flaky/')) {
          return ++seen.failures <= 2 ? new Response('busy', { status: 503 }) : new Response(null, { status: 200 })
        }
        if (url.pathname.startsWith('/v2/down/')) return new Response('boom', { status: 500 })
        if (url.pathname.startsWith('/v2/slow/')) {
          await Bun.sleep(2000)
          return new Response(null, { status: 200 })
        }
        const repo = url.pathname.split('/manifests/')[0].slice(4)
        if (req.headers.get('authorization') !== `Bearer tok:repository:${repo}:pull`) {
          return new Response('{"errors":[{"code":"UNAUTHORIZED"}]}', {
            status: 401,
            headers: {
              'www-authenticate':
                `Bearer realm="http://127.0.0.1:${server.port}/token",service="fake",scope="repository:${repo}:pull"`,
            },
          })
        }
        return new Response(null, { status: url.pathname.endsWith('/there') ? 200 : 404 })
      },
    })
    helperDir = fs.mkdtempSync(path.join(os.tmpdir(), 'imagefleet-helper-'))
    fs.writeFileSync(
      path.join(helperDir, 'docker-credential-fake'),
      '#!/bin/sh\nread server\necho "{\\"ServerURL\\":\\"$server\\",\\"Username\\":\\"helper-user\\",\\"Secret\\":\\"helper-secret\\"}"\n',
      { mode: 0o755 },
    )
  })
  afterAll(() => {
    server.stop(true)
    fs.rmSync(helperDir, { recursive: true, force: true })
  })
  const at = () => `127.0.0.1:${server.port}`

  test('anonymous bearer flow: 401 challenge, token for the repository pull scope, cached per scope', async () => {
    const client = new RegistryClient()
    const before = seen.token
    expect(await client.manifestExists(`${at()}/team/app:there`)).toBe(true)
    expect(await client.manifestExists(`${at()}/team/app:gone`)).toBe(false)
    expect(seen.token - before).toBe(1)
    expect(seen.scopes.at(-1)).toBe('repository:team/app:pull')
    expect(seen.tokenAuth.at(-1)).toBeNull()
  })

  test('token requests carry credentials from a docker-credential helper named in credHelpers', async () => {
    const configDir = fs.mkdtempSync(path.join(os.tmpdir(), 'imagefleet-dockercfg-'))
    fs.writeFileSync(path.join(configDir, 'config.json'), JSON.stringify({ credHelpers: { [at()]: 'fake' } }))
    const oldPath = process.env.PATH
    process.env.PATH = `${helperDir}:${oldPath}`
    try {
      const client = new RegistryClient({ dockerConfigDir: configDir })
      expect(await client.manifestExists(`${at()}/helped/app:there`)).toBe(true)
      expect(seen.tokenAuth.at(-1)).toBe(`Basic ${Buffer.from('helper-user:helper-secret').toString('base64')}`)
    } finally {
      process.env.PATH = oldPath
      fs.rmSync(configDir, { recursive: true, force: true })
    }
  })

  test('an identity token is exchanged with a POST refresh-token grant', async () => {
    const client = new RegistryClient({ credentials: async () => ({ identityToken: 'refresh-me' }) })
    expect(await client.manifestExists(`${at()}/oauth/app:there`)).toBe(true)
    expect([seen.methods.at(-1), seen.scopes.at(-1)]).toEqual(['POST', 'repository:oauth/app:pull'])
  })

  test('5xx is retried with backoff and then succeeds', async () => {
    const client = new RegistryClient({ retryDelayMs: 10 })
    expect(await client.manifestExists(`${at()}/flaky/app:x`)).toBe(true)
    expect(client.counters.retries).toBe(2)
  })

  test('persistent 5xx is class network after the configured retries', async () => {
    const client = new RegistryClient({ retries: 3, retryDelayMs: 5 })
    const error = await client.manifestExists(`${at()}/down/app:x`).catch((e) => e)
    expect([error.errorClass, error.status, client.counters.retries]).toEqual(['network', 500, 3])
  })

  test('no answer in time is class timeout; a refused connection is class network', async () => {
    const slow = await new RegistryClient({ timeoutSeconds: 0.2, retries: 0 }).manifestExists(`${at()}/slow/app:x`)
      .catch((e) => e)
    expect(slow.errorClass).toBe('timeout')
    const closed = `127.0.0.1:${await freePort()}`
    const refused = await new RegistryClient({ retries: 1, retryDelayMs: 5 }).manifestExists(`${closed}/a:b`).catch((
      e,
    ) => e)
    expect(refused.errorClass).toBe('network')
    console.log(`refused connection reads: ${refused.message}`)
  })

  test('checkMany maps failures to their RegistryError instead of throwing', async () => {
    const results = await new RegistryClient({ retries: 0 }).checkMany([`${at()}/team/app:there`, `${at()}/down/app:x`])
    expect(results.get(`${at()}/team/app:there`)).toBe(true)
    expect((results.get(`${at()}/down/app:x`) as RegistryError).errorClass).toBe('network')
  })
})
