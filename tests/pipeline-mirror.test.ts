// pipeline --mirror against a real registry and a recording fake docker: the mirror step runs first (for real, over
// the registry API), then every base build is asked to build FROM its mirror. That the finals built from the mirror
// equal those built from the upstream, and that the base push then mounts the upstream layers, is proven on the
// real engine in mirror.integration.test.ts and measured in bench/mirror.ts.
import { expect, test } from 'bun:test'
import fs from 'node:fs'
import path from 'node:path'
import { $ } from 'zx'
import { CONTEXT, instancesFile, registryFixture, ROOT } from './helpers/fixture.ts'
import { fakeDocker, mutatingCalls } from './helpers/fake-docker.ts'
import { startFaultyFront } from './helpers/faulty-front.ts'
import type { ManifestRecord } from '../lib/run/records.ts'
import { jsonLines } from './helpers/json-lines.ts'

const fx = registryFixture('pipeline-mirror-test')

async function pipeline(args: string[], upstream = fx.registry.address) {
  const fake = fakeDocker()
  const out = path.join(fx.work, `out-${Math.random().toString(36).slice(2)}`)
  const r = await $({
    env: { ...process.env, ...fake.env, CI: '', GITHUB_ACTIONS: '' },
    nothrow: true,
    quiet: true,
    cwd: ROOT,
  })`${process.execPath} scripts/pipeline.ts --registry ${fx.registry.address}/fleet --upstream ${upstream}/up/{docker_id}:latest --context ${CONTEXT} --min-free 0 --mode docker --out ${out} ${args}`
  const calls = fake.calls()
  fake.cleanup()
  const manifest = path.join(out, 'manifest.jsonl')
  const records: ManifestRecord[] = fs.existsSync(manifest) ? jsonLines(manifest) : []
  return { code: r.exitCode, stdout: r.stdout, stderr: r.stderr, calls, records }
}
const baseFroms = (calls: string[][]) =>
  mutatingCalls(calls).filter((c) => c[0] === 'build' && c.includes('base')).map((c) =>
    c.find((a) => a.startsWith('BASE_IMAGE='))
  )

test('pipeline --mirror mirrors each upstream first and builds every base FROM its mirror', async () => {
  const file = await instancesFile(fx, ['m1__proj-1', 'm1__proj-2'])
  const r = await pipeline(['--instances', file, '--key', 'mk1', '--mirror'])
  expect(r.code).toBe(0)
  const mirror = `${fx.registry.address}/fleet/mirror/up`
  expect(baseFroms(r.calls).sort()).toEqual([
    `BASE_IMAGE=${mirror}/m1_1776_proj-1:latest`,
    `BASE_IMAGE=${mirror}/m1_1776_proj-2:latest`,
  ])
  const mirrored = r.records.filter((x) => x.phase === 'mirror').map((x) => [x.id, x.status, x.mirror?.copied])
  expect(mirrored.sort()).toEqual([
    ['m1__proj-1', 'built', 0], // same registry: every blob mounted, none streamed
    ['m1__proj-2', 'built', 0],
  ])
  expect(r.stdout).toContain('Mirrored: 2 images (0 already there, 0 failed), blobs 0 copied / 6 mounted')
})

test('an upstream that cannot be mirrored blocks only its instance, with the class of the mirror failure', async () => {
  const file = await instancesFile(fx, [
    'm2__proj-1',
    JSON.stringify({ id: 'm2__proj-2', upstream: `${fx.registry.address}/nowhere/x:latest` }),
  ])
  const r = await pipeline(['--instances', file, '--key', 'mk2', '--mirror', '--retries', '1'])
  expect(r.code).toBe(1)
  const of = (id: string) => r.records.filter((x) => x.id === id).map((x) => [x.phase, x.status, x.error_class])
  expect(of('m2__proj-2')).toEqual([
    ['mirror', 'failed', 'upstream_missing'],
    ['base', 'failed', 'upstream_missing'],
    ['assemble', 'failed', 'upstream_missing'],
  ])
  expect(of('m2__proj-1').map(([phase, status]) => `${phase} ${status}`)).toEqual([
    'mirror built',
    'base built',
    'assemble built',
  ])
  expect(baseFroms(r.calls)).toEqual([`BASE_IMAGE=${fx.registry.address}/fleet/mirror/up/m2_1776_proj-1:latest`])
})

test('a rerun with --mirror copies nothing: the mirror step skips what it has, the bases still build FROM it', async () => {
  const file = await instancesFile(fx, ['m3__proj-1'])
  expect((await pipeline(['--instances', file, '--key', 'mk3', '--mirror'])).code).toBe(0)
  const again = await pipeline(['--instances', file, '--key', 'mk3', '--mirror'])
  expect(again.code).toBe(0)
  const mirror = again.records.find((x) => x.phase === 'mirror')!
  expect([mirror.status, mirror.reason]).toEqual(['skipped', 'mirror has it (the mirror has the same digest)'])
  expect(baseFroms(again.calls)).toEqual([`BASE_IMAGE=${fx.registry.address}/fleet/mirror/up/m3_1776_proj-1:latest`])
})

test('without --mirror the pull budget counts the plan read of each upstream and the FROM of each base; fail stops before', async () => {
  const file = await instancesFile(fx, ['m4__proj-1', 'm4__proj-2'])
  const front = startFaultyFront({ target: fx.registry.address, allowance: { limit: 100, remaining: 3 } })
  try {
    const r = await pipeline(['--instances', file, '--key', 'mk4', '--pull-budget', 'fail'], front.address)
    expect(r.code).toBe(3)
    expect(r.stdout).toContain('3 of 100 pulls left (window 6h) for 203.0.113.7; this run needs 4 pulls — 1 short')
    expect(mutatingCalls(r.calls)).toEqual([])
    expect(front.log.filter((x) => x.method === 'GET' && x.path.includes('/manifests/'))).toEqual([])
  } finally {
    front.stop()
  }
})
