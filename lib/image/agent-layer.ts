// The layer a final stage adds on one base: its COPYs and WORKDIRs run (copy.ts) on what the base answers
// (base-files.ts), the result packed reproducibly. Source images are downloaded once per run (in memory, never on
// disk); a base is asked only what the steps touch; a layer with the same contents is built and uploaded once.
import { createHash } from 'node:crypto'
import pMap from 'p-map'
import { getBlob } from '../registry/blobs.ts'
import type { RegistryClient, Repo } from '../registry/client.ts'
import { type Descriptor, formatPlatform, type Platform, repoOf, resolveImage } from '../registry/image.ts'
import { parseImageRef } from '../registry/ref.ts'
import { type BaseQuery, type BaseReader, type ReadStats } from './base-files.ts'
import type { CopyRules } from './buildkit-rules.ts'
import { type FileOp, layerFiles, runFileOps, type SourceTree } from './copy.ts'
import { DestFs, NeedBase, splitPath } from './dest-fs.ts'
import { type BuiltLayer, type LayerFile, readLayerData, treeFromLayers, writeLayer } from './layer.ts'
import { ownerNeeds } from './users.ts'

/** A built agent layer and where it has been pushed (so later instances mount it instead). */
export type AgentLayer = BuiltLayer & {
  /** sha256 of what the layer holds (paths, metadata, which bytes): same key, same layer. */
  key: string
  files: number
  /** Per registry: the repository that holds the blob once the first instance pushed it. */
  homes: Map<string, Promise<Repo>>
}
/** What reading the base cost, summed over the rounds a symlink in the base can add. */
export type BaseCost = ReadStats & { rounds: number }
export type LayerOutcome = { layer?: AgentLayer; op?: number; reused: boolean; base: BaseCost }

const MAX_ROUNDS = 8
const prefixes = (p: string) => splitPath(p).map((_, i, parts) => parts.slice(0, i + 1).join('/'))

/** Run-wide state: source images, the base reader, built layers. One per run, shared by every instance. */
export class AgentLayers {
  private readonly sources = new Map<string, Promise<SourceTree & { blobs: Uint8Array[] }>>()
  private readonly built = new Map<string, Promise<AgentLayer>>()

  constructor(
    private readonly client: RegistryClient,
    private readonly reader: BaseReader,
    private readonly rules: CopyRules,
  ) {}

  /** The layer `ops` add to the base whose layers are `baseLayers` in `base` (undefined when they change nothing). */
  async forBase(base: Repo, baseLayers: Descriptor[], ops: FileOp[], platform: Platform): Promise<LayerOutcome> {
    const cost: BaseCost = { bytesRead: 0, layersRead: 0, layersCached: 0, seconds: 0, rounds: 0 }
    if (!ops.length) return { reused: false, base: cost }
    const sources = new Map<string, SourceTree>()
    for (const ref of new Set(ops.flatMap((o) => (o.kind === 'copy' ? [o.source] : [])))) {
      sources.set(ref, await this.source(ref, platform))
    }
    const query = initialQuery(ops)
    for (;;) {
      const { files, stats } = await this.reader.read(base, baseLayers, query)
      cost.bytesRead += stats.bytesRead
      cost.layersRead += stats.layersRead
      cost.layersCached += stats.layersCached
      cost.seconds += stats.seconds
      cost.rounds++
      const fs = new DestFs(files)
      try {
        const op = runFileOps(fs, ops, sources, this.rules)
        if (op === undefined) return { reused: false, base: cost }
        const { layer, reused } = await this.layer(layerFiles(fs), sources)
        return { layer, op, reused, base: cost }
      } catch (e) {
        if (!(e instanceof NeedBase) || cost.rounds >= MAX_ROUNDS) throw e
        widen(query, e)
      }
    }
  }

