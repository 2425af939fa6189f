// The synthetic fleet generator: its shape (pure), and what it makes in a real registry (docker-registry, no
// daemon): layers, configs and manifests, digests, the files it writes, reruns. That the images run and build on
// the engine is tests/synthetic-fleet.integration.test.ts.
import { describe, expect, test } from 'bun:test'
import fs from 'node:fs'
import path from 'node:path'
import zlib from 'node:zlib'
import { $ } from 'zx'
import { type Fleet, generateFleet } from '../examples/synthetic-fleet/generate.ts'
import { planFleet, type ShapeOptions } from '../examples/synthetic-fleet/shape.ts'
import { TAR_LAYER } from '../examples/synthetic-fleet/push.ts'
import { readTar } from '../lib/image/layer.ts'
import { getBlob, sha256 } from '../lib/registry/blobs.ts'
import { RegistryClient } from '../lib/registry/client.ts'
import { json, type Manifest } from '../lib/registry/image.ts'
import { parseImageRef } from '../lib/registry/ref.ts'
import { registryFixture, ROOT } from './helpers/fixture.ts'

const shape = (o: Partial<ShapeOptions>): ShapeOptions => ({
  groups: 2,
  perGroup: [2],
  envSizes: [1e6],
  instanceSize: 1e5,
  baseSize: 0,
  envsPerRepo: 1,
  order: 'id',
  ...o,
})
const groupsOf = (o: Partial<ShapeOptions>) => planFleet(shape(o), 'r:1').instances.map((i) => i.group)

describe('the fleet plan', () => {
  test('one repository per environment: ids org{g}__proj{g}-{101+i}, SWE-bench image names, environment by environment', () => {
    const plan = planFleet(shape({ groups: 2, perGroup: [2] }), '127.0.0.1:5000')
    expect(plan.instances.map((i) => i.id)).toEqual([
      'org0__proj0-101',
      'org0__proj0-102',
      'org1__proj1-101',
      'org1__proj1-102',
    ])
    expect(plan.instances[3].image).toBe('127.0.0.1:5000/sweb.eval.x86_64.org1_1776_proj1-102:latest')
    expect(plan.baseImage).toBe('127.0.0.1:5000/imagefleet/synthetic-base:latest')
  })

  test('environments of one repository interleave in id order, and stay together when grouped', () => {
    expect(groupsOf({ groups: 4, perGroup: [2], envsPerRepo: 4 })).toEqual([0, 1, 2, 3, 0, 1, 2, 3])
    expect(groupsOf({ groups: 4, perGroup: [2], envsPerRepo: 4, order: 'grouped' })).toEqual([0, 0, 1, 1, 2, 2, 3, 3])
    const ids = planFleet(shape({ groups: 4, perGroup: [2], envsPerRepo: 2 }), 'r:1').instances.map((i) => i.id)
    expect(ids).toEqual([
      'org0__proj0-101',
      'org0__proj0-102',
      'org0__proj0-103',
      'org0__proj0-104',
      'org1__proj1-101',
      'org1__proj1-102',
      'org1__proj1-103',
      'org1__proj1-104',
    ])
  })

  test('sizes and instance counts cycle over the environments; an environment that runs out drops out of the rotation', () => {
    const plan = planFleet(shape({ groups: 3, perGroup: [3, 1], envSizes: [5e6, 2e6], envsPerRepo: 3 }), 'r:1')
    expect(plan.environments.map((e) => [e.bytes, e.instances.length])).toEqual([[5e6, 3], [2e6, 1], [5e6, 3]])
    expect(plan.instances.map((i) => i.group)).toEqual([0, 1, 2, 0, 2, 0, 2])
  })
})

