#!/usr/bin/env bun
// mirror: copy each instance's upstream image into the fleet's registry, PREFIX/mirror/<upstream path>:<tag>, over
// the Registry v2 API — every blob streamed from the upstream into the mirror through this process (no docker,
// nothing written to the data root or /tmp), mounted when both are on one registry, skipped when the mirror has it:
// a rerun transfers nothing. Before copying, the upstream's pull allowance against what the copies need
// (--pull-budget). `pipeline --mirror` runs these steps first and builds every base FROM the mirror.
//   bun run scripts/mirror.ts --instances ids.txt --registry ghcr.io/me/fleet [--platform linux/amd64]
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import pMap from 'p-map'
import { type FlagTable, parseFlags, renderHelp, UsageError } from '../lib/cli/flags.ts'
import { runMain } from '../lib/cli/main.ts'
import { configureReport, report, secretValues } from '../lib/cli/report.ts'
import { formatBytes } from '../lib/cli/size.ts'
import { RUN_FLAGS } from '../lib/engine/options.ts'
import { FLEET_FLAGS } from '../lib/fleet/fleet.ts'
import { type Instance, parseInstances, parseSelection, templateProblems } from '../lib/fleet/instances.ts'
import { RegistryClient } from '../lib/registry/client.ts'
import { parsePlatform } from '../lib/registry/image.ts'
import { checkMirror, copyImage, Landed, type MirrorCheck, mirrorRef } from '../lib/registry/mirror.ts'
import { parseImageRef } from '../lib/registry/ref.ts'
import type { ErrorClass } from '../lib/run/errors.ts'
import { githubFromEnv } from '../lib/run/github.ts'
import { Run } from '../lib/run/records.ts'
import { DEFAULT_POLICY, recordBlocked, recordSkip, runStep, type StepPolicy } from '../lib/run/step.ts'
import { writeSummary } from '../lib/run/summary.ts'
import { checkPullBudget, type PullNeed } from './preflight.ts'
import type { Setup } from './_setup.ts'

/** The mirror's own flags, shared with the pipeline (defined here, once). */
export const MIRROR_FLAGS = {
  'all-platforms': {
    type: 'boolean',
    help: 'Mirror the whole index (every platform and attestation manifest), not only --platform',
  },
  'pull-budget': {
    type: 'string',
    arg: 'POLICY',
    default: 'warn',
    choices: ['warn', 'fail', 'off'],
    help: "Before pulling: the upstream registry's pull allowance (Docker Hub's ratelimit headers, read with a free " +
      'HEAD) against the pulls this run needs; warn, fail (exit 3, nothing pulled) or off',
  },
} as const satisfies FlagTable

export const FLAGS = {
  instances: FLEET_FLAGS.instances,
  upstream: FLEET_FLAGS.upstream,
  registry: {
    type: 'string',
    arg: 'PREFIX',
    help: "Mirror into PREFIX/mirror/<upstream path>:<tag> (the upstream's registry host dropped)",
  },
  platform: {
    type: 'string',
    arg: 'P',
    help: 'Platform copied out of a multi-platform upstream (default: linux/amd64)',
  },
  ...MIRROR_FLAGS,
  limit: FLEET_FLAGS.limit,
  select: FLEET_FLAGS.select,
  concurrency: { type: 'int', arg: 'N', default: 4, min: 1, help: 'Images copied at once (each 4 blobs at once)' },
  retries: RUN_FLAGS.retries,
  backoff: RUN_FLAGS.backoff,
  'insecure-registry': RUN_FLAGS['insecure-registry'],
  'dry-run': { type: 'boolean', help: 'Only HEADs: print what would be copied and the pull budget; copy nothing' },
  out: FLEET_FLAGS.out,
} as const satisfies FlagTable

export type MirrorOptions = {
  run: Run
  client: RegistryClient
  policy: StepPolicy
  /** the fleet's registry prefix: mirrors go to PREFIX/mirror/… */
  prefix: string
  platform?: string
  allPlatforms: boolean
  concurrency: number
  pullBudget: 'warn' | 'fail' | 'off'
}

/** One upstream image and the instances that build FROM it (mirrored once for all of them). */
export type Upstream = {
  ref: string
  target: string
  instances: Instance[]
  /** what the plan's HEADs said (an Error when they failed: the copy step meets it again, with retries) */
  check: MirrorCheck | Error
}
/** Per upstream: its mirror reference, or the class of the failure that kept it from being mirrored. */
export type Mirrored = Map<string, { target: string; failed?: ErrorClass }>

