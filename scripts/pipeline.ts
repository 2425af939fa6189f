#!/usr/bin/env bun
// pipeline: the whole job — preflight → plan → builder → per instance (base → assemble → cleanup) — under one disk
// budget, in an order that pulls each shared environment once, with one summary and one exit code.
//   npx bun scripts/pipeline.ts --instances ids.txt --registry ghcr.io/me/fleet --context docker/
//
// Exit codes: 0 all built or skipped · 1 something failed · 2 bad usage or input · 3 preflight failed · 130 interrupted
import pMap from 'p-map'
import { $ } from 'zx'
import { type FlagTable, parseFlags, renderHelp, unexpectedArguments, UsageError } from '../lib/cli/flags.ts'
import { dockerConfigDir } from '../lib/cli/environment.ts'
import { EXIT, runMain } from '../lib/cli/main.ts'
import { configureReport, count, report, secretValues } from '../lib/cli/report.ts'
import { formatBytes } from '../lib/cli/size.ts'
import { GracefulStop } from '../lib/cli/stop.ts'
import type { DiskBudget } from '../lib/disk/budget.ts'
import type { Ticket } from '../lib/disk/budget-types.ts'
import { baseStaysLocal, type BuildOptions, DISK_FLAGS, RUN_FLAGS, runFlagProblems } from '../lib/engine/options.ts'
import { type Fleet, FLEET_FLAGS, loadFleet } from '../lib/fleet/fleet.ts'
import type { Layer } from '../lib/fleet/groups.ts'
import type { Instance } from '../lib/fleet/instances.ts'
import { describeSchedule, type Order, scheduleFleet } from '../lib/fleet/schedule.ts'
import { costLayers, readUpstreams, type Upstreams } from '../lib/fleet/upstreams.ts'
import { parseShard, planShards, type ShardSpec } from '../lib/fleet/shard.ts'
import { RegistryClient } from '../lib/registry/client.ts'
import { imageLayers } from '../lib/registry/image.ts'
import { githubFromEnv } from '../lib/run/github.ts'
import { mergeShards, writeMerged } from '../lib/run/merge.ts'
import { now } from '../lib/run/records.ts'
import { retryFailed } from '../lib/run/retry.ts'
import { recordBlocked, recordSkip } from '../lib/run/step.ts'
import { admitEach, type DiskFlags, finishRun, openDisk, prefetchTags, type Setup, startScript } from './_setup.ts'
import { ASSEMBLE_FLAGS, type AssembleMode, type Assembly, prepareAssembly } from './assemble.ts'
import { buildBase, buildBuilder } from './build-bases.ts'
import { budgetUpstreamPulls, MIRROR_FLAGS, mirrorFirst, type MirrorOptions } from './mirror.ts'

export const FLAGS = {
  ...FLEET_FLAGS,
  ...RUN_FLAGS,
  ...ASSEMBLE_FLAGS,
  ...DISK_FLAGS,
  mirror: {
    type: 'boolean',
    help:
      'First copy each upstream into PREFIX/mirror/<upstream path>:<tag> (scripts/mirror.ts: registry to registry, ' +
      'no local disk), then build every base FROM its mirror',
  },
  ...MIRROR_FLAGS,
  grace: {
    type: 'duration',
    arg: 'DURATION',
    default: '30s',
    help:
      'On SIGINT/SIGTERM: time in-flight builds get to finish before they are killed (a second signal kills at once); exit 130',
  },
  shard: {
    type: 'string',
    arg: 'I/N',
    help:
      'Only shard I of N (CI matrix): instances sharing an environment stay together unless bigger than a fair share, shards balanced by --shard-by',
  },
  'shard-by': {
    type: 'string',
    arg: 'WEIGHT',
    default: 'count',
    choices: ['count', 'bytes'],
    help:
      'count: groups from the instances file (row repo+version, else the id); bytes: groups and weights from every ' +
      "upstream image's layers, read from the registry by every shard",
  },
  merge: {
    type: 'boolean',
    help:
      'Merge the OUT dirs given as arguments (one per shard) into one manifest and summary in --out; builds nothing',
  },
  'retry-failed': {
    type: 'boolean',
    help:
      'Only the instances whose last record in --out failed (a rerun without it also retries them, and finishes the rest)',
  },
} as const satisfies FlagTable

