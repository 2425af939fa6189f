// scripts/mirror.ts against two real registries (`docker-registry`, distribution 2.8): an upstream one and the
// fleet's. Where a registry must misbehave (a blob served with wrong bytes, 429s, Docker Hub's ratelimit headers), a
// front (tests/helpers/faulty-front.ts) stands before the real upstream registry; storage and digests stay real.
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { $ } from 'zx'
import { blobExists } from '../lib/registry/blobs.ts'
import { MEDIA, RegistryClient } from '../lib/registry/client.ts'
import { json } from '../lib/registry/image.ts'
import { MIRROR_PLATFORM, MIRROR_SOURCE, mirrorRef } from '../lib/registry/mirror.ts'
import { describeAllowance, readAllowance } from '../lib/registry/pull-budget.ts'
import { parseImageRef } from '../lib/registry/ref.ts'
import { startFaultyFront } from './helpers/faulty-front.ts'
import { pushAttestedIndex, upstreamImage } from './helpers/fleet-images.ts'
import { file } from './helpers/layer-files.ts'
import { type RegistryServer, startRegistry } from './helpers/registry-server.ts'
import { ROOT } from './helpers/fixture.ts'
import type { MirrorTotals } from '../lib/run/mirror-totals.ts'
import type { ManifestRecord } from '../lib/run/records.ts'
import type { TestImage } from './helpers/registry-server.ts'

const client = new RegistryClient()
let upstream: RegistryServer
let fleet: RegistryServer
let work: string

beforeAll(async () => {
  upstream = await startRegistry()
  fleet = await startRegistry()
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'mirror-test-'))
})
afterAll(async () => {
  await upstream?.stop()
  await fleet?.stop()
  fs.rmSync(work, { recursive: true, force: true })
})

/** `n` SWE-bench-shaped upstream images of one environment, in `org`'s repositories on `registry`; their ids. */
async function pushUpstreams(org: string, n: number, registry = upstream.address) {
  const env = [file('env/python', `python for ${org}`), file('env/blob', new Uint8Array(64 * 1024).fill(7))]
  const images: Record<string, TestImage> = {}
  const ids = Array.from({ length: n }, (_, i) => `${org}__proj-${101 + i}`)
  for (const id of ids) {
    const ref = `${registry}/swebench/sweb.eval.x86_64.${id.toLowerCase().replace('__', '_1776_')}:latest`
    images[id] = await upstreamImage(client, ref, { env: [...env], id, ownBytes: 200_000 })
  }
  return { ids, images }
}
const upstreamOf = (id: string, registry = upstream.address) =>
  `${registry}/swebench/sweb.eval.x86_64.${id.toLowerCase().replace('__', '_1776_')}:latest`

type Outcome = {
  code: number
  stdout: string
  stderr: string
  records: ManifestRecord[]
  summary?: { mirror: MirrorTotals }
}
async function mirror(ids: string[], args: string[], source = upstream.address): Promise<Outcome> {
  const list = path.join(work, `ids-${Math.random().toString(36).slice(2)}.txt`)
  fs.writeFileSync(list, ids.join('\n') + '\n')
  const out = path.join(work, `out-${Math.random().toString(36).slice(2)}`)
  const r = await $({
    cwd: ROOT,
    nothrow: true,
    quiet: true,
    env: { ...process.env, CI: '', GITHUB_ACTIONS: '' },
  })`${process.execPath} scripts/mirror.ts --instances ${list} --upstream ${source}/swebench/sweb.eval.x86_64.{docker_id}:latest --registry ${fleet.address}/fleet --out ${out} ${args}`
  const manifest = path.join(out, 'manifest.jsonl')
  return {
    code: r.exitCode ?? -1,
    stdout: r.stdout,
    stderr: r.stderr,
    records: fs.existsSync(manifest)
      ? fs.readFileSync(manifest, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l))
      : [],
    summary: fs.existsSync(path.join(out, 'summary.json'))
      ? JSON.parse(fs.readFileSync(path.join(out, 'summary.json'), 'utf8'))
      : undefined,
  }
}
const mirrorOf = (id: string, source = upstream.address) =>
  parseImageRef(mirrorRef(upstreamOf(id, source), `${fleet.address}/fleet`))
