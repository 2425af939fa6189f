// What a base image holds at a few paths, read through the registry without pulling it: its layers are streamed
// top-down (gunzip + tar header walk, file bodies skipped), only the members that can answer a question are kept,
// and reading stops once every question is answered. OCI whiteouts and opaque directories are respected.
//   A question is a path (does it exist, with which type, owner and mode?), a subtree (every path below a
//   directory) or a file's bytes (/etc/passwd). That a path is absent is only known once every layer has been read,
//   so in practice most reads go to the bottom; each layer's answers are kept per layer digest for the whole run,
//   so a layer shared by many bases (the fleet's environments) is read once.
import { createHash } from 'node:crypto'
import type { Transform } from 'node:stream'
import zlib from 'node:zlib'
import { openBlob } from '../registry/blobs.ts'
import { type RegistryClient, RegistryError, type Repo } from '../registry/client.ts'
import type { Descriptor } from '../registry/image.ts'
import { OPAQUE, WHITEOUT } from './layer.ts'
import { type TarEntry, TarReader } from './tar.ts'

/** Paths are tar paths: no leading `/` (`etc/passwd`); the root is never asked. */
export type BaseQuery = { points: string[]; subtrees: string[]; data: string[] }
/** The members of one layer that concern a query: entries, whiteout targets, opaque directories, kept bytes. */
export type LayerFacts = {
  entries: Map<string, TarEntry>
  whiteouts: Set<string>
  opaques: Set<string>
  data: Map<string, Uint8Array>
  complete: boolean
}
export type ReadStats = { bytesRead: number; layersRead: number; layersCached: number; seconds: number }

const parentsOf = (p: string) => p.split('/').slice(0, -1).map((_, i, parts) => parts.slice(0, i + 1).join('/'))
const newFacts = (): LayerFacts => ({
  entries: new Map(),
  whiteouts: new Set(),
  opaques: new Set(),
  data: new Map(),
  complete: false,
})

/** Files one member under what it says (an entry, a whiteout, an opaque marker) when it matters; true if it did. */
export function collect(facts: LayerFacts, e: TarEntry, matters: (path: string) => boolean): boolean {
  const name = e.path.slice(e.path.lastIndexOf('/') + 1)
  const dir = e.path.slice(0, Math.max(0, e.path.lastIndexOf('/')))
  if (name === OPAQUE) {
    if (dir === '' || matters(dir)) facts.opaques.add(dir)
    return false
  }
  if (name.startsWith(WHITEOUT)) {
    const target = `${dir ? `${dir}/` : ''}${name.slice(WHITEOUT.length)}`
    if (matters(target)) facts.whiteouts.add(target)
    return false
  }
  if (!matters(e.path)) return false
  facts.entries.set(e.path, e)
  if (e.data) facts.data.set(e.path, e.data)
  return true
}

/** Every member of a whole layer as facts (what the reader keeps when everything matters). */
export function layerFacts(entries: Iterable<TarEntry>): LayerFacts {
  const facts = newFacts()
  for (const e of entries) collect(facts, e, () => true)
  facts.complete = true
  return facts
}

/**
 * Answers from the layers read so far (top-down). `undefined` means: not known without reading further down, or
 * not asked (`asked`: the reader kept only what could answer the query; anything else it did not look at).
 */
export class BaseFiles {
  constructor(
    readonly layers: LayerFacts[],
    readonly allRead: boolean,
    private readonly asked: (path: string) => boolean = () => true,
  ) {}

  /** The member that defines `path` (a tar entry; a directory, file, symlink…), null when the image has none. */
  answer(path: string): TarEntry | null | undefined {
    if (!this.asked(path)) return undefined
    const parents = parentsOf(path)
    for (const l of this.layers) {
      for (const p of parents) {
        const e = l.entries.get(p)
        if ((e && e.type !== 'dir') || l.whiteouts.has(p)) return null
      }
      if (l.whiteouts.has(path)) return null
      const e = l.entries.get(path)
      if (e) return e
      if (l.opaques.has('') || parents.some((p) => l.opaques.has(p))) return null
      if (!l.complete) return undefined
    }
    return this.allRead ? null : undefined
  }

  /** Every path below `root` that exists, or undefined when lower layers could still add some. */
  subtree(root: string): string[] | undefined {
    if (!this.asked(root ? `${root}/\0` : '\0')) return undefined // below root was not asked for
    const top = root ? this.answer(root) : ({ type: 'dir' } as TarEntry)
    if (top === undefined) return undefined
    if (top === null || top.type !== 'dir') return []
    const candidates = new Set<string>()
    let closed = this.allRead
    for (const l of this.layers) {
      for (const p of l.entries.keys()) if (!root || p.startsWith(`${root}/`)) candidates.add(p)
      if (!l.complete) return undefined
      if ([root, ...parentsOf(root), ''].some((p) => l.opaques.has(p))) {
        closed = true
        break
      }
    }
    if (!closed) return undefined
    return [...candidates].filter((p) => this.answer(p)).sort()
  }

  /** The bytes of a file the query asked for (the member that answers `path`, when it is a regular file). */
  data(path: string): Uint8Array | undefined {
    const e = this.answer(path)
    if (!e || e.type !== 'file') return undefined
    for (const l of this.layers) if (l.entries.get(path) === e) return l.data.get(path) ?? new Uint8Array(0)
    return undefined
  }

  answers(q: BaseQuery): boolean {
    return q.points.every((p) => this.answer(p) !== undefined) &&
      q.subtrees.every((s) => this.subtree(s) !== undefined) &&
      q.data.every((d) => this.answer(d) !== undefined)
  }
}