export type PipelineOptions = {
  disk: DiskFlags
  order: Order
  stop?: GracefulStop
  /** registry or docker assembly (scripts/assemble.ts prepareAssembly) */
  assembly: Assembly
  /** --mirror: where the mirrors go (default: beside the builder repository) and what of an index they keep */
  mirror?: { prefix?: string; allPlatforms: boolean }
  pullBudget: MirrorOptions['pullBudget']
}

export async function pipeline(s: Setup, o: PipelineOptions): Promise<number> {
  const { fleet } = s
  report.phase('plan')
  const { todo: planned, done } = await planFleet(s)
  for (const inst of done) recordDone(inst, s)
  // --mirror: the upstreams go into the fleet's registry first and every base builds FROM its mirror (scripts/mirror.ts)
  const todo = o.mirror ? await mirrorFirst(s, planned, { ...o.mirror, pullBudget: o.pullBudget }) : planned
  if (!o.mirror) await budgetUpstreamPulls(s, todo, o.pullBudget)
  const upstreams = await readUpstreams(s.registry, fleet.platform, todo)
  // an upstream matters only where the base is still to build (--force: everywhere)
  const missing = upstreams.missing.filter((i) => s.build.force || !s.build.known.get(fleet.baseImage(i)))
  for (const inst of missing) recordMissingUpstream(inst, s)
  const buildable = todo.filter((i) => !missing.includes(i))
  const schedule = scheduleFleet(buildable, (i) => upstreams.layers.get(i.id), o.order)
  if (buildable.length) { for (const line of describeSchedule(schedule)) report.info(line) }
  if (!buildable.length) return finish(s, o)

  const disk = openDisk(s, o.disk)
  // a remote builder builds and pushes the bases elsewhere; registry assembly pulls nothing: no local bytes at all
  const offDisk = s.offDisk && !o.assembly.local
  const layersOf = (inst: Instance) => offDisk ? [] : costLayers(inst, upstreams, o.disk.expectGrowth)
  disk.expect(schedule.order.map(layersOf))
  report.phase(`builder ${fleet.builderImage}`)
  const builder = await buildBuilder({ ...s.build, policy: { ...s.build.policy, emergency: builderEmergency(disk) } })
  if (builder !== 'skipped' && !builder.ok) {
    report.error('the builder image failed: nothing can assemble without it; stopping')
    const cls = o.stop?.stopping ? 'interrupted' : undefined
    for (const inst of buildable) {
      recordBlocked(
        s.run,
        { phase: 'base', id: inst.id, dockerId: inst.dockerId, tag: fleet.baseImage(inst) },
        'builder image failed',
        cls,
      )
    }
    return finish(s, o, disk)
  }
  report.phase(
    `instances: ${buildable.length} (${s.concurrencyNote}, cleanup ${o.disk.cleanup}, order ${o.order})`,
  )
  await admitEach(s, disk, schedule.order, (inst, build, ticket) => buildInstance(inst, build, ticket, s, o), {
    layersOf,
    stop: o.stop,
    notStarted: (inst) => recordNotStarted(inst, s, ['base', 'assemble']),
    groups: schedule.groups,
    offDisk,
  })
  await disk.settle()
  return finish(s, o, disk)
}

/**
 * Base, then assembly, for one instance; a failed base blocks only its own assembly. Resolves to the local images it
 * leaves behind: the caller's cleanup step (the disk budget's policy) removes them.
 */
async function buildInstance(
  inst: Instance,
  build: BuildOptions,
  ticket: Ticket,
  s: Setup,
  o: PipelineOptions,
): Promise<string[]> {
  const { fleet } = s
  const base = await buildBase(inst, build)
  ticket.based()
  const local = base !== 'skipped' && baseStaysLocal(build) ? [fleet.baseImage(inst)] : []
  if (base !== 'skipped' && !base.ok) {
    const info = { phase: 'assemble' as const, id: inst.id, dockerId: inst.dockerId, tag: fleet.finalImage(inst) }
    recordBlocked(s.run, info, 'base image failed', base.error?.errorClass)
    return local
  }
  if (o.stop?.stopping) return recordNotStarted(inst, s, ['assemble']), local
  const final = await o.assembly.assemble(inst, build)
  // registry assembly leaves nothing local
  return final !== 'skipped' && final.ok && o.assembly.local ? [...local, fleet.finalImage(inst)] : local
}

