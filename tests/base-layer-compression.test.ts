// lib/image/base-files.ts reads a layer by what its bytes are, not by the media type the manifest claims: docker
// 20.10 pushes a layer it pulled as plain tar (the synthetic fleet's) under the gzip media type, and registry
// assembly of such a base must read it, not crash on "incorrect header check". Against a real registry.
import { afterAll, beforeAll, expect, test } from 'bun:test'
import { BaseReader } from '../lib/image/base-files.ts'
import { writeLayer } from '../lib/image/layer.ts'
import { sha256, uploadBlob } from '../lib/registry/blobs.ts'
import { MEDIA, RegistryClient } from '../lib/registry/client.ts'
import type { Descriptor } from '../lib/registry/image.ts'
import { type RegistryServer, startRegistry } from './helpers/registry-server.ts'

let reg: RegistryServer
const client = new RegistryClient()
beforeAll(async () => (reg = await startRegistry()))
afterAll(async () => await reg?.stop())

const layer = (path: string, text: string) =>
  writeLayer([{ path, type: 'file', mode: 0o644, uid: 0, gid: 0, data: new TextEncoder().encode(text) }])

test('a plain tar layer labelled gzip, a gzip one and a plain one labelled plain are all read', async () => {
  const repo = { registry: reg.address, repository: 'fleet/eval-base' }
  const plain = layer('etc/passwd', 'root:x:0:0::/root:/bin/sh\nagent:x:1000:1000::/home/agent:/bin/sh\n')
  const gzip = layer('etc/group', 'agent:x:1000:\n')
  const mislabelled = layer('etc/hostname', 'base\n')
  await uploadBlob(client, repo, plain.tar)
  await uploadBlob(client, repo, gzip.gzip)
  await uploadBlob(client, repo, mislabelled.tar)
  const layers: Descriptor[] = [
    { mediaType: MEDIA.dockerLayer, digest: sha256(mislabelled.tar), size: mislabelled.tar.length }, // claims gzip, is a tar
    { mediaType: MEDIA.dockerLayer, digest: gzip.digest, size: gzip.size },
    { mediaType: 'application/vnd.oci.image.layer.v1.tar', digest: sha256(plain.tar), size: plain.tar.length },
  ].reverse() // manifests list layers bottom-up: the mislabelled one is on top, read first
  const { files, stats } = await new BaseReader(client).read(repo, layers, {
    points: ['nothing-here'],
    subtrees: [],
    data: ['etc/passwd', 'etc/group', 'etc/hostname'],
  })
  expect(stats.layersRead).toBe(3)
  expect(new TextDecoder().decode(files.data('etc/hostname'))).toBe('base\n')
  expect(new TextDecoder().decode(files.data('etc/group'))).toBe('agent:x:1000:\n')
  expect(new TextDecoder().decode(files.data('etc/passwd'))).toContain('agent:x:1000')
})
