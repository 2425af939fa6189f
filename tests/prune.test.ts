// Cleanups: measured, named when they reclaim nothing under pressure, never two prunes at once.
import { describe, expect, test } from 'bun:test'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { $, within } from 'zx'
import { Mutex } from '../lib/disk/prune-lock.ts'
import { DiskBudget } from '../lib/disk/budget.ts'
import { Run } from '../lib/run/records.ts'
import type { CleanupOptions } from '../lib/engine/options.ts'
import { cleanUntil } from '../scripts/prune.ts'
import { fakeDocker, type Span } from './helpers/fake-docker.ts'

const ROOT = path.resolve(import.meta.dir, '..')
/** scripts/prune.ts with these arguments, in a process of its own, with `env` (a fake docker's first). */
const prune = (env: Record<string, string | undefined>, args: string[]) =>
  $({ env, nothrow: true, quiet: true, cwd: ROOT })`${process.execPath} scripts/prune.ts ${args}`

describe('prune', () => {
  test('a prune that reclaims nothing while the disk is low is a warning naming the command', async () => {
    const fake = fakeDocker()
    const env = { ...process.env, ...fake.env, GITHUB_ACTIONS: 'true', CI: '' }
    const r = await prune(env, ['--tier', 'system', '--until-free', '1000TB'])
    expect(r.stdout).toContain('::warning::docker system prune -f reclaimed nothing while only')
    expect(fake.calls().filter((c) => c[0] === 'system' && c[1] === 'prune')).toEqual([['system', 'prune', '-f']])
    fake.cleanup()
  })

  for (
    const [said, code] of [
      ['Error response from daemon: unrecognized image ID sha256:98a9fb6d62db', 0],
      ['Error: No such image: fleet/eval-base:k-a', 0],
      [
        'Error response from daemon: conflict: unable to remove repository reference "fleet/eval-base:k-a" (must force)',
        1,
      ],
    ] as const
  ) {
    test(`docker rmi that says "${said.slice(0, 48)}…": ${code ? 'a failure' : 'the image is gone, done'}`, async () => {
      // the budget's rmi takes no lock, so a system prune can remove an image it has just untagged (seen in bench:disk)
      const fake = fakeDocker({ fail: { match: '^rmi ', stderr: said } })
      const r = await prune({ ...process.env, ...fake.env, CI: '' }, [
        '--images',
        'fleet/eval-base:k-a',
        '--images',
        'fleet/eval-agent:k-a',
      ])
      expect(fake.calls().filter((c) => c[0] === 'rmi')).toEqual([[
        'rmi',
        'fleet/eval-base:k-a',
        'fleet/eval-agent:k-a',
      ]])
      expect(r.exitCode).toBe(code)
      expect(r.stdout + r.stderr).toContain(code ? 'exited 1: ' : 'cleanup docker rmi ')
      fake.cleanup()
    })
  }

  test('--until-free runs the tiers cheapest first and names the builder that holds the cache', async () => {
    const fake = fakeDocker({ buildx: true })
    const env = { ...process.env, ...fake.env, CI: '' }
    const r = await prune(env, ['--until-free', '1000TB', '--stale-after', '5m'])
    expect(r.exitCode).toBe(1) // 1000 TB is never reached: every tier ran
    const prunes = fake.calls().filter((c) => c.includes('prune') && !c.includes('--help')).map((c) => c.join(' '))
    const b = 'builder-3c9a7e21-5b44-4f0a-8d2e-6a1f0c9b7e55' // the docker-container builder `docker buildx inspect` names
    expect(prunes).toEqual([
      'builder prune -af --filter until=300s',
      `buildx prune -af --builder ${b} --filter until=300s`,
      'builder prune -af --reserved-space 0mb',
      `buildx prune -af --builder ${b} --reserved-space 0mb`,
      'system prune -f',
      'builder prune -af',
      `buildx prune -af --builder ${b}`,
    ])
    fake.cleanup()
  })

  test('--until-free that every tier cannot reach exits 1 and says what holds the disk (docker system df)', async () => {
    const fake = fakeDocker()
    const env = { ...process.env, ...fake.env, CI: '', NO_COLOR: '1' }
    const r = await prune(env, ['--until-free', '1000TB'])
    expect(r.exitCode).toBe(1)
    expect(r.stderr).toContain('--until-free 909.5 TiB not reached')
    expect(r.stderr).toMatch(/Build Cache: 1\.4 GiB \(1\.4 GiB reclaimable\)/)
    fake.cleanup()
  })

  test('--dry-run lists every tier the real run may take, runs no prune and prints no measurement', async () => {
    const fake = fakeDocker()
    const env = { ...process.env, ...fake.env, CI: '', NO_COLOR: '1' }
    const r = await prune(env, ['--until-free', '1000TB', '--dry-run'])
    expect(r.exitCode).toBe(0)
    const commands = r.stdout.split('\n').filter((l) => l.startsWith('docker '))
    expect(commands).toEqual([
      'docker builder prune -af --filter until=600s',
      'docker builder prune -af --keep-storage 0mb',
      'docker system prune -f',
      'docker builder prune -af',
    ])
    expect(r.stdout + r.stderr).not.toMatch(/\d B in \d/)
    expect(fake.calls().filter((c) => c.includes('prune') && !c.includes('--help'))).toEqual([])
    fake.cleanup()
  })

  test("under the containerd image store a prune counts what statfs saw, not the engine's figure, and says why", async () => {
    const run = async (engine: string) => {
      const fake = fakeDocker({ engine, pruneReports: '1.5GB' }) // the engine says 1.5 GB; the disk does not move
      const env = { ...process.env, ...fake.env, GITHUB_ACTIONS: 'true', CI: '' }
      const r = await prune(env, ['--tier', 'system', '--until-free', '1000TB'])
      fake.cleanup()
      return r.stdout
    }
    const overlay = await run('docker-28.5-buildx-0.29-container')
    expect(overlay).toMatch(/docker system prune -f: 1\.4 GiB in/) // a graph driver's figure is a lower bound
    const containerd = await run('docker-29.7-containerd-buildx-0.31-docker')
    expect(containerd).toContain('::warning::docker system prune -f reclaimed nothing (the engine said 1.4 GiB)')
    expect(containerd).toContain('a layer is freed only once no image and no cache record holds it')
  })

  test('the containerd image store runs the system prune before the capped one', async () => {
    const fake = fakeDocker({ engine: 'docker-29.7-containerd-buildx-0.31-docker' })
    const env = { ...process.env, ...fake.env, CI: '' }
    await prune(env, ['--until-free', '1000TB'])
    const prunes = fake.calls().filter((c) => c.includes('prune') && !c.includes('--help')).map((c) => c.join(' '))
    expect(prunes).toEqual([
      'builder prune -af --filter until=600s',
      'system prune -f',
      'builder prune -af --reserved-space 0mb',
      'builder prune -af',
    ])
    fake.cleanup()
  })

  test('an emergency and a per-image cleanup at once through the disk budget: no two prunes overlap', async () => {
    const prunes = await cleanupsAtOnce(new Mutex())
    expect(prunes.map((p) => p.argv.join(' ')).sort()).toEqual([
      'builder prune -af',
      'builder prune -af',
      expect.stringMatching(/^builder prune -af --filter until=\d+s$/),
      'system prune -f',
    ])
    expect(overlapping(prunes)).toEqual([])
  })

  test('the same two cleanups with the lock bypassed do overlap (the test above runs them at once for real)', async () => {
    const passThrough = { busy: false, run: <T>(fn: () => Promise<T>) => fn() } as unknown as Mutex
    expect(overlapping(await cleanupsAtOnce(passThrough)).length).toBeGreaterThan(0)
  })
})

