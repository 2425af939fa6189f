#!/usr/bin/env bun
// prune: the cleanup commands, each one measured (statfs of the data root before and after, seconds,
// exit code) and logged. One prune at a time (a shared Mutex), every prune with a timeout.
//   npx bun scripts/prune.ts --until-free 20GB        tiers, cheapest first, until 20 GB are free
//   npx bun scripts/prune.ts --tier full --dry-run     what a full prune would run
import cp from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { $, type ProcessPromise } from 'zx'
import { type Flags, type FlagTable, parseFlags, renderHelp } from '../lib/cli/flags.ts'
import { PreflightError, runMain } from '../lib/cli/main.ts'
import { Mutex } from '../lib/disk/prune-lock.ts'
import { configureReport, report, seconds, secretValues } from '../lib/cli/report.ts'
import { type CleanupRecord, now, Run } from '../lib/run/records.ts'
import { dockerSize, formatBytes, parseSize } from '../lib/cli/size.ts'
import { dryRunSpawn } from '../lib/cli/dry-run.ts'
import { preflight, printChecks } from './preflight.ts'
import { cleanupTargets } from '../lib/engine/capabilities.ts'
import type { Preflight } from '../lib/engine/facts.ts'
import { type CleanupOptions, RUN_FLAGS } from '../lib/engine/options.ts'
import type { CleanOutcome, CleanRequest, Tier } from '../lib/disk/budget-types.ts'
import { inGitHubActions } from '../lib/cli/environment.ts'
import { type ImageStore, totalBytes } from '../lib/engine/answers.ts'
import { registryRetention } from './_retention.ts'

/** What a tier needs: the stale cutoff (seconds), the bytes still to free, a fixed cache cap (per-image --cache-cap). */
type TierArgs = { staleSeconds: number; gap: number; cacheCap?: number }
type TierSpec = { name: Tier; why: string; run: (o: CleanupOptions, a: TierArgs) => Promise<CleanupRecord[]> }

/** The tiers, cheapest first: `cleanUntil` runs them in this order, and each entry's `run` is what it runs. */
export const TIERS: readonly TierSpec[] = [
  // records no build has used since the cutoff: the disk budget sets it just before the oldest use of any layer a
  // waiting image still needs, so finished groups' layers go and the running group's stay (lib/disk/ledger.ts).
  // Time-based, because under dockerd's own BuildKit pulled layers are shared with the image store and count
  // 0 bytes, so a size cap never reaches them (measured: --keep-storage freed 10 MB of 2 GB)
  {
    name: 'stale',
    why: 'build cache not used since the cutoff (layers of finished images and groups)',
    run: (o, a) => pruneStaleCache(a.staleSeconds, o),
  },
  // LRU cap on the build cache: drops the oldest records first, so shared builder and environment
  // layers that the next images need (used recently) stay warm. The cap of each cache is its own size less the gap
  {
    name: 'cache-cap',
    why: 'cap the build cache at what the target allows, oldest records first',
    run: (o, a) => pruneCacheCapped(a, o),
  },
  // dangling images and stopped containers; also every unused record of the default builder's cache
  {
    name: 'system',
    why: 'dangling images, stopped containers, unused networks and cache',
    run: async (o) => [await pruneSystem(o)],
  },
  // everything BuildKit holds, in the daemon and in the selected buildx builder (docker-container driver)
  { name: 'full', why: 'all build cache, including the buildx builder that holds it', run: (o) => pruneCacheAll(o) },
]
const TIER_NAMES = TIERS.map((t) => t.name)

/** The order `cleanUntil` runs the tiers in, per image store (lib/engine/answers.ts ImageStore). */
export const TIER_ORDER: Record<ImageStore, readonly Tier[]> = {
  // overlay2 and the other graph drivers: TIERS as listed
  graphdriver: TIER_NAMES,
  // the containerd image store: images and build cache share content, and a layer is freed only once no image and no
  // cache record holds it (moby/moby#45270: an image prune reports 0B while BuildKit's lease keeps the content). A
  // capped prune of records whose content a dangling image or a stopped container still holds evicts warm cache and
  // frees nothing, so the system prune (dangling images, stopped containers, dangling cache) goes before it
  containerd: ['stale', 'system', 'cache-cap', 'full'],
}

