#!/usr/bin/env bun
// pipeline: the whole job — preflight → builder → per instance (base → assemble → cleanup) — under
// one disk budget, with one summary and one exit code.
//   npx bun scripts/pipeline.ts --instances ids.txt --registry ghcr.io/me/fleet --context docker/
//
// Exit codes: 0 all built or skipped · 1 something failed · 2 bad usage or input · 3 preflight failed · 130 interrupted
import pMap from 'p-map'
import { $ } from 'zx'
import { type FlagTable, parseFlags, renderHelp, unexpectedArguments, UsageError } from '../lib/cli/flags.ts'
import { EXIT, runMain } from '../lib/cli/main.ts'
import { DiskBudget, type Layer, type Ticket } from '../lib/disk/budget.ts'
import { type Fleet, FLEET_FLAGS, loadFleet } from '../lib/fleet/fleet.ts'
import type { Instance } from '../lib/fleet/instances.ts'
import { configureReport, count, report, secretValues } from '../lib/cli/report.ts'
import { parseShard, shardInstances, type ShardSpec, upstreamWeights } from '../lib/fleet/shard.ts'
import { mergeShards, writeMerged } from '../lib/run/merge.ts'
import { githubFromEnv } from '../lib/run/github.ts'
import { RegistryClient } from '../lib/registry/client.ts'
import { compressedImageBytes, imageLayers } from '../lib/registry/image.ts'
import { bytesToCome } from '../lib/disk/free-disk-status.ts'
import { now } from '../lib/run/records.ts'
import { retryFailed } from '../lib/run/retry.ts'
import { recordBlocked, recordSkip } from '../lib/run/step.ts'
import { GracefulStop } from '../lib/cli/stop.ts'
import { ASSEMBLE_FLAGS, type AssembleMode, type Assembly, prepareAssembly } from './assemble.ts'
import { buildBase, buildBuilder } from './build-bases.ts'
import { cleanUntil, perImageCleanup, removeImages } from './prune.ts'
import { type Setup, startScript } from './_setup.ts'
import { RUN_FLAGS, runFlagProblems } from '../lib/engine/options.ts'
import { dockerConfigDir } from '../lib/cli/environment.ts'

export const FLAGS = {
  ...FLEET_FLAGS,
  ...RUN_FLAGS,
  ...ASSEMBLE_FLAGS,
  cleanup: {
    type: 'string',
    arg: 'POLICY',
    default: 'adaptive',
    choices: ['adaptive', 'per-image', 'none'],
    help:
      "adaptive: disk budget + tiered prunes; per-image: rmi + system prune + builder prune after every image (the field's fix); none: no cleanup",
  },
  reserve: { type: 'size', default: '1GB', help: 'Free space the disk budget always keeps' },
  'expect-growth': {
    type: 'size',
    help:
      "Disk growth per image assumed until the first images are done (default: 3 × the first upstream image's compressed size)",
  },
  'cache-cap': {
    type: 'size',
    help: 'per-image policy: keep this much build cache (the detected --reserved-space/--keep-storage flag)',
  },
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
      'Only shard I of N (CI matrix): instances sharing an environment stay together, shards balanced by --shard-by',
  },
  'shard-by': {
    type: 'string',
    arg: 'WEIGHT',
    default: 'count',
    choices: ['count', 'bytes'],
    help:
      'Balance shards by instance count, or by upstream image bytes read from the registry (every shard must read them)',
  },
  merge: {
    type: 'boolean',
    help:
      'Merge the OUT dirs given as arguments (one per shard) into one manifest and summary in --out; builds nothing',
  },
  'free-disk-status': {
    type: 'string',
    arg: 'FILE',
    help:
      'Status file of a background `free-disk --background`: the disk budget waits for the bytes it still has to give back instead of pruning',
  },
  'retry-failed': {
    type: 'boolean',
    help:
      'Only the instances whose last record in --out failed (a rerun without it also retries them, and finishes the rest)',
  },
} as const satisfies FlagTable

export type PipelineOptions = {
  cleanup: 'adaptive' | 'per-image' | 'none'
  reserve: number
  expectGrowth?: number
  cacheCap?: number
  stop?: GracefulStop
  /** status file of a background free-disk run (its bytes to come count in the budget) */
  freeDiskStatus?: string
  /** registry or docker assembly (scripts/assemble.ts prepareAssembly) */
  assembly: Assembly
}