  /** A source image for one platform: its layers downloaded once, merged into a tree. */
  private source(ref: string, platform: Platform) {
    const key = `${ref} ${formatPlatform(platform)}`
    let found = this.sources.get(key)
    if (!found) {
      found = this.download(ref, platform)
      found.catch(() => this.sources.delete(key)) // a failed download lets the next instance try again
      this.sources.set(key, found)
    }
    return found
  }

  private async download(ref: string, platform: Platform) {
    const r = parseImageRef(ref)
    const image = await resolveImage(this.client, r, platform, { checkSingle: true })
    const blobs = await pMap(image.manifest.layers, (l) => getBlob(this.client, repoOf(r), l.digest), {
      concurrency: 4,
    })
    const tree = treeFromLayers(blobs)
    const data = (key: string) => readLayerData(blobs, new Set([key])).get(key)
    return { digest: image.digest, tree, blobs, data }
  }

  /** Packs the planned files (bytes read from the source layers) once per distinct content. */
  private async layer(planned: ReturnType<typeof layerFiles>, sources: Map<string, SourceTree>) {
    const key = createHash('sha256').update(JSON.stringify(planned)).digest('hex')
    const hit = this.built.get(key)
    if (hit) return { layer: await hit, reused: true }
    const made = (async () => {
      const bytes = await this.bytes(planned, sources)
      const files: LayerFile[] = planned.map(({ ref, ...f }) => (ref ? { ...f, data: bytes(ref) } : f))
      return { ...writeLayer(files, { addParents: false }), key, files: files.length, homes: new Map() }
    })()
    made.catch(() => this.built.delete(key))
    this.built.set(key, made)
    return { layer: await made, reused: false }
  }

  /** The bytes of every planned file, each source's layers read once for all of them. */
  private async bytes(planned: ReturnType<typeof layerFiles>, sources: Map<string, SourceTree>) {
    const byDigest = new Map([...sources.values()].map((s) => [s.digest, s as SourceTree & { blobs?: Uint8Array[] }]))
    const data = new Map<string, Uint8Array>()
    for (const [digest, src] of byDigest) {
      const keys = new Set(planned.flatMap((f) => (f.ref?.source === digest ? [f.ref.key] : [])))
      if (keys.size && src.blobs) { for (const [k, v] of readLayerData(src.blobs, keys)) data.set(`${digest} ${k}`, v) }
    }
    return (ref: { source: string; key: string; size: number }) => {
      const bytes = data.get(`${ref.source} ${ref.key}`)
      if (!bytes && ref.size) throw new Error(`no bytes for ${ref.key.split('\0')[1]} in the source image`)
      return bytes ?? new Uint8Array(0)
    }
  }
}

/** What the base is asked first: every directory on the way to each destination, what is below it, the users. */
export function initialQuery(ops: FileOp[]): BaseQuery {
  const q: BaseQuery = { points: [], subtrees: [], data: [] }
  for (const op of ops) {
    const target = splitPath(op.kind === 'copy' ? op.dest : op.path).join('/')
    q.points.push(...prefixes(target))
    if (op.kind === 'copy' && target) q.subtrees.push(target)
    const owner = op.kind === 'copy' ? op.chown : op.user
    if (owner && ownerNeeds(owner).passwd) q.data.push('etc/passwd')
    if (owner && ownerNeeds(owner).group) q.data.push('etc/group')
  }
  for (const d of q.data) q.points.push(...prefixes(d))
  q.points = [...new Set(q.points)]
  q.subtrees = [...new Set(q.subtrees)]
  q.data = [...new Set(q.data)]
  return q
}

/** The query, grown by what a step needed: a path found through a symlink is asked with what is below it. */
function widen(q: BaseQuery, need: NeedBase) {
  const add = (list: string[], items: string[]) => list.push(...items.filter((x) => !list.includes(x)))
  add(q.points, prefixes(need.path))
  if (need.want === 'data') add(q.data, [need.path])
  else add(q.subtrees, [need.path])
}
