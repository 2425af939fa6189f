// lib/image/base-files.ts against a real registry (docker-registry): a base image is read top-down through the
// registry, only as far as the questions need, whiteouts and opaque directories respected, and what a layer digest
// told is kept for the run.
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import { BaseReader } from '../lib/image/base-files.ts'
import { writeLayer } from '../lib/image/layer.ts'
import { sha256, uploadBlob } from '../lib/registry/blobs.ts'
import { MEDIA, RegistryClient } from '../lib/registry/client.ts'
import { type Manifest, repoOf } from '../lib/registry/image.ts'
import { parseImageRef } from '../lib/registry/ref.ts'
import { pushTestImage, type RegistryServer, startRegistry } from './helpers/registry-server.ts'
import { dir, file } from './helpers/layer-files.ts'

/** Bytes gzip cannot shrink (1 MB by default): a layer whose size shows how much of it was read. */
const noise = (seed: number, size = 1_000_000) => {
  const out = new Uint8Array(size)
  for (let i = 0, x = seed; i < out.length; i++) out[i] = (x = (Math.imul(x, 1103515245) + 12345) >>> 0) >>> 24
  return out
}

describe('reading a base image through the registry', () => {
  let reg: RegistryServer
  const client = new RegistryClient()
  const layersOf = async (ref: string) => {
    const r = parseImageRef(ref)
    return {
      repo: repoOf(r),
      layers: (JSON.parse(new TextDecoder().decode((await client.getManifest(r)).bytes)) as Manifest).layers,
    }
  }
  // bottom: a distro; middle: the fleet's environment; top: the base stage's small layer that adds the user
  const distro = [
    dir('etc'),
    file('etc/passwd', 'root:x:0:0::/root:/bin/sh\n'),
    dir('tmp', 0o1777),
    dir('usr'),
    file('usr/junk', noise(1)),
  ]
  const env = [
    dir('opt', 0o750, 5, 6),
    file('opt/env/lib.so', noise(2)),
    file('usr/.wh.junk', ''),
    dir('srv'),
    file('srv/.wh..wh..opq', ''),
  ]
  const user = [
    file('etc/passwd', 'root:x:0:0::/root:/bin/sh\nagent:x:1000:1000::/home/agent:/bin/sh\n'),
    dir('home/agent', 0o700, 1000, 1000),
    // 16 MB after etc/passwd: more than the registry can push into the socket before the reader stops (a 1 MB
    // tail arrived whole in one chunk on a loaded machine, and the stop can only come after the chunk in hand)
    file('home/agent/big', noise(3, 16_000_000)),
  ]

  beforeAll(async () => {
    reg = await startRegistry()
    await pushTestImage(client, `${reg.address}/fleet/base:a`, { layers: [distro, env, user] })
    await pushTestImage(client, `${reg.address}/fleet/base:b`, {
      layers: [distro, env, [file('etc/group', 'agent:x:1000:\n')]],
    })
  })
  afterAll(async () => await reg?.stop())

  test('a question the top layer answers stops the read there, in the middle of that layer', async () => {
    const { repo, layers } = await layersOf(`${reg.address}/fleet/base:a`)
    const { files, stats } = await new BaseReader(client).read(repo, layers, {
      points: ['etc'],
      subtrees: [],
      data: ['etc/passwd'],
    })
    console.log(`passwd from the top layer: ${JSON.stringify(stats)}; top layer is ${layers[2].size} bytes`)
    expect(new TextDecoder().decode(files.data('etc/passwd'))).toContain('agent:x:1000:1000')
    expect(stats.layersRead).toBe(1)
    expect(stats.bytesRead).toBeLessThan(layers[2].size / 2) // etc/passwd is the first member; the 16 MB after it are not read
  })

  test('that a path is absent is known only after every layer; whiteouts and opaque directories count', async () => {
    const { repo, layers } = await layersOf(`${reg.address}/fleet/base:a`)
    const q = { points: ['agent-server', 'tmp', 'usr/junk', 'opt', 'home', 'home/agent'], subtrees: ['srv'], data: [] }
    const { files, stats } = await new BaseReader(client).read(repo, layers, q)
    expect(stats.layersRead).toBe(3)
    expect(stats.bytesRead).toBe(layers.reduce((n, l) => n + l.size, 0))
    expect(files.answer('agent-server')).toBeNull()
    expect(files.answer('usr/junk')).toBeNull() // whited out by the middle layer
    expect(files.answer('tmp')).toMatchObject({ type: 'dir', mode: 0o1777 })
    expect(files.answer('opt')).toMatchObject({ type: 'dir', mode: 0o750, uid: 5, gid: 6 })
    expect(files.answer('home/agent')).toMatchObject({ mode: 0o700, uid: 1000 })
    expect(files.subtree('srv')).toEqual([])
  })

  test('layers two bases share are read once per run: the second base streams only its own layer', async () => {
    const reader = new BaseReader(client)
    const q = { points: ['agent-server'], subtrees: ['agent-server'], data: [] }
    const a = await layersOf(`${reg.address}/fleet/base:a`)
    const b = await layersOf(`${reg.address}/fleet/base:b`)
    const first = await reader.read(a.repo, a.layers, q)
    const second = await reader.read(b.repo, b.layers, q)
    console.log(`first base ${JSON.stringify(first.stats)}; second ${JSON.stringify(second.stats)}`)
    expect([first.stats.layersRead, first.stats.layersCached]).toEqual([3, 0])
    expect([second.stats.layersRead, second.stats.layersCached]).toEqual([1, 2])
    expect(second.stats.bytesRead).toBe(b.layers[2].size)
    expect(second.files.answer('agent-server')).toBeNull()
  })

  test('a plain tar under a gzip media type (as docker push leaves a blob the registry already had) is read by its bytes', async () => {
    const tar = writeLayer([dir('etc'), file('etc/passwd', 'root:x:0:0::/root:/bin/sh\nagent:x:7:7::/:/bin/sh\n')]).tar
    const repo = { registry: reg.address, repository: 'fleet/plain' }
    await uploadBlob(client, repo, tar)
    const layers = [{ mediaType: MEDIA.dockerLayer, digest: sha256(tar), size: tar.length }]
    const { files } = await new BaseReader(client).read(repo, layers, {
      points: ['etc'],
      subtrees: [],
      data: ['etc/passwd'],
    })
    expect(new TextDecoder().decode(files.data('etc/passwd'))).toContain('agent:x:7:7')
  })
})