/** The builder is built before any instance: a full disk there gets the same emergency cleanup, without a turn to wait for. */
function builderEmergency(disk: DiskBudget): BuildOptions['policy']['emergency'] {
  return async (info) => {
    const got = await disk.emergency(`${info.phase} hit no space left on device`)
    return { reclaimed: got.reclaimed, retry: got.reclaimed > 0 }
  }
}

/** An instance (or its assembly) the stop kept from starting: `interrupted`, so a rerun or --retry-failed picks it up. */
function recordNotStarted(inst: Instance, s: Setup, phases: Array<'base' | 'assemble'>): void {
  for (const phase of phases) {
    const tag = phase === 'base' ? s.fleet.baseImage(inst) : s.fleet.finalImage(inst)
    const reason = 'not started: the run was stopped'
    s.run.record({
      phase,
      id: inst.id,
      tag,
      status: 'failed',
      reason,
      attempts: 0,
      started_at: now(),
      finished_at: now(),
      seconds: 0,
      log: '',
      error_class: 'interrupted',
    })
  }
}

/** Asks the registry about every tag at once; resolves to the instances that still need work. */
export async function planFleet(s: Setup): Promise<{ todo: Instance[]; done: Instance[] }> {
  const { fleet } = s
  if (s.build.force) return { todo: fleet.instances, done: [] }
  await prefetchTags(s, [
    fleet.builderImage,
    ...fleet.instances.flatMap((i) => [fleet.baseImage(i), fleet.finalImage(i)]),
  ])
  const done: Instance[] = []
  const todo: Instance[] = []
  for (const inst of fleet.instances) {
    const tag = fleet.finalImage(inst)
    const there = s.build.known.get(tag) ?? await s.registry.manifestExists(tag).catch(() => false)
    ;(there ? done : todo).push(inst)
  }
  report.info(
    `${todo.length} of ${count(fleet.instances.length, 'instance')} to build; ${done.length} already in the registry`,
  )
  return { todo, done }
}

/** An instance whose final image the registry has: nothing to build in either phase. */
function recordDone(inst: Instance, s: Setup) {
  const info = (phase: 'base' | 'assemble', tag: string) => ({ phase, id: inst.id, dockerId: inst.dockerId, tag })
  recordSkip(s.run, info('base', s.fleet.baseImage(inst)), 'final image in the registry')
  recordSkip(s.run, info('assemble', s.fleet.finalImage(inst)), 'registry has it')
}

/** An instance whose upstream image the registry says is not there: failed in the plan, nothing built or cleaned for it. */
function recordMissingUpstream(inst: Instance, s: Setup) {
  const info = (phase: 'base' | 'assemble', tag: string) => ({ phase, id: inst.id, dockerId: inst.dockerId, tag })
  recordBlocked(
    s.run,
    info('base', s.fleet.baseImage(inst)),
    `upstream image ${inst.upstream} does not exist (the registry answered 404 in the plan)`,
    'upstream_missing',
  )
  recordBlocked(
    s.run,
    info('assemble', s.fleet.finalImage(inst)),
    'its upstream image does not exist',
    'upstream_missing',
  )
}

/** Summary written either way; 130 when a signal stopped the run. */
function finish(s: Setup, o: PipelineOptions, disk?: DiskBudget): number {
  const code = finishRun(s, disk)
  return o.stop?.stopping ? EXIT.interrupted : code
}

/**
 * --shard I/N: this matrix job's instances. `count` groups by the instances file alone (no registry call: a shard
 * must never see a different fleet than its siblings); `bytes` reads every upstream image's layers — strictly: if one
 * cannot be read the shard stops, because a shard that fell back would split the fleet differently from the others.
 */
