// Private helper (not a task): what build-bases, assemble and pipeline do before their first build —
// read the environment once, run preflight, open the run's records, pick buildx or not, wire dry-run.
import os from 'node:os'
import path from 'node:path'
import { $ } from 'zx'
import type { FlagTable } from '../lib/args.ts'
import { PreflightError } from '../lib/cli.ts'
import { dryRunSpawn } from '../lib/dryrun.ts'
import type { Fleet } from '../lib/fleet.ts'
import { Mutex } from '../lib/lock.ts'
import { RegistryClient } from '../lib/registry.ts'
import { registryHost } from '../lib/registry-ping.ts'
import { configureReport, report, secretValues } from '../lib/report.ts'
import { Run } from '../lib/run.ts'
import { DEFAULT_POLICY } from '../lib/step.ts'
import { writeSummary } from '../lib/summary.ts'
import { compressedImageBytes } from '../lib/image-size.ts'
import type { BuildOptions } from './build-bases.ts'
import { preflight, printChecks, type Preflight } from './preflight.ts'
import { type CleanupOptions, removeImages } from './prune.ts'

/** Flags of every script that builds, besides the fleet's. */
export const RUN_FLAGS = {
  network: { type: 'string', arg: 'MODE', help: 'Network for RUN steps (docker build --network), e.g. none' },
  'use-buildx': { type: 'string', arg: 'MODE', default: 'auto', choices: ['auto', 'yes', 'no'], help: 'Build bases with docker buildx build --push: auto, yes, no' },
  builder: { type: 'string', arg: 'NAME', help: 'buildx builder for base builds (remote, kubernetes or docker-container driver); pruned too' },
  retries: { type: 'int', arg: 'N', default: 3, min: 1, help: 'Attempts for transient failures (registry, network, timeouts)' },
  timeout: { type: 'duration', arg: 'DURATION', default: '60m', help: 'Kill one docker command after this long' },
  'prune-timeout': { type: 'duration', arg: 'DURATION', default: '10m', help: 'Kill one prune after this long' },
  'min-free': { type: 'size', default: '1GB', help: 'Preflight fails below this much free space on the Docker data root' },
  'data-root': { type: 'string', arg: 'PATH', help: "Where this machine sees the daemon's data root, if not where `docker info` says" },
} as const satisfies FlagTable

type SetupFlags = {
  out: string; dryRun: boolean; force: boolean; concurrency: number; registry?: string
  network?: string; useBuildx: string; builder?: string; retries: number; timeout: number; pruneTimeout: number
  minFree: number; dataRoot?: string
}

export type Setup = {
  pre: Preflight
  run: Run
  build: BuildOptions
  cleanup: CleanupOptions
  concurrency: number
  removeImages: (tags: string[]) => Promise<unknown>
  /** Asks the registry about many tags at once (in parallel); later existence checks answer from it. */
  prefetch: (tags: string[]) => Promise<void>
  /** Compressed bytes of an image in the registry, undefined when it cannot be read. */
  imageBytes: (ref: string) => Promise<number | undefined>
  /** Writes summary.json/.md; resolves to the exit code (1 when anything failed). */
  finish: () => number
}

/** The one place that reads the environment for a building script. */
export async function startScript(flags: SetupFlags, fleet: Fleet, env = process.env): Promise<Setup> {
  configureReport({ github: env.GITHUB_ACTIONS === 'true', secrets: secretValues(env), comments: flags.dryRun })
  report.phase('preflight')
  const pre = await preflight({ registry: flags.registry ?? registryHost(fleet.builderImage), minFree: flags.minFree, dataRoot: flags.dataRoot, builder: flags.builder, out: flags.dryRun ? undefined : flags.out })
  printChecks(pre)
  if (!pre.ok && !flags.dryRun) throw new PreflightError(pre.checks.filter((c) => !c.ok).map((c) => `${c.name}: ${c.detail}${c.fix ? ` → ${c.fix}` : ''}`))
  if (!pre.ok) report.warn('preflight failed; --dry-run goes on to print the plan')
  const run = new Run(flags.out, pre.dataRoot, flags.dryRun)
  if (flags.dryRun) $.spawn = dryRunSpawn((c) => console.log(c), $.prefix, $.postfix)
  const registry = new RegistryClient({ dockerConfigDir: env.DOCKER_CONFIG ?? path.join(os.homedir(), '.docker') })
  const cleanup: CleanupOptions = {
    run, lock: new Mutex(), pruneFlags: pre.pruneFlags, timeout: flags.pruneTimeout, lowWater: flags.minFree,
    containerBuilder: pre.buildx && pre.buildx.driver !== 'docker' ? (flags.builder ?? pre.buildx.builder) : undefined,
  }
  const build: BuildOptions = {
    run, fleet, network: flags.network, timeout: flags.timeout, force: flags.force,
    policy: { ...DEFAULT_POLICY, retries: flags.retries },
    buildx: chooseBuildx(flags, pre),
    exists: async (ref) => known.get(ref) ?? registry.manifestExists(ref),
  }
  const known = new Map<string, boolean>()
  return {
    pre, run, build, cleanup, concurrency: flags.dryRun ? 1 : flags.concurrency,
    removeImages: (tags) => removeImages(tags, cleanup),
    prefetch: async (tags) => {
      const t0 = Date.now()
      const answers = await registry.checkMany(tags)
      const errors = [...answers.values()].filter((a) => typeof a !== 'boolean')
      for (const [tag, a] of answers) if (typeof a === 'boolean') known.set(tag, a)
      if (errors.length) report.warn(`the registry did not answer for ${errors.length} of ${tags.length} tags (${(errors[0] as Error).message}); they are checked again before building`)
      report.dim(`${answers.size} registry checks in ${((Date.now() - t0) / 1000).toFixed(2)}s`)
    },
    imageBytes: (ref) => compressedImageBytes(registry, ref, fleet.platform).catch(() => undefined),
    finish: () => writeSummary(run, { out: flags.out, fleet }),
  }
}

function chooseBuildx(flags: SetupFlags, pre: Preflight): BuildOptions['buildx'] {
  if (flags.useBuildx === 'no') return undefined
  if (!pre.buildx) {
    if (flags.useBuildx === 'yes' || flags.builder) throw new PreflightError([`${flags.builder ? `--builder ${flags.builder}` : '--use-buildx yes'} needs docker buildx, which is not installed`])
    return undefined
  }
  return { builder: flags.builder }
}