export const FLAGS = {
  tier: {
    type: 'string',
    arg: 'TIER',
    choices: TIER_NAMES,
    help: `Run one tier: ${TIER_NAMES.join(', ')}`,
  },
  'until-free': {
    type: 'size',
    help:
      'Run tiers cheapest first until this much is free; exit 1 (saying what holds the space) when every tier ran and it is not',
  },
  'cache-cap': {
    type: 'size',
    help: 'With --tier cache-cap: keep this much cache (default: what --until-free allows, else 0)',
  },
  'stale-after': {
    type: 'duration',
    arg: 'DURATION',
    default: '10m',
    help: 'With --tier stale (and --until-free): prune cache unused for this long',
  },
  images: { type: 'list', arg: 'TAG', help: 'docker rmi these first' },
  builder: {
    type: 'string',
    arg: 'NAME',
    help: 'buildx builder whose cache to prune as well (default: the selected one, when it is not the daemon)',
  },
  'data-root': { type: 'string', arg: 'PATH', help: "Where this machine sees the daemon's data root" },
  timeout: { type: 'duration', arg: 'DURATION', default: '10m', help: 'Kill a prune that runs longer (e.g. 90s, 10m)' },
  'dry-run': { type: 'boolean', help: 'Print the commands; run none' },
  // registry retention (issue 12): not a disk cleanup — it deletes from the fleet's registry (scripts/_retention.ts)
  registry: {
    type: 'string',
    arg: 'PREFIX',
    help: "Registry retention instead of a disk cleanup: keep the fleet's newest --keep-keys keys in " +
      "PREFIX/eval-builder, eval-base, eval-agent, delete older keys' tags and every manifest nothing kept refers to " +
      '(attestations included); a dry run unless --yes',
  },
  'keep-keys': {
    type: 'int',
    arg: 'N',
    min: 1,
    help: 'With --registry: how many keys stay (newest by builder image created time)',
  },
  yes: { type: 'boolean', help: 'With --registry: delete what the dry run lists' },
  mirror: { type: 'boolean', help: 'With --registry: also PREFIX/mirror/ images no kept base is built FROM' },
  'registry-api': {
    type: 'string',
    arg: 'API',
    default: 'auto',
    choices: ['auto', 'registry', 'ghcr'],
    help:
      'With --registry: list and delete over the Registry HTTP API or the GitHub Packages API (auto: ghcr for ghcr.io)',
  },
  'github-api': {
    type: 'string',
    arg: 'URL',
    default: 'https://api.github.com',
    help: 'With --registry-api ghcr: the GitHub REST API',
  },
  'password-env': {
    type: 'string',
    arg: 'NAME',
    help: 'With --registry: variable holding the registry token (GHCR: read:packages and delete:packages)',
  },
  'registry-user': { type: 'string', arg: 'USER', help: 'With --password-env: the user the token belongs to' },
  'insecure-registry': RUN_FLAGS['insecure-registry'],
} as const satisfies FlagTable

/** docker rmi of images already pushed (not a prune: takes no lock). Untagging frees little under BuildKit. */
export async function removeImages(tags: string[], o: CleanupOptions): Promise<CleanupRecord> {
  // not under the lock, so a system prune may remove an image this call has just untagged: dockerd 20.10 then says
  // "unrecognized image ID" (or "No such image"); either way the image is gone, which is what was asked
  const gone = (stderr: string) => stderr.trim().split('\n').every((l) => /No such image|unrecognized image ID/.test(l))
  return measure(o, 'rmi', () => $`docker rmi ${tags}`, { exclusive: false, gone })
}

/** Prunes build-cache records unused for `seconds` (in-use records are never pruned). */
export async function pruneStaleCache(seconds: number, o: CleanupOptions): Promise<CleanupRecord[]> {
  const age = `${Math.max(1, Math.floor(seconds))}s`
  const records: CleanupRecord[] = []
  if (o.pruneFlags.until !== false) {
    records.push(await measure(o, 'stale', () => $`docker builder prune -af --filter until=${age}`))
  }
  const builder = o.containerBuilder
  if (builder && o.builderPruneFlags?.until !== false) {
    records.push(await measure(o, 'stale', () => $`docker buildx prune -af --builder ${builder} --filter until=${age}`))
  }
  return records
}

/**
 * Caps each build cache with the flag its prune command accepts (none: skipped): at `cacheCap`, else at its own size
 * (the daemon's from `docker system df`, the builder's from `docker buildx du --builder`) less the bytes to free.
 */