const headDigest = async (ref: string) => (await client.getManifest(ref).catch(() => undefined))?.digest

describe('mirror naming and the pull allowance', () => {
  test('the mirror drops the upstream registry host: PREFIX/mirror/<upstream path>:<tag>', () => {
    expect([
      mirrorRef('docker.io/swebench/sweb.eval.x86_64.x:latest', 'ghcr.io/me/fleet'),
      mirrorRef('ubuntu:22.04', 'ghcr.io/me/fleet/'),
      mirrorRef(`quay.io/a/b@sha256:${'a'.repeat(64)}`, '127.0.0.1:5000/f'),
    ]).toEqual([
      'ghcr.io/me/fleet/mirror/swebench/sweb.eval.x86_64.x:latest',
      'ghcr.io/me/fleet/mirror/library/ubuntu:22.04',
      `127.0.0.1:5000/f/mirror/a/b:sha256-${'a'.repeat(64)}`,
    ])
  })

  test("Docker Hub's ratelimit headers are read as an allowance; a registry without them states none", () => {
    const hub = new Headers({
      'ratelimit-limit': '100;w=21600',
      'ratelimit-remaining': '76;w=21600',
      'docker-ratelimit-source': '203.0.113.7',
    })
    const a = readAllowance(hub)!
    expect([a, describeAllowance(a)]).toEqual([
      { limit: 100, remaining: 76, windowSeconds: 21600, source: '203.0.113.7' },
      '76 of 100 pulls left (window 6h) for 203.0.113.7',
    ])
    expect(readAllowance(new Headers({ 'content-type': 'x' }))).toBeUndefined()
  })
})

