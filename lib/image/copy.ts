// `COPY --from=<stage> src... dest` evaluated against an image's layers, without a daemon:
// the files BuildKit would add, as LayerFiles ready for writeLayer().
import path from 'node:path'
import { cleanPath, type FsNode, type LayerFile, LayerTree, readLayerData, treeFromLayers } from './layer.ts'

/**
 * One COPY. `sources` are paths in the builder image (globs `* ? [..]` allowed), `dest` an absolute path in the
 * final image (the parser has already applied WORKDIR); a trailing `/` makes it a directory.
 */
export type CopySpec = { sources: string[]; dest: string; chown?: { uid: number; gid: number }; chmod?: number }
type Planned = LayerFile & { dataKey?: string }

const GLOB = /[*?[]/
const globRegex = (part: string) =>
  new RegExp(
    `^${part.replace(/[.+^${}()|\\]/g, '\\$&').replace(/\*/g, '[^/]*').replace(/\?/g, '[^/]').replace(/\[!/g, '[^')}$`,
  )

/** The builder paths a source pattern names, in sorted order (as the unresolved matched paths). */
export function expandSource(tree: LayerTree, source: string): string[] {
  let candidates = ['']
  for (const part of cleanPath(source).split('/').filter(Boolean)) {
    const next: string[] = []
    for (const c of candidates) {
      const join = (name: string) => (c ? `${c}/${name}` : name)
      if (!GLOB.test(part)) {
        if (tree.lookup(join(part))) next.push(join(part))
        continue
      }
      const dir = tree.lookup(c)?.node
      const re = globRegex(part)
      for (const name of [...(dir?.children?.keys() ?? [])].sort()) if (re.test(name)) next.push(join(name))
    }
    candidates = next
  }
  return candidates
}

/** Plans every COPY against the builder's merged filesystem: later copies overwrite earlier ones, as in docker. */
export function planCopies(tree: LayerTree, copies: CopySpec[]): Planned[] {
  const out = new Map<string, Planned>()
  for (const copy of copies) {
    const matches = copy.sources.flatMap((s) => {
      const found = expandSource(tree, s)
      if (!found.length && !GLOB.test(s)) throw new Error(`COPY source ${s} not found in the builder image`)
      return found
    })
    const many = copy.sources.length > 1 || copy.sources.some((s) => GLOB.test(s))
    const destIsDir = copy.dest.endsWith('/') || many
    if (copy.sources.length > 1 && !copy.dest.endsWith('/')) {
      throw new Error(`COPY with more than one source needs a destination directory ending in /: ${copy.dest}`)
    }
    for (const match of matches) {
      const { node } = tree.lookup(match)!
      const dest = cleanPath(copy.dest)
      if (node.type === 'dir') copyTree(node, dest, copy, out)
      else emit(node, destIsDir ? cleanPath(`${dest}/${path.posix.basename(match)}`) : dest, copy, out)
    }
  }
  return [...out.values()]
}

function emit(node: FsNode, to: string, copy: CopySpec, out: Map<string, Planned>): void {
  if (node.type === 'other' || !to) return
  const owner = copy.chown ?? { uid: node.uid, gid: node.gid }
  const mode = node.type === 'symlink' ? 0o777 : copy.chmod ?? node.mode
  out.set(to, { path: to, type: node.type, mode, ...owner, linkname: node.linkname, dataKey: node.dataKey })
}

/** A directory source: its contents land in `to`, which takes the source directory's mode and owner. */
function copyTree(dir: FsNode, to: string, copy: CopySpec, out: Map<string, Planned>): void {
  emit(dir, to, copy, out)
  for (const [name, child] of [...dir.children!.entries()].sort(([a], [b]) => (a < b ? -1 : 1))) {
    const target = to ? `${to}/${name}` : name
    if (child.type === 'dir') copyTree(child, target, copy, out)
    else emit(child, target, copy, out)
  }
}

/**
 * The files a set of COPY instructions adds, read from an image's layer blobs (bottom-up).
 * Two passes over the in-memory blobs: metadata first, then only the needed file bytes are copied out.
 */
export function extractCopies(blobs: Uint8Array[], copies: CopySpec[]): LayerFile[] {
  const planned = planCopies(treeFromLayers(blobs), copies)
  const keys = new Set(planned.flatMap((f) => (f.dataKey ? [f.dataKey] : [])))
  const data = readLayerData(blobs, keys)
  return planned.map(({ dataKey, ...file }) => {
    if (file.type !== 'file') return file
    const bytes = dataKey ? data.get(dataKey) : undefined
    if (!bytes && dataKey) throw new Error(`no bytes found for ${file.path} in the builder layers`)
    return { ...file, data: bytes ?? new Uint8Array(0) }
  })
}
