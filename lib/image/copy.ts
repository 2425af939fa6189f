// `COPY --from=<image> src... dest` and the directories WORKDIR makes, done the way BuildKit does them, on DestFs
// (the base's answers plus what earlier steps wrote). The algorithm is fsutil's copy.Copy as BuildKit's Dockerfile
// frontend calls it (CopyDirContents, FollowSymlinks, CreateDestPath, AllowWildcard, AllowEmptyWildcard; one call
// per source and wildcard match): tonistiigi/fsutil copy/copy.go at 0834f99 (vendored by BuildKit v0.8, the
// sandbox's dockerd 20.10) and today's, which agree on everything but what buildkit-rules.ts lists.
import path from 'node:path'
import type { CopyRules } from './buildkit-rules.ts'
import { CopyFailure, type DestFs, splitPath, type VNode } from './dest-fs.ts'
import type { FsNode, LayerFile, LayerTree } from './layer.ts'
import { type Owner, ownerNeeds, resolveOwner } from './users.ts'

/** One COPY, expanded: absolute sources in the source image, an absolute destination (a trailing `/` kept). */
export type CopyOp = { kind: 'copy'; source: string; sources: string[]; dest: string; chown?: string; chmod?: number }
/** The directory a WORKDIR makes (with its parents), owned by the USER in effect, when it is missing. */
export type WorkdirOp = { kind: 'workdir'; path: string; user?: string }
export type FileOp = CopyOp | WorkdirOp
/** A source image's merged filesystem, by the id CopyOp.source names; `digest` identifies its bytes. */
export type SourceTree = { digest: string; tree: LayerTree; data: (key: string) => Uint8Array | undefined }

/** A case registry assembly does not reproduce: the image is refused with this reason, never built differently. */
export class Unsupported extends Error {}