/** Base, then assembly, then cleanup, for one instance; a failed base blocks only its own assembly. */
async function buildInstance(
  inst: Instance,
  s: Setup,
  o: PipelineOptions,
  ticket?: Ticket,
  budget?: DiskBudget,
): Promise<void> {
  const { fleet } = s.build
  // a full disk: one emergency cleanup for everyone who hit it, then this image waits its turn again
  const emergency = budget && ticket && (async (why: string) => {
    const got = await budget.emergency(why)
    await ticket.readmit()
    return got
  })
  const base = await buildBase(inst, emergency ? { ...s.build, policy: { ...s.build.policy, emergency } } : s.build)
  ticket?.progress(0.9) // the upstream is pulled and unpacked: what is left is the thin assembly
  if (base !== 'skipped' && !base.ok) {
    return recordBlocked(
      s.run,
      { phase: 'assemble', id: inst.id, dockerId: inst.dockerId, tag: fleet.finalImage(inst) },
      'base image failed',
      base.error?.errorClass,
    )
  }
  if (o.stop?.stopping) return recordNotStarted(inst, s, ['assemble'])
  const final = await o.assembly.assemble(inst)
  const local = [
    ...(base !== 'skipped' && !s.build.buildx ? [fleet.baseImage(inst)] : []),
    ...(final !== 'skipped' && final.ok && o.assembly.local ? [fleet.finalImage(inst)] : []), // registry assembly leaves nothing local
  ]
  if (o.cleanup === 'per-image') await perImageCleanup(local, o.cacheCap, s.cleanup)
  else if (o.cleanup === 'adaptive' && local.length) await removeImages(local, s.cleanup)
}