/**
 * Two cleanups the disk budget starts at once, run by scripts/prune.ts against a recording fake docker whose prunes
 * take 0.3 s: image a finishes under the per-image policy (rmi, system prune, full prune) while image b hits a full
 * disk (the emergency: stale prune, full prune). Resolves to the prunes the fake saw, with their start and end times.
 */
async function cleanupsAtOnce(lock: Mutex): Promise<Span[]> {
  const fake = fakeDocker({ slow: { match: '^(builder|system) prune -', seconds: 0.3 } })
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'prune-lock-'))
  try {
    const cleanup: CleanupOptions = {
      run: new Run(path.join(dir, 'out'), dir), // statfs of a real directory: never the Infinity every target meets
      lock,
      pruneFlags: { keep: '--keep-storage', maxUsed: false, minFree: false },
      timeout: 60_000,
      lowWater: 0,
    }
    const budget = new DiskBudget({
      policy: 'per-image',
      free: () => cleanup.run.free(),
      reserve: 0,
      perImageTiers: ['system', 'full'],
      clean: (request) => cleanUntil(request, cleanup),
    })
    await within(async () => {
      $.env = { ...process.env, ...fake.env }
      const a = await budget.admit('a__done-1')
      await budget.admit('b__full-2')
      await Promise.all([a.done(['fleet/eval-agent:a']), budget.emergency('b__full-2: no space left on device')])
    })
    return fake.spans().filter((s) => s.argv.includes('prune'))
  } finally {
    fake.cleanup()
    fs.rmSync(dir, { recursive: true, force: true })
  }
}

/** Pairs of calls whose spans overlap in time. */
function overlapping(spans: Span[]): string[] {
  const sorted = [...spans].sort((a, b) => a.start - b.start)
  return sorted.slice(1).flatMap((s, i) =>
    s.start < sorted[i].end ? [`${sorted[i].argv.join(' ')} ↔ ${s.argv.join(' ')}`] : []
  )
}