describe('generateFleet against a real registry', () => {
  const fx = registryFixture('synthetic-fleet')
  const client = new RegistryClient()
  const options = () => ({
    registry: fx.registry.address,
    groups: 2,
    perGroup: [2, 1],
    envSize: [3e6, 1e6],
    instanceSize: 2e5,
    envsPerRepo: 2,
    out: path.join(fx.work, 'fleet', 'instances.txt'),
  })
  let fleet: Fleet
  const manifestOf = async (ref: string) => json((await client.getManifest(ref)).bytes) as Manifest
  const layerFiles = async (ref: string, index: number) => {
    const m = await manifestOf(ref)
    const blob = await getBlob(client, parseImageRef(ref), m.layers[index].digest) // checks the digest
    return [...readTar(blob, () => true)]
  }

  test('every instance image is busybox, its environment and its own layer: uncompressed tars the config names', async () => {
    fleet = await generateFleet(options())
    expect(fleet.ids).toEqual(['org0__proj0-101', 'org0__proj0-102', 'org0__proj0-103'])
    const image = (id: string) => fleet.upstream.replace('{docker_id}', id.replace('__', '_1776_'))
    const manifests = await Promise.all(fleet.ids.map((id) => manifestOf(image(id))))
    for (const [i, m] of manifests.entries()) {
      expect(m.layers.map((l) => l.mediaType)).toEqual([TAR_LAYER, TAR_LAYER, TAR_LAYER])
      const ref = parseImageRef(image(fleet.ids[i]))
      const config = json(await getBlob(client, ref, m.config.digest))
      expect(config.rootfs.diff_ids).toEqual(m.layers.map((l) => l.digest))
      expect(config.config.Env[0]).toStartWith('PATH=')
    }
    // one base under all; instances 101 and 103 share environment 0, 102 has environment 1 (interleaved)
    expect(new Set(manifests.map((m) => m.layers[0].digest)).size).toBe(1)
    expect(manifests[0].layers[1].digest).toBe(manifests[2].layers[1].digest)
    expect(manifests[1].layers[1].digest).not.toBe(manifests[0].layers[1].digest)
    expect(new Set(manifests.map((m) => m.layers[2].digest)).size).toBe(3)
  })

  test('the base layer holds the static busybox and the links `busybox --install -s` makes', async () => {
    const files = await layerFiles(fleet.seed, 0)
    const busybox = files.find((f) => f.path === 'bin/busybox')!
    expect(busybox.data).toEqual(new Uint8Array(fs.readFileSync('/bin/busybox')))
    expect(busybox.mode).toBe(0o755)
    const listed = (await $({ quiet: true })`/bin/busybox --list-full`).stdout.split('\n').filter(Boolean)
    const links = files.filter((f) => f.type === 'symlink')
    expect(links.map((l) => l.path).sort()).toEqual(listed.filter((p) => p !== 'bin/busybox').sort())
    expect(new Set(links.map((l) => l.linkname))).toEqual(new Set(['/bin/busybox']))
    expect(links.map((l) => l.path)).toContain('usr/bin/head')
  })

  test("an instance layer holds its id and its own incompressible bytes; an environment's bytes are as asked", async () => {
    const image = fleet.upstream.replace('{docker_id}', 'org0_1776_proj0-102')
    const own = await layerFiles(image, 2)
    expect(new TextDecoder().decode(own.find((f) => f.path === 'instance/id')!.data)).toBe('org0__proj0-102\n')
    const data = own.filter((f) => f.path.startsWith('instance/data/'))
    expect(data.reduce((n, f) => n + f.size, 0)).toBe(2e5)
    const bytes = data[0].data!
    expect(zlib.gzipSync(bytes).length).toBeGreaterThan(bytes.length) // random: gzip cannot shrink it
    const env = await layerFiles(image, 1)
    expect(env.filter((f) => f.path.startsWith('env/data/')).reduce((n, f) => n + f.size, 0)).toBe(1e6)
    expect(new TextDecoder().decode(env.find((f) => f.path === 'env/group')!.data)).toBe('1\n')
  })

  test('instances.txt lists the ids in order; fleet.json counts the bytes the manifests name', async () => {
    const text = fs.readFileSync(path.join(fx.work, 'fleet', 'instances.txt'), 'utf8')
    expect(text.split('\n').filter((l) => l && !l.startsWith('#'))).toEqual(fleet.ids)
    expect(JSON.parse(fs.readFileSync(path.join(fx.work, 'fleet', 'fleet.json'), 'utf8'))).toEqual(fleet)
    const sizes = await Promise.all(fleet.ids.map(async (id) => {
      const m = await manifestOf(fleet.upstream.replace('{docker_id}', id.replace('__', '_1776_')))
      return m.layers.map((l) => [l.digest, l.size] as const)
    }))
    expect(fleet.upstreamBytes).toBe(sizes.flat().reduce((n, [, size]) => n + size, 0))
    expect(fleet.uniqueBytes).toBe([...new Map(sizes.flat()).values()].reduce((n, size) => n + size, 0))
    expect(fleet.environments.map((e) => e.ids)).toEqual([['org0__proj0-101', 'org0__proj0-103'], ['org0__proj0-102']])
  })

  test('a rerun pushes nothing; an instance missing from the registry is pushed again, alone', async () => {
    const image = (id: string) => fleet.upstream.replace('{docker_id}', id.replace('__', '_1776_'))
    const digests = async () => Promise.all(fleet.ids.map(async (id) => (await client.getManifest(image(id))).digest))
    const before = await digests()
    expect(await generateFleet(options())).toEqual(fleet)
    expect(await digests()).toEqual(before) // random layers: anything pushed again would have a new digest
    const gone = parseImageRef(image(fleet.ids[1]))
    const del = await fetch(`http://${fx.registry.address}/v2/${gone.repository}/manifests/${before[1]}`, {
      method: 'DELETE',
    })
    expect(del.status).toBe(202)
    expect(await generateFleet(options())).toEqual(fleet)
    const after = await digests()
    expect([after[0], after[2]]).toEqual([before[0], before[2]])
    expect(after[1]).not.toBe(before[1])
    const m = await manifestOf(image(fleet.ids[1]))
    expect(m.layers[1].digest).toBe((await manifestOf(fleet.environments[1].image)).layers[1].digest)
    expect(sha256((await client.getManifest(image(fleet.ids[1]))).bytes)).toBe(after[1]!)
  })

  test('a rerun in another shape makes again what changed and keeps the rest', async () => {
    const image = (id: string) => fleet.upstream.replace('{docker_id}', id.replace('__', '_1776_'))
    const digests = async () => Promise.all(fleet.ids.map(async (id) => (await client.getManifest(image(id))).digest))
    const envDigest = async (i: number) => (await client.getManifest(fleet.environments[i].image)).digest
    const before = [await digests(), await envDigest(0), await envDigest(1)] as const
    const reshaped = await generateFleet({ ...options(), envSize: [3e6, 2e6] })
    expect(reshaped.environments.map((e) => e.bytes)).toEqual([3e6, 2e6])
    const after = [await digests(), await envDigest(0), await envDigest(1)] as const
    expect(after[1]).toBe(before[1]) // environment 0 is as it was, and so are its instances 101 and 103
    expect(after[2]).not.toBe(before[2])
    expect([after[0][0], after[0][2]]).toEqual([before[0][0], before[0][2]])
    expect(after[0][1]).not.toBe(before[0][1])
    const m = await manifestOf(image(fleet.ids[1]))
    expect(m.layers[1].size).toBeGreaterThan(2e6)
  })

  test('the command line takes lists of sizes and counts, and refuses a bad one naming the flag', async () => {
    const out = path.join(fx.work, 'cli', 'instances.txt')
    const run = (args: string[]) =>
      $({ cwd: ROOT, nothrow: true, quiet: true })`${process.execPath} examples/synthetic-fleet/generate.ts ${args}`
    const good = await run([
      ...['--registry', fx.registry.address, '--groups', '3', '--per-group', '1,2', '--env-size', '1MB,500KB'],
      ...['--instance-size', '10KB', '--envs-per-repo', '3', '--order', 'grouped', '--out', out],
    ])
    expect(good.exitCode).toBe(0)
    const written = JSON.parse(fs.readFileSync(path.join(fx.work, 'cli', 'fleet.json'), 'utf8')) as Fleet
    expect(written.environments.map((e) => [e.bytes, e.ids.length])).toEqual([[1e6, 1], [5e5, 2], [1e6, 1]])
    expect(written.ids).toEqual(['org0__proj0-101', 'org0__proj0-102', 'org0__proj0-104', 'org0__proj0-103'])
    const bad = await run(['--registry', fx.registry.address, '--env-size', '1MB,lots', '--out', out])
    expect(bad.exitCode).toBe(2)
    expect(bad.stderr).toContain("--env-size wants comma-separated values, got '1MB,lots'")
  })
})
