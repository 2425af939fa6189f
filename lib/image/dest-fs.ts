// The filesystem a COPY writes into, without the image on disk: what a COPY changed (`upper`, path → node) over what
// the base image answers (base-files.ts). Paths resolve the way BuildKit resolves them inside the rootfs
// (containerd/continuity fs.RootPath: symlinks followed, `..` clamped at the root, a missing component ends the
// walk and the rest is taken as written). A question the base has not been asked stops the walk with NeedBase;
// the caller reads the base again with the question added.
import type { BaseFiles } from './base-files.ts'
import { cleanPath, type TarEntry } from './tar.ts'

/** A node as the COPY leaves it. A file keeps a reference to its bytes (source image and data key). */
export type VNode = {
  type: 'file' | 'dir' | 'symlink' | 'other'
  mode: number
  uid: number
  gid: number
  linkname?: string
  data?: { source: string; key: string; size: number }
  /** A node the base already had (kept for the metadata of parents that the layer has to list). */
  fromBase?: boolean
}

/** The base must be asked about `path` (its metadata, the subtree under it, or its bytes) before going on. */
export class NeedBase extends Error {
  constructor(readonly path: string, readonly want: 'point' | 'subtree' | 'data') {
    super(`need the base image's ${want} at /${path}`)
  }
}

/** docker build stops here too; the message is BuildKit's. */
export class CopyFailure extends Error {}

const fromEntry = (e: TarEntry): VNode => ({
  type: e.type === 'hardlink' ? 'file' : e.type,
  mode: e.mode,
  uid: e.uid,
  gid: e.gid,
  ...(e.linkname && e.type === 'symlink' ? { linkname: e.linkname } : {}),
  fromBase: true,
})

export class DestFs {
  readonly upper = new Map<string, VNode>()

  constructor(readonly base: BaseFiles) {}

  /** The node at exactly `path` (no symlinks followed), null when there is none. */
  node(path: string): VNode | null {
    const mine = this.upper.get(path)
    if (mine) return mine
    if (!path) return { type: 'dir', mode: 0o755, uid: 0, gid: 0, fromBase: true }
    const e = this.base.answer(path)
    if (e === undefined) throw new NeedBase(path, 'point')
    return e && fromEntry(e)
  }

  /** What the base has below `path` (to find what a directory copy would collide with). */
  baseChildren(path: string): string[] {
    const below = this.base.subtree(path)
    if (below === undefined) throw new NeedBase(path, 'subtree')
    return below
  }

  /** The bytes of a base file (its exact path), asking for them when the base has not been asked. */
  baseData(path: string): Uint8Array | undefined {
    const e = this.base.answer(path)
    if (e === undefined) throw new NeedBase(path, 'point')
    if (!e) return undefined
    if (e.type === 'hardlink') return this.baseData(cleanPath(e.linkname ?? ''))
    if (e.type !== 'file') return undefined
    const data = this.base.data(path)
    if (data === undefined) throw new NeedBase(path, 'data')
    return data
  }

  /** fs.RootPath: `path` resolved inside the rootfs, symlinks followed (the last one only when `followLast`). */
  resolve(path: string, followLast = true): string {
    const todo = splitPath(path)
    const out: string[] = []
    for (let hops = 0; todo.length;) {
      const part = todo.shift()!
      if (part === '..') {
        out.pop()
        continue
      }
      const at = [...out, part].join('/')
      let n: VNode | null
      try {
        n = this.node(at)
      } catch (e) {
        // ask for the whole rest of the path at once, not one component per read of the base
        if (e instanceof NeedBase) throw new NeedBase(cleanPath([...out, part, ...todo].join('/')), 'point')
        throw e
      }
      if (n?.type === 'symlink' && (todo.length || followLast)) {
        if (++hops > 255) throw new CopyFailure(`too many links resolving /${path}`)
        const target = splitPath(n.linkname ?? '')
        if (n.linkname?.startsWith('/')) out.length = 0
        todo.unshift(...target)
        continue
      }
      if (n && n.type !== 'dir' && todo.length) throw new CopyFailure(`/${at}: not a directory`)
      out.push(part)
      if (!n) return cleanPath([...out, ...todo].join('/'))
    }
    return out.join('/')
  }

  /** os.Lstat: the last component is not followed. */
  lstat(path: string): VNode | null {
    return this.node(this.resolve(path, false))
  }

  /** os.Stat: every symlink followed. */
  stat(path: string): VNode | null {
    return this.node(this.resolve(path, true))
  }

  /**
   * fsutil MkdirAll on an already resolved path: existing directories are left alone; each one made gets `mode`
   * and `owner` (root when there is none). A non-directory in the way fails, as it does in BuildKit.
   */
  mkdirAll(path: string, mode: number | (() => number), owner?: { uid: number; gid: number }): void {
    if (!path) return
    const st = this.stat(path)
    if (st?.type === 'dir') return
    if (st) throw new CopyFailure(`mkdir /${path}: not a directory`)
    const parent = path.slice(0, Math.max(0, path.lastIndexOf('/')))
    this.mkdirAll(parent, mode, owner)
    const lst = this.lstat(path)
    if (lst?.type === 'dir') return
    if (lst) throw new CopyFailure(`mkdir /${path}: file exists`)
    const made = { mode: typeof mode === 'number' ? mode : mode(), uid: owner?.uid ?? 0, gid: owner?.gid ?? 0 }
    this.upper.set(this.resolve(path, false), { type: 'dir', ...made })
  }
}

export const splitPath = (p: string) => p.split('/').filter((x) => x && x !== '.')