export async function pruneCacheCapped(a: TierArgs, o: CleanupOptions): Promise<CleanupRecord[]> {
  const records: CleanupRecord[] = []
  const capOf = async (size: () => Promise<number | undefined>) =>
    dockerSize(a.cacheCap ?? Math.max(0, ((await size()) ?? a.gap) - a.gap))
  const flag = o.pruneFlags.keep
  if (flag) {
    const keep = await capOf(buildCacheBytes)
    // flag: --reserved-space (buildx ≥ 0.18) or --keep-storage (older clients), whichever this client's --help lists
    // (preflight); never --max-storage, which no release ever had
    records.push(await measure(o, 'cache-cap', () => $`docker builder prune -af ${flag} ${keep}`))
  }
  const builder = o.containerBuilder
  const builderFlag = o.builderPruneFlags?.keep
  if (builder && builderFlag) {
    const keep = await capOf(() => builderCacheBytes(builder))
    records.push(
      await measure(o, 'cache-cap', () => $`docker buildx prune -af --builder ${builder} ${builderFlag} ${keep}`),
    )
  }
  return records
}

/**
 * Bounds a buildx builder's own cache at `max` bytes (--builder-max-used) with `flag`, the one it accepts
 * (lib/engine/capabilities.ts boundFlag). A remote builder's prune frees nothing here: its record counts what the
 * builder reported, and it takes no local prune lock (another daemon).
 */
export async function pruneBuilderTo(builder: string, flag: string, max: number, o: CleanupOptions) {
  return measure(o, 'builder-bound', () => $`docker buildx prune -af --builder ${builder} ${flag} ${dockerSize(max)}`, {
    exclusive: false,
    truth: 'reported',
  })
}

/** Bytes a buildx builder's cache holds (`docker buildx du --builder NAME`, its Total), or undefined. */
export async function builderCacheBytes(builder: string): Promise<number | undefined> {
  const out = await read()`docker buildx du --builder ${builder}`
  return out.exitCode === 0 ? totalBytes(out.stdout) : undefined
}

export async function pruneSystem(o: CleanupOptions): Promise<CleanupRecord> {
  return measure(o, 'system', () => $`docker system prune -f`)
}

export async function pruneCacheAll(o: CleanupOptions): Promise<CleanupRecord[]> {
  const records = [await measure(o, 'full', () => $`docker builder prune -af`)]
  const builder = o.containerBuilder
  if (builder) records.push(await measure(o, 'full', () => $`docker buildx prune -af --builder ${builder}`))
  return records
}

/** Reads run for real even in a dry run (its spawn only prints): what `docker system df` says decides the cap. */
const read = () => $({ spawn: cp.spawn, nothrow: true, quiet: true, timeout: '60s' })

/** `docker system df` as rows: type (Images, Containers, Local Volumes, Build Cache), size and reclaimable bytes. */
export async function diskUsage(): Promise<Array<{ type: string; size: number; reclaimable: number }>> {
  const out = await read()`docker system df --format ${'{{json .}}'}`
  return out.stdout.split('\n').flatMap((line) => {
    try {
      const row = JSON.parse(line)
      const bytes = (text: unknown) => parseSize(String(text).split(' ')[0])
      return [{ type: String(row.Type), size: bytes(row.Size), reclaimable: bytes(row.Reclaimable) }]
    } catch {
      return [] // not a JSON line, or a size this parser does not know
    }
  })
}

/** Bytes in the daemon's build cache (docker system df), or undefined when it cannot be read. */
export async function buildCacheBytes(): Promise<number | undefined> {
  return (await diskUsage()).find((r) => r.type === 'Build Cache')?.size
}

/**
 * Runs a cleanup the disk budget asked for (lib/disk/budget-types.ts CleanRequest): docker rmi of the images first, then
 * the asked tiers in TIERS order until `targetFree` bytes are free. Resolves to what the engine reported removed
 * (statfs around a command that reports nothing) and the tiers that ran.
 */
export async function cleanUntil(request: CleanRequest, o: CleanupOptions): Promise<CleanOutcome> {
  const records = request.images.length ? [await removeImages(request.images, o)] : []
  const ran: Tier[] = []
  const order = TIER_ORDER[o.imageStore ?? 'graphdriver']
  for (const tier of order.filter((t) => request.tiers.includes(t)).map((t) => TIERS.find((x) => x.name === t)!)) {
    const free = o.run.free()
    if (free >= request.targetFree) break
    records.push(
      ...await tier.run(o, {
        staleSeconds: request.staleSeconds,
        gap: request.targetFree - free,
        cacheCap: request.cacheCap,
      }),
    )
    ran.push(tier.name)
  }
  return { reclaimed: records.reduce((sum, r) => sum + Math.max(0, r.reclaimed), 0), ran }
}

