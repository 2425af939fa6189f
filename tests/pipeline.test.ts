// Pipeline logic against a recording fake docker (flag choice, planning, error handling) and a real
// registry server. What the engine does with these commands is proven in pipeline.integration.test.ts.
import { describe, expect, test } from 'bun:test'
import fs from 'node:fs'
import path from 'node:path'
import { $ } from 'zx'
import { fixtureFlags, instancesFile as writeInstances, registryFixture, ROOT } from './helpers/fixture.ts'
import { type FakeDocker, fakeDocker, mutatingCalls } from './helpers/fake-docker.ts'
import { jsonLines } from './helpers/json-lines.ts'

const fx = registryFixture('pipeline-test')

const instancesFile = (lines: string[]) => writeInstances(fx, lines)

/** Docker-mode command shapes (--mode docker); registry assembly is tested in assemble.test.ts. */
async function pipeline(fake: FakeDocker, args: string[]) {
  const out = path.join(fx.work, `out-${Math.random().toString(36).slice(2)}`)
  const env = { ...process.env, ...fake.env, CI: '', GITHUB_ACTIONS: '' }
  const r = await $({
    env,
    nothrow: true,
    quiet: true,
    cwd: ROOT,
  })`${process.execPath} scripts/pipeline.ts ${fixtureFlags(fx)} --mode docker --out ${out} ${args}`
  return { code: r.exitCode, stdout: r.stdout, stderr: r.stderr, out, calls: fake.calls() }
}

const verbs = (calls: string[][]) => calls.map((c) => c.slice(0, 2).join(' '))