describe('mirror between two registries', () => {
  test('every upstream lands under PREFIX/mirror/ with its digest; blobs streamed through the runner', async () => {
    const { ids, images } = await pushUpstreams('copy', 4)
    const r = await mirror(ids, [])
    expect(r.code).toBe(0)
    for (const id of ids) {
      const target = mirrorOf(id)
      expect(await headDigest(`${target.registry}/${target.repository}:${target.tag}`)).toBe(images[id].digest)
      for (const l of images[id].layers) expect(await blobExists(client, target, l.digest)).toBe(l.size)
    }
    const built = r.records.filter((x) => x.phase === 'mirror' && x.status === 'built')
    expect(built.map((x) => x.id).sort()).toEqual([...ids].sort())
    // each image is its own repository: the shared environment layer is streamed once, then mounted into the others
    expect(r.summary!.mirror).toMatchObject({ images: 4, present: 0, failed: 0, blobs: { copied: 9, mounted: 3 } })
    expect(r.stdout).toContain('Mirrored: 4 images')
  })

  test('a rerun transfers nothing: HEADs alone find every image mirrored, no GET reaches the upstream', async () => {
    const { ids } = await pushUpstreams('rerun', 3)
    expect((await mirror(ids, [])).code).toBe(0)
    const front = startFaultyFront({ target: upstream.address })
    try {
      const again = await mirror(ids, [], front.address)
      expect(again.code).toBe(0)
      expect(again.records.map((x) => [x.status, x.reason.startsWith('mirror has it')])).toEqual(
        ids.map(() => ['skipped', true]),
      )
      expect(front.log.filter((x) => x.method !== 'HEAD')).toEqual([])
      expect(front.log.filter((x) => x.path.includes('/blobs/'))).toEqual([])
    } finally {
      front.stop()
    }
  })

  test('within one registry the blobs are mounted, not copied', async () => {
    const { ids } = await pushUpstreams('mount', 2, fleet.address)
    const r = await mirror(ids, [], fleet.address)
    expect(r.code).toBe(0)
    expect(r.summary!.mirror).toMatchObject({ images: 2, blobs: { copied: 0, mounted: 6 }, bytesCopied: 0 })
  })

  test('an index: one platform under a one-entry index naming the upstream digest; --all-platforms copies it whole', async () => {
    const env = [file('env/python', 'multi')]
    const id = 'multi__proj-1'
    const ref = upstreamOf(id)
    const amd = await upstreamImage(client, `${ref}-amd64`, { env, id, oci: true })
    const arm = await upstreamImage(client, `${ref}-arm64`, {
      env,
      id,
      oci: true,
      platform: { os: 'linux', architecture: 'arm64' },
    })
    const index = await pushAttestedIndex(client, ref, [
      { image: amd, platform: { os: 'linux', architecture: 'amd64' } },
      { image: arm, platform: { os: 'linux', architecture: 'arm64' } },
    ])
    const one = await mirror([id], ['--platform', 'linux/arm64'])
    expect(one.code).toBe(0)
    const target = mirrorOf(id)
    const got = json((await client.getManifest(target)).bytes)
    expect([got.mediaType, got.manifests.map((m: { digest: string }) => m.digest), got.annotations]).toEqual([
      MEDIA.ociIndex,
      [arm.digest],
      { [MIRROR_SOURCE]: `${ref}@${index.digest}`, [MIRROR_PLATFORM]: 'linux/arm64' },
    ])
    expect((await mirror([id], ['--platform', 'linux/arm64'])).records[0].status).toBe('skipped')
    const whole = await mirror([id], ['--all-platforms'])
    expect(whole.code).toBe(0)
    expect(await headDigest(`${target.registry}/${target.repository}:${target.tag}`)).toBe(index.digest)
    for (const d of index.attestations) {
      expect(await headDigest(`${target.registry}/${target.repository}@${d}`)).toBe(d)
    }
  })
  test('--dry-run makes HEADs only: says what it would copy, copies nothing', async () => {
    const { ids } = await pushUpstreams('dry', 2)
    const front = startFaultyFront({ target: upstream.address })
    try {
      const r = await mirror(ids, ['--dry-run'], front.address)
      expect(r.code).toBe(0)
      for (const id of ids) {
        expect(r.stdout).toContain(`would copy ${upstreamOf(id, front.address)} → ${fleet.address}/fleet/mirror/`)
        expect(await client.manifestExists(mirrorOf(id))).toBe(false)
      }
      expect(front.log.filter((x) => x.method !== 'HEAD')).toEqual([])
    } finally {
      front.stop()
    }
  })
})