/** What the command itself says it removed: `Total reclaimed space: 1.2GB` (docker), `Total: 1.2GB` (buildx). */
export function reportedBytes(output: string): number | undefined {
  return totalBytes(output)
}

/**
 * How a cleanup's reclaimed bytes are told. `larger`: the engine's own total or the statfs gain, whichever is larger —
 * both lower bounds under a graph driver (dockerd 20.10 reports 0 B for pulled layers it shares with its image store:
 * "Total reclaimed space: 20MB" for 132 MB statfs gave back; builds writing meanwhile shrink the statfs gain).
 * `statfs`: the containerd image store, where the engine's total is no bound either way (0 B while freeing, or bytes
 * an image still holds). `reported`: a builder on another machine (nothing here changes).
 */
type Truth = 'larger' | 'statfs' | 'reported'

/** Runs one cleanup command under the lock and the timeout; records what it reclaimed, seconds and exit code. */
async function measure(
  o: CleanupOptions,
  tier: string,
  start: () => ProcessPromise,
  how: { exclusive?: boolean; truth?: Truth; gone?: (stderr: string) => boolean } = {},
): Promise<CleanupRecord> {
  const truth = how.truth ?? (o.imageStore === 'containerd' ? 'statfs' : 'larger')
  const body = async () => {
    const freeBefore = o.run.sample(`cleanup start ${tier}`)
    const t0 = Date.now()
    const p = start()
    const out = await p.nothrow().quiet().timeout(o.timeout)
    // a failure that only says what it was to remove is already gone: done, not failed
    const exitCode = out.exitCode !== 0 && how.gone?.(out.stderr) ? 0 : out.exitCode
    const freeAfter = o.run.sample(`cleanup end ${tier}`)
    const reported = o.run.dry ? undefined : reportedBytes(out.stdout)
    const gained = freeAfter - freeBefore
    const rec: CleanupRecord = {
      command: p.cmd,
      tier,
      reclaimed: truth === 'statfs'
        ? gained
        : truth === 'reported'
        ? reported ?? 0
        : Math.max(reported ?? -Infinity, gained),
      ...(reported !== undefined ? { reported } : {}),
      seconds: (Date.now() - t0) / 1000,
      exitCode,
      freeBefore,
      freeAfter,
      at: now(),
      timedOut: out.signal === 'SIGTERM' || undefined,
    }
    o.run.addCleanup(rec)
    explain(rec, out.stdout + out.stderr, o, truth)
    return rec
  }
  return how.exclusive === false ? body() : o.lock.run(body)
}

/** Why a cleanup that reclaimed nothing under pressure did, per image store. */
const NOTHING_HINT: Record<ImageStore, string> = {
  graphdriver: 'is the cache somewhere else (another builder, another daemon)?',
  containerd: 'under the containerd image store a layer is freed only once no image and no cache record holds it: ' +
    'are images still tagged here (docker images), or the cache in another builder?',
}

/** One line per cleanup; a dry run says nothing (its command was printed, nothing was measured). */
function explain(rec: CleanupRecord, output: string, o: CleanupOptions, truth: Truth) {
  if (o.run.dry) return
  const engineSaid = rec.reported !== undefined && truth === 'statfs'
    ? ` (the engine said ${formatBytes(rec.reported)})`
    : ''
  const line = `${rec.command}: ${formatBytes(rec.reclaimed)}${engineSaid} in ${seconds(rec.seconds * 1000)}`
  if (rec.timedOut) report.warn(`${rec.command} timed out after ${seconds(o.timeout)} and was killed; the run goes on`)
  else if (rec.exitCode !== 0) report.warn(`${rec.command} exited ${rec.exitCode}: ${output.trim().split('\n').pop()}`)
  else if (
    truth !== 'reported' && rec.reclaimed <= 0 && rec.freeAfter <= rec.freeBefore && rec.freeBefore < o.lowWater
  ) {
    report.warn(
      `${rec.command} reclaimed nothing${engineSaid} while only ${formatBytes(rec.freeBefore)} is free: ${
        NOTHING_HINT[o.imageStore ?? 'graphdriver']
      }`,
    )
  } else report.dim(`  cleanup ${line}`)
}