/** Which members of a layer can matter to a query. */
function relevance(q: BaseQuery) {
  const exact = new Set<string>()
  for (const p of [...q.points, ...q.subtrees, ...q.data]) for (const x of [...parentsOf(p), p]) exact.add(x)
  const prefixes = q.subtrees.map((s) => (s ? `${s}/` : ''))
  const matters = (p: string) => exact.has(p) || prefixes.some((pre) => p.startsWith(pre))
  return { matters, wantData: new Set(q.data) }
}

/**
 * Reads bases for one run: layer answers are kept per layer digest and query (only complete reads), and two
 * instances that need the same layer at once share one read.
 */
export class BaseReader {
  private readonly cache = new Map<string, Promise<LayerFacts>>()

  constructor(private readonly client: RegistryClient) {}

  /** Reads `layers` (bottom-up, as in the manifest) from the top until the query is answered. */
  async read(repo: Repo, layers: Descriptor[], q: BaseQuery): Promise<{ files: BaseFiles; stats: ReadStats }> {
    const started = performance.now()
    const stats: ReadStats = { bytesRead: 0, layersRead: 0, layersCached: 0, seconds: 0 }
    const key = JSON.stringify([q.points, q.subtrees, q.data].map((xs) => [...xs].sort()))
    const { matters } = relevance(q)
    const read: LayerFacts[] = []
    let files = new BaseFiles(read, layers.length === 0, matters)
    for (let i = layers.length - 1; i >= 0 && !files.answers(q); i--) {
      const cacheKey = `${layers[i].digest} ${key}`
      const shared = await this.cache.get(cacheKey)?.catch(() => undefined)
      // a read shared with another base may have stopped where that base had its answers, short of ours
      if (shared && (shared.complete || new BaseFiles([...read, shared], false, matters).answers(q))) {
        read.push(shared)
        stats.layersCached++
      } else {
        const above = [...read]
        const enough = (partial: LayerFacts) => new BaseFiles([...above, partial], false, matters).answers(q)
        const scan = this.scan(repo, layers[i], q, enough)
        const facts = scan.then((r) => (stats.bytesRead += r.bytes, r.facts))
        this.remember(cacheKey, facts)
        read.push(await facts)
        stats.layersRead++
      }
      files = new BaseFiles(read, i === 0 && read.every((l) => l.complete), matters)
    }
    stats.seconds = (performance.now() - started) / 1000
    return { files, stats }
  }

  /** Keeps complete reads only: a read that stopped early answers its own question, not every other one. */
  private remember(key: string, facts: Promise<LayerFacts>) {
    this.cache.set(key, facts)
    facts.then((f) => f.complete || this.cache.delete(key), () => this.cache.delete(key))
  }

  /** Streams one layer, keeping what matters; stops when `enough` says the query is answered. */
  private async scan(repo: Repo, layer: Descriptor, q: BaseQuery, enough: (partial: LayerFacts) => boolean) {
    const { matters, wantData } = relevance(q)
    const facts = newFacts()
    let stopped = false
    const onEntry = (e: TarEntry) => {
      if (collect(facts, e, matters) && !q.subtrees.length && enough(facts)) return (stopped = true)
    }
    const keep = (p: string) => wantData.has(p)
    const bytes = await streamLayer(this.client, repo, layer, new TarReader(onEntry, keep), () => stopped)
    facts.complete = !stopped
    return { facts, bytes }
  }
}

/**
 * Streams a layer blob into a tar reader: gunzip (or zstd, or plain tar, by media type) as the bytes arrive, one
 * network chunk at a time, so a stop costs at most the chunk in hand. A blob read to the end is checked against its
 * digest. Returns the compressed bytes read.
 */
export async function streamLayer(
  client: RegistryClient,
  repo: Repo,
  layer: Descriptor,
  reader: TarReader,
  stopped: () => boolean,
): Promise<number> {
  const res = await openBlob(client, repo, layer.digest)
  const body = res.body!.getReader()
  const inflate = decompressor(layer.mediaType)
  const hash = createHash('sha256')
  let bytes = 0
  inflate?.on('data', (chunk: Uint8Array) => reader.done || reader.push(chunk))
  const ended = inflate && new Promise((resolve, reject) => inflate.on('end', resolve).on('error', reject))
  try {
    for (;;) {
      const { value, done } = await body.read()
      if (done) break
      bytes += value.byteLength
      client.counters.bytesDownloaded += value.byteLength
      hash.update(value)
      if (!inflate) reader.done || reader.push(value)
      else await new Promise<void>((resolve, reject) => inflate.write(value, (e) => (e ? reject(e) : resolve())))
      if (stopped()) return bytes
    }
    inflate?.end()
    await ended
  } finally {
    if (stopped()) inflate?.destroy()
    await body.cancel().catch(() => {})
  }
  const actual = `sha256:${hash.digest('hex')}`
  if (layer.digest.startsWith('sha256:') && actual !== layer.digest) {
    throw new RegistryError(`layer ${repo.repository}@${layer.digest} arrived as ${actual}`, 'protocol')
  }
  return bytes
}

/** The decompressing stream for a layer's media type; undefined for a plain tar. */
function decompressor(mediaType: string): Transform | undefined {
  if (/gzip/.test(mediaType)) return zlib.createGunzip()
  if (/zstd/.test(mediaType)) {
    const zstd = (zlib as unknown as { createZstdDecompress?: () => Transform }).createZstdDecompress
    if (!zstd) throw new Error(`zstd layer (${mediaType}) and this runtime has no zlib.createZstdDecompress`)
    return zstd()
  }
  return undefined
}
