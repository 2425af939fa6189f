#!/usr/bin/env bun
// prune: the cleanup commands, each one measured (statfs of the data root before and after, seconds,
// exit code) and logged. One prune at a time (a shared Mutex), every prune with a timeout.
//   npx bun scripts/prune.ts --until-free 20GB        tiers, cheapest first, until 20 GB are free
//   npx bun scripts/prune.ts --tier full --dry-run     what a full prune would run
import { $, type ProcessPromise } from 'zx'
import { type FlagTable, parseFlags, renderHelp } from '../lib/cli/flags.ts'
import { PreflightError, runMain } from '../lib/cli/main.ts'
import { Mutex } from '../lib/disk/prune-lock.ts'
import { configureReport, report, seconds, secretValues } from '../lib/cli/report.ts'
import { type CleanupRecord, now, Run } from '../lib/run/records.ts'
import { dockerSize, formatBytes, parseSize } from '../lib/cli/size.ts'
import { dryRunSpawn } from '../lib/cli/dry-run.ts'
import { preflight, printChecks } from './preflight.ts'
import type { CleanupOptions } from '../lib/engine/options.ts'
import { inGitHubActions } from '../lib/cli/environment.ts'

/** The tiers, cheapest first. Each keeps as much warm cache as the target allows. */
export const TIERS = [
  // records no build has used since the oldest image in flight started: they belong to finished images.
  // Time-based, because under dockerd's own BuildKit pulled layers are shared with the image store and
  // count 0 bytes, so a size cap never reaches them (measured: --keep-storage freed 10 MB of 2 GB)
  {
    name: 'stale',
    why: 'build cache that only finished images used (not used since the oldest build in flight started)',
  },
  // LRU cap on the build cache: drops the oldest records first, so shared builder and environment
  // layers that the next images need (used recently) stay warm
  { name: 'cache-cap', why: 'cap the build cache at what the target allows, oldest records first' },
  // dangling images and stopped containers; also every unused record of the default builder's cache
  { name: 'system', why: 'dangling images, stopped containers, unused networks and cache' },
  // everything BuildKit holds, in the daemon and in the selected buildx builder (docker-container driver)
  { name: 'full', why: 'all build cache, including the buildx builder that holds it' },
] as const
export type Tier = (typeof TIERS)[number]['name']

export const FLAGS = {
  tier: {
    type: 'string',
    arg: 'TIER',
    choices: TIERS.map((t) => t.name),
    help: `Run one tier: ${TIERS.map((t) => t.name).join(', ')}`,
  },
  'until-free': { type: 'size', help: 'Run tiers cheapest first until this much is free' },
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
} as const satisfies FlagTable

/** docker rmi of images already pushed (not a prune: takes no lock). Untagging frees little under BuildKit. */
export async function removeImages(tags: string[], o: CleanupOptions): Promise<CleanupRecord> {
  return measure(o, 'rmi', () => $`docker rmi ${tags}`, false)
}

/** Prunes build-cache records unused for `seconds` (in-use records are never pruned). */
export async function pruneStaleCache(seconds: number, o: CleanupOptions): Promise<CleanupRecord[]> {
  const age = `${Math.max(1, Math.floor(seconds))}s`
  const records = [await measure(o, 'stale', () => $`docker builder prune -af --filter until=${age}`)]
  const builder = o.containerBuilder
  if (builder) {
    records.push(await measure(o, 'stale', () => $`docker buildx prune -af --builder ${builder} --filter until=${age}`))
  }
  return records
}