/** An instance (or its assembly) the stop kept from starting: `interrupted`, so a rerun or --retry-failed picks it up. */
function recordNotStarted(inst: Instance, s: Setup, phases: Array<'base' | 'assemble'>): void {
  const { fleet } = s.build
  for (const phase of phases) {
    const tag = phase === 'base' ? fleet.baseImage(inst) : fleet.finalImage(inst)
    s.run.record({
      phase,
      id: inst.id,
      tag,
      status: 'failed',
      reason: 'not started: the run was stopped',
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
export async function planFleet(fleet: Fleet, s: Setup): Promise<{ todo: Instance[]; done: Instance[] }> {
  if (s.build.force) return { todo: fleet.instances, done: [] }
  await s.prefetch([fleet.builderImage, ...fleet.instances.flatMap((i) => [fleet.baseImage(i), fleet.finalImage(i)])])
  const done: Instance[] = []
  const todo: Instance[] = []
  for (const inst of fleet.instances) {
    ;((await s.build.exists(fleet.finalImage(inst)).catch(() => false)) ? done : todo).push(inst)
  }
  report.info(
    `${todo.length} of ${count(fleet.instances.length, 'instance')} to build; ${done.length} already in the registry`,
  )
  return { todo, done }
}

/** An instance whose final image the registry has: nothing to build in either phase. */
function recordDone(inst: Instance, s: Setup) {
  const { fleet } = s.build
  const info = (phase: 'base' | 'assemble', tag: string) => ({ phase, id: inst.id, dockerId: inst.dockerId, tag })
  recordSkip(s.run, info('base', fleet.baseImage(inst)), 'final image in the registry')
  recordSkip(s.run, info('assemble', fleet.finalImage(inst)), 'registry has it')
}

/** Growth assumed for an image whose layers are unknown: 3 × the first upstream's compressed size (blobs + unpacked layers + slack). */
function priorGrowth(todo: Instance[], layers: Map<string, Layer[]>, o: PipelineOptions): number {
  if (o.expectGrowth !== undefined) return o.expectGrowth
  const first = todo.length ? layers.get(todo[0].id) : undefined
  return first ? 3 * first.reduce((sum, l) => sum + l.size, 0) : 2 * 2 ** 30
}

/** Each instance's upstream layers (digest, compressed size) from the registry, for the budget's costs. */
async function upstreamLayers(todo: Instance[], s: Setup): Promise<Map<string, Layer[]>> {
  const layers = new Map<string, Layer[]>()
  await pMap(todo, async (inst) => {
    try {
      layers.set(inst.id, await imageLayers(s.registry, inst.upstream, s.build.fleet.platform))
    } catch { /* unknown: costs the prior */ }
  }, { concurrency: 16 })
  return layers
}

/** Every instance, `concurrency` at a time, each admitted by the disk budget (adaptive policy). */
export async function buildFleet(todo: Instance[], s: Setup, o: PipelineOptions): Promise<DiskBudget | undefined> {
  const layers = o.cleanup === 'adaptive' && !s.run.dry && s.run.dataRoot ? await upstreamLayers(todo, s) : undefined
  const budget = layers && new DiskBudget({
    free: () => s.run.free(),
    reserve: o.reserve,
    pending: o.freeDiskStatus ? () => bytesToCome(o.freeDiskStatus!) : undefined,
    prior: priorGrowth(todo, layers, o),
    clean: (target, why, stale) => {
      report.dim(`  cleanup: ${why}`)
      return cleanUntil(target, s.cleanup, stale)
    },
    onEvent: (event) => s.run.sample(`budget ${event}`),
  })
  let notStarted = 0
  await pMap(todo, async (inst) => {
    if (o.stop?.stopping) return void (notStarted++, recordNotStarted(inst, s, ['base', 'assemble']))
    const ticket = await budget?.admit(inst.id, layers?.get(inst.id))
    if (o.stop?.stopping) return void (ticket?.done(), notStarted++, recordNotStarted(inst, s, ['base', 'assemble']))
    try {
      await buildInstance(inst, s, o, ticket, budget)
    } finally {
      ticket?.done()
    }
  }, { concurrency: s.concurrency })
  if (notStarted) {
    const left = count(notStarted, 'instance')
    report.warn(`${left} not started (recorded as interrupted): rerun with the same --out to finish them`)
  }
  await budget?.settle()
  return budget
}

export async function pipeline(fleet: Fleet, s: Setup, o: PipelineOptions): Promise<number> {
  s.build.policy.emergency = o.cleanup === 'none' ? undefined : coalesce(() => cleanUntil(Infinity, s.cleanup, 1))
  report.phase('plan')
  const { todo, done } = await planFleet(fleet, s)
  for (const inst of done) recordDone(inst, s)
  if (!todo.length) return s.finish()
  report.phase(`builder ${fleet.builderImage}`)
  const builder = await buildBuilder(s.build)
  if (builder !== 'skipped' && !builder.ok) {
    report.error('the builder image failed: nothing can assemble without it; stopping')
    for (const inst of todo) {
      recordBlocked(
        s.run,
        { phase: 'base', id: inst.id, dockerId: inst.dockerId, tag: fleet.baseImage(inst) },
        'builder image failed',
        o.stop?.stopping ? 'interrupted' : undefined,
      )
    }
    return finish(s, o)
  }
  report.phase(`instances: ${todo.length} (${s.concurrencyNote}, cleanup ${o.cleanup})`)
  const budget = await buildFleet(todo, s, o)
  if (budget) {
    report.info(
      `disk budget: real/predicted growth ${
        budget.ratio().toFixed(2)
      }, peak ${budget.peakInFlight} in flight, ${budget.waits} waits`,
    )
  }
  return finish(s, o)
}

/** Builds that hit a full disk together share one emergency cleanup instead of queueing one each. */
function coalesce(clean: () => Promise<number>): () => Promise<number> {
  let running: Promise<number> | undefined
  return () => (running ??= clean().finally(() => {
    running = undefined
  }))
}

/** Summary written either way; 130 when a signal stopped the run. */
function finish(s: Setup, o: PipelineOptions): number {
  const code = s.finish()
  return o.stop?.stopping ? EXIT.interrupted : code
}

/** --shard I/N: this matrix job's instances (--shard-by bytes reads every upstream image's size from its registry). */
async function shardOf(fleet: Fleet, spec: ShardSpec, byBytes: boolean, env: NodeJS.ProcessEnv): Promise<Instance[]> {
  const registry = byBytes ? new RegistryClient({ dockerConfigDir: dockerConfigDir(env) }) : undefined
  const weights = registry
    ? await upstreamWeights(fleet.instances, (ref) => compressedImageBytes(registry, ref, fleet.platform))
    : undefined
  const mine = shardInstances(fleet.instances, spec, weights && ((i) => weights.get(i.upstream)!))
  report.info(
    `shard ${spec.index}/${spec.count}: ${mine.length} of ${count(fleet.instances.length, 'instance')} (balanced by ${
      byBytes ? 'upstream bytes' : 'count'
    })`,
  )
  return mine
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
      s.finish()
      return process.exit(EXIT.interrupted)
    },
  }).install()
  $.spawn = stop.wrapSpawn($.spawn)
  s.build.policy.stop = stop
  return pipeline(fleet, s, {
    cleanup: flags.cleanup as PipelineOptions['cleanup'],
    reserve: flags.reserve,
    expectGrowth: flags.expectGrowth,
    cacheCap: flags.cacheCap,
    freeDiskStatus: flags.freeDiskStatus,
    stop,
    assembly: prepareAssembly(flags.mode as AssembleMode, s.build, s.registry),
  })
}

if (import.meta.main) runMain(() => main(process.argv.slice(2)))
