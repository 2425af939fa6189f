// Cleanups: measured, named when they reclaim nothing under pressure, never two prunes at once.
import { describe, expect, test } from 'bun:test'
import path from 'node:path'
import { $ } from 'zx'
import { Mutex } from '../lib/disk/prune-lock.ts'
import { fakeDocker } from './helpers/fake-docker.ts'

const ROOT = path.resolve(import.meta.dir, '..')

describe('prune', () => {
  test('a prune that reclaims nothing while the disk is low is a warning naming the command', async () => {
    const fake = fakeDocker()
    const env = { ...process.env, ...fake.env, GITHUB_ACTIONS: 'true', CI: '' }
    const r = await $({
      env,
      nothrow: true,
      quiet: true,
      cwd: ROOT,
    })`${process.execPath} scripts/prune.ts --tier system --until-free 1000TB`
    expect(r.stdout).toContain('::warning::docker system prune -f reclaimed nothing while only')
    expect(fake.calls().filter((c) => c[0] === 'system' && c[1] === 'prune')).toEqual([['system', 'prune', '-f']])
    fake.cleanup()
  })

  test('--until-free runs the tiers cheapest first and names the builder that holds the cache', async () => {
    const fake = fakeDocker({ buildx: true })
    const env = { ...process.env, ...fake.env, CI: '' }
    const r = await $({
      env,
      nothrow: true,
      quiet: true,
      cwd: ROOT,
    })`${process.execPath} scripts/prune.ts --until-free 1000TB --stale-after 5m`
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
    const r = await $({
      env,
      nothrow: true,
      quiet: true,
      cwd: ROOT,
    })`${process.execPath} scripts/prune.ts --until-free 1000TB`
    expect(r.exitCode).toBe(1)
    expect(r.stderr).toContain('--until-free 909.5 TiB not reached')
    expect(r.stderr).toMatch(/Build Cache: 1\.4 GiB \(1\.4 GiB reclaimable\)/)
    fake.cleanup()
  })

  test('--dry-run lists every tier the real run may take, runs no prune and prints no measurement', async () => {
    const fake = fakeDocker()
    const env = { ...process.env, ...fake.env, CI: '', NO_COLOR: '1' }
    const r = await $({
      env,
      nothrow: true,
      quiet: true,
      cwd: ROOT,
    })`${process.execPath} scripts/prune.ts --until-free 1000TB --dry-run`
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
      const r = await $({
        env,
        nothrow: true,
        quiet: true,
        cwd: ROOT,
      })`${process.execPath} scripts/prune.ts --tier system --until-free 1000TB`
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
    await $({ env, nothrow: true, quiet: true, cwd: ROOT })`${process.execPath} scripts/prune.ts --until-free 1000TB`
    const prunes = fake.calls().filter((c) => c.includes('prune') && !c.includes('--help')).map((c) => c.join(' '))
    expect(prunes).toEqual([
      'builder prune -af --filter until=600s',
      'system prune -f',
      'builder prune -af --reserved-space 0mb',
      'builder prune -af',
    ])
    fake.cleanup()
  })

  test('the prune lock never lets two prunes overlap', async () => {
    const lock = new Mutex()
    const spans: Array<[number, number]> = []
    const prune = () =>
      lock.run(async () => {
        const start = performance.now()
        await new Promise((r) => setTimeout(r, 20))
        spans.push([start, performance.now()])
      })
    await Promise.all([prune(), prune(), prune(), prune()])
    spans.sort((a, b) => a[0] - b[0])
    for (let i = 1; i < spans.length; i++) expect(spans[i][0]).toBeGreaterThanOrEqual(spans[i - 1][1])
  })
})
