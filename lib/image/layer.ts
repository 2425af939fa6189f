// Image layers: read gzip'd tar layers into a merged filesystem view (OCI whiteouts, opaque dirs, hard links as
// shared nodes), and write reproducible layers — same files in, same bytes out, under every runtime.
import { createHash } from 'node:crypto'
import zlib from 'node:zlib'
import { deflateRaw } from 'pako'
import { cleanPath, readTar, type TarEntry, writeTar } from './tar.ts'

export { cleanPath, readTar, type TarEntry, TarReader, writeTar } from './tar.ts'

/** A file for a new layer. Paths are relative to the image root (`opt/agent/bin/x`); a hard link names its target so. */
export type LayerFile = {
  path: string
  type: 'file' | 'dir' | 'symlink' | 'hardlink'
  mode: number
  uid: number
  gid: number
  linkname?: string
  data?: Uint8Array
}
/** A built layer: the tar, its gzip, the uncompressed digest (rootfs diff_id) and the blob digest and size. */
export type BuiltLayer = { tar: Uint8Array; gzip: Uint8Array; diffId: string; digest: string; size: number }
export type WriteLayerOptions = {
  /** Seconds since the epoch written as every member's mtime (default 0, like SOURCE_DATE_EPOCH=0). */
  mtime?: number
  /**
   * Add a 0755 root:root entry for every parent the files do not list (default true: a conventional layer, as
   * tests push). The agent layer passes false and lists its parents itself, with the metadata BuildKit gives them:
   * a directory entry in a layer resets the metadata of the directory the base already has.
   */
  addParents?: boolean
}

const sha256 = (data: Uint8Array) => `sha256:${createHash('sha256').update(data).digest('hex')}`

/**
 * Writes a reproducible layer: members sorted by path, one fixed mtime, modes and owners exactly as given, gzip
 * with fixed settings (see gzipReproducible).
 */
export function writeLayer(files: LayerFile[], options: WriteLayerOptions = {}): BuiltLayer {
  const byPath = new Map<string, TarEntry>()
  for (const f of files) {
    const path = cleanPath(f.path)
    if (!path) continue
    const linkname = f.type === 'hardlink' ? cleanPath(f.linkname ?? '') : f.linkname
    byPath.set(path, { ...f, path, linkname, size: f.data?.length ?? 0, mtime: 0, mode: f.mode & 0o7777 })
  }
  if (options.addParents ?? true) {
    for (const path of [...byPath.keys()]) {
      const parts = path.split('/')
      for (let i = 1; i < parts.length; i++) {
        const parent = parts.slice(0, i).join('/')
        if (!byPath.has(parent)) {
          byPath.set(parent, { path: parent, type: 'dir', mode: 0o755, uid: 0, gid: 0, size: 0, mtime: 0 })
        }
      }
    }
  }
  const sorted = [...byPath.values()].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0))
  const tar = writeTar(sorted, options.mtime ?? 0)
  const gzip = gzipReproducible(tar)
  return { tar, gzip, diffId: sha256(tar), digest: sha256(gzip), size: gzip.length }
}

const CRC_TABLE = (() => {
  const t = new Uint32Array(256)
  for (let n = 0; n < 256; n++) {
    let c = n
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1
    t[n] = c >>> 0
  }
  return t
})()

export function crc32(data: Uint8Array): number {
  let c = 0xffffffff
  for (let i = 0; i < data.length; i++) c = CRC_TABLE[(c ^ data[i]) & 0xff] ^ (c >>> 8)
  return (c ^ 0xffffffff) >>> 0
}

/**
 * gzip with a fixed 10-byte header (no mtime, no name, OS 255 as Go writes it), raw deflate, CRC32 and size trailer.
 * One compressor for every runtime: pako (a JavaScript port of zlib), level 9, pinned to one version in
 * package.json. node:zlib is not: Bun's, Deno's and Node's give different bytes for the same tar, so the layer
 * digest would depend on the runtime (issue 15; tests/layer.test.ts builds one layer under Bun and Deno).
 */
export function gzipReproducible(data: Uint8Array): Uint8Array {
  const body = deflateRaw(data, { level: 9 })
  const out = new Uint8Array(10 + body.length + 8)
  out.set([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff], 0)
  out.set(body, 10)
  const view = new DataView(out.buffer)
  view.setUint32(10 + body.length, crc32(data), true)
  view.setUint32(14 + body.length, data.length >>> 0, true)
  return out
}

/** A layer blob as a tar: gunzips gzip, passes plain tar through; zstd needs a runtime with zlib zstd support. */
export function decompressLayer(blob: Uint8Array): Uint8Array {
  if (blob[0] === 0x1f && blob[1] === 0x8b) return new Uint8Array(zlib.gunzipSync(blob))
  if (blob[0] === 0x28 && blob[1] === 0xb5 && blob[2] === 0x2f && blob[3] === 0xfd) {
    const zstd = (zlib as unknown as { zstdDecompressSync?: (b: Uint8Array) => Uint8Array }).zstdDecompressSync
    if (!zstd) throw new Error('zstd-compressed layer and this runtime has no zlib.zstdDecompressSync')
    return new Uint8Array(zstd(blob))
  }
  return blob
}

