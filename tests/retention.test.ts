// prune --registry PREFIX --keep-keys N: registry retention.
//   - The Registry HTTP API back end runs FOR REAL against `docker-registry` (distribution 2.8, deletes enabled):
//     a fleet of 3 keys × 20 instances pushed over the API, the dry run's list checked against what was pushed,
//     --yes deleting, the registry's own garbage collection run after it, and every kept image still whole.
//   - The GitHub Packages back end runs against a RECORDING SERVER (tests/helpers/github-packages.ts), not GitHub:
//     the versions it lists are read from a real registry (which also serves the manifests), and the test checks
//     which versions the back end asks to delete, with which headers. That GitHub deletes them is not proven here.
// That the kept key's images still pull and run on a real engine: retention.integration.test.ts.
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { $ } from 'zx'
import { blobExists } from '../lib/registry/blobs.ts'
import { MEDIA, RegistryClient } from '../lib/registry/client.ts'
import { json } from '../lib/registry/image.ts'
import { parseImageRef } from '../lib/registry/ref.ts'
import { ROOT } from './helpers/fixture.ts'
import { type KeyedFleet, pushKeyedFleet } from './helpers/fleet-images.ts'
import { file } from './helpers/layer-files.ts'
import { startGitHubPackages } from './helpers/github-packages.ts'
import { pushTestImage, type RegistryServer, startRegistry } from './helpers/registry-server.ts'

const client = new RegistryClient()
const KEYS = [
  { key: 'k1', created: '2026-09-01T10:00:00Z', attested: true },
  { key: 'k2', created: '2026-10-01T10:00:00Z', attested: false },
  { key: 'k3', created: '2026-11-01T10:00:00Z', attested: true },
]
let work: string
beforeAll(() => void (work = fs.mkdtempSync(path.join(os.tmpdir(), 'retention-test-'))))
afterAll(() => fs.rmSync(work, { recursive: true, force: true }))

async function prune(args: string[], env: Record<string, string> = {}) {
  const r = await $({
    cwd: ROOT,
    nothrow: true,
    quiet: true,
    env: { ...process.env, CI: '', GITHUB_ACTIONS: '', ...env },
  })`${process.execPath} scripts/prune.ts ${args}`
  const listed = r.stdout.split('\n').flatMap((l) => {
    const m = /^ {2}(?:would )?delete (\S+?)(?::(\S+) @(sha256:\w+)|@(sha256:\w+)) — (.*)$/.exec(l)
    return m ? [{ repository: m[1], tags: m[2]?.split(',') ?? [], digest: m[3] ?? m[4], why: m[5] }] : []
  })
  return { code: r.exitCode, stdout: r.stdout, stderr: r.stderr, listed }
}

/** What retention must delete to keep only the newest key, from what was pushed. */
function expected(fleet: KeyedFleet, mirror = false) {
  const kept = fleet.keys.at(-1)!
  const keyOf = (repo: string, tag: string) => (repo.endsWith('/eval-builder') ? tag : tag.split('-')[0])
  const tags: string[] = []
  const children: string[] = []
  for (const [repo, byTag] of fleet.tags) {
    if (repo.includes('/mirror/')) continue
    for (const tag of byTag.keys()) {
      if (keyOf(repo, tag) === kept || (repo === fleet.shared.repository && tag === fleet.shared.oldTag)) continue
      tags.push(`${repo}:${tag}`)
      children.push(...(fleet.children.get(`${repo}:${tag}`) ?? []).map((d) => `${repo}@${d}`))
    }
  }
  if (mirror) tags.push(parseImageRef(fleet.mirrors.unused).repository + ':latest')
  return { tags: tags.sort(), children: children.sort() }
}
const listedTags = (l: Awaited<ReturnType<typeof prune>>['listed']) =>
  l.flatMap((x) => x.tags.map((t) => `${x.repository}:${t}`)).sort()
const listedUntagged = (l: Awaited<ReturnType<typeof prune>>['listed']) =>
  l.filter((x) => !x.tags.length).map((x) => `${x.repository}@${x.digest}`).sort()
const tagsOf = async (registry: string, repo: string): Promise<string[]> => {
  const res = await fetch(`http://${registry}/v2/${repo}/tags/list`)
  return res.status === 200 ? (((await res.json()) as { tags?: string[] }).tags ?? []).sort() : []
}