/** plan (HEADs only) → pull budget → one copy step per upstream not mirrored yet. */
export async function mirrorFleet(instances: Instance[], o: MirrorOptions): Promise<Mirrored> {
  const upstreams = await planMirror(instances, o)
  const todo = upstreams.filter((u) => u.check instanceof Error || !u.check.present)
  report.info(`${todo.length} of ${upstreams.length} upstream images to mirror into ${o.prefix}/mirror/`)
  await checkPullBudget(pullNeeds(todo), { client: o.client, policy: o.pullBudget })
  const mirrored: Mirrored = new Map()
  const landed = new Landed()
  for (const u of upstreams.filter((u) => !todo.includes(u))) {
    recordSkip(o.run, stepInfo(u), `mirror has it (${(u.check as MirrorCheck).why})`)
    mirrored.set(u.ref, { target: u.target })
  }
  await pMap(todo, async (u) => {
    const result = await copyStep(u, o, landed)
    mirrored.set(u.ref, { target: u.target, failed: result.ok ? undefined : result.error?.errorClass ?? 'build_error' })
  }, { concurrency: o.run.dry ? 1 : o.concurrency })
  return mirrored
}

/** Every distinct upstream with its mirror reference and what two HEADs say about it (free on Docker Hub). */
export async function planMirror(instances: Instance[], o: MirrorOptions): Promise<Upstream[]> {
  const byRef = new Map<string, Instance[]>()
  for (const inst of instances) byRef.set(inst.upstream, [...(byRef.get(inst.upstream) ?? []), inst])
  const platform = o.allPlatforms ? undefined : parsePlatform(o.platform ?? 'linux/amd64')
  return pMap(byRef, async ([ref, members]) => {
    const target = mirrorRef(ref, o.prefix)
    const check = await checkMirror(o.client, parseImageRef(ref), parseImageRef(target), platform)
      .catch((e: Error) => e)
    return { ref, target, instances: members, check }
  }, { concurrency: 16 })
}

/** Pulls per upstream registry: one per image to copy (an index and one platform's manifest are one pull). */
function pullNeeds(todo: Upstream[]): PullNeed[] {
  const byRegistry = new Map<string, PullNeed>()
  for (const u of todo) {
    const source = parseImageRef(u.ref)
    const need = byRegistry.get(source.registry) ?? { registry: source.registry, pulls: 0, sample: source }
    need.pulls++
    const seen = u.check instanceof Error ? undefined : u.check.allowance
    if (seen && (!need.allowance || seen.remaining < need.allowance.remaining)) need.allowance = seen
    byRegistry.set(source.registry, need)
  }
  return [...byRegistry.values()]
}

const stepInfo = (u: Upstream) => {
  const first = u.instances[0]
  return { phase: 'mirror' as const, id: first.id, dockerId: first.dockerId, tag: u.target, from: u.ref }
}

/** One upstream copied under its step: log, retries for transient failures (429 among them), one manifest record. */
async function copyStep(u: Upstream, o: MirrorOptions, landed: Landed) {
  const info = stepInfo(u)
  return runStep(o.run, info, o.policy, async () => {
    if (o.run.dry) return void report.info(`would copy ${u.ref} → ${u.target}`)
    const started = Date.now()
    const log = o.run.logFile('mirror', info.dockerId)
    const r = await copyImage(o.client, parseImageRef(u.ref), parseImageRef(u.target), {
      platform: o.platform ? parsePlatform(o.platform) : undefined,
      allPlatforms: o.allPlatforms,
      landed,
    }).catch((e: Error) => {
      fs.appendFileSync(log, `mirror: ${u.ref} → ${u.target} failed: ${e.message}\n`)
      throw e
    })
    const seconds = (Date.now() - started) / 1000
    o.run.attach('mirror', info.id, {
      mirror: {
        manifests: r.manifests,
        ...r.blobs,
        bytes_copied: r.bytesCopied,
        manifest_gets: r.manifestGets,
      },
    })
    fs.appendFileSync(
      log,
      [
        `mirror: ${u.ref} → ${u.target}@${r.digest}${r.platforms.length ? ` (${r.platforms.join(', ')})` : ''}`,
        `mirror: ${r.manifests} manifests; blobs ${r.blobs.copied} copied, ${r.blobs.mounted} mounted, ${r.blobs.present} already there; ${
          formatBytes(r.bytesCopied)
        } in ${seconds.toFixed(2)}s; ${r.manifestGets} manifest GETs on the upstream`,
        `mirror: for ${u.instances.map((i) => i.id).join(', ')}`,
        '',
      ].join('\n'),
    )
  })
}

/**
 * pipeline --mirror: mirrors the upstreams of the instances whose base is still to build, then points each of them
 * at its mirror. An instance whose upstream could not be mirrored is recorded failed in both phases with the
 * mirror's class (rate_limited stays rate_limited: never the image's own failure) and left out.
 */
