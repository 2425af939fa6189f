// What this engine accepts and where a builder's bytes land, decided from its own answers (lib/engine/answers.ts):
// which cache-cap flags each prune command takes (from its --help), which flag bounds a builder's cache, and which
// builder drivers write to this machine's disk. No docker commands here; scripts/preflight.ts asks.
import type { Preflight, PruneFlags } from './facts.ts'
import { versionAtLeast } from './facts.ts'
import type { CleanupOptions } from './options.ts'

/** Where each buildx driver keeps its build cache, and what prunes it (docker/buildx docs/reference/buildx_create.md). */
export const DRIVERS: Record<string, { onThisDisk: boolean; why: string }> = {
  // BuildKit inside dockerd: its cache is under the data root, pruned by `docker builder prune` (the default builder)
  docker: { onThisDisk: true, why: "dockerd's own BuildKit: cache under the data root" },
  // BuildKit in a container of the local daemon: its cache is that container's volume (buildx_buildkit_NAME0_state)
  // on the same data root; only `docker buildx prune --builder NAME` reaches it
  'docker-container': { onThisDisk: true, why: "a container's volume on the data root" },
  // BuildKit elsewhere (a buildkitd you run, pods in a cluster): builds and pushes happen there, 0 bytes here
  remote: { onThisDisk: false, why: 'a buildkitd on another machine' },
  kubernetes: { onThisDisk: false, why: 'BuildKit pods in a Kubernetes cluster' },
}

/** Does a builder with this driver write its cache (and pulled layers) to this machine's disk? Unknown: assume so. */
export function onThisDisk(driver: string | undefined): boolean {
  return DRIVERS[driver ?? '']?.onThisDisk ?? true
}

/**
 * The cache flags a prune command accepts, from the flags its --help lists; undefined when the command does not
 * exist. `--max-used-space` / `--min-free-space` also need BuildKit ≥ 0.17 on the builder: buildx refuses them
 * otherwise ("buildkit v0.17.0+ is required", docker/buildx v0.18.0 commands/prune.go). `--filter` takes `until=`
 * wherever it exists (buildx commands/prune.go toBuildkitPruneInfo; moby builder-next prune filters).
 */
export function pruneFlagsOf(help: string[] | undefined, buildkit?: string): PruneFlags | undefined {
  if (!help) return undefined
  const has = (flag: string) => help.includes(flag)
  const newBuildkit = buildkit !== undefined && versionAtLeast(buildkit, '0.17')
  return {
    keep: has('--reserved-space') ? '--reserved-space' : has('--keep-storage') ? '--keep-storage' : undefined,
    maxUsed: has('--max-used-space') && newBuildkit,
    minFree: has('--min-free-space') && newBuildkit,
    until: has('--filter'),
  }
}

/**
 * The flag that bounds a builder's cache at SIZE: `--max-used-space` where it is accepted, else the keep flag —
 * alone, BuildKit prunes until the cache is at most that big (keepBytes = max(maxUsed, reserved): moby/moby v28.5.2
 * vendor/github.com/moby/buildkit/cache/manager.go calculateKeepBytes; older BuildKit: KeepBytes).
 */
export function boundFlag(flags: PruneFlags | undefined): string | undefined {
  if (!flags) return undefined
  return flags.maxUsed ? '--max-used-space' : flags.keep
}

/**
 * What the cleanups of this engine prune, from preflight: the daemon's cache with the flags `docker builder prune`
 * accepts, the buildx builder whose cache is on this disk (docker-container driver) with what `docker buildx prune`
 * accepts, and the image store. A remote or kubernetes builder is never pruned to free this disk (its cache is
 * elsewhere): --builder-max-used bounds it instead.
 */
export function cleanupTargets(pre: Preflight): Pick<
  CleanupOptions,
  'pruneFlags' | 'containerBuilder' | 'builderPruneFlags' | 'imageStore'
> {
  const b = pre.buildx
  const local = b && b.driver !== 'docker' && onThisDisk(b.driver) && pre.builderPruneFlags
  return {
    pruneFlags: pre.pruneFlags,
    containerBuilder: local ? b.builder : undefined,
    builderPruneFlags: local ? pre.builderPruneFlags : undefined,
    imageStore: pre.engine?.imageStore ?? 'graphdriver',
  }
}
