// What preflight learns about the Docker engine: client and daemon versions, the data root and its free
// space, buildx and its builder, and the prune flags this client accepts. Shared by every script that
// builds or cleans; scripts/preflight.ts asks the engine (the docker commands live there).

/** Which prune flag caps the build cache, in the order we prefer them. */
export type PruneFlags = { keep?: '--reserved-space' | '--keep-storage'; maxUsed: boolean; minFree: boolean }
export type Check = { name: string; ok: boolean; detail: string; fix?: string }
export type Preflight = {
  ok: boolean
  checks: Check[]
  client?: string
  server?: string
  /** A path on this machine on the filesystem that holds the daemon's data root. */
  dataRoot?: string
  free?: number
  buildx?: { version: string; builder: string; driver: string; buildkit?: string }
  /** Flags accepted by the prune command imagefleet will use (buildx prune when buildx exists). */
  pruneFlags: PruneFlags
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
