// The real pipeline through fronts that behave like hosted registries, in front of the sandbox's real registry and
// with its real dockerd (which pushes and pulls through the same front): a GHCR-like front (Bearer scopes, blob
// GETs redirected to a CDN that refuses Authorization, mounts honoured only with pull on the source, a first 429
// on every manifest HEAD, GHCR's 4 MiB cap on ranged requests), then the same assembly through a Harbor-like front
// behind a proxy (mounts answered 401, bodies over 16 MiB refused with 413, ECR's 500 on an empty PUT after chunks).
import { afterAll, beforeAll, expect, test } from 'bun:test'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { $ } from 'zx'
import { describeIntegration } from './helpers/integration.ts'
import { type HostedRegistry, type LoggedRequest, startHostedRegistry } from './helpers/hosted-registry.ts'
import { type Sandbox, sandboxDown, sandboxUp } from '../scripts/_sandbox-engine.ts'
import { type Fleet, generateFleet } from '../examples/synthetic-fleet/generate.ts'
import { RegistryClient } from '../lib/registry/client.ts'
import { sha256 } from '../lib/registry/blobs.ts'
import { jsonLines } from './helpers/json-lines.ts'

const ROOT = path.resolve(import.meta.dir, '..')
const MiB = 2 ** 20
const USER = { name: 'fleet', password: 'hosted-pw' }