/** What holds the disk, from `docker system df`, with what to do about each kind (for a target not reached). */
async function explainHolders(): Promise<string[]> {
  const hint: Record<string, string> = {
    Images: 'tagged images no tier removes: `docker image prune -af`, or --images TAG',
    Containers: 'stopped containers: `docker container prune -f`',
    'Local Volumes': 'volumes: `docker volume prune -f` (data in them is lost)',
    'Build Cache': 'build cache in use by a running build, or in another builder (--builder NAME)',
  }
  return (await diskUsage()).filter((r) => r.size > 0)
    .map((r) =>
      `${r.type}: ${formatBytes(r.size)} (${formatBytes(r.reclaimable)} reclaimable)${
        r.reclaimable > 0 && hint[r.type] ? ` — ${hint[r.type]}` : ''
      }`
    )
}

async function main(argv: string[]) {
  const { flags } = parseFlags(FLAGS, argv, process.env)
  if (flags.help) {
    return void console.log(
      renderHelp(
        'npx bun scripts/prune.ts [--until-free SIZE | --tier TIER] [flags]\n       npx bun scripts/prune.ts --registry PREFIX --keep-keys N [--yes]',
        'Measured Docker cleanups: rmi, stale and capped build-cache prunes, system prune, full prune (daemon and ' +
          'buildx builder).\nWith --registry: registry retention instead, not a disk cleanup (no daemon needed): the ' +
          "fleet's older keys go from its registry; the registry's own GC frees the bytes.\nExit codes: 0 done · 1 a " +
          'cleanup or a deletion failed, or --until-free was not reached · 2 bad usage · 3 no daemon.',
        FLAGS,
      ),
    )
  }
  // registry retention: a registry, not this machine's disk (scripts/_retention.ts)
  if (flags.registry !== undefined) return registryRetention({ ...flags, registry: flags.registry }, process.env)
  configureReport({ github: inGitHubActions(process.env), secrets: secretValues(process.env), comments: flags.dryRun })
  const pre = await preflight({ minFree: 0, dataRoot: flags.dataRoot, builder: flags.builder })
  printChecks(pre)
  if (!pre.server) throw new PreflightError(['the Docker daemon does not answer'])
  // a run of its own for the disk samples and the cleanup records; what it reports is printed, so its files go
  const scratch = fs.mkdtempSync(path.join(os.tmpdir(), 'imagefleet-prune-'))
  try {
    return await prune(flags, pre, new Run(scratch, pre.dataRoot, flags.dryRun))
  } finally {
    fs.rmSync(scratch, { recursive: true, force: true })
  }
}

async function prune(flags: Flags<typeof FLAGS>, pre: Preflight, run: Run): Promise<number> {
  const o: CleanupOptions = {
    ...cleanupTargets(pre),
    run,
    lock: new Mutex(),
    timeout: flags.timeout,
    lowWater: flags.untilFree ?? 0,
  }
  if (flags.dryRun) $.spawn = dryRunSpawn((c) => console.log(c), $.prefix)
  report.phase('prune')
  const tier = TIERS.find((t) => t.name === flags.tier)
  const args: TierArgs = {
    staleSeconds: flags.staleAfter / 1000,
    gap: 0,
    cacheCap: flags.cacheCap ?? (flags.tier ? 0 : undefined),
  }
  if (flags.images.length) await removeImages(flags.images, o)
  if (tier) await tier.run(o, args)
  else if (flags.untilFree !== undefined) {
    report.info(
      `tiers cheapest first until ${formatBytes(flags.untilFree)} is free: ${TIER_ORDER[o.imageStore!].join(', ')}${
        flags.dryRun ? ' (a real run stops at the first tier that gets there)' : ''
      }`,
    )
    await cleanUntil({
      why: '--until-free',
      images: [],
      tiers: TIER_NAMES,
      staleSeconds: args.staleSeconds,
      targetFree: flags.untilFree,
    }, o)
  } else if (!flags.images.length) {
    report.info('nothing asked: give --until-free SIZE, --tier TIER or --images TAG (see --help)')
  }
  if (flags.dryRun) return 0
  const total = run.cleanups.reduce((s, r) => s + Math.max(0, r.reclaimed), 0)
  report.info(`${run.cleanups.length} cleanups, ${formatBytes(total)} reclaimed, ${formatBytes(run.free())} free`)
  const short = flags.untilFree !== undefined && run.free() < flags.untilFree
  if (short) {
    report.error(
      `--until-free ${formatBytes(flags.untilFree!)} not reached: ${
        formatBytes(run.free())
      } free after every tier. What holds the disk (docker system df):\n${
        (await explainHolders()).map((l) => `  ${l}`).join('\n')
      }`,
    )
  }
  return short || run.cleanups.some((r) => r.exitCode !== 0) ? 1 : 0
}

if (import.meta.main) runMain(() => main(process.argv.slice(2)))
