// What preflight learns about the Docker engine: client and daemon versions, the data root and its free
// space, buildx and its builder, and the prune flags this client accepts. Shared by every script that
// builds or cleans; scripts/preflight.ts asks the engine (the docker commands live there).
import type { ImageStore } from './answers.ts'

/** What a prune command accepts: the flag that caps the cache (preferred first), the BuildKit ≥ 0.17 ones, `--filter until=`. */
export type PruneFlags = {
  keep?: '--reserved-space' | '--keep-storage'
  maxUsed: boolean
  minFree: boolean
  until?: boolean
}
/** The engine as its own answers describe it (preflight.json `engine`): lib/engine/answers.ts reads them. */
export type Engine = {
  client?: string
  server?: string
  /** the daemon's API version */
  api?: string
  /** graphdriver (overlay2 …) or the containerd image store (snapshotter) */
  imageStore: ImageStore
  storageDriver?: string
  /** the flags each command's --help lists; null: this engine has no such command */
  accepts: Record<'builder prune' | 'buildx prune' | 'buildx du', string[] | null>
  /** the cleanup commands this combination runs, as words (the flags each gets are in pruneFlags) */
  prunes: { daemon: string; builder?: string; usage?: string; bound?: string }
}
export type Check = { name: string; ok: boolean; detail: string; fix?: string }
export type Preflight = {
  ok: boolean
  checks: Check[]
  client?: string
  server?: string
  /** A path on this machine on the filesystem that holds the daemon's data root. */
  dataRoot?: string
  free?: number
  buildx?: { version: string; builder: string; driver: string; buildkit?: string; endpoint?: string }
  /** Flags `docker builder prune` accepts (the daemon's default builder; with buildx ≥ Docker 23, buildx answers it). */
  pruneFlags: PruneFlags
  /** Flags `docker buildx prune --builder NAME` accepts for the inspected builder (when buildx exists). */
  builderPruneFlags?: PruneFlags
  engine?: Engine
  /**
   * Registries the daemon speaks plain HTTP to (`docker info` RegistryConfig: insecure-registries by name, and
   * InsecureRegistryCIDRs); the registry client follows the same rule (lib/registry/ping.ts).
   */
  insecure?: { names: string[]; cidrs: string[] }
}

/** `0.18.2` ≥ `0.17`? Missing parts count as 0; pre-release suffixes are ignored. */
export function versionAtLeast(version: string, min: string): boolean {
  const a = version.split(/[.-]/).map((x) => parseInt(x, 10) || 0)
  const b = min.split('.').map(Number)
  for (let i = 0; i < b.length; i++) if ((a[i] ?? 0) !== b[i]) return (a[i] ?? 0) > b[i]
  return true
}