/** Caps the build cache at `keep` bytes with the flag this client accepts; undefined when none exists. */
export async function pruneCacheCapped(keep: number, o: CleanupOptions): Promise<CleanupRecord[]> {
  const flag = o.pruneFlags.keep
  if (!flag) return []
  const records = [await measure(o, 'cache-cap', () => $`docker builder prune -af ${flag} ${dockerSize(keep)}`)]
  const builder = o.containerBuilder
  if (builder) {
    records.push(
      await measure(o, 'cache-cap', () => $`docker buildx prune -af --builder ${builder} ${flag} ${dockerSize(keep)}`),
    )
  }
  return records
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

/** Bytes in the daemon's build cache (docker system df), or undefined when it cannot be read. */
export async function buildCacheBytes(): Promise<number | undefined> {
  const out = await $`docker system df --format ${'{{json .}}'}`.nothrow().quiet().timeout('60s')
  for (const line of out.stdout.split('\n')) {
    try {
      const row = JSON.parse(line)
      if (row.Type === 'Build Cache') return parseSize(String(row.Size).replace(/B$/, 'B'))
    } catch { /* not a JSON line */ }
  }
}

/**
 * Runs tiers cheapest first until `targetFree` bytes are free; stops as soon as they are.
 * Resolves to the bytes reclaimed in all (signed).
 */
export async function cleanUntil(
  targetFree: number,
  o: CleanupOptions,
  staleSeconds?: number,
  tiers: readonly Tier[] = TIERS.map((t) => t.name),
): Promise<number> {
  const start = o.run.free()
  for (const tier of tiers) {
    const free = o.run.free()
    if (free >= targetFree) break
    if (tier === 'stale' && staleSeconds !== undefined) await pruneStaleCache(staleSeconds, o)
    if (tier === 'cache-cap') {
      const cache = (await buildCacheBytes()) ?? 0
      if (cache > 0) await pruneCacheCapped(Math.max(0, cache - (targetFree - free)), o)
    }
    if (tier === 'system') await pruneSystem(o)
    if (tier === 'full') await pruneCacheAll(o)
  }
  return o.run.free() - start
}

/** The field's policy after every image: rmi, system prune, builder prune (capped when --cache-cap). */
export async function perImageCleanup(tags: string[], cap: number | undefined, o: CleanupOptions): Promise<void> {
  await removeImages(tags, o)
  await pruneSystem(o)
  if (cap !== undefined && o.pruneFlags.keep) await pruneCacheCapped(cap, o)
  else await pruneCacheAll(o)
}

/** Runs one cleanup command under the lock and the timeout; records bytes reclaimed, seconds, exit code. */
async function measure(
  o: CleanupOptions,
  tier: string,
  start: () => ProcessPromise,
  exclusive = true,
): Promise<CleanupRecord> {
  const body = async () => {
    const freeBefore = o.run.sample(`cleanup start ${tier}`)
    const t0 = Date.now()
    const p = start()
    const out = await p.nothrow().quiet().timeout(o.timeout)
    const freeAfter = o.run.sample(`cleanup end ${tier}`)
    const rec: CleanupRecord = {
      command: p.cmd,
      tier,
      reclaimed: freeAfter - freeBefore,
      seconds: (Date.now() - t0) / 1000,
      exitCode: out.exitCode,
      freeBefore,
      freeAfter,
      at: now(),
      timedOut: out.signal === 'SIGTERM' || undefined,
    }
    o.run.addCleanup(rec)
    explain(rec, out.stdout + out.stderr, o)
    return rec
  }
  return exclusive ? o.lock.run(body) : body()
}

function explain(rec: CleanupRecord, output: string, o: CleanupOptions) {
  const line = `${rec.command}: ${formatBytes(rec.reclaimed)} in ${seconds(rec.seconds * 1000)}`
  if (rec.timedOut) report.warn(`${rec.command} timed out after ${seconds(o.timeout)} and was killed; the run goes on`)
  else if (rec.exitCode !== 0) report.warn(`${rec.command} exited ${rec.exitCode}: ${output.trim().split('\n').pop()}`)
  else if (rec.reclaimed <= 0 && rec.freeBefore < o.lowWater && !o.run.dry) {
    report.warn(
      `${rec.command} reclaimed nothing while only ${
        formatBytes(rec.freeBefore)
      } is free: is the cache somewhere else (another builder, another daemon)?`,
    )
  } else report.dim(`  cleanup ${line}`)
}

export function printCleanups(records: CleanupRecord[]) {
  for (const r of records) {
    report.info(
      `  ${r.exitCode === 0 ? '✓' : '✗'} ${r.command}  ${formatBytes(r.reclaimed)}  ${
        seconds(r.seconds * 1000)
      }  rc=${r.exitCode}`,
    )
  }
}

async function main(argv: string[]) {
  const { flags } = parseFlags(FLAGS, argv, process.env)
  if (flags.help) {
    return void console.log(
      renderHelp(
        'npx bun scripts/prune.ts [--until-free SIZE | --tier TIER] [flags]',
        'Measured Docker cleanups: rmi, capped build-cache prune, system prune, full prune (daemon and buildx builder).',
        FLAGS,
      ),
    )
  }
  configureReport({ github: inGitHubActions(process.env), secrets: secretValues(process.env) })
  const pre = await preflight({ minFree: 0, dataRoot: flags.dataRoot, builder: flags.builder })
  printChecks(pre)
  if (!pre.server) throw new PreflightError(['the Docker daemon does not answer'])
  const run = new Run(`/tmp/imagefleet-prune-${process.pid}`, pre.dataRoot, flags.dryRun)
  const o: CleanupOptions = {
    run,
    lock: new Mutex(),
    pruneFlags: pre.pruneFlags,
    timeout: flags.timeout,
    lowWater: flags.untilFree ?? 0,
    containerBuilder: pre.buildx && pre.buildx.driver !== 'docker' ? pre.buildx.builder : undefined,
  }
  if (flags.dryRun) $.spawn = dryRunSpawn((c) => console.log(c), $.prefix)
  report.phase('prune')
  if (flags.images.length) await removeImages(flags.images, o)
  if (flags.tier === 'cache-cap') await pruneCacheCapped(flags.cacheCap ?? 0, o)
  else if (flags.tier === 'stale') await pruneStaleCache((flags.staleAfter ?? 600_000) / 1000, o)
  else if (flags.tier === 'system') await pruneSystem(o)
  else if (flags.tier === 'full') await pruneCacheAll(o)
  else if (flags.untilFree !== undefined) await cleanUntil(flags.untilFree, o, flags.staleAfter / 1000)
  else if (!flags.images.length) {
    report.info('nothing asked: give --until-free SIZE, --tier TIER or --images TAG (see --help)')
  }
  const total = run.cleanups.reduce((s, r) => s + r.reclaimed, 0)
  report.info(`${run.cleanups.length} cleanups, ${formatBytes(total)} reclaimed, ${formatBytes(run.free())} free`)
  return run.cleanups.some((r) => r.exitCode !== 0) ? 1 : 0
}

if (import.meta.main) runMain(() => main(process.argv.slice(2)))
