// A remote builder costs this disk nothing: its bases pass the disk budget at full --concurrency however little is
// free, and its own cache is bounded by --builder-max-used (buildx du, then buildx prune --builder NAME with the flag
// the builder accepts). The budget and admitEach are the real ones on a disk whose free bytes the test sets; the
// builder is a recorded engine replayed by the fake docker (tests/fixtures/engines/).
import { describe, expect, test } from 'bun:test'
import path from 'node:path'
import { $ } from 'zx'
import { DiskBudget } from '../lib/disk/budget.ts'
import { BuilderCacheBound } from '../lib/disk/builder-cache.ts'
import { GrowthModel } from '../lib/disk/growth.ts'
import type { Layer } from '../lib/fleet/groups.ts'
import type { Instance } from '../lib/fleet/instances.ts'
import { admitEach, type Setup } from '../scripts/_setup.ts'
import { fakeDocker } from './helpers/fake-docker.ts'
import { fixtureFlags, instancesFile, registryFixture, ROOT } from './helpers/fixture.ts'

const fx = registryFixture('remote-builder-test')
const MB = 1e6
const UPSTREAM: Layer[] = [{ digest: 'sha256:env', size: 1400 * MB }, { digest: 'sha256:own', size: 60 * MB }]

/** How many instances admitEach runs at once with `concurrency` 4 on a disk with 500 MB free (< one upstream). */
async function peakInFlight(offDisk: boolean): Promise<number> {
  const concurrency = 4
  const disk = new DiskBudget({
    policy: 'adaptive',
    free: () => 500 * MB,
    reserve: 100 * MB,
    model: new GrowthModel({ r: 2, k: 8 * MB }, 1e9),
    clean: async () => ({ reclaimed: 0, ran: [] }), // nothing to give back
  })
  const s = { build: { policy: {} }, run: { dry: false }, concurrency } as unknown as Setup
  const order = Array.from({ length: 8 }, (_, i) => ({ id: `i${i}` }) as Instance)
  let inFlight = 0
  let peak = 0
  let arrived = 0
  let all!: () => void
  const together = new Promise<void>((r) => (all = r))
  await admitEach(
    s,
    disk,
    order,
    async () => {
      peak = Math.max(peak, ++inFlight)
      if (++arrived >= concurrency) all()
      // hold until `concurrency` are in flight together (or a budget that throttles lets the next one in)
      await Promise.race([together, new Promise((r) => setTimeout(r, 300))])
      inFlight--
      return []
    },
    { layersOf: () => UPSTREAM, offDisk },
  )
  return peak
}

describe('a remote builder', () => {
  test('its bases are admitted at full --concurrency on a local disk smaller than one upstream image', async () => {
    expect(await peakInFlight(true)).toBe(4)
    // the same fleet built on this disk (docker or docker-container driver) goes one at a time, over budget
    expect(await peakInFlight(false)).toBe(1)
  })

  test('the cache bound prunes only when the builder holds more than the bound, one check at a time', async () => {
    let used = 800 * MB
    const prunes: number[] = []
    let reads = 0
    const bound = new BuilderCacheBound({
      builder: 'fleet-remote',
      max: 1000 * MB,
      usage: async () => (reads++, used),
      prune: async (max) => void prunes.push(max),
    })
    await bound.check()
    expect(prunes).toEqual([])
    used = 2215 * MB
    await Promise.all([bound.check(), bound.check(), bound.check()]) // images finishing together: one check
    expect(reads).toBe(2)
    expect(prunes).toEqual([1000 * MB])
  })

  for (
    const [engine, builder, flag] of [
      ['docker-28.5-buildx-0.29-remote', 'fleet-remote', '--max-used-space'],
      ['docker-29.7-buildx-0.31-kubernetes', 'fleet-k8s', '--reserved-space'], // BuildKit 0.16: no --max-used-space
    ]
  ) {
    test(`--builder-max-used on ${engine}: buildx du --builder, then buildx prune --builder ${flag}`, async () => {
      const fake = fakeDocker({ engine })
      const r = await $({
        env: { ...process.env, ...fake.env, CI: '', GITHUB_ACTIONS: '' },
        nothrow: true,
        quiet: true,
        cwd: ROOT,
      })`${process.execPath} scripts/build-bases.ts --instances ${await instancesFile(fx, [
        'a__b-1',
      ])} ${fixtureFlags(fx)} --builder ${builder} --builder-max-used 1GiB --out ${path.join(fx.work, engine)}`
      expect(r.exitCode).toBe(0)
      const calls = fake.calls().map((c) => c.join(' '))
      const du = calls.indexOf(`buildx du --builder ${builder}`)
      expect(du).toBeGreaterThan(-1)
      // the recorded builder holds 2.215 GB: pruned down to 1 GiB, after du said so
      expect(calls.indexOf(`buildx prune -af --builder ${builder} ${flag} 1024mb`)).toBeGreaterThan(du)
      // and no local tier prunes a builder whose cache is not on this disk
      expect(calls.filter((c) => c.startsWith('buildx prune') && !c.includes(flag) && !c.includes('--help')))
        .toEqual([])
      fake.cleanup()
    })
  }
})
