// The disk budget and its cleanups on the real engine: a full disk during a build is recovered by an
// emergency cleanup and a retry that does not count as an attempt; the adaptive policy stops cleaning as soon as
// enough is free; and a SWE-bench-shaped fleet listed in id order (environments interleaved) on a disk that cannot
// hold all its environments finishes N/N pulling each layer about once — measured by a counting proxy in front of
// the registry, not by the pipeline's own account — with never two prunes at once.
import { afterAll, beforeAll, expect, test } from 'bun:test'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { $ } from 'zx'
import { describeIntegration } from './helpers/integration.ts'
import { type Sandbox, sandboxDown, sandboxUp } from '../scripts/_sandbox-engine.ts'
import { type Fleet, generateFleet } from '../examples/synthetic-fleet/generate.ts'
import { type CountingProxy, repullFactor, startCountingProxy } from './helpers/counting-proxy.ts'
import { type RegistryServer, startRegistry } from './helpers/registry-server.ts'
import { RegistryClient } from '../lib/registry/client.ts'
import { imageLayers } from '../lib/registry/image.ts'
import { jsonLines } from './helpers/json-lines.ts'

const ROOT = path.resolve(import.meta.dir, '..')

describeIntegration('disk budget on a real engine', () => {
  let sb: Sandbox
  let fleet: Fleet
  let work: string

  beforeAll(async () => {
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'budget-it-'))
    sb = await sandboxUp({ dir: path.join(work, 'sandbox'), disk: 768 * 2 ** 20, baseEnv: process.env })
    fleet = await generateFleet({
      registry: sb.registry,
      groups: 2,
      perGroup: 2,
      envSize: 120e6,
      instanceSize: 40e6,
      out: path.join(work, 'instances.txt'),
    })
  })
  afterAll(async () => {
    if (sb) await sandboxDown({ dir: sb.dir })
    fs.rmSync(work, { recursive: true, force: true })
  })

  const pipeline = (out: string, extra: string[]) =>
    $({ env: sb.env, cwd: ROOT, nothrow: true, quiet: true })`${process.execPath} scripts/pipeline.ts --instances ${
      path.join(work, 'instances.txt')
    } --upstream ${fleet.upstream} --registry ${sb.registry}/fleet --context examples/synthetic-fleet/context --build-arg SEED_IMAGE=${sb.seedImage} --network none --min-free 50MB --out ${out} ${extra}`
  /** Build cache nothing needs: a RUN layer of `bytes`, its image removed. */
  async function ballast(bytes: number) {
    const dir = path.join(work, `ballast-${bytes}`)
    fs.mkdirSync(dir, { recursive: true })
    fs.writeFileSync(
      path.join(dir, 'Dockerfile'),
      `FROM ${sb.seedImage}\nRUN head -c ${bytes} /dev/urandom > /ballast-${bytes}\n`,
    )
    const sh = $({ env: sb.env, quiet: true })
    await sh`docker build --network none -t ballast ${dir}`
    await sh`docker rmi ballast`
  }
  const read = (out: string, file: string) => fs.readFileSync(path.join(out, file), 'utf8')
  const lines = (out: string, file: string) => jsonLines(path.join(out, file))

  test('a build that fills the disk is recovered: emergency cleanup, then a retry that is not counted', async () => {
    // ballast: 560 MB of build cache that nothing needs, leaving less than the first base needs (~2 × 160 MB)
    await ballast(560e6)
    const out = path.join(work, 'enospc')
    // per-image cleans after each image, not before: the first base meets the full disk
    const r = await pipeline(out, ['--cleanup', 'per-image', '--concurrency', '1', '--key', 'enospc'])
    if (r.exitCode !== 0) console.log(r.stdout, r.stderr)
    expect(r.exitCode).toBe(0)
    const summary = JSON.parse(read(out, 'summary.json'))
    expect(summary.counts.assemble).toEqual({ built: fleet.instances, skipped: 0, failed: 0 })
    const first = lines(out, 'manifest.jsonl').find((m) => m.phase === 'base')
    expect(fs.readFileSync(first.log, 'utf8')).toMatch(/no space left on device/)
    expect(first.attempts).toBe(1) // the retry after the emergency cleanup is free
    expect(r.stdout + r.stderr).toContain('emergency cleanup reclaimed')
  })

  test('adaptive: with stale cache in the way of the first image, the cheapest tier that is enough is the last that runs', async () => {
    await ballast(450e6) // stale cache the budget must clear before the first image fits
    const out = path.join(work, 'adaptive')
    const r = await pipeline(out, [
      '--cleanup',
      'adaptive',
      '--concurrency',
      '3',
      '--key',
      'adaptive',
      '--reserve',
      '100MB',
    ])
    expect(r.exitCode).toBe(0)
    const summary = JSON.parse(read(out, 'summary.json'))
    expect(summary.counts.assemble.built).toBe(fleet.instances)
    const prunes = (summary.cleanups.total as Array<{ tier: string; reclaimed: number }>).filter((c) =>
      c.tier !== 'rmi'
    )
    expect(prunes[0]).toMatchObject({ tier: 'stale' })
    expect(prunes[0].reclaimed).toBeGreaterThan(400e6)
    // the first burst stopped after that tier: the next disk event is not the next tier starting
    const events = lines(out, 'disk.jsonl').map((e) => e.event as string)
    expect(events[events.indexOf('cleanup end stale') + 1]).not.toBe('cleanup start cache-cap')
  })

  describeIntegration('an interleaved fleet on a disk that cannot hold its environments', () => {
    let registry: RegistryServer
    let proxy: CountingProxy
    let shaped: Fleet
    let layers: Array<{ digest: string; size: number }>
    beforeAll(async () => {
      registry = await startRegistry()
      proxy = await startCountingProxy(registry.address)
      // 4 environments of 200 MB (2 repositories × 2 versions, so the id order interleaves them) and 16 instances of
      // 8 MB, uncompressed layers: pulled, the environments alone take 800 MB, more than the 768 MiB disk
      shaped = await generateFleet({
        registry: proxy.address,
        groups: 4,
        envsPerRepo: 2,
        perGroup: 4,
        envSize: 200e6,
        instanceSize: 8e6,
        order: 'id',
        out: path.join(work, 'interleaved.txt'),
      })
      const client = new RegistryClient()
      const refs = [
        ...new Set(
          shaped.ids.map((id) => shaped.upstream.replace('{docker_id}', id.toLowerCase().replace(/__/g, '_1776_'))),
        ),
      ]
      layers = (await Promise.all(refs.map((ref) => imageLayers(client, ref)))).flat()
      await $({ env: sb.env, quiet: true })`docker builder prune -af`
      await $({ env: sb.env, quiet: true, nothrow: true })`docker image prune -af`
      proxy.reset()
    })
    afterAll(async () => {
      await proxy?.stop()
      await registry?.stop()
    })

    test('N/N, each upstream layer pulled about once (re-pull factor ≤ 1.2 at the registry), one prune at a time', async () => {
      const out = path.join(work, 'interleaved')
      const r = await $({
        env: sb.env,
        cwd: ROOT,
        nothrow: true,
        quiet: true,
      })`${process.execPath} scripts/pipeline.ts --instances ${
        path.join(work, 'interleaved.txt')
      } --upstream ${shaped.upstream} --registry ${proxy.address}/fleet --context examples/synthetic-fleet/context --build-arg SEED_IMAGE=${shaped.seed} --network none --min-free 50MB --reserve 32MB --concurrency 3 --key inter --out ${out}`
      if (r.exitCode !== 0) console.log(r.stdout, r.stderr)
      expect(r.exitCode).toBe(0)
      const summary = JSON.parse(read(out, 'summary.json'))
      expect(summary.counts.assemble).toEqual({ built: shaped.instances, skipped: 0, failed: 0 })
      // the disk could not keep every environment: the budget had to evict, and still pulled each layer about once
      expect(summary.cleanups.total.filter((c: { tier: string }) => c.tier === 'stale').length).toBeGreaterThan(0)
      // the engine's pulls: registry assembly also reads each base's own layers through imagefleet's client (network,
      // never disk), reported apart
      const factor = repullFactor(proxy, layers, 'engine')
      const reads = repullFactor(proxy, layers, 'imagefleet')
      console.log(
        `re-pull factor measured at the registry (the engine's pulls): ${factor.toFixed(3)}; imagefleet's own reads ${
          reads.toFixed(3)
        }; the budget's own account: ${summary.disk.repullFactor.toFixed(3)}`,
      )
      expect(factor).toBeGreaterThanOrEqual(1)
      expect(factor).toBeLessThanOrEqual(1.2)
      const prunes = (summary.cleanups.total as Array<{ at: string; seconds: number; tier: string }>).filter((c) =>
        c.tier !== 'rmi'
      )
      const spans = prunes.map((c) => [Date.parse(c.at) - c.seconds * 1000, Date.parse(c.at)]).sort((a, b) =>
        a[0] - b[0]
      )
      for (let i = 1; i < spans.length; i++) expect(spans[i][0]).toBeGreaterThanOrEqual(spans[i - 1][1] - 5)
    })
  })
})