describeIntegration('the pipeline through fronts that behave like hosted registries', () => {
  let sb: Sandbox
  let fleet: Fleet
  let work: string
  let instances: string
  let ghcr: HostedRegistry
  let harbor: HostedRegistry
  let key: string
  const env = () => ({ ...sb.env, FRONT_PASSWORD: USER.password })
  const via = (front: HostedRegistry, ref: string) => ref.replace(sb.registry, front.address)
  const finals = (registry: string, repo = 'eval-agent') =>
    fleet.ids.map((id) => `${registry}/fleet/${repo}:${key}-${id.toLowerCase().replace(/__/g, '_1776_')}`)
  const summaryOf = (out: string) => JSON.parse(fs.readFileSync(path.join(out, 'summary.json'), 'utf8'))
  const manifestOf = (out: string) => jsonLines(path.join(out, 'manifest.jsonl'))

  beforeAll(async () => {
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'hosted-it-'))
    sb = await sandboxUp({ dir: path.join(work, 'sandbox'), disk: 1536 * MiB, baseEnv: process.env })
    instances = path.join(work, 'instances.txt')
    // 6 instances in 2 environments: layers of 40 MB and 12 MB, over the 4 MiB chunk cap and the 16 MiB body limit
    fleet = await generateFleet({
      registry: sb.registry,
      groups: 2,
      perGroup: 3,
      envSize: 40e6,
      instanceSize: 12e6,
      out: instances,
    })
    const users = { [USER.name]: USER.password }
    ghcr = startHostedRegistry({
      target: sb.registry,
      users,
      mounts: 'scoped',
      chunkLimit: 4 * MiB,
      firstManifestHead429: '1',
    })
    harbor = startHostedRegistry({
      target: sb.registry,
      users,
      mounts: 'unauthorized',
      maxBody: 16 * MiB,
      chunkLimit: 4 * MiB,
      emptyPutAfterChunks500: true,
    })
  })
  afterAll(async () => {
    await ghcr?.stop()
    await harbor?.stop()
    if (sb) await sandboxDown({ dir: sb.dir })
    fs.rmSync(work, { recursive: true, force: true })
  })

  const script = (name: string, front: HostedRegistry, out: string, extra: string[] = []) =>
    $({
      env: env(),
      cwd: ROOT,
      nothrow: true,
      quiet: true,
    })`${process.execPath} scripts/${name}.ts --instances ${instances} --upstream ${
      via(front, fleet.upstream)
    } --registry ${front.address}/fleet --context examples/synthetic-fleet/context --build-arg SEED_IMAGE=${
      via(front, sb.seedImage)
    } --network none --concurrency 3 --min-free 100MB --registry-user ${USER.name} --password-env FRONT_PASSWORD --mode registry --out ${out} ${extra}`

  test('preflight reads the daemon insecure-registries from docker info and checks the front over plain HTTP', async () => {
    const out = path.join(work, 'preflight')
    const r = await $({
      env: env(),
      cwd: ROOT,
      nothrow: true,
      quiet: true,
    })`${process.execPath} scripts/preflight.ts --registry ${ghcr.address}/fleet --min-free 1MB --out ${out}`
    expect(r.exitCode).toBe(0)
    const pre = JSON.parse(fs.readFileSync(path.join(out, 'preflight.json'), 'utf8'))
    expect(pre.insecure.cidrs).toContain('127.0.0.0/8') // dockerd's default
    expect(pre.checks.find((c: { name: string }) => c.name === 'registry').detail).toContain(
      `answers at http://${ghcr.address}/v2/ (401)`,
    )
  })

  test('GHCR-like: N/N finals assembled in the registry, docker pushing and pulling through the same front', async () => {
    const out = path.join(work, 'ghcr')
    const r = await script('pipeline', ghcr, out)
    if (r.exitCode !== 0) console.log(r.stdout, r.stderr)
    expect(r.exitCode).toBe(0)
    const summary = summaryOf(out)
    key = summary.key
    expect(summary.counts.base).toMatchObject({ built: fleet.instances, failed: 0 })
    expect(summary.counts.assemble).toEqual({ built: fleet.instances, skipped: 0, failed: 0 })
    const assembled = manifestOf(out).filter((m) => m.phase === 'assemble' && m.status === 'built')
    expect(assembled.filter((m) => m.registry).length).toBe(fleet.instances) // in the registry, not docker build
    expect(summary.registry).toMatchObject({ images: fleet.instances, copied: 0 })
    const log = ghcr.log
    const count = (f: (r: LoggedRequest) => boolean) => log.filter(f).length
    const attempts = manifestOf(out).filter((m) => m.phase === 'base').map((m) => m.attempts)
    console.log(
      `GHCR-like front: ${log.length} requests, ${count((r) => r.at === 'cdn')} blob GETs through the CDN, ` +
        `${count((r) => r.status === 429)} answered 429, ${count((r) => r.mount === 'mounted')} mounts ` +
        `(${count((r) => r.mount === 'declined')} declined), ${ghcr.tokens.length} tokens; base attempts ${attempts}`,
    )
    // the assembly's mounts: one token with push,pull on the final repository and pull on the base's
    expect(ghcr.tokens).toContainEqual(['repository:fleet/eval-agent:pull,push', 'repository:fleet/eval-base:pull'])
    expect(count((r) => r.at === 'cdn')).toBeGreaterThan(0)
    expect(log.filter((r) => r.at === 'cdn').every((r) => !r.auth && r.status === 200)).toBe(true)
    expect(count((r) => r.status === 429)).toBeGreaterThan(0)
    expect(count((r) => r.status === 416 || r.status >= 500)).toBe(0)
    expect(count((r) => r.mount === 'mounted')).toBeGreaterThan(0)
  })

  test('every final, pulled by docker through the GHCR-like front (blobs from the CDN), holds its instance file and the agent', async () => {
    const sh = $({ env: env(), quiet: true })
    const before = ghcr.log.length
    for (const [i, tag] of finals(ghcr.address).entries()) {
      await sh`docker image prune -af`
      await sh`docker pull ${tag}`
      const seen =
        await sh`docker run --rm --network none ${tag} /bin/sh -c ${'cat /instance/id; cat /opt/agent/VERSION; wc -c < /opt/agent/artifact.bin'}`
      expect(seen.stdout.split('\n').slice(0, 3)).toEqual([fleet.ids[i], 'synthetic-agent 1.0', '20000000'])
      await sh`docker rmi ${tag}`
    }
    const cdn = ghcr.log.slice(before).filter((r) => r.at === 'cdn')
    expect(cdn.length).toBeGreaterThan(0)
    expect(cdn.filter((r) => r.auth || r.status !== 200)).toEqual([])
  })

  test('Harbor behind a proxy: mounts refused, base layers copied in 4 MiB chunks, the same final digests; a rerun copies nothing', async () => {
    const out = path.join(work, 'harbor')
    const extra = ['--key', key, '--final-repo', `${harbor.address}/fleet/eval-agent-copied`]
    const r = await script('assemble', harbor, out, extra)
    if (r.exitCode !== 0) console.log(r.stdout, r.stderr)
    expect(r.exitCode).toBe(0)
    const summary = summaryOf(out)
    expect(summary.counts.assemble).toEqual({ built: fleet.instances, skipped: 0, failed: 0 })
    expect(summary.registry.copied).toBeGreaterThan(0)
    expect(summary.registry.mounted).toBe(0)
    const uploads = harbor.log.filter((r) => r.path.includes('/blobs/uploads/') && r.method !== 'POST')
    const ranged = uploads.filter((r) => r.contentRange)
    console.log(
      `Harbor-like front: ${uploads.length} upload requests, ${ranged.length} with Content-Range (largest ${
        Math.max(...ranged.map((r) => r.bodyBytes ?? 0))
      } bytes), ${uploads.filter((r) => r.status === 413).length} refused 413, ${summary.registry.copied} blobs copied`,
    )
    expect(uploads.filter((r) => r.status === 413).length).toBe(1) // learned once, then chunks
    expect(ranged.length).toBeGreaterThan(0)
    expect(ranged.every((r) => (r.bodyBytes ?? 0) > 0 && (r.bodyBytes ?? 0) <= 4 * MiB)).toBe(true)
    expect(uploads.filter((r) => r.status === 416 || r.status >= 500).length).toBe(0)
    // the same inputs give the same bytes: every copied final is the GHCR-assembled final, digest for digest
    const client = new RegistryClient()
    const digests = async (refs: string[]) =>
      Promise.all(refs.map(async (ref) => sha256((await client.getManifest(ref)).bytes)))
    expect(await digests(finals(sb.registry, 'eval-agent-copied'))).toEqual(await digests(finals(sb.registry)))

    const rerun = await script('assemble', harbor, path.join(work, 'harbor-rerun'), [...extra, '--force'])
    expect(rerun.exitCode).toBe(0)
    expect(summaryOf(path.join(work, 'harbor-rerun')).registry).toMatchObject({ copied: 0, mounted: 0 })
  })
})
