// Private helper (not a task): what build-bases, assemble and pipeline share.
//   startScript   read the environment once, run preflight, open the run's records, pick buildx, wire dry-run, login
//   prefetchTags  ask the registry about every tag at once (later existence checks answer from it)
//   openDisk      the disk budget (lib/disk/budget.ts), the one owner of cleanups, wired to scripts/prune.ts
//   admitEach     every instance in schedule order, `concurrency` at a time, each admitted by the disk budget,
//                 its steps' full-disk recovery bound to that budget (off this disk: a remote builder's bases
//                 pass at once, costing nothing), the builder's own cache bounded after each (--builder-max-used)
//   finishRun     summary.json/.md and the exit code
import pMap from 'p-map'
import { $ } from 'zx'
import { PreflightError } from '../lib/cli/main.ts'
import { dryRunSpawn } from '../lib/cli/dry-run.ts'
import { configureReport, count, report, secretValues } from '../lib/cli/report.ts'
import { formatBytes } from '../lib/cli/size.ts'
import type { GracefulStop } from '../lib/cli/stop.ts'
import { DiskBudget } from '../lib/disk/budget.ts'
import type { Policy, Ticket } from '../lib/disk/budget-types.ts'
import { BuilderCacheBound } from '../lib/disk/builder-cache.ts'
import { boundFlag, cleanupTargets, onThisDisk } from '../lib/engine/capabilities.ts'
import { bytesGivenBack, bytesToCome } from '../lib/disk/free-disk-status.ts'
import { Mutex } from '../lib/disk/prune-lock.ts'
import { sampleDisk } from '../lib/disk/statfs.ts'
import type { BuildOptions, CleanupOptions } from '../lib/engine/options.ts'
import type { Fleet } from '../lib/fleet/fleet.ts'
import type { Group, Layer } from '../lib/fleet/groups.ts'
import { GroupLog } from '../lib/disk/group-log.ts'
import type { Instance } from '../lib/fleet/instances.ts'
import { RegistryClient } from '../lib/registry/client.ts'
import { refHost } from '../lib/registry/ref.ts'
import { dockerConfigDir } from '../lib/cli/environment.ts'
import { checkTags } from '../lib/registry/tags.ts'
import { githubFromEnv, type GitHubOptions } from '../lib/run/github.ts'
import { Progress } from '../lib/run/progress.ts'
import { Run } from '../lib/run/records.ts'
import { DEFAULT_POLICY, type StepPolicy } from '../lib/run/step.ts'
import { pushedLayerBytes } from '../lib/run/telemetry.ts'
import { writeSummary } from '../lib/run/summary.ts'
import { type Preflight, preflight, printChecks } from './preflight.ts'
import { builderCacheBytes, cleanUntil, pruneBuilderTo } from './prune.ts'

export type SetupFlags = {
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
  builderMaxUsed?: number
  retries: number
  backoff: number
  timeout: number
  pruneTimeout: number
  minFree: number
  dataRoot?: string
  registryUser?: string
  passwordEnv?: string
  heartbeat: number
  insecureRegistry: string[]
}
/** The disk flags (lib/engine/options.ts DISK_FLAGS) as values. */
export type DiskFlags = {
  cleanup: string
  reserve: number
  expectGrowth?: number
  cacheCap?: number
  freeDiskStatus?: string
}