describe('failures: each image fails alone, clearly, and leaves nothing behind', () => {
  test('a blob whose bytes do not match its digest fails that image and writes no manifest', async () => {
    const { ids, images } = await pushUpstreams('corrupt', 3)
    const bad = ids[1]
    const own = images[bad].layers[1].digest
    const front = startFaultyFront({ target: upstream.address, corruptBlob: own })
    try {
      const r = await mirror(ids, ['--retries', '1'], front.address)
      expect(r.code).toBe(1)
      const failed = r.records.filter((x) => x.status === 'failed')
      expect(failed.map((x) => x.id)).toEqual([bad])
      const said = fs.readFileSync(failed[0].log, 'utf8')
      expect(said).toContain(
        `the upstream served blob ${own} (${images[bad].layers[1].size} bytes) with bytes of another digest`,
      )
      expect(said).toContain('no manifest was written')
      expect(r.stdout).toContain(`the upstream served blob ${own}`)
      const target = mirrorOf(bad, front.address)
      expect(await client.manifestExists(target)).toBe(false)
      expect(await client.manifestExists({ ...target, tag: undefined, digest: images[bad].digest })).toBe(false)
      expect(await blobExists(client, target, own)).toBeUndefined()
      for (const id of ids.filter((i) => i !== bad)) {
        expect(await client.manifestExists(mirrorOf(id, front.address))).toBe(true)
      }
    } finally {
      front.stop()
    }
  })

  test('a 429 with Retry-After: 2 is waited out (no retry comes early) and the copy succeeds', async () => {
    const { ids } = await pushUpstreams('limited', 2)
    const front = startFaultyFront({
      target: upstream.address,
      rateLimit: { when: (m, p) => m === 'GET' && p.includes('/manifests/'), times: 1, retryAfter: 2 },
    })
    try {
      const r = await mirror(ids, ['--concurrency', '1'], front.address)
      expect([r.code, front.early, front.log.filter((x) => x.status === 429).length]).toEqual([0, 0, 1])
      expect(r.records.map((x) => [x.status, x.attempts])).toEqual([['built', 1], ['built', 1]])
    } finally {
      front.stop()
    }
  })

  test('a 429 that persists fails that image as rate_limited after the retries: never a failure of its own', async () => {
    const { ids } = await pushUpstreams('throttled', 2)
    const victim = `sweb.eval.x86_64.${ids[0].toLowerCase().replace('__', '_1776_')}/manifests/`
    const front = startFaultyFront({
      target: upstream.address,
      rateLimit: { when: (m, p) => m === 'GET' && p.includes(victim), times: Infinity, retryAfter: 2 },
    })
    try {
      const r = await mirror(ids, ['--retries', '2', '--backoff', '1s'], front.address)
      expect(r.code).toBe(1)
      const byId = Object.fromEntries(r.records.map((x) => [x.id, x]))
      expect([byId[ids[0]].status, byId[ids[0]].error_class, byId[ids[0]].attempts]).toEqual([
        'failed',
        'rate_limited',
        2,
      ])
      expect(fs.readFileSync(byId[ids[0]].log, 'utf8')).toContain(
        'TOOMANYREQUESTS: You have reached your pull rate limit (Retry-After: 2)',
      )
      expect(byId[ids[1]].status).toBe('built')
    } finally {
      front.stop()
    }
  })

  test('an upstream that does not exist fails as upstream_missing', async () => {
    const r = await mirror(['nosuch__proj-1'], ['--retries', '1'])
    expect([r.code, r.records[0].status, r.records[0].error_class]).toEqual([1, 'failed', 'upstream_missing'])
  })
})

describe('the pull budget', () => {
  test('not enough pulls left with --pull-budget fail: exit 3 before any manifest GET, the numbers printed', async () => {
    const { ids } = await pushUpstreams('budget', 3)
    const front = startFaultyFront({ target: upstream.address, allowance: { limit: 100, remaining: 2 } })
    try {
      const r = await mirror(ids, ['--pull-budget', 'fail'], front.address)
      expect(r.code).toBe(3)
      expect(r.stdout + r.stderr).toContain(
        '2 of 100 pulls left (window 6h) for 203.0.113.7; this run needs 3 pulls — 1 short',
      )
      expect(front.log.filter((x) => x.method === 'GET')).toEqual([])
    } finally {
      front.stop()
    }
  })

  test('with --pull-budget warn it says so and goes on; enough left passes quietly', async () => {
    const { ids } = await pushUpstreams('budgetwarn', 3)
    const short = startFaultyFront({ target: upstream.address, allowance: { limit: 100, remaining: 2 } })
    try {
      const r = await mirror(ids, [], short.address)
      expect(r.code).toBe(0)
      expect(r.stderr).toContain('warning: pull budget')
      expect(r.stderr).toContain('1 short')
    } finally {
      short.stop()
    }
    const { ids: more } = await pushUpstreams('budgetok', 2)
    const plenty = startFaultyFront({ target: upstream.address, allowance: { limit: 100, remaining: 50 } })
    try {
      const r = await mirror(more, ['--pull-budget', 'fail'], plenty.address)
      expect([r.code, r.stdout.includes('50 of 100 pulls left (window 6h) for 203.0.113.7; this run needs 2 pulls')])
        .toEqual([0, true])
    } finally {
      plenty.stop()
    }
  })
})