async function shardOf(fleet: Fleet, spec: ShardSpec, byBytes: boolean, env: NodeJS.ProcessEnv): Promise<Instance[]> {
  let layers: Upstreams['layers'] | undefined
  if (byBytes) {
    const registry = new RegistryClient({ dockerConfigDir: dockerConfigDir(env) })
    layers = await strictLayers(fleet, registry)
  }
  const layersOf = layers && ((i: Instance) => layers!.get(i.id))
  const weight = layers && ((i: Instance) => Math.max(1, layers!.get(i.id)!.reduce((n, l) => n + l.size, 0)))
  const plan = planShards(fleet.instances, spec.count, weight, layersOf)
  const mine = new Set(plan.shards[spec.index - 1].flatMap((p) => p.members))
  const split = plan.split.map((g) => `${g.key} (${g.instances}) in ${g.pieces}`).join(', ')
  const extra = plan.split.reduce((n, g) => n + g.pieces - 1, 0)
  report.info(
    `shard ${spec.index}/${spec.count}: ${mine.size} of ${count(fleet.instances.length, 'instance')} (balanced by ${
      byBytes ? 'upstream bytes' : 'count'
    }; fair share ${byBytes ? formatBytes(plan.fair) : plan.fair.toFixed(1)})`,
  )
  if (plan.split.length) {
    report.info(`groups bigger than a fair share, cut: ${split} — ${extra} extra environment pulls across the matrix`)
  }
  return fleet.instances.filter((i) => mine.has(i))
}

async function strictLayers(fleet: Fleet, registry: RegistryClient): Promise<Map<string, Layer[]>> {
  const problems: string[] = []
  const byRef = new Map<string, Layer[]>()
  await pMap(new Set(fleet.instances.map((i) => i.upstream)), async (ref) => {
    try {
      byRef.set(ref, await imageLayers(registry, ref, fleet.platform))
    } catch (e) {
      problems.push(`${ref}: ${(e as Error).message}`)
    }
  }, { concurrency: 16 })
  if (problems.length) {
    throw new UsageError(
      `--shard-by bytes: ${problems.length} upstream images could not be read (use --shard-by count)`,
      problems.slice(0, 10),
    )
  }
  return new Map(fleet.instances.map((i) => [i.id, byRef.get(i.upstream)!]))
}

/** --merge DIR…: the shards' OUT dirs → one manifest and one summary (and the job summary in Actions). */
function mergeMain(dirs: string[], out: string): number {
  const github = githubFromEnv(process.env)
  configureReport({ github: github.github, secrets: secretValues(process.env) })
  return writeMerged(mergeShards(dirs), out, github)
}

async function main(argv: string[]) {
  const { flags, positionals } = parseFlags(FLAGS, argv, process.env, { positionals: true })
  if (positionals.length && !flags.merge) {
    throw new UsageError(unexpectedArguments(positionals, "only --merge takes arguments (the shards' OUT dirs)"))
  }
  if (flags.help) {
    return void console.log(
      renderHelp(
        'npx bun scripts/pipeline.ts --instances FILE --registry PREFIX [flags]',
        'Builds the builder image, then per instance a base image and a final (assembled) image, pushing each, under a disk budget.',
        FLAGS,
      ),
    )
  }
  if (flags.merge) return mergeMain(positionals, flags.out)
  const loaded = loadFleet(flags, runFlagProblems(flags, process.env))
  if (flags.shard) {
    loaded.instances = await shardOf(loaded, parseShard(flags.shard), flags.shardBy === 'bytes', process.env)
  }
  const retry = flags.retryFailed ? retryFailed(loaded, flags.out, flags.key) : undefined
  const fleet = retry?.fleet ?? loaded
  const s = await startScript(flags, fleet)
  s.run.earlier.push(...(retry?.earlier ?? [])) // the summary describes the whole fleet in --out
  const stop = new GracefulStop({
    graceMs: flags.grace,
    say: (text) => report.warn(text),
    onForce: () => {
      finishRun(s)
      return process.exit(EXIT.interrupted)
    },
  }).install()
  $.spawn = stop.wrapSpawn($.spawn)
  s.build.policy.stop = stop
  return pipeline(s, {
    disk: flags,
    order: flags.order as Order,
    stop,
    assembly: prepareAssembly(flags.mode as AssembleMode, s.build, s.registry, s.pre),
    mirror: flags.mirror ? { prefix: flags.registry, allPlatforms: flags.allPlatforms } : undefined,
    pullBudget: flags.pullBudget as MirrorOptions['pullBudget'],
  })
}

if (import.meta.main) runMain(() => main(process.argv.slice(2)))
