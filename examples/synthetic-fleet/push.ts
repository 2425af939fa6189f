// Images made straight in a registry, without a daemon. A layer is an uncompressed tar (OCI `layer.v1.tar`):
// random bytes do not compress, so gzip would only cost CPU, and an uncompressed layer's digest is also its
// diff_id (one sha256 per byte). Each layer is streamed — made, hashed and uploaded one piece at a time, as the
// registry reads it — so a layer of any size takes a few MiB of memory.
// dockerd 20.10 pulls these layers for `docker run` and for `FROM` in its BuildKit builds (checked on the sandbox,
// tests/synthetic-fleet.integration.test.ts).
import { $ } from 'zx'
import { createHash, randomFillSync } from 'node:crypto'
import fs from 'node:fs'
import { type LayerFile, writeLayer } from '../../lib/image/layer.ts'
import { ensureBlob, sha256, startUpload, uploadBlob } from '../../lib/registry/blobs.ts'
import { MEDIA, type RegistryClient, RegistryError, type Repo } from '../../lib/registry/client.ts'
import { encode, json, type Manifest, repoOf } from '../../lib/registry/image.ts'
import { parseImageRef } from '../../lib/registry/ref.ts'

/** OCI's uncompressed layer media type (image-spec, media-types.md). */
export const TAR_LAYER = 'application/vnd.oci.image.layer.v1.tar'
/** Random bytes go into files of this size, made CHUNK by CHUNK (small pieces keep memory and page faults low). */
const FILE = 16 * 2 ** 20
const CHUNK = 2 ** 20
const END = new Uint8Array(1024) // a tar ends with two zero blocks
const EPOCH = '1970-01-01T00:00:00Z'
const PATH = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'

/** Named files (with data), plus `payload.bytes` of random bytes in files under `payload.dir`. */
export type LayerSpec = { files: LayerFile[]; payload?: { dir: string; bytes: number } }
/** A layer in the registry and the repository it was pushed to (other repositories mount it from there). */
export type PushedLayer = { digest: string; size: number; home: Repo }

const dir = (path: string): LayerFile => ({ path, type: 'dir', mode: 0o755, uid: 0, gid: 0 })
export const textFile = (path: string, text: string): LayerFile => ({
  path,
  type: 'file',
  mode: 0o644,
  uid: 0,
  gid: 0,
  data: new TextEncoder().encode(text),
})

/** The named files of a layer as tar members (parents added, as writeLayer does), without the tar's end. */
function headOf(spec: LayerSpec): Uint8Array {
  const head = writeLayer(spec.payload ? [...spec.files, dir(spec.payload.dir)] : spec.files).tar
  return head.subarray(0, head.length - END.length)
}

/** The layer's tar piece by piece, without its end: the named files, then the random files, made CHUNK by CHUNK. */
function* layerTar(spec: LayerSpec): Generator<Uint8Array> {
  yield headOf(spec)
  const total = spec.payload?.bytes ?? 0
  for (let at = 0, n = 0; at < total; n++) {
    const size = Math.min(FILE, total - at)
    yield fileHeader(`${spec.payload!.dir}/${String(n).padStart(4, '0')}`, size)
    for (let left = size; left > 0; left -= CHUNK) yield randomFillSync(new Uint8Array(Math.min(CHUNK, left)))
    if (size % 512) yield new Uint8Array(512 - (size % 512))
    at += size
  }
}

/** The size pushLayer gives a layer, without making it: tells a layer made before in another shape. */
export function layerSize(spec: LayerSpec): number {
  let size = headOf(spec).length + END.length
  for (let left = spec.payload?.bytes ?? 0; left > 0; left -= FILE) {
    size += 512 + Math.ceil(Math.min(FILE, left) / 512) * 512
  }
  return size
}

/** A ustar header for a root-owned 0644 file with mtime 0. writeTar frames data it holds whole; a random file
 * here is never whole in memory, so its header is written apart. Paths are short ASCII (< 100 bytes). */
function fileHeader(path: string, size: number): Uint8Array {
  const h = new Uint8Array(512)
  const put = (text: string, at: number) => h.set(new TextEncoder().encode(text), at)
  const octal = (n: number, width: number) => n.toString(8).padStart(width - 1, '0') + '\0'
  put(path, 0)
  put(octal(0o644, 8), 100)
  put(octal(0, 8) + octal(0, 8) + octal(size, 12) + octal(0, 12), 108) // uid, gid, size, mtime
  put(' '.repeat(8), 148) // the checksum counts its own field as spaces
  put('0', 156)
  put('ustar\x0000', 257)
  put(octal(h.reduce((sum, b) => sum + b, 0), 7) + ' ', 148)
  return h
}

/**
 * Streams a layer into `repo`: the tar in one PATCH whose body is made as the registry reads it (and hashed on the
 * way), then the closing PUT with the digest and the tar's end (never an empty body). The registry checks the digest.
 */