const GLOB_CHARS = /[*?[\\]/

/** Go's filepath.Match pattern as a regular expression over a slash-separated relative path. */
export function globRegex(pattern: string): RegExp {
  let re = ''
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]
    if (c === '*') re += '[^/]*'
    else if (c === '?') re += '[^/]'
    else if (c === '\\' && i + 1 < pattern.length) re += escape(pattern[++i])
    else if (c === '[') {
      const close = pattern.indexOf(']', i + 2)
      if (close < 0) throw new CopyFailure(`syntax error in pattern ${pattern}`)
      const body = pattern.slice(i + 1, close)
      re += body.startsWith('^') ? `[^/${body.slice(1).replace(/\\/g, '\\\\')}]` : `[${body.replace(/\\/g, '\\\\')}]`
      i = close
    } else re += escape(c)
  }
  return new RegExp(`^${re}$`)
}
const escape = (c: string) => c.replace(/[.+^${}()|[\]\\/*?]/g, '\\$&')

/** fsutil ResolveWildcards: the matches of `src`, in walk order; a path without wildcards is itself. */
export function resolveWildcards(tree: LayerTree, src: string): string[] {
  const parts = splitPath(src)
  const at = parts.findIndex((p) => GLOB_CHARS.test(p))
  if (at < 0) return [parts.join('/')]
  const prefix = tree.lookup(parts.slice(0, at).join('/'))
  if (!prefix || prefix.node.type !== 'dir') throw new CopyFailure(`lstat /${parts.slice(0, at).join('/')}: not found`)
  const re = globRegex(parts.slice(at).join('/'))
  const out: string[] = []
  const walk = (dir: FsNode, rel: string) => {
    for (const name of [...dir.children!.keys()].sort()) {
      const child = dir.children!.get(name)!
      const r = rel ? `${rel}/${name}` : name
      if (re.test(r)) out.push(prefix.path ? `${prefix.path}/${r}` : r)
      else if (child.type === 'dir') walk(child, r)
    }
  }
  walk(prefix.node, '')
  return out
}

/** Runs the steps' file changes in order on `fs`; returns the index of the first step that changed anything. */
export function runFileOps(
  fs: DestFs,
  ops: FileOp[],
  sources: Map<string, SourceTree>,
  rules: CopyRules,
): number | undefined {
  let first: number | undefined
  ops.forEach((op, i) => {
    const before = fs.upper.size
    if (op.kind === 'workdir') {
      const owner = op.user ? ownerOf(fs, sources, op.user) : undefined
      fs.mkdirAll(fs.resolve(splitPath(op.path).join('/')), 0o755, owner)
    } else copyInstruction(fs, op, sources.get(op.source)!, ownerOf(fs, sources, op.chown), rules)
    if (first === undefined && fs.upper.size !== before) first = i
  })
  return first
}

/** The owner a `user[:group]` names, read from the /etc/passwd and /etc/group the image has at this step. */
function ownerOf(fs: DestFs, sources: Map<string, SourceTree>, spec?: string): Owner | undefined {
  if (!spec) return undefined
  const needs = ownerNeeds(spec)
  const read = (file: string) => {
    const p = fs.resolve(file)
    const n = fs.node(p)
    if (!n || n.type !== 'file') return undefined
    const from = n.data && [...sources.values()].find((s) => s.digest === n.data!.source)
    const bytes = n.data ? from?.data(n.data.key) : fs.baseData(p)
    return bytes && new TextDecoder().decode(bytes)
  }
  return resolveOwner(spec, {
    passwd: needs.passwd ? read('etc/passwd') : undefined,
    group: needs.group ? read('etc/group') : undefined,
  })
}

/** One COPY instruction: each source, each wildcard match, is one fsutil Copy call. */
function copyInstruction(fs: DestFs, op: CopyOp, src: SourceTree, owner: Owner | undefined, rules: CopyRules) {
  for (const source of op.sources) {
    const matches = resolveWildcards(src.tree, source)
    for (const m of matches) copyOne(fs, src, m, op, owner, rules)
  }
}

/** fsutil Copy for one source path: make the destination's directory, then prepareTargetDir, then copy. */
function copyOne(fs: DestFs, src: SourceTree, match: string, op: CopyOp, owner: Owner | undefined, rules: CopyRules) {
  const dirMode = () => { // asked only when a directory is made
    const mode = rules.createdDirMode(op.chmod)
    if (typeof mode !== 'number') throw new Unsupported(`COPY --chmod into new directories: ${mode.refuse}`)
    return mode
  }
  const dest = op.dest
  const last = dest.endsWith('/') ? '' : path.posix.basename(dest)
  const ensure = last === '' || last === '.' ? dest : path.posix.dirname(dest)
  fs.mkdirAll(fs.resolve(splitPath(ensure).join('/')), dirMode, owner)
  let target = fs.resolve(splitPath(dest).join('/'))
  const found = src.tree.lookup(match)
  if (!found) throw new CopyFailure(`failed to compute cache key: "/${match}" not found: not found`)
  const isDir = found.node.type === 'dir'
  const existing = fs.stat(target)
  if (!isDir && existing?.type === 'dir') {
    target = target ? `${target}/${path.posix.basename(match)}` : path.posix.basename(match)
  }
  const parent = isDir && !existing ? target : target.slice(0, Math.max(0, target.lastIndexOf('/')))
  fs.mkdirAll(parent, dirMode, owner)
  const ctx = { fs, src, owner, chmod: op.chmod, rules, inodes: new Map<FsNode, VNode>() }
  if (isDir && existing?.type === 'dir') fs.baseChildren(target) // ask the base for all of it at once
  copyNode(ctx, found.node, target, false)
}

type Ctx = {
  fs: DestFs
  src: SourceTree
  owner?: Owner
  chmod?: number
  rules: CopyRules
  /** Source files already copied by this call (fsutil's inode map): a second name becomes a hard link. */
  inodes: Map<FsNode, VNode>
}

/** fsutil copier.copy: `overwrite` is false for the top of the copy, true below it. */
function copyNode(ctx: Ctx, node: FsNode, target: string, overwrite: boolean): void {
  const { fs } = ctx
  const there = fs.node(target)
  if (node.type !== 'dir' && there?.type === 'dir') {
    throw new CopyFailure(`cannot replace to directory /${target} with file`)
  }
  let out: VNode | undefined
  let copyInfo = true
  if (node.type === 'dir') {
    if (there && there.type !== 'dir') throw new CopyFailure(`cannot copy to non-directory: /${target}`)
    if (!there || overwrite) { // made with the source's mode, or chmod-ed to it; copyInfo then sets both
      out = { type: 'dir', mode: node.mode, uid: there?.uid ?? 0, gid: there?.gid ?? 0 }
      fs.upper.set(target, out)
    }
    if (!overwrite) copyInfo = !there // the top of the copy keeps an existing directory's metadata
    for (const name of [...node.children!.keys()].sort()) {
      copyNode(ctx, node.children!.get(name)!, target ? `${target}/${name}` : name, true)
    }
  } else if (node.type === 'file') {
    out = ctx.inodes.get(node) ?? { type: 'file', mode: node.mode, uid: 0, gid: 0, data: dataRef(ctx.src, node) }
    ctx.inodes.set(node, out)
    fs.upper.set(target, out)
  } else if (node.type === 'symlink') {
    out = { type: 'symlink', mode: 0o777, uid: 0, gid: 0, linkname: node.linkname }
    fs.upper.set(target, out)
  } else throw new Unsupported(`COPY of a device, pipe or socket (/${target})`)
  if (copyInfo && out) {
    out.uid = ctx.owner?.uid ?? node.uid
    out.gid = ctx.owner?.gid ?? node.gid
    if (node.type !== 'symlink') {
      out.mode = ctx.chmod === undefined ? node.mode : ctx.rules.chmodMode(node.mode, ctx.chmod)
    }
  }
}

const dataRef = (src: SourceTree, node: FsNode) => ({
  source: src.digest,
  key: node.dataKey ?? '',
  size: node.size ?? 0,
})

/** A layer member as planned: a file names its bytes (source image and data key) instead of holding them. */
export type PlannedFile = Omit<LayerFile, 'data'> & { ref?: NonNullable<VNode['data']> }

/**
 * The layer: every path the steps wrote, and every directory above them with the metadata it has then (a base
 * directory keeps the base's: the applier resets a directory's metadata to what its layer entry says). A file
 * reached by several names is written once and hard-linked from the others, as BuildKit's layer has it.
 */
export function layerFiles(fs: DestFs): PlannedFile[] {
  const paths = new Set(fs.upper.keys())
  for (const p of fs.upper.keys()) {
    const parts = p.split('/')
    for (let i = 1; i < parts.length; i++) paths.add(parts.slice(0, i).join('/'))
  }
  const first = new Map<VNode, string>()
  const out: PlannedFile[] = []
  for (const p of [...paths].sort()) {
    const n = fs.node(p)!
    const meta = { path: p, mode: n.mode, uid: n.uid, gid: n.gid }
    const seen = first.get(n)
    if (n.type === 'file' && seen) out.push({ ...meta, type: 'hardlink', linkname: seen })
    else if (n.type === 'file') {
      first.set(n, p)
      out.push({ ...meta, type: 'file', ...(n.data ? { ref: n.data } : {}) })
    } else if (n.type === 'symlink') out.push({ ...meta, type: 'symlink', linkname: n.linkname })
    else out.push({ ...meta, type: 'dir' })
  }
  return out
}