/** A building script's run, as plain data. */
export type Setup = {
  pre: Preflight
  run: Run
  fleet: Fleet
  build: BuildOptions
  cleanup: CleanupOptions
  /** the run's one registry client (existence checks, upstream layers, registry assembly) */
  registry: RegistryClient
  /** images built at once: --concurrency, or 1 in a dry run (its plan prints in order) */
  concurrency: number
  github: GitHubOptions
  out: string
  /** what the plan says: `concurrency N`, and in a dry run that it lists the images one at a time */
  concurrencyNote: string
  progress?: Progress
  /** base builds happen off this disk: the buildx builder is remote or kubernetes (lib/engine/capabilities.ts) */
  offDisk: boolean
  /** --builder-max-used: the builder's own cache, bounded */
  builderCache?: BuilderCacheBound
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
    insecureRegistry: flags.insecureRegistry,
  })
  printChecks(pre)
  const failed = pre.checks.filter((c) => !c.ok).map((c) => `${c.name}: ${c.detail}${c.fix ? ` → ${c.fix}` : ''}`)
  if (failed.length && !flags.dryRun) throw new PreflightError(failed)
  if (failed.length) report.warn('preflight failed; --dry-run goes on to print the plan')
  const run = new Run(flags.out, pre.dataRoot, flags.dryRun)
  const progress = flags.dryRun ? undefined : new Progress(run, {
    instances: fleet.instances.length,
    tty: Boolean(process.stdout.isTTY) && !github.github,
    heartbeatMs: flags.heartbeat,
  }).start()
  if (flags.dryRun) $.spawn = dryRunSpawn((c) => console.log(c), $.prefix, $.postfix)
  if (flags.registryUser && password) await login(fleet, flags.registryUser, password)
  const registry = new RegistryClient({
    dockerConfigDir: dockerConfigDir(env),
    insecure: pre.insecure ?? { names: flags.insecureRegistry }, // plain HTTP where the daemon speaks it too
  })
  const cleanup: CleanupOptions = {
    ...cleanupTargets(pre),
    run,
    lock: new Mutex(),
    timeout: flags.pruneTimeout,
    lowWater: flags.minFree,
  }
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
      pushedBytes: (tag, layers) => pushedLayerBytes(registry, tag, layers, fleet.platform),
    },
    buildx: chooseBuildx(flags, pre),
    registry,
    known: new Map(),
  }
  const concurrencyNote = `concurrency ${flags.concurrency}${
    flags.dryRun ? '; the dry run lists one image at a time' : ''
  }`
  const offDisk = Boolean(build.buildx && pre.buildx && !onThisDisk(pre.buildx.driver))
  if (offDisk) report.info(`bases build on ${pre.buildx!.builder} (${pre.buildx!.driver}): they cost this disk nothing`)
  const builderCache = flags.builderMaxUsed !== undefined
    ? boundBuilderCache(pre, cleanup, flags.builderMaxUsed)
    : undefined
  return {
    pre,
    run,
    fleet,
    build,
    cleanup,
    registry,
    concurrency: flags.concurrency,
    concurrencyNote,
    github,
    out: flags.out,
    progress,
    offDisk,
    builderCache,
  }
}

/** --builder-max-used: the inspected builder's cache bounded with the flag its prune accepts (preflight found it). */
function boundBuilderCache(pre: Preflight, cleanup: CleanupOptions, max: number): BuilderCacheBound {
  const builder = pre.buildx?.driver !== 'docker' ? pre.buildx?.builder : undefined
  const flag = boundFlag(pre.builderPruneFlags)
  if (!builder || !flag || !pre.engine?.prunes.usage) {
    throw new PreflightError([
      `--builder-max-used needs a buildx builder other than the docker driver whose prune takes a size flag and whose usage docker buildx du reports (found: ${
        pre.buildx ? `${pre.buildx.builder}, driver ${pre.buildx.driver}` : 'no buildx'
      })`,
    ])
  }
  return new BuilderCacheBound({
    builder,
    max,
    usage: () => builderCacheBytes(builder),
    prune: (bytes) => pruneBuilderTo(builder, flag, bytes, cleanup),
    onEvent: (event) => cleanup.run.sample(`budget ${event}`),
  })
}

/** Asks the registry about many tags at once (in parallel); later existence checks answer from `build.known`. */
export async function prefetchTags(s: Setup, tags: string[]): Promise<void> {
  const t0 = Date.now()
  const answers = await checkTags(s.registry, tags)
  const errors = [...answers.values()].filter((a) => typeof a !== 'boolean')
  for (const [tag, a] of answers) if (typeof a === 'boolean') s.build.known.set(tag, a)
  if (errors.length) {
    report.warn(
      `the registry did not answer for ${errors.length} of ${tags.length} tags (${
        (errors[0] as Error).message
      }); they are checked again before building`,
    )
  }
  report.dim(`${answers.size} registry checks in ${((Date.now() - t0) / 1000).toFixed(2)}s`)
}

/** The disk budget of this run: the one owner of cleanups, every tier run by scripts/prune.ts. */
export function openDisk(s: Setup, o: DiskFlags): DiskBudget {
  const perImage: Policy = 'per-image'
  return new DiskBudget({
    policy: (s.run.dry || !s.run.dataRoot ? 'none' : o.cleanup) as Policy,
    free: () => s.run.free(),
    reserve: o.reserve,
    pending: o.freeDiskStatus ? () => bytesToCome(o.freeDiskStatus!) : undefined,
    givenBack: o.freeDiskStatus ? () => bytesGivenBack(o.freeDiskStatus!) : undefined,
    perImageTiers: o.cleanup === perImage && o.cacheCap !== undefined && s.cleanup.pruneFlags.keep
      ? ['system', 'cache-cap']
      : ['system', 'full'],
    cacheCap: o.cacheCap,
    clean: (request) => cleanUntil(request, s.cleanup),
    onEvent: (event) => s.run.sample(`budget ${event}`),
    onAdmit: (id, ticket) => s.run.admitted(id, ticket), // its records carry the wait
  })
}

