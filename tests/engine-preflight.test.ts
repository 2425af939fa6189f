// preflight on every recorded engine (tests/fixtures/engines/, replayed by the fake docker): what it records in
// preflight.json and prints about the engine, its image store, the buildx builder and the cleanup commands it accepts.
import { describe, expect, test } from 'bun:test'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { $ } from 'zx'
import { fakeDocker } from './helpers/fake-docker.ts'
import { ROOT } from './helpers/fixture.ts'

async function preflight(engine: string) {
  const fake = fakeDocker({ engine })
  const out = fs.mkdtempSync(path.join(os.tmpdir(), 'preflight-test-'))
  const r = await $({
    env: { ...process.env, ...fake.env, CI: '', GITHUB_ACTIONS: '', NO_COLOR: '1' },
    nothrow: true,
    quiet: true,
    cwd: ROOT,
  })`${process.execPath} scripts/preflight.ts --out ${out}`
  const json = JSON.parse(fs.readFileSync(path.join(out, 'preflight.json'), 'utf8'))
  fake.cleanup()
  fs.rmSync(out, { recursive: true, force: true })
  return { code: r.exitCode, stdout: r.stdout, json }
}

describe('preflight knows the engine', () => {
  test('the real 20.10 engine without buildx: versions, overlay2, docker builder prune with --keep-storage', async () => {
    const r = await preflight('docker-20.10')
    expect(r.code).toBe(0)
    expect(r.json.engine).toMatchObject({
      client: '20.10.24+dfsg1',
      server: '20.10.24+dfsg1',
      api: '1.41',
      imageStore: 'graphdriver',
      storageDriver: 'overlay2',
      accepts: { 'buildx prune': null, 'buildx du': null },
      prunes: { daemon: 'docker builder prune' },
    })
    expect(r.json.engine.accepts['builder prune']).toContain('--keep-storage')
    expect(r.json.buildx).toBeUndefined()
    expect(r.stdout).toContain('cleanup: docker builder prune (--keep-storage, --filter until=)')
  })

  test('a docker-container builder: its name, driver, BuildKit and endpoint, and its own prune and du', async () => {
    const r = await preflight('docker-28.5-buildx-0.29-container')
    const b = 'builder-3c9a7e21-5b44-4f0a-8d2e-6a1f0c9b7e55'
    expect(r.json.buildx).toEqual({
      version: '0.29.1',
      builder: b,
      driver: 'docker-container',
      buildkit: '0.25.2',
      endpoint: 'unix:///var/run/docker.sock',
    })
    expect(r.json.builderPruneFlags).toEqual({ keep: '--reserved-space', maxUsed: true, minFree: true, until: true })
    expect(r.json.engine.prunes).toEqual({
      daemon: 'docker builder prune',
      builder: `docker buildx prune --builder ${b}`,
      usage: `docker buildx du --builder ${b}`,
      bound: `docker buildx prune --builder ${b} --max-used-space`,
    })
    expect(r.stdout).toContain(`buildx: 0.29.1, builder ${b} (driver docker-container, BuildKit 0.25.2`)
  })

  test('a remote builder: no local prune of its cache, only the bound', async () => {
    const r = await preflight('docker-28.5-buildx-0.29-remote')
    expect(r.json.engine.prunes).toEqual({
      daemon: 'docker builder prune',
      usage: 'docker buildx du --builder fleet-remote',
      bound: 'docker buildx prune --builder fleet-remote --max-used-space',
    })
    expect(r.stdout).toContain('endpoint tcp://buildkitd.ci.internal:1234): its cache lives in a buildkitd on another')
  })

  test('the containerd image store is told from docker info', async () => {
    const r = await preflight('docker-29.7-containerd-buildx-0.31-docker')
    expect(r.json.engine).toMatchObject({ imageStore: 'containerd', storageDriver: 'overlayfs' })
    expect(r.stdout).toContain('image store: containerd (overlayfs)')
  })
})