export async function pushLayer(client: RegistryClient, repo: Repo, spec: LayerSpec): Promise<PushedLayer> {
  const hash = createHash('sha256')
  let size = 0
  const pieces = layerTar(spec)
  const body = new ReadableStream<Uint8Array>({
    pull(stream) {
      const next = pieces.next()
      if (next.done) return stream.close()
      hash.update(next.value)
      size += next.value.length
      stream.enqueue(next.value)
    },
  })
  const opened = await startUpload(client, repo)
  const sent = await client.send(repo, 'pull,push', '', { url: opened, method: 'PATCH', body, headers: OCTETS })
  await sent.body?.cancel()
  if (sent.status !== 202) throw await client.statusError(sent, `upload of a layer to ${repo.repository}`)
  const digest = `sha256:${hash.update(END).digest('hex')}`
  const url = new URL(sent.headers.get('location') ?? opened, await client.baseUrl(repo.registry))
  url.searchParams.set('digest', digest)
  const res = await client.send(repo, 'pull,push', '', {
    url: url.toString(),
    method: 'PUT',
    body: END,
    headers: OCTETS,
  })
  await res.body?.cancel()
  if (res.status !== 201) throw await client.statusError(res, `finish upload of ${digest} to ${repo.repository}`)
  return { digest, size: size + END.length, home: repo }
}

const OCTETS = { 'content-type': 'application/octet-stream' }

/**
 * Makes `ref` an image of `layers` (bottom first): mounts each layer into its repository, uploads a config
 * (`history` says what made each layer) and PUTs an OCI manifest, whose digest the registry must answer back.
 */
export async function pushImage(
  client: RegistryClient,
  ref: string,
  layers: PushedLayer[],
  o: { architecture: string; history: string[] },
): Promise<string> {
  const r = parseImageRef(ref)
  await Promise.all(layers.map((l) => ensureBlob(client, l.home, repoOf(r), l.digest)))
  const config = encode({
    architecture: o.architecture,
    os: 'linux',
    created: EPOCH,
    config: { Env: [PATH], Cmd: ['/bin/sh'] },
    rootfs: { type: 'layers', diff_ids: layers.map((l) => l.digest) },
    history: o.history.map((created_by) => ({ created: EPOCH, created_by })),
  })
  await uploadBlob(client, repoOf(r), config)
  const manifest = encode({
    schemaVersion: 2,
    mediaType: MEDIA.ociManifest,
    config: { mediaType: MEDIA.ociConfig, digest: sha256(config), size: config.length },
    layers: layers.map((l) => ({ mediaType: TAR_LAYER, digest: l.digest, size: l.size })),
  })
  const answered = await client.putManifest(r, manifest, MEDIA.ociManifest)
  if (answered && answered !== sha256(manifest)) {
    throw new RegistryError(
      `${ref}: the registry stored ${answered}, the manifest sent was ${sha256(manifest)}`,
      'protocol',
    )
  }
  return sha256(manifest)
}

/**
 * The layers of an image this generator pushed (its manifest's digest checked), or undefined when the registry has no
 * such tag. Refuses an image it did not make: a registry of real images is not overwritten.
 */
export async function readImage(client: RegistryClient, ref: string): Promise<{ layers: PushedLayer[] } | undefined> {
  const r = parseImageRef(ref)
  const got = await client.getManifest(r).catch((e) => {
    if (e instanceof RegistryError && e.status === 404) return undefined
    throw e
  })
  if (!got) return undefined
  if (got.digest && got.digest !== sha256(got.bytes)) {
    throw new RegistryError(
      `${ref}: manifest arrived as ${sha256(got.bytes)}, the registry says ${got.digest}`,
      'protocol',
    )
  }
  const manifest = json(got.bytes) as Manifest
  if (!manifest.layers?.every((l) => l.mediaType === TAR_LAYER)) {
    throw new Error(`${ref} exists and was not made by this generator: not overwriting it (use another registry)`)
  }
  return { layers: manifest.layers.map((l) => ({ digest: l.digest, size: l.size, home: repoOf(r) })) }
}

/** A static busybox and the links `busybox --install -s` makes (its own `--list-full`), so `sh`, `cat`, `head` … run. */
export async function busyboxFiles(busybox: string): Promise<{ files: LayerFile[]; architecture: string }> {
  const data = new Uint8Array(fs.readFileSync(busybox))
  const elf = elfFacts(data)
  if (!elf.static || !elf.architecture) {
    throw new Error(`${busybox} is not a static x86-64 or arm64 busybox (on Debian: apt-get install busybox-static)`)
  }
  const listed = (await $({ quiet: true })`${busybox} --list-full`).stdout.split('\n')
  const applets = listed.filter((p) => p && p !== 'bin/busybox') // it lists itself; --install leaves the binary be
  const link = (path: string): LayerFile => ({
    path,
    type: 'symlink',
    linkname: '/bin/busybox',
    mode: 0o777,
    uid: 0,
    gid: 0,
  })
  const files = [
    { path: 'bin/busybox', type: 'file' as const, mode: 0o755, uid: 0, gid: 0, data },
    ...applets.map(link),
  ]
  return { files, architecture: elf.architecture }
}

/** From an ELF64 header: the machine as a Docker architecture, and whether it runs without a dynamic loader. */
function elfFacts(bytes: Uint8Array): { architecture?: string; static: boolean } {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  if (bytes.length < 64 || view.getUint32(0) !== 0x7f454c46 || bytes[4] !== 2 || bytes[5] !== 1) {
    return { static: false }
  }
  const machine = view.getUint16(18, true)
  const [table, entrySize, entries] = [
    Number(view.getBigUint64(32, true)),
    view.getUint16(54, true),
    view.getUint16(56, true),
  ]
  const PT_INTERP = 3 // the program header naming the dynamic loader
  let dynamic = false
  for (let i = 0; i < entries; i++) dynamic ||= view.getUint32(table + i * entrySize, true) === PT_INTERP
  return { architecture: ({ 62: 'amd64', 183: 'arm64' } as Record<number, string>)[machine], static: !dynamic }
}