describe('the Registry HTTP API back end, for real against distribution with deletes enabled', () => {
  let reg: RegistryServer
  let fleet: KeyedFleet
  const prefix = () => `${reg.address}/fleet`
  beforeAll(async () => {
    reg = await startRegistry()
    fleet = await pushKeyedFleet(client, prefix(), { keys: KEYS, instances: 20, groups: 4 })
    // outside the fleet, with tags that look like an old key's: a sibling prefix, another namespace, a repository
    // under the prefix that is not one of the fleet's
    for (const ref of ['fleet-old/eval-base:k1-x', 'other/eval-base:k1-x', 'fleet/notes:k1']) {
      await pushTestImage(client, `${reg.address}/${ref}`, { layers: [[file('x', ref)]] })
    }
  })
  afterAll(async () => await reg?.stop())

  test("--keep-keys 1 dry run lists exactly the older keys' tags and the manifests their indexes refer to; changes nothing", async () => {
    const before = await tagsOf(reg.address, 'fleet/eval-base')
    const r = await prune(['--registry', prefix(), '--keep-keys', '1'])
    expect(r.code).toBe(0)
    const want = expected(fleet)
    expect(listedTags(r.listed)).toEqual(want.tags)
    expect(listedUntagged(r.listed)).toEqual(want.children)
    expect(r.stdout).toContain(
      'keys, newest first: k3 (2026-11-01T10:00:00.000Z) kept · k2 (2026-10-01T10:00:00.000Z) goes · k1',
    )
    expect(r.stdout).toContain(`keep fleet/eval-agent:${fleet.shared.oldTag} — its manifest is also a kept one`)
    expect(r.stdout).toContain(
      `would delete: ${want.tags.length} tags of 2 older keys, ${
        want.tags.length + want.children.length
      } manifests (20 attestations)`,
    )
    expect(r.stdout).toContain('dry run: nothing deleted')
    expect(await tagsOf(reg.address, 'fleet/eval-base')).toEqual(before)
  })

  test('with --mirror the dry run also lists the mirror image no kept base is built FROM, and only that one', async () => {
    const r = await prune(['--registry', prefix(), '--keep-keys', '1', '--mirror'])
    expect(r.code).toBe(0)
    expect(listedTags(r.listed)).toEqual(expected(fleet, true).tags)
    expect(r.listed.find((x) => x.repository.includes('/mirror/'))?.why).toBe(
      'mirror image no kept base is built FROM (:latest)',
    )
  })

  test('--yes deletes them; the kept key, the shared manifest, the mirror and every other repository stay', async () => {
    const r = await prune(['--registry', prefix(), '--keep-keys', '1', '--yes'])
    expect(r.code).toBe(0)
    const want = expected(fleet)
    expect(r.stdout).toContain(
      `deleted ${want.tags.length + want.children.length} manifests (${want.tags.length} tags); 0 failed`,
    )
    expect(r.stdout).toContain('to free the bytes: the registry frees the blobs only when its garbage collection runs')
    const k3 = fleet.dockerIds.map((id) => `k3-${id}`)
    expect(await tagsOf(reg.address, 'fleet/eval-builder')).toEqual(['k3'])
    expect(await tagsOf(reg.address, 'fleet/eval-base')).toEqual([...k3].sort())
    expect(await tagsOf(reg.address, 'fleet/eval-agent')).toEqual([...k3, fleet.shared.oldTag].sort())
    for (const d of want.children) {
      expect(await client.manifestExists(d.replace('fleet/', `${reg.address}/fleet/`))).toBe(false)
    }
    for (
      const ref of ['fleet-old/eval-base:k1-x', 'other/eval-base:k1-x', 'fleet/notes:k1', 'fleet/mirror/up/gone:latest']
    ) {
      expect(await client.manifestExists(`${reg.address}/${ref}`)).toBe(true)
    }
    const again = await prune(['--registry', prefix(), '--keep-keys', '1', '--yes'])
    expect([again.code, again.listed.length]).toEqual([0, 0])
  })

  test("after the registry's own garbage collection (the plain one, as the report says) every kept image is whole", async () => {
    const blobs = path.join(reg.dir, 'data/docker/registry/v2/blobs')
    const size = async () => Number((await $({ quiet: true })`du -sb ${blobs}`).stdout.split('\t')[0])
    const before = await size()
    const gc = await $({ nothrow: true, quiet: true })`docker-registry garbage-collect ${
      path.join(reg.dir, 'config.yml')
    }`
    expect(gc.exitCode).toBe(0)
    expect(await size()).toBeLessThan(before)
    for (const [repo, byTag] of fleet.tags) {
      for (const [tag, digest] of byTag) {
        if (!tag.startsWith('k3') || repo.includes('/mirror/')) continue
        const top = await client.getManifest(`${reg.address}/${repo}:${tag}`)
        expect(top.digest).toBe(digest)
        const children = top.mediaType === MEDIA.ociIndex ? json(top.bytes).manifests : []
        const docs = [top.bytes]
        for (const m of children as Array<{ digest: string }>) {
          docs.push((await client.getManifest(`${reg.address}/${repo}@${m.digest}`)).bytes)
        }
        for (const doc of docs.map(json).filter((d) => d.layers)) {
          for (const b of [doc.config, ...doc.layers]) {
            expect(await blobExists(client, { registry: reg.address, repository: repo }, b.digest)).toBe(b.size)
          }
        }
      }
    }
  })
})