/** How admitEach takes the instances, besides their order and work. */
export type AdmitOptions = {
  /** the cost the disk budget counts for an instance (its upstream layers) */
  layersOf: (inst: Instance) => Layer[]
  /** the run's graceful stop: instances not started are handed to `notStarted` */
  stop?: GracefulStop
  notStarted?: (inst: Instance) => void
  /** the schedule's groups: per group, the budget's prediction against the disk is logged when it is done */
  groups?: Group[]
  /** the builds happen on a builder off this disk (remote, kubernetes): the local budget lets them all through */
  offDisk?: boolean
}

/**
 * Every instance in the given order, `concurrency` at a time, each admitted by the disk budget before its work
 * starts. `work` gets the build options for this instance (a full disk → the budget's one emergency cleanup, then
 * its turn again) and its ticket, and resolves to the local images it leaves behind (they go to the cleanup policy).
 */
export async function admitEach(
  s: Setup,
  disk: DiskBudget,
  order: Instance[],
  work: (inst: Instance, build: BuildOptions, ticket: Ticket) => Promise<string[]>,
  { layersOf, stop, notStarted = () => {}, groups, offDisk = false }: AdmitOptions,
): Promise<void> {
  let skipped = 0
  const groupLog = groups && new GroupLog(groups, disk, s.run)
  await pMap(order, async (inst) => {
    if (stop?.stopping) return void (skipped++, notStarted(inst))
    const layers = layersOf(inst)
    const ticket = offDisk ? disk.pass(inst.id) : await disk.admit(inst.id, layers)
    groupLog?.admitted(inst)
    if (stop?.stopping) return void (skipped++, await ticket.done([]), notStarted(inst))
    let local: string[] = []
    try {
      // off this disk, a full disk is the builder's: no local cleanup can help it
      const emergency = offDisk ? undefined : emergencyFor(s, disk, ticket, layers)
      local = await work(inst, { ...s.build, policy: { ...s.build.policy, emergency } }, ticket)
    } finally {
      await ticket.done(local)
      groupLog?.done(inst, ticket.cost)
      void s.builderCache?.check()
    }
  }, { concurrency: s.run.dry ? 1 : s.concurrency })
  await s.builderCache?.idle()
  if (skipped) {
    report.warn(
      `${count(skipped, 'instance')} not started (recorded as interrupted): rerun with the same --out to finish them`,
    )
  }
}

/** For one image's steps: the budget's shared emergency cleanup, then its turn again; words for a failure. */
function emergencyFor(s: Setup, disk: DiskBudget, ticket: Ticket, layers: Layer[]): StepPolicy['emergency'] {
  return async (info) => {
    const got = await disk.emergency(`${info.phase} ${info.id} hit no space left on device`, layers)
    if (got.fits) await ticket.readmit()
    return { reclaimed: got.reclaimed, retry: got.fits, detail: noSpaceDetail(got.need, s.run) }
  }
}

/** For a no_space failure: how much the image needed (predicted by the budget) against what the disk had. */
function noSpaceDetail(need: number, run: Run): string {
  const disk = run.dataRoot ? sampleDisk(run.dataRoot) : undefined
  const needed = `needed about ${formatBytes(need)} (its upstream layers pulled and unpacked)`
  return disk
    ? `${needed}; the data root had ${formatBytes(disk.free)} free of ${formatBytes(disk.total)} after cleanup`
    : needed
}

/** Writes summary.json/.md (and the GitHub outputs); resolves to the exit code (1 when anything failed). */
export function finishRun(s: Setup, disk?: DiskBudget): number {
  s.progress?.stop()
  if (disk) s.run.disk = disk.summary({ minFree: s.run.minFree, cleanupRecords: s.run.cleanups.length })
  return writeSummary(s.run, { out: s.out, fleet: s.fleet, github: s.github })
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

function chooseBuildx(flags: SetupFlags, pre: Preflight): BuildOptions['buildx'] {
  if (flags.useBuildx === 'no') return undefined
  if (!pre.buildx) {
    if (flags.useBuildx === 'yes' || flags.builder) {
      const asked = flags.builder ? `--builder ${flags.builder}` : '--use-buildx yes'
      throw new PreflightError([`${asked} needs docker buildx, which is not installed`])
    }
    return undefined
  }
  return { builder: flags.builder, keepsImage: pre.buildx.driver === 'docker' }
}
