// The engine's own answers, read: pure functions over the text docker prints (`docker version`, `docker info`,
// `docker buildx version`, `docker buildx inspect`, `docker buildx du`, and any command's `--help`). The commands
// run in scripts/preflight.ts and scripts/prune.ts; tests/engine-answers.test.ts reads the recorded answers in
// tests/fixtures/engines/ with these.
import { parseSize } from '../cli/size.ts'

/** Where images and their layers live: dockerd's own graph driver, or containerd's snapshotter (image store). */
export type ImageStore = 'graphdriver' | 'containerd'

export type VersionAnswer = { client?: string; server?: string; api?: string }
export type InfoAnswer = {
  dataRoot?: string
  /** `overlay2` (graph driver) or `overlayfs` (containerd snapshotter) */
  storageDriver?: string
  imageStore: ImageStore
  /** `docker info` RegistryConfig as it is (insecure registries and CIDRs) */
  registryConfig?: {
    IndexConfigs?: Record<string, { Name?: string; Secure?: boolean }>
    InsecureRegistryCIDRs?: string[]
  }
}
export type BuilderAnswer = { name?: string; driver?: string; endpoint?: string; status?: string; buildkit?: string }

/** `docker version --format '{{json .}}'`: client and daemon versions, the API version they speak. */
export function parseVersion(text: string): VersionAnswer {
  const v = json(text) as { Client?: { Version?: string }; Server?: { Version?: string; ApiVersion?: string } }
  return { client: v?.Client?.Version, server: v?.Server?.Version, api: v?.Server?.ApiVersion }
}

/**
 * `docker info --format '{{json .}}'`. The containerd image store says so in DriverStatus: `driver-type` is
 * `io.containerd.snapshotter.v1` (moby/moby docker-v29.7.2 daemon/containerd/service.go LayerStoreStatus);
 * a graph driver lists its own facts there (overlay2: Backing Filesystem, Supports d_type, …).
 */
export function parseInfo(text: string): InfoAnswer | undefined {
  const info = json(text) as {
    DockerRootDir?: string
    Driver?: string
    DriverStatus?: Array<[string, string]>
    RegistryConfig?: InfoAnswer['registryConfig']
  } | undefined
  if (!info || typeof info !== 'object') return undefined
  const driverType = info.DriverStatus?.find(([key]) => key === 'driver-type')?.[1]
  return {
    dataRoot: info.DockerRootDir,
    storageDriver: info.Driver,
    imageStore: driverType?.startsWith('io.containerd.snapshotter') ? 'containerd' : 'graphdriver',
    registryConfig: info.RegistryConfig && typeof info.RegistryConfig === 'object' ? info.RegistryConfig : undefined,
  }
}

/** `docker buildx version`: `github.com/docker/buildx v0.29.1 a8a7d4f` → `0.29.1`; undefined when it is not buildx. */
export function parseBuildxVersion(text: string): string | undefined {
  return /\bbuildx\S*\s+v?(\d+\.\d+[^\s]*)/.exec(text)?.[1]
}

/**
 * `docker buildx inspect [NAME]`: the builder's name and driver (the lines before `Nodes:`), and its first node's
 * endpoint, status and BuildKit version (docker/buildx commands/inspect.go prints `Key:<tabs>value` lines).
 */
export function parseBuildxInspect(text: string): BuilderAnswer {
  const [head, nodes = ''] = text.split(/^Nodes:\s*$/m)
  const field = (part: string, name: string) => new RegExp(`^${name}:[ \\t]*(.+)$`, 'mi').exec(part)?.[1]?.trim()
  return {
    name: field(head, 'Name'),
    driver: field(head, 'Driver'),
    endpoint: field(nodes, 'Endpoint'),
    status: field(nodes, 'Status'),
    // buildx ≤ 0.11 printed `Buildkit:`, later `BuildKit version:` (docker/buildx v0.11.2, v0.17.1 commands/inspect.go)
    buildkit: (field(nodes, 'BuildKit version') ?? field(nodes, 'Buildkit'))?.replace(/^v/, ''),
  }
}

/**
 * The flags the --help of `command` (`buildx prune`) lists — long and short, every Options / Flags / Global section —
 * or undefined when the text is not that command's usage. A client without the command may still exit 0 and print
 * its top-level usage (`docker buildx prune --help` on 20.10 without buildx: recorded in tests/fixtures/engines/
 * docker-20.10), so the usage line must name it; a forwarded command names its alias (`docker builder prune`
 * answered by buildx). Hidden and deprecated flags are never listed, so never chosen.
 */
export function helpFlags(text: string, command: string): string[] | undefined {
  const usage = helpUsage(text)?.split(/\s+/).slice(1) ?? []
  if (!usage.length || usage[usage.length - 1] !== command.split(' ').pop()) return undefined
  const flags = new Set<string>()
  for (const line of text.split('\n')) {
    const m = /^\s{1,8}(?:(-[A-Za-z0-9]),\s+)?(--[a-z0-9][a-z0-9-]*)\b/.exec(line)
    if (!m) continue
    if (m[1]) flags.add(m[1])
    flags.add(m[2])
  }
  return [...flags].sort()
}

/** The usage line's command: `Usage:  docker buildx prune [OPTIONS]` → `docker buildx prune`. */
export function helpUsage(text: string): string | undefined {
  return /^Usage:\s+(docker(?:[ \t]+[a-z][a-z-]*)*)/m.exec(text)?.[1]
}

/** `docker buildx du` (its summary ends with `Total:<tab>2.1GB`) or a prune's total: bytes, or undefined. */
export function totalBytes(text: string): number | undefined {
  const m = /^Total(?: reclaimed space)?:\s*([\d.]+\s*[a-zA-Z]*)\s*$/m.exec(text)
  try {
    return m ? parseSize(m[1]) : undefined
  } catch {
    return undefined
  }
}

function json(text: string): unknown {
  try {
    return JSON.parse(text)
  } catch {
    return undefined
  }
}