describe('keys that cannot be ordered', () => {
  test('two keys with the same created time across the cut: refused, nothing deleted', async () => {
    const reg = await startRegistry()
    try {
      const same = '2026-01-01T00:00:00Z' // what SOURCE_DATE_EPOCH builds write for every key
      await pushKeyedFleet(client, `${reg.address}/tie`, {
        keys: [{ key: 'a1', created: same, attested: false }, { key: 'b2', created: same, attested: false }],
        instances: 2,
        groups: 1,
      })
      const r = await prune(['--registry', `${reg.address}/tie`, '--keep-keys', '1', '--yes'])
      expect(r.code).toBe(1)
      expect(r.stderr).toContain(
        'cannot tell which keys are the newest 1: a1 and b2 were created at 2026-01-01T00:00:00.000Z',
      )
      expect(await tagsOf(reg.address, 'tie/eval-builder')).toEqual(['a1', 'b2'])
    } finally {
      await reg.stop()
    }
  })
})

describe('the GitHub Packages back end, against a recording server (not GitHub)', () => {
  let reg: RegistryServer
  let fleet: KeyedFleet
  const token = 'ghp_recordingserver0123456789'
  beforeAll(async () => {
    reg = await startRegistry()
    fleet = await pushKeyedFleet(client, `${reg.address}/acme/fleet`, { keys: KEYS, instances: 20, groups: 4 })
  })
  afterAll(async () => await reg?.stop())

  /** The packages GitHub would list for what the registry holds: tagged versions, and the untagged ones (index children, two orphans). */
  async function seed(orphans: { old: string; young: string }) {
    const packages: Record<string, Array<{ digest: string; tags: string[]; createdAt: string }>> = {}
    const at = '2026-11-01T12:00:00Z'
    for (const [repo, byTag] of fleet.tags) {
      const name = repo.replace(/^acme\//, '')
      const versions = (packages[name] ??= [])
      for (const [tag, digest] of byTag) {
        const v = versions.find((x) => x.digest === digest)
        if (v) v.tags.push(tag)
        else versions.push({ digest, tags: [tag], createdAt: at })
      }
      for (const [ref, children] of fleet.children) {
        if (ref.startsWith(`${repo}:`)) {
          versions.push(...children.map((digest) => ({ digest, tags: [], createdAt: at })))
        }
      }
    }
    packages['fleet/eval-base'].push({ digest: orphans.old, tags: [], createdAt: at })
    packages['fleet/eval-base'].push({ digest: orphans.young, tags: [], createdAt: new Date().toISOString() })
    packages['other-project/eval-base'] = [{ digest: orphans.old, tags: ['k1-x'], createdAt: at }]
    return packages
  }

  for (const type of ['User', 'Organization'] as const) {
    test(`${type}: deletes the versions of older keys, their children and old untagged ones — by id, with the token`, async () => {
      const orphan = (text: string) =>
        pushTestImage(client, `${reg.address}/acme/fleet/eval-base:orphan-${type}-${text}`, {
          layers: [[file('o', `${type} ${text}`)]],
        })
      const [old, young] = [(await orphan('old')).digest, (await orphan('young')).digest]
      const gh = startGitHubPackages({ owner: 'acme', type, token, packages: await seed({ old, young }) })
      try {
        const r = await prune(
          [
            '--registry',
            `${reg.address}/acme/fleet`,
            '--keep-keys',
            '1',
            '--registry-api',
            'ghcr',
            '--github-api',
            gh.url,
            '--password-env',
            'GH_TOKEN',
            '--yes',
          ],
          { GH_TOKEN: token },
        )
        expect(r.code).toBe(0)
        const deletes = gh.calls.filter((c) => c.method === 'DELETE')
        const deleted = deletes.map((c) => gh.byId.get(Number(c.path.split('/').pop()))!)
        const want = expected(fleet)
        const wantDigests = [
          ...want.tags.map((t) =>
            `${t.split(':')[0].replace('acme/', '')}@${fleet.tags.get(t.split(':')[0])!.get(t.split(':')[1])}`
          ),
          ...want.children.map((c) => c.replace('acme/', '')),
          `fleet/eval-base@${old}`,
        ]
        expect([...new Set(deleted.map((d) => `${d.name}@${d.digest}`))].sort()).toEqual(
          [...new Set(wantDigests)].sort(),
        )
        const path = type === 'Organization' ? '/orgs/acme/packages/container/' : '/users/acme/packages/container/'
        expect(deletes.every((c) => c.path.startsWith(`${path}fleet%2Feval-`) && c.status === 204)).toBe(true)
        expect(gh.calls.every((c) => c.auth === `Bearer ${token}` && c.apiVersion === '2022-11-28')).toBe(true)
        expect(gh.calls.some((c) => c.path.includes('other-project'))).toBe(false)
        expect(r.stdout).toContain(`keep acme/fleet/eval-base@${young} — untagged, pushed within the hour`)
        expect(r.stdout + r.stderr).not.toContain(token)
      } finally {
        gh.stop()
      }
    })
  }
})
