// Private helper (not a task): what build-bases, assemble and pipeline share.
//   startScript   read the environment once, run preflight, open the run's records, pick buildx, wire dry-run, login
//   prefetchTags  ask the registry about every tag at once (later existence checks answer from it)
//   readUpstreams each instance's upstream layers from the registry: for the schedule, the disk budget, and to
//                 find missing upstream images before anything is built
//   openDisk      the disk budget (lib/disk/budget.ts), the one owner of cleanups, wired to scripts/prune.ts
//   admitEach     every instance in schedule order, `concurrency` at a time, each admitted by the disk budget,
//                 its steps' full-disk recovery bound to that budget
//   finishRun     summary.json/.md and the exit code
import pMap from 'p-map'
import { $ } from 'zx'
import { PreflightError } from '../lib/cli/main.ts'
import { dryRunSpawn } from '../lib/cli/dry-run.ts'
import { configureReport, count, report, secretValues } from '../lib/cli/report.ts'
import { formatBytes } from '../lib/cli/size.ts'
import type { GracefulStop } from '../lib/cli/stop.ts'
import { DiskBudget, type Policy, type Ticket } from '../lib/disk/budget.ts'
import { bytesGivenBack, bytesToCome } from '../lib/disk/free-disk-status.ts'
import { Mutex } from '../lib/disk/prune-lock.ts'
import { sampleDisk } from '../lib/disk/statfs.ts'
import type { BuildOptions, CleanupOptions } from '../lib/engine/options.ts'
import type { Fleet } from '../lib/fleet/fleet.ts'
import type { Group, Layer } from '../lib/fleet/groups.ts'
import type { Instance } from '../lib/fleet/instances.ts'
import { RegistryClient, RegistryError } from '../lib/registry/client.ts'
import { imageLayers } from '../lib/registry/image.ts'
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
import { cleanUntil } from './prune.ts'

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
}

/** What the registry said about each instance's upstream image. */
export type Upstreams = {
  /** compressed layers (bottom-up), when the registry told them */
  layers: Map<string, Layer[]>
  /** instances whose upstream image the registry says does not exist */
  missing: Instance[]
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
    run,
    lock: new Mutex(),
    pruneFlags: pre.pruneFlags,
    timeout: flags.pruneTimeout,
    lowWater: flags.minFree,
    containerBuilder: pre.buildx && pre.buildx.driver !== 'docker' ? (flags.builder ?? pre.buildx.builder) : undefined,
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
  }
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

/**
 * Each distinct upstream image's layers (or, with `refOf`, another image per instance: assemble's bases), read from
 * its manifest (no layer downloaded), 16 at a time.
 */
export async function readUpstreams(
  s: Setup,
  instances: Instance[],
  refOf = (i: Instance) => i.upstream,
): Promise<Upstreams> {
  const answers = new Map<string, Layer[] | 'missing' | undefined>()
  await pMap(new Set(instances.map(refOf)), async (ref) => {
    try {
      answers.set(ref, await imageLayers(s.registry, ref, s.fleet.platform))
    } catch (e) {
      // 404: the registry says it is not there. Docker Hub answers 401 for unknown repositories, so that stays unknown
      answers.set(ref, e instanceof RegistryError && e.status === 404 ? 'missing' : undefined)
    }
  }, { concurrency: 16 })
  const layers = new Map<string, Layer[]>()
  const missing: Instance[] = []
  for (const inst of instances) {
    const a = answers.get(refOf(inst))
    if (a === 'missing') missing.push(inst)
    else if (a) layers.set(inst.id, a)
  }
  return { layers, missing }
}

/** The layers the disk budget counts for an instance: its upstream's, or one stand-in of the expected size. */
export function costLayers(inst: Instance, upstreams: Upstreams | undefined, expectGrowth?: number): Layer[] {
  const known = upstreams?.layers.get(inst.id)
  if (known) return known
  const sizes = [...(upstreams?.layers.values() ?? [])].map((ls) => ls.reduce((n, l) => n + l.size, 0))
  const mean = sizes.length ? sizes.reduce((a, b) => a + b) / sizes.length : 2 ** 30
  return [{ digest: `unknown:${inst.upstream}`, size: expectGrowth !== undefined ? expectGrowth / 2 : mean }]
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

/**
 * Every instance in the given order, `concurrency` at a time, each admitted by the disk budget before its work
 * starts. `work` gets the build options for this instance (a full disk → the budget's one emergency cleanup, then
 * its turn again) and its ticket, and resolves to the local images it leaves behind (they go to the cleanup policy).
 * On a stop, instances not started are recorded as interrupted by `notStarted`.
 */
export async function admitEach(
  s: Setup,
  disk: DiskBudget,
  order: Instance[],
  layersOf: (inst: Instance) => Layer[],
  work: (inst: Instance, build: BuildOptions, ticket: Ticket) => Promise<string[]>,
  stop: GracefulStop | undefined,
  notStarted: (inst: Instance) => void,
  groups?: Group[],
): Promise<void> {
  let skipped = 0
  const groupLog = groups && new GroupLog(groups, disk, s.run)
  await pMap(order, async (inst) => {
    if (stop?.stopping) return void (skipped++, notStarted(inst))
    const layers = layersOf(inst)
    const ticket = await disk.admit(inst.id, layers)
    groupLog?.admitted(inst)
    if (stop?.stopping) return void (skipped++, await ticket.done([]), notStarted(inst))
    let local: string[] = []
    try {
      local = await work(inst, {
        ...s.build,
        policy: { ...s.build.policy, emergency: emergencyFor(s, disk, ticket, layers) },
      }, ticket)
    } finally {
      await ticket.done(local)
      groupLog?.done(inst, ticket.cost)
    }
  }, { concurrency: s.run.dry ? 1 : s.concurrency })
  if (skipped) {
    report.warn(
      `${count(skipped, 'instance')} not started (recorded as interrupted): rerun with the same --out to finish them`,
    )
  }
}

/**
 * Per group, once its last image is done: what the budget predicted for it against what the disk lost meanwhile
 * (groups next to each other overlap at their edges, so this is the group's share plus its neighbours' edges).
 */
class GroupLog {
  private readonly of = new Map<Instance, Group>()
  private readonly state = new Map<Group, { left: number; predicted: number; consumedAtStart?: number }>()

  constructor(groups: Group[], private readonly disk: DiskBudget, private readonly run: Run) {
    for (const g of groups) {
      for (const m of g.members) this.of.set(m, g)
      this.state.set(g, { left: g.members.length, predicted: 0 })
    }
  }

  admitted(inst: Instance): void {
    const st = this.state.get(this.of.get(inst)!)
    if (st && st.consumedAtStart === undefined) st.consumedAtStart = this.disk.consumed()
  }

  done(inst: Instance, cost: number): void {
    const g = this.of.get(inst)
    const st = g && this.state.get(g)
    if (!g || !st) return
    st.predicted += cost
    if (--st.left > 0) return
    const measured = this.disk.consumed() - (st.consumedAtStart ?? 0)
    const ratio = st.predicted > 0 ? (measured / st.predicted).toFixed(2) : 'n/a'
    const line = `group ${g.key}: ${g.members.length} images, predicted ${formatBytes(st.predicted)}, the disk took ` +
      `${formatBytes(measured)} meanwhile (real/predicted ${ratio}); learned r=${this.disk.model.r.toFixed(2)} k=${
        formatBytes(this.disk.model.k)
      }`
    this.run.sample(`budget ${line}`)
    report.dim(line)
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
  return { builder: flags.builder }
}