export async function mirrorFirst(
  s: Setup,
  todo: Instance[],
  o: { prefix?: string; allPlatforms: boolean; pullBudget: MirrorOptions['pullBudget'] },
): Promise<Instance[]> {
  const toBuild = (i: Instance) => s.build.force || !s.build.known.get(s.fleet.baseImage(i))
  const prefix = o.prefix ?? s.fleet.builderImage.replace(/\/[^/]+$/, '')
  report.phase(`mirror → ${prefix}/mirror/`)
  const mirrored = await mirrorFleet(todo.filter(toBuild), {
    run: s.run,
    client: s.registry,
    policy: s.build.policy,
    prefix,
    platform: s.fleet.platform,
    allPlatforms: o.allPlatforms,
    concurrency: s.concurrency,
    pullBudget: o.pullBudget,
  })
  if (s.run.dry) return report.info('(dry run: the bases would build FROM their mirrors)'), todo
  return todo.flatMap((inst) => {
    const m = toBuild(inst) ? mirrored.get(inst.upstream) : undefined
    if (!m) return [inst]
    if (!m.failed) return [{ ...inst, upstream: m.target }]
    for (const phase of ['base', 'assemble'] as const) {
      const tag = phase === 'base' ? s.fleet.baseImage(inst) : s.fleet.finalImage(inst)
      recordBlocked(
        s.run,
        { phase, id: inst.id, dockerId: inst.dockerId, tag },
        `its upstream ${inst.upstream} could not be mirrored (${m.failed})`,
        m.failed,
      )
    }
    return []
  })
}

/** Without --mirror: every base build resolves its FROM image (a pull), and the plan reads each upstream once. */
export async function budgetUpstreamPulls(s: Setup, todo: Instance[], policy: MirrorOptions['pullBudget']) {
  const toBuild = todo.filter((i) => s.build.force || !s.build.known.get(s.fleet.baseImage(i)))
  const byRegistry = new Map<string, PullNeed>()
  for (const ref of new Set(toBuild.map((i) => i.upstream))) {
    const source = parseImageRef(ref)
    const need = byRegistry.get(source.registry) ?? { registry: source.registry, pulls: 0, sample: source }
    need.pulls += 1 + toBuild.filter((i) => i.upstream === ref).length
    byRegistry.set(source.registry, need)
  }
  await checkPullBudget([...byRegistry.values()], { client: s.registry, policy })
}

/** The instances file with --upstream, --select and --limit, checked whole (exit 2 on any problem). */
function loadInstances(flags: { instances?: string; upstream: string; select?: string; limit?: number }): Instance[] {
  if (!flags.instances) throw new UsageError('--instances FILE is required')
  const problems = templateProblems(flags.upstream)
  const parsed = parseInstances(fs.readFileSync(flags.instances, 'utf8'), flags.upstream)
  problems.push(...parsed.problems.map((p) => `${flags.instances} ${p}`))
  if (problems.length) throw new UsageError(`bad input (${problems.length} problems)`, problems)
  const wanted = flags.select ? parseSelection(fs.readFileSync(flags.select, 'utf8')) : undefined
  const instances = parsed.instances.filter((i) => !wanted || wanted.has(i.id))
  return flags.limit === undefined ? instances : instances.slice(0, flags.limit)
}

async function main(argv: string[]) {
  const { flags } = parseFlags(FLAGS, argv, process.env)
  if (flags.help) {
    return void console.log(
      renderHelp(
        'bun run scripts/mirror.ts --instances FILE --registry PREFIX [flags]',
        "Copies each instance's upstream image into PREFIX/mirror/<upstream path>:<tag>, registry to registry: blobs " +
          'streamed through this process (digests checked), mounted within one registry, skipped when there; no docker, ' +
          'no local disk.\nExit codes: 0 all mirrored or already there · 1 an image failed · 2 bad usage · 3 not enough ' +
          'pulls left (--pull-budget fail).',
        FLAGS,
      ),
    )
  }
  if (!flags.registry) throw new UsageError('--registry PREFIX is required (mirrors go to PREFIX/mirror/…)')
  const instances = loadInstances(flags)
  const github = githubFromEnv(process.env)
  configureReport({ github: github.github, secrets: secretValues(process.env), comments: flags.dryRun })
  const run = new Run(flags.out, undefined, flags.dryRun)
  const client = new RegistryClient({
    dockerConfigDir: process.env.DOCKER_CONFIG ?? path.join(os.homedir(), '.docker'),
    insecure: { names: flags.insecureRegistry },
  })
  report.phase(`mirror: ${instances.length} instances → ${flags.registry}/mirror/`)
  await mirrorFleet(instances, {
    run,
    client,
    policy: { ...DEFAULT_POLICY, retries: flags.retries, backoffMs: flags.backoff },
    prefix: flags.registry,
    platform: flags.platform,
    allPlatforms: flags.allPlatforms,
    concurrency: flags.concurrency,
    pullBudget: flags.pullBudget as MirrorOptions['pullBudget'],
  })
  return writeSummary(run, { out: flags.out, fleet: { instances, key: undefined }, github })
}

if (import.meta.main) runMain(() => main(process.argv.slice(2)))