describe('pipeline with a recording fake docker', () => {
  test('without buildx: docker build then docker push; the local images go in one rmi at the end', async () => {
    const fake = fakeDocker()
    const r = await pipeline(fake, ['--instances', await instancesFile(['a__b-1']), '--key', 'k1'])
    expect(r.code).toBe(0)
    const m = mutatingCalls(r.calls)
    expect(verbs(m)).toEqual(
      [
        'build --target',
        'push ' + `${fx.registry.address}/fleet/eval-builder:k1`,
        'build --build-arg',
        'push ' + `${fx.registry.address}/fleet/eval-base:k1-a_1776_b-1`,
        'build --build-arg',
        'push ' + `${fx.registry.address}/fleet/eval-agent:k1-a_1776_b-1`,
        'rmi ' + `${fx.registry.address}/fleet/eval-base:k1-a_1776_b-1`,
      ].map((v) => v.split(' ').slice(0, 2).join(' ')),
    )
    const rmi = m.find((c) => c[0] === 'rmi')!
    expect(rmi).toEqual([
      'rmi',
      `${fx.registry.address}/fleet/eval-base:k1-a_1776_b-1`,
      `${fx.registry.address}/fleet/eval-agent:k1-a_1776_b-1`,
    ])
    fake.cleanup()
  })

  for (const buildx of [false, true]) {
    test(`per-image --cache-cap ${buildx ? 'with' : 'without'} buildx: after every image rmi, a prune capped with ${buildx ? '--reserved-space' : '--keep-storage'} and system prune`, async () => {
      const fake = fakeDocker({ buildx })
      const ids = ['a__b-11', 'a__b-12']
      const key = buildx ? 'cc2' : 'cc1'
      const r = await pipeline(fake, [
        '--instances',
        await instancesFile(ids),
        '--key',
        key,
        '--cleanup',
        'per-image',
        '--cache-cap',
        '100MiB',
        '--use-buildx',
        'no',
        '--concurrency',
        '1',
      ])
      expect(r.code).toBe(0)
      const cleanups = mutatingCalls(r.calls).filter((c) => c[0] === 'rmi' || c.includes('prune')).map((c) =>
        c.join(' ')
      )
      const flag = buildx ? '--reserved-space' : '--keep-storage'
      // the tiers run in TIERS order (scripts/prune.ts): the capped prune before the system prune
      const after = (id: string) => [
        `rmi ${fx.registry.address}/fleet/eval-base:${key}-${id} ${fx.registry.address}/fleet/eval-agent:${key}-${id}`,
        `builder prune -af ${flag} 100mb`,
        // the docker-container builder the recorded `docker buildx inspect` names
        ...(buildx ? [`buildx prune -af --builder builder-3c9a7e21-5b44-4f0a-8d2e-6a1f0c9b7e55 ${flag} 100mb`] : []),
        'system prune -f',
      ]
      expect(cleanups).toEqual([...after('a_1776_b-11'), ...after('a_1776_b-12')])
      fake.cleanup()
    })
  }

  test('with buildx: bases use buildx build --push --provenance=false on the named builder', async () => {
    const fake = fakeDocker({ buildx: true })
    const r = await pipeline(fake, [
      '--instances',
      await instancesFile(['a__b-2']),
      '--key',
      'k2',
      '--builder',
      'fleet',
    ])
    expect(r.code).toBe(0)
    const builds = mutatingCalls(r.calls).filter((c) => c[0] === 'buildx' && c[1] === 'build')
    expect(builds.length).toBe(2) // builder + base; the assembly is a local docker build
    for (const b of builds) {
      expect(b.slice(0, 7)).toEqual([
        'buildx',
        'build',
        '--push',
        '--provenance=false',
        '--builder',
        'fleet',
        ...b.slice(6, 7),
      ])
    }
    // the base was pushed by buildx and never loaded: only the final image is removed locally
    expect(mutatingCalls(r.calls).filter((c) => c[0] === 'rmi')).toEqual([[
      'rmi',
      `${fx.registry.address}/fleet/eval-agent:k2-a_1776_b-2`,
    ]])
    fake.cleanup()
  })

  test('an upstream image the registry does not have fails in the plan: named before building, nothing built or cleaned for it', async () => {
    const fake = fakeDocker()
    const file = await instancesFile([
      'a__b-20',
      `{"id": "gone__x-1", "upstream": "${fx.registry.address}/nowhere/gone:latest"}`,
      'a__b-21',
    ])
    for (const dry of [true, false]) {
      fake.reset()
      const r = await pipeline(fake, ['--instances', file, '--key', `miss${dry}`, ...(dry ? ['--dry-run'] : [])])
      const lines = r.stdout.split('\n')
      const named = lines.findIndex((l) => l.includes('gone__x-1') && l.includes('does not exist'))
      const firstBuild = lines.findIndex((l) => /^docker build|^✓ base /.test(l))
      expect(named).toBeGreaterThanOrEqual(0)
      expect(named).toBeLessThan(firstBuild) // in the plan, before anything is built
      const calls = mutatingCalls(r.calls).map((c) => c.join(' '))
      expect(calls.some((c) => c.includes('gone'))).toBe(false)
      expect(calls.filter((c) => c.includes('prune'))).toEqual([])
      if (dry) continue
      expect(r.code).toBe(1)
      const records = jsonLines(path.join(r.out, 'manifest.jsonl'))
      expect(records.filter((m) => m.id === 'gone__x-1').map((m) => [m.phase, m.status, m.error_class, m.attempts]))
        .toEqual([
          ['base', 'failed', 'upstream_missing', 0],
          ['assemble', 'failed', 'upstream_missing', 0],
        ])
      expect(records.filter((m) => m.phase === 'assemble' && m.status === 'built').map((m) => m.id).sort()).toEqual([
        'a__b-20',
        'a__b-21',
      ])
    }
    fake.cleanup()
  })

  test('the plan prints the schedule: instances that share an environment run together, whatever the list order', async () => {
    const fake = fakeDocker()
    const r = await pipeline(fake, [
      '--instances',
      await instancesFile(['a__b-30', 'c__d-31', 'a__b-32', 'c__d-33']),
      '--key',
      'sch',
      '--dry-run',
    ])
    expect(r.code).toBe(0)
    expect(r.stdout).toContain('# schedule: 2 groups, run a group at a time')
    const bases = r.stdout.split('\n').filter((l) => l.startsWith('docker build') && l.includes('--target base'))
      .map((l) => /BASE_IMAGE=\S+\/up\/(\S+):latest/.exec(l)![1])
    expect(bases).toEqual(['a_1776_b-30', 'a_1776_b-32', 'c_1776_d-31', 'c_1776_d-33'])
    const input = await pipeline(fake, [
      '--instances',
      await instancesFile(['a__b-30', 'c__d-31', 'a__b-32', 'c__d-33']),
      '--key',
      'sch2',
      '--dry-run',
      '--order',
      'input',
    ])
    const inOrder = input.stdout.split('\n').filter((l) => l.startsWith('docker build') && l.includes('--target base'))
      .map((l) => /BASE_IMAGE=\S+\/up\/(\S+):latest/.exec(l)![1])
    expect(inOrder).toEqual(['a_1776_b-30', 'c_1776_d-31', 'a_1776_b-32', 'c_1776_d-33'])
    fake.cleanup()
  })

  test("with buildx's docker driver the pushed base also stays in the local image store: it is removed too", async () => {
    const fake = fakeDocker({ engine: 'docker-24.0-buildx-0.11-docker' })
    const r = await pipeline(fake, ['--instances', await instancesFile(['a__b-9']), '--key', 'k9'])
    expect(r.code).toBe(0)
    expect(mutatingCalls(r.calls).filter((c) => c[0] === 'rmi')).toEqual([[
      'rmi',
      `${fx.registry.address}/fleet/eval-base:k9-a_1776_b-9`,
      `${fx.registry.address}/fleet/eval-agent:k9-a_1776_b-9`,
    ]])
    fake.cleanup()
  })

  test('--dry-run prints every command and runs none that changes state', async () => {
    const fake = fakeDocker()
    const r = await pipeline(fake, [
      '--instances',
      await instancesFile(['a__b-3', 'c__d-4']),
      '--key',
      'k3',
      '--dry-run',
    ])
    expect(r.code).toBe(0)
    expect(mutatingCalls(r.calls)).toEqual([])
    const printed = r.stdout.split('\n').filter((l) => l.startsWith('docker '))
    expect(printed.filter((l) => l.startsWith('docker build ')).length).toBe(5) // builder + 2 bases + 2 assemblies
    expect(printed.filter((l) => l.startsWith('docker push ')).length).toBe(5)
    expect(r.stdout.split('\n').every((l) => !l.trim() || l.startsWith('#') || l.startsWith('docker '))).toBe(true)
    // the run's concurrency (the default 4), not the dry run's one-at-a-time listing
    expect(r.stdout).toContain(
      'instances: 2 (concurrency 4; the dry run lists one image at a time, cleanup adaptive, order groups)',
    )
    fake.cleanup()
  })

  test('every value reaches docker as one argument, however hostile', async () => {
    const fake = fakeDocker()
    const hostile = 'X=a b;$(touch /tmp/pwned) `id` | cat'
    const r = await pipeline(fake, [
      '--instances',
      await instancesFile(['a__b-5']),
      '--key',
      'k5',
      '--build-arg',
      hostile,
    ])
    expect(r.code).toBe(0)
    const builds = mutatingCalls(r.calls).filter((c) => c[0] === 'build')
    expect(builds.length).toBe(3)
    for (const b of builds) expect(b[b.indexOf('--build-arg') + 1]).toBe(hostile)
    fake.cleanup()
  })

  test('a failing builder stops the run with exit 1 and builds no base', async () => {
    const fake = fakeDocker({
      fail: {
        match: '--target builder',
        stderr: 'ERROR: failed to solve: process "/bin/sh -c make" did not complete successfully: exit code: 2',
      },
    })
    const r = await pipeline(fake, ['--instances', await instancesFile(['a__b-6', 'a__b-7']), '--key', 'k6'])
    expect(r.code).toBe(1)
    expect(mutatingCalls(r.calls).filter((c) => c[0] === 'build')).toHaveLength(1)
    const manifest = jsonLines(path.join(r.out, 'manifest.jsonl'))
    expect(manifest.find((m) => m.phase === 'builder')).toMatchObject({ status: 'failed', error_class: 'build_error' })
    expect(manifest.filter((m) => m.phase === 'base').map((m) => m.status)).toEqual(['failed', 'failed'])
    fake.cleanup()
  })

  test('a failed base blocks only its own assembly', async () => {
    const fake = fakeDocker({
      fail: {
        match: 'BASE_IMAGE=\\S*/up/bad_1776_one-1:latest',
        stderr: 'ERROR: failed to solve: 127.0.0.1/up/bad: not found',
      },
    })
    const r = await pipeline(fake, [
      '--instances',
      await instancesFile(['bad__one-1', 'good__one-2']),
      '--key',
      'k7',
      '--concurrency',
      '1',
    ])
    expect(r.code).toBe(1)
    const manifest = jsonLines(path.join(r.out, 'manifest.jsonl'))
    const status = (phase: string, id: string) => manifest.find((m) => m.phase === phase && m.id === id)
    expect(status('base', 'bad__one-1')).toMatchObject({ status: 'failed', error_class: 'upstream_missing' })
    expect(status('assemble', 'bad__one-1')).toMatchObject({ status: 'failed', reason: 'base image failed' })
    expect(status('assemble', 'good__one-2')).toMatchObject({ status: 'built' })
    const summary = JSON.parse(fs.readFileSync(path.join(r.out, 'summary.json'), 'utf8'))
    expect(summary.counts.assemble).toEqual({ built: 1, skipped: 0, failed: 1 })
    fake.cleanup()
  })

  test('bad input is refused with exit 2 before any docker command, every problem named with its line', async () => {
    const fake = fakeDocker()
    const file = await instancesFile([
      'ok__fine-1',
      'evil$(reboot)',
      '{"id": "x", ',
      'ok__fine-1',
      '../../etc/passwd',
      'has space',
    ])
    const r = await pipeline(fake, ['--instances', file, '--min-free', '10XB', '--concurrency', '0'])
    expect(r.code).toBe(2)
    expect(r.calls).toEqual([])
    for (const needle of ['--min-free', '--concurrency']) expect(r.stderr).toContain(needle)
    const r2 = await pipeline(fake, ['--instances', file])
    expect(r2.code).toBe(2)
    expect(r2.calls).toEqual([])
    for (const needle of ['line 2', 'line 3', 'line 4', 'line 5', 'line 6', 'duplicate']) {
      expect(r2.stderr).toContain(needle)
    }
    fake.cleanup()
  })

  test('a second run skips what the registry has, asking the registry once per tag', async () => {
    const fake = fakeDocker()
    // the fake pushes nothing: put the images in the registry by hand, as a previous run would have
    const { pushTestImage } = await import('./helpers/registry-server.ts')
    const { RegistryClient } = await import('../lib/registry/client.ts')
    const client = new RegistryClient()
    for (const ref of ['eval-builder:k8', 'eval-base:k8-a_1776_b-8', 'eval-agent:k8-a_1776_b-8']) {
      await pushTestImage(client, `${fx.registry.address}/fleet/${ref}`, {
        layers: [[{ path: 'marker', type: 'file', mode: 0o644, uid: 0, gid: 0, data: new TextEncoder().encode(ref) }]],
      })
    }
    const r = await pipeline(fake, ['--instances', await instancesFile(['a__b-8']), '--key', 'k8'])
    expect(r.code).toBe(0)
    expect(mutatingCalls(r.calls)).toEqual([])
    const summary = JSON.parse(fs.readFileSync(path.join(r.out, 'summary.json'), 'utf8'))
    expect(summary.counts.assemble).toEqual({ built: 0, skipped: 1, failed: 0 })
    fake.cleanup()
  })
})
