// Private helper (not a task): what build-bases, assemble and pipeline do before their first build —
// read the environment once, run preflight, open the run's records, pick buildx or not, wire dry-run.
import { $ } from 'zx'
import { PreflightError } from '../lib/cli/main.ts'
import { dryRunSpawn } from '../lib/cli/dry-run.ts'
import type { Fleet } from '../lib/fleet/fleet.ts'
import { Mutex } from '../lib/disk/prune-lock.ts'
import { RegistryClient } from '../lib/registry/client.ts'
import { refHost } from '../lib/registry/ref.ts'
import { configureReport, report, secretValues } from '../lib/cli/report.ts'
import { Run } from '../lib/run/records.ts'
import { sampleDisk } from '../lib/disk/statfs.ts'
import { formatBytes } from '../lib/cli/size.ts'
import { DEFAULT_POLICY } from '../lib/run/step.ts'
import { writeSummary } from '../lib/run/summary.ts'
import { githubFromEnv } from '../lib/run/github.ts'
import { Progress } from '../lib/run/progress.ts'
import { compressedImageBytes } from '../lib/registry/image.ts'
import { type Preflight, preflight, printChecks } from './preflight.ts'
import { removeImages } from './prune.ts'
import type { BuildOptions, CleanupOptions } from '../lib/engine/options.ts'
import { dockerConfigDir } from '../lib/cli/environment.ts'

type SetupFlags = {
  out: string
  dryRun: boolean
  /** preflight checks that a RUN step can start (default); false for a script that builds nothing */
  checkRun?: boolean
  force: boolean
  concurrency: number
  registry?: string
  network?: string
  useBuildx: string
  builder?: string
  retries: number
  backoff: number
  timeout: number
  pruneTimeout: number
  minFree: number
  dataRoot?: string
  registryUser?: string
  passwordEnv?: string
  heartbeat: number
}

export type Setup = {
  pre: Preflight
  run: Run
  build: BuildOptions
  cleanup: CleanupOptions
  /** The run's one registry client (existence checks, registry assembly). */
  registry: RegistryClient
  /** images built at once: --concurrency, or 1 in a dry run (its plan prints in order) */
  concurrency: number
  /** what the plan says: `concurrency N`, and in a dry run that it lists the images one at a time */
  concurrencyNote: string
  removeImages: (tags: string[]) => Promise<unknown>
  /** Asks the registry about many tags at once (in parallel); later existence checks answer from it. */
  prefetch: (tags: string[]) => Promise<void>
  /** Writes summary.json/.md; resolves to the exit code (1 when anything failed). */
  finish: () => number
}

/** The one place that reads the environment for a building script. */
export async function startScript(flags: SetupFlags, fleet: Fleet, env = process.env): Promise<Setup> {
  const password = flags.passwordEnv ? env[flags.passwordEnv] : undefined
  const github = githubFromEnv(env)
  configureReport({
    github: github.github,
    secrets: [...secretValues(env), ...(password ? [password] : [])],
    comments: flags.dryRun,
  })
  report.phase('preflight')
  const pre = await preflight({
    registry: flags.registry ?? refHost(fleet.builderImage),
    minFree: flags.minFree,
    dataRoot: flags.dataRoot,
    builder: flags.builder,
    checkRun: flags.checkRun ?? true,
    network: flags.network,
    out: flags.dryRun ? undefined : flags.out,
  })
  printChecks(pre)
  if (!pre.ok && !flags.dryRun) {
    throw new PreflightError(
      pre.checks.filter((c) => !c.ok).map((c) => `${c.name}: ${c.detail}${c.fix ? ` → ${c.fix}` : ''}`),
    )
  }
  if (!pre.ok) report.warn('preflight failed; --dry-run goes on to print the plan')
  const run = new Run(flags.out, pre.dataRoot, flags.dryRun)
  const progress = flags.dryRun ? undefined : new Progress(run, {
    instances: fleet.instances.length,
    tty: Boolean(process.stdout.isTTY) && !github.github,
    heartbeatMs: flags.heartbeat,
  }).start()
  if (flags.dryRun) $.spawn = dryRunSpawn((c) => console.log(c), $.prefix, $.postfix)
  if (flags.registryUser && password) await login(fleet, flags.registryUser, password)
  const registry = new RegistryClient({ dockerConfigDir: dockerConfigDir(env) })
  const cleanup: CleanupOptions = {
    run,
    lock: new Mutex(),
    pruneFlags: pre.pruneFlags,
    timeout: flags.pruneTimeout,
    lowWater: flags.minFree,
    containerBuilder: pre.buildx && pre.buildx.driver !== 'docker' ? (flags.builder ?? pre.buildx.builder) : undefined,
  }
  const sizeOf = fromImageSizes(registry, fleet)
  const build: BuildOptions = {
    run,
    fleet,
    network: flags.network,
    timeout: flags.timeout,
    force: flags.force,
    policy: {
      ...DEFAULT_POLICY,
      retries: flags.retries,
      backoffMs: flags.backoff,
      noSpaceDetail: async (info) => noSpaceDetail(info.from, await sizeOf(info.from), run),
      fits: async (info) => fits(await sizeOf(info.from), run),
    },
    buildx: chooseBuildx(flags, pre),
    exists: async (ref) => known.get(ref) ?? registry.manifestExists(ref),
  }
  const known = new Map<string, boolean>()
  return {
    pre,
    run,
    build,
    cleanup,
    registry,
    concurrency: flags.dryRun ? 1 : flags.concurrency,
    concurrencyNote: `concurrency ${flags.concurrency}${flags.dryRun ? '; the dry run lists one image at a time' : ''}`,
    removeImages: (tags) => removeImages(tags, cleanup),
    prefetch: async (tags) => {
      const t0 = Date.now()
      const answers = await registry.checkMany(tags)
      const errors = [...answers.values()].filter((a) => typeof a !== 'boolean')
      for (const [tag, a] of answers) if (typeof a === 'boolean') known.set(tag, a)
      if (errors.length) {
        report.warn(
          `the registry did not answer for ${errors.length} of ${tags.length} tags (${
            (errors[0] as Error).message
          }); they are checked again before building`,
        )
      }
      report.dim(`${answers.size} registry checks in ${((Date.now() - t0) / 1000).toFixed(2)}s`)
    },
    finish: () => {
      progress?.stop()
      return writeSummary(run, { out: flags.out, fleet, github })
    },
  }
}

