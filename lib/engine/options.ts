// What a building or cleaning step needs, as plain data: the flags every building script shares (RUN_FLAGS),
// and the option shapes the task scripts pass each other (BuildOptions for builds, CleanupOptions for cleanups).
import fs from 'node:fs'
import { report } from '../cli/report.ts'
import type { FlagTable } from '../cli/flags.ts'
import type { Fleet } from '../fleet/fleet.ts'
import type { Run } from '../run/records.ts'
import type { StepPolicy } from '../run/step.ts'
import type { Mutex } from '../disk/prune-lock.ts'
import type { PruneFlags } from './facts.ts'
import type { ImageStore } from './answers.ts'
import type { RegistryClient } from '../registry/client.ts'

/** Flags of every script that builds, besides the fleet's. */
export const RUN_FLAGS = {
  network: { type: 'string', arg: 'MODE', help: 'Network for RUN steps (docker build --network), e.g. none' },
  'use-buildx': {
    type: 'string',
    arg: 'MODE',
    default: 'auto',
    choices: ['auto', 'yes', 'no'],
    help: 'Build bases with docker buildx build --push: auto, yes, no',
  },
  builder: {
    type: 'string',
    arg: 'NAME',
    help: 'buildx builder for base builds (remote, kubernetes or docker-container driver); pruned too',
  },
  'builder-max-used': {
    type: 'size',
    help:
      "Bound the --builder's own cache (remote, kubernetes, docker-container): after images finish, docker buildx du " +
      '--builder NAME, and when it holds more, docker buildx prune --builder NAME with the flag it accepts ' +
      '(--max-used-space, else --reserved-space/--keep-storage)',
  },
  retries: {
    type: 'int',
    arg: 'N',
    default: 3,
    min: 1,
    help: 'Attempts for transient failures (registry, network, timeouts)',
  },
  backoff: {
    type: 'duration',
    arg: 'DURATION',
    default: '2s',
    help: 'Wait before the first retry; doubles each retry',
  },
  timeout: { type: 'duration', arg: 'DURATION', default: '60m', help: 'Kill one docker command after this long' },
  'prune-timeout': { type: 'duration', arg: 'DURATION', default: '10m', help: 'Kill one prune after this long' },
  'min-free': {
    type: 'size',
    default: '1GB',
    help: 'Preflight fails below this much free space on the Docker data root',
  },
  'data-root': {
    type: 'string',
    arg: 'PATH',
    help: "Where this machine sees the daemon's data root, if not where `docker info` says",
  },
  heartbeat: {
    type: 'duration',
    arg: 'DURATION',
    default: '60s',
    help: 'Off a terminal (CI logs): print a progress line this often; 0: never (on a terminal a live line shows it)',
  },
  'registry-user': {
    type: 'string',
    arg: 'USER',
    help: 'docker login to the registry as USER before building (with --password-env)',
  },
  'password-env': {
    type: 'string',
    arg: 'NAME',
    help: 'Environment variable holding the registry password or token (sent on stdin, masked in every log)',
  },
  'insecure-registry': {
    type: 'list',
    arg: 'HOST',
    help:
      "Plain HTTP for registry HOST[:PORT], besides the daemon's insecure-registries (from docker info) and loopback",
  },
} as const satisfies FlagTable

/** How a building script keeps the disk (lib/disk/budget.ts) and in which order it takes the instances. */
export const DISK_FLAGS = {
  cleanup: {
    type: 'string',
    arg: 'POLICY',
    default: 'adaptive',
    choices: ['adaptive', 'per-image', 'none'],
    help:
      'adaptive: disk budget + a stale prune when it frees what the next image needs; per-image: rmi + system prune ' +
      "+ builder prune after every image (the field's fix); none: no cleanup",
  },
  reserve: { type: 'size', default: '1GB', help: 'Free space the disk budget always keeps' },
  order: {
    type: 'string',
    arg: 'ORDER',
    default: 'groups',
    choices: ['groups', 'input'],
    help:
      'groups: instances that share upstream layers run together, a group at a time (each environment pulled once); input: the order of the instances file',
  },
  'expect-growth': {
    type: 'size',
    help:
      'Disk growth assumed for an image whose upstream layers the registry does not tell (default: 2 × the mean upstream image)',
  },
  'cache-cap': {
    type: 'size',
    help: 'per-image policy: keep this much build cache (the detected --reserved-space/--keep-storage flag)',
  },
  'free-disk-status': {
    type: 'string',
    arg: 'FILE',
    help:
      'Status file of a background `free-disk --background`: the disk budget waits for the bytes it still has to give back instead of pruning',
  },
} as const satisfies FlagTable