/**
 * A node of the merged filesystem. Files carry a `dataKey` (`layer\0path`) saying where their bytes are. Hard links
 * are one node object reachable by several names (one inode), as the layer applier makes them.
 */
export type FsNode = {
  type: 'file' | 'dir' | 'symlink' | 'other'
  mode: number
  uid: number
  gid: number
  linkname?: string
  dataKey?: string
  size?: number
  children?: Map<string, FsNode>
}

const dirNode = (): FsNode => ({ type: 'dir', mode: 0o755, uid: 0, gid: 0, children: new Map() })
export const WHITEOUT = '.wh.'
export const OPAQUE = '.wh..wh..opq'

/**
 * The filesystem an image's layers produce, metadata only (bytes stay in the layers; see `dataKey`).
 * Apply layers bottom-up. Whiteouts hide lower files; an opaque marker empties a directory of lower content.
 */
export class LayerTree {
  readonly root: FsNode = dirNode()
  private layers = 0

  /** Applies one layer's members (from readTar): deletions first, then additions, as the OCI spec orders them. */
  apply(entries: Iterable<TarEntry>): void {
    const layer = this.layers++
    const list = [...entries]
    for (const e of list) {
      const name = e.path.split('/').pop() ?? ''
      const parent = e.path.split('/').slice(0, -1).join('/')
      if (name === OPAQUE) this.dirAt(parent).children!.clear()
      else if (name.startsWith(WHITEOUT)) this.dirAt(parent).children!.delete(name.slice(WHITEOUT.length))
    }
    for (const e of list) {
      const name = e.path.split('/').pop() ?? ''
      if (!e.path || name.startsWith(WHITEOUT)) continue
      this.add(e, layer)
    }
  }

  private add(e: TarEntry, layer: number): void {
    const parts = e.path.split('/')
    const dir = this.dirAt(parts.slice(0, -1).join('/'))
    const name = parts[parts.length - 1]
    const existing = dir.children!.get(name)
    const meta = { mode: e.mode, uid: e.uid, gid: e.gid }
    if (e.type === 'dir') {
      if (existing?.type === 'dir') Object.assign(existing, meta)
      else dir.children!.set(name, { ...dirNode(), ...meta })
    } else if (e.type === 'hardlink') {
      const target = this.lookup(cleanPath(e.linkname ?? ''), false)
      if (target?.node.type !== 'file') throw new Error(`hard link ${e.path} points at missing ${e.linkname}`)
      Object.assign(target.node, meta) // the applier chowns and chmods the shared inode with the link's header
      dir.children!.set(name, target.node)
    } else if (e.type === 'file') {
      dir.children!.set(name, { type: 'file', ...meta, dataKey: `${layer}\0${e.path}`, size: e.size })
    } else dir.children!.set(name, { type: e.type, ...meta, linkname: e.linkname })
  }

  /** The directory at `path`, creating missing (or replacing non-directory) components as plain 0755 dirs. */
  private dirAt(path: string): FsNode {
    let node = this.root
    for (const part of path ? path.split('/') : []) {
      let next = node.children!.get(part)
      if (next?.type !== 'dir') {
        next = dirNode()
        node.children!.set(part, next)
      }
      node = next
    }
    return node
  }

  /** Finds a path, following symlinks in its directories (and in its last component when `followLast`). */
  lookup(path: string, followLast = true): { node: FsNode; path: string } | undefined {
    const todo = cleanPath(path).split('/').filter(Boolean)
    const done: string[] = []
    let node = this.root
    for (let hops = 0; todo.length;) {
      const part = todo.shift()!
      const next = node.children?.get(part)
      if (!next) return undefined
      if (next.type === 'symlink' && (todo.length || followLast)) {
        if (++hops > 40) throw new Error(`too many symlinks resolving ${path}`)
        const target = next.linkname ?? ''
        const base = target.startsWith('/') ? [] : done
        todo.unshift(...cleanPath([...base, target].join('/')).split('/').filter(Boolean))
        done.length = 0
        node = this.root
        continue
      }
      done.push(part)
      node = next
    }
    return { node, path: done.join('/') }
  }
}

/** Applies gzip'd (or plain) tar layers bottom-up into a LayerTree. */
export function treeFromLayers(blobs: Iterable<Uint8Array>): LayerTree {
  const tree = new LayerTree()
  for (const blob of blobs) tree.apply(readTar(decompressLayer(blob)))
  return tree
}

/** Collects the bytes for the given data keys by reading the layers again (only those members are copied out). */
export function readLayerData(blobs: Uint8Array[], keys: Set<string>): Map<string, Uint8Array> {
  const data = new Map<string, Uint8Array>()
  blobs.forEach((blob, layer) => {
    const want = (path: string) => keys.has(`${layer}\0${path}`)
    for (const e of readTar(decompressLayer(blob), want)) if (e.data) data.set(`${layer}\0${e.path}`, e.data)
  })
  return data
}