/** docker login to each registry the fleet pushes to; the password goes on stdin, never on the command line. */
async function login(fleet: Fleet, user: string, password: string): Promise<void> {
  const refs = [
    fleet.builderImage,
    ...fleet.instances.slice(0, 1).flatMap((i) => [fleet.baseImage(i), fleet.finalImage(i)]),
  ]
  for (const host of new Set(refs.map(refHost))) {
    const out = await $({
      input: password,
      quiet: true,
      nothrow: true,
    })`docker login ${host} -u ${user} --password-stdin`.timeout('2m')
    if (out.exitCode !== 0) {
      throw new PreflightError([`docker login ${host} -u ${user} failed: ${out.stderr.trim().split('\n').pop()}`])
    }
    report.ok(`logged in to ${host} as ${user}`)
  }
}

/** Compressed bytes of the image a step builds FROM (undefined when unknown), asked of the registry once per image. */
function fromImageSizes(registry: RegistryClient, fleet: Fleet): (from?: string) => Promise<number | undefined> {
  const known = new Map<string, Promise<number | undefined>>()
  return (from) => {
    if (!from) return Promise.resolve(undefined)
    if (!known.has(from)) known.set(from, compressedImageBytes(registry, from, fleet.platform).catch(() => undefined))
    return known.get(from)!
  }
}

/** Can the FROM image's compressed layers fit in what is free now? (true when the size is unknown) */
function fits(bytes: number | undefined, run: Run): boolean {
  return bytes === undefined || run.free() >= bytes
}

/** For a no_space failure: how much the step needed (its FROM image, pulled then unpacked) against what was free. */
function noSpaceDetail(from: string | undefined, bytes: number | undefined, run: Run): string {
  const disk = run.dataRoot ? sampleDisk(run.dataRoot) : undefined
  const need = bytes
    ? `needed about ${formatBytes(2 * bytes)} (${from} is ${formatBytes(bytes)} compressed: pulled, then unpacked)`
    : 'needed more than the disk had'
  return disk
    ? `${need}; the data root had ${formatBytes(disk.free)} free of ${formatBytes(disk.total)} after cleanup`
    : need
}

function chooseBuildx(flags: SetupFlags, pre: Preflight): BuildOptions['buildx'] {
  if (flags.useBuildx === 'no') return undefined
  if (!pre.buildx) {
    if (flags.useBuildx === 'yes' || flags.builder) {
      throw new PreflightError([
        `${
          flags.builder ? `--builder ${flags.builder}` : '--use-buildx yes'
        } needs docker buildx, which is not installed`,
      ])
    }
    return undefined
  }
  return { builder: flags.builder }
}
