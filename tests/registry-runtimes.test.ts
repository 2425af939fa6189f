// The registry client under Bun, Deno and Node: a blob GET that the registry redirects to a CDN on another origin
// arrives there without the registry's Authorization (the CDN refuses any request carrying one, as S3 and
// CloudFront signed URLs do), so the blob downloads under each runtime. Real registry behind the hosted front.
import { afterAll, beforeAll, expect, test } from 'bun:test'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { $ } from 'zx'
import { sha256, uploadBlob } from '../lib/registry/blobs.ts'
import { RegistryClient } from '../lib/registry/client.ts'
import { type HostedRegistry, startHostedRegistry } from './helpers/hosted-registry.ts'
import { type RegistryServer, startRegistry } from './helpers/registry-server.ts'

const ROOT = path.resolve(import.meta.dir, '..')
const DRIVER = `import { getBlob, sha256 } from '${ROOT}/lib/registry/blobs.ts'
import { RegistryClient } from '${ROOT}/lib/registry/client.ts'
const [registry, repository, digest] = process.argv.slice(2)
const bytes = await getBlob(new RegistryClient(), { registry, repository }, digest)
console.log(sha256(bytes))
`
let backing: RegistryServer
let front: HostedRegistry
let work: string
let digest: string

beforeAll(async () => {
  backing = await startRegistry()
  front = startHostedRegistry({ target: backing.address })
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'registry-runtimes-'))
  fs.writeFileSync(path.join(work, 'driver.ts'), DRIVER)
  await $({ quiet: true, cwd: ROOT })`${process.execPath} build ${
    path.join(work, 'driver.ts')
  } --target=node --outfile ${path.join(work, 'driver.mjs')}`
  const blob = crypto.getRandomValues(new Uint8Array(40_000))
  digest = (await uploadBlob(new RegistryClient(), { registry: backing.address, repository: 'cdn/blob' }, blob)).digest
  expect(digest).toBe(sha256(blob))
})
afterAll(async () => {
  await front?.stop()
  await backing?.stop()
  fs.rmSync(work, { recursive: true, force: true })
})

const RUNTIMES: Record<string, () => string[]> = {
  bun: () => [process.execPath, path.join(work, 'driver.ts')],
  deno: () => [
    path.join(ROOT, 'node_modules/.bin/deno'),
    'run',
    '-A',
    '--config',
    path.join(ROOT, 'deno.json'),
    path.join(work, 'driver.ts'),
  ],
  node: () => ['node', path.join(work, 'driver.mjs')],
}

for (const [runtime, command] of Object.entries(RUNTIMES)) {
  test(`${runtime}: a blob GET redirected to a CDN on another origin drops Authorization and downloads`, async () => {
    const before = front.log.length
    const out = await $({ quiet: true, nothrow: true, cwd: ROOT })`${command()} ${front.address} cdn/blob ${digest}`
    expect([out.exitCode, out.stdout.trim()]).toEqual([0, digest])
    const seen = front.log.slice(before)
    const redirected = seen.filter((r) => r.at === 'registry' && r.method === 'GET' && r.status === 307)
    expect(redirected.map((r) => r.auth)).toEqual(['Bearer']) // the registry got the token…
    expect(seen.filter((r) => r.at === 'cdn').map((r) => [r.auth ?? 'none', r.status])).toEqual([['none', 200]]) // …the CDN did not
  })
}