type RunFlagValues = { out: string; registryUser?: string; passwordEnv?: string }

/** Problems with run flags that need the environment or the file system; checked with the fleet, before any docker command. */
export function runFlagProblems(flags: RunFlagValues, env: Record<string, string | undefined>): string[] {
  const problems: string[] = []
  if (flags.registryUser && !flags.passwordEnv) {
    problems.push('--registry-user needs --password-env NAME (the variable that holds the password or token)')
  }
  if (flags.passwordEnv && !flags.registryUser) problems.push('--password-env needs --registry-user USER')
  if (flags.passwordEnv && !/^[A-Za-z_][A-Za-z0-9_]*$/.test(flags.passwordEnv)) {
    problems.push(`--password-env wants the name of an environment variable, got ${JSON.stringify(flags.passwordEnv)}`)
  } else if (flags.passwordEnv && !env[flags.passwordEnv]) {
    problems.push(`--password-env ${flags.passwordEnv}: that environment variable is not set`)
  }
  if (fs.existsSync(flags.out) && !fs.statSync(flags.out).isDirectory()) {
    problems.push(`--out ${flags.out}: exists and is not a directory`)
  }
  return problems
}

export type BuildOptions = {
  run: Run
  fleet: Fleet
  policy: StepPolicy
  /**
   * the buildx builder to build bases on; undefined: plain docker build + docker push. `keepsImage`: its driver is
   * `docker`, whose `--push` also stores the image in the local image store (docker/buildx build/build.go pushes
   * "with docker" from the moby exporter), so the base is left behind locally like a docker build's
   */
  buildx?: { builder?: string; keepsImage: boolean }
  network?: string
  /** milliseconds per docker command */
  timeout: number
  force: boolean
  /** the run's one registry client, and what it already answered about tags (the plan asks about all at once) */
  registry: RegistryClient
  known: Map<string, boolean>
}

export type CleanupOptions = {
  run: Run
  lock: Mutex
  /** what `docker builder prune` (the daemon's default builder) accepts */
  pruneFlags: PruneFlags
  /** the buildx builder whose cache is on this disk apart from the daemon's (docker-container driver) */
  containerBuilder?: string
  /** what `docker buildx prune --builder` accepts for the named builder */
  builderPruneFlags?: PruneFlags
  /** where images live: the containerd image store shares content between images and build cache */
  imageStore?: ImageStore
  /** milliseconds */
  timeout: number
  /** below this many free bytes, a cleanup that reclaims nothing is a warning */
  lowWater: number
}

/** Flags every build gets: --build-arg, --platform, --network. */
export function commonBuildFlags(fleet: Fleet, network?: string): string[] {
  return [
    ...fleet.buildArgs.flatMap((arg) => ['--build-arg', arg]),
    ...(fleet.platform ? ['--platform', fleet.platform] : []),
    ...(network ? ['--network', network] : []),
  ]
}

/** Skips what the registry has (unless --force); resolves to the reason when skipping. */
export async function alreadyPushed(tag: string, o: BuildOptions): Promise<string | undefined> {
  if (o.force) return undefined
  const started = performance.now()
  try {
    return (o.known.get(tag) ?? await o.registry.manifestExists(tag)) ? 'registry has it' : undefined
  } catch (e) {
    report.warn(`cannot tell whether the registry has ${tag} (${(e as Error).message}); building it`)
  } finally {
    o.run.checked(tag, (performance.now() - started) / 1000) // the record's check_seconds
  }
}

/** Does a base built with these options stay in the local image store (docker build, or buildx's docker driver)? */
export function baseStaysLocal(o: BuildOptions): boolean {
  return !o.buildx || o.buildx.keepsImage
}
