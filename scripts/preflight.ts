#!/usr/bin/env bun
// preflight: cheap checks before anything is built. Writes OUT/preflight.json; exit 3 when a check fails.
//   npx bun scripts/preflight.ts --registry 127.0.0.1:5000/fleet --min-free 20GB
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { $, type ProcessOutput } from 'zx'
import { type FlagTable, parseFlags, renderHelp, UsageError } from '../lib/cli/flags.ts'
import { PreflightError, runMain } from '../lib/cli/main.ts'
import { sampleDisk } from '../lib/disk/statfs.ts'
import { formatBytes } from '../lib/cli/size.ts'
import { configureReport, mask, report, secretValues } from '../lib/cli/report.ts'
import { registryAnswers } from '../lib/registry/ping.ts'
import { parsePrefix, prefixHost } from '../lib/registry/ref.ts'
import { parseReferenceFlag } from '../lib/fleet/fleet.ts'
import { type Check, type Engine, type Preflight } from '../lib/engine/facts.ts'
import { RUN_FLAGS } from '../lib/engine/options.ts'
import { lastErrorLine } from '../lib/run/error-line.ts'
import { inGitHubActions } from '../lib/cli/environment.ts'
import {
  helpFlags,
  type InfoAnswer,
  parseBuildxInspect,
  parseBuildxVersion,
  parseInfo,
  parseVersion,
} from '../lib/engine/answers.ts'
import { boundFlag, DRIVERS, onThisDisk, pruneFlagsOf } from '../lib/engine/capabilities.ts'
import type { RegistryClient } from '../lib/registry/client.ts'
import { type Allowance, describeAllowance, pullAllowance } from '../lib/registry/pull-budget.ts'
import type { ImageRef } from '../lib/registry/ref.ts'

export type { Check, Preflight, PruneFlags } from '../lib/engine/facts.ts'

export const FLAGS = {
  registry: { type: 'string', arg: 'PREFIX', help: 'Registry (or PREFIX) to check it answers' },
  'min-free': { type: 'size', default: '1GB', help: 'Fail when the Docker data root has less free space' },
  'data-root': {
    type: 'string',
    arg: 'PATH',
    help: "Where this machine sees the daemon's data root, when not at the path `docker info` reports",
  },
  builder: { type: 'string', arg: 'NAME', help: 'buildx builder to inspect (default: the selected one)' },
  network: { ...RUN_FLAGS.network, help: `${RUN_FLAGS.network.help}; the RUN check builds with it` },
  out: { type: 'string', arg: 'DIR', default: 'builds', help: 'Writes DIR/preflight.json' },
  'insecure-registry': {
    type: 'list',
    arg: 'HOST',
    help:
      "Plain HTTP for registry HOST[:PORT], besides the daemon's insecure-registries (from docker info) and loopback",
  },
} as const satisfies FlagTable

export type PreflightOptions = {
  registry?: string
  minFree: number
  dataRoot?: string
  builder?: string
  /** check that a RUN step can start, building with `network` (the builds' --network); prune skips it */
  checkRun?: boolean
  network?: string
  out?: string
  /** Registries spoken to over plain HTTP besides the daemon's own insecure ones (--insecure-registry). */
  insecureRegistry?: string[]
}

/** The RUN check: a build of an empty image whose one RUN execs a file that is not there (no image to pull). */
const RUN_PROBE = '/imagefleet-run-check'
/** What the probe's output tells, first match wins. */
const RUN_ANSWERS: Array<{ pattern: RegExp; ok: boolean; why: string }> = [
  // runc says `stat /x: no such file or directory`, crun `executable file /x not found`: the step's container
  // started (namespaces, network, mounts) and got as far as exec — all a RUN needs from the engine
  {
    pattern: /stat \/imagefleet-run-check: no such file|executable file [`'"]?\/imagefleet-run-check[`'"]? not found/,
    ok: true,
    why: 'started',
  },
  // BuildKit cannot give the step the network it asks for (a dockerd with --bridge=none and the default network)
  {
    pattern: /network \S+ not found|network mode \S+ not supported|failed to (create|set up) network/i,
    ok: false,
    why: 'network',
  },
]

/** Runs every check; never throws for a failed check (the caller decides). */
export async function preflight(o: PreflightOptions): Promise<Preflight> {
  const checks: Check[] = []
  const result: Preflight = { ok: false, checks, pruneFlags: { maxUsed: false, minFree: false } }
  const api = await checkDaemon(result)
  const info = result.server ? await readEngineInfo() : undefined
  if (result.server) checkDataRoot(result, o, info)
  await checkBuildx(result, o.builder)
  if (result.server) await detectCleanupCommands(result, info, api)
  readInsecureRegistries(result, info, o.insecureRegistry ?? [])
  if (result.server && o.checkRun) await checkRun(result, o)
  if (o.registry) await checkRegistry(result, o.registry)
  result.ok = checks.every((c) => c.ok)
  if (o.out) writeResult(o.out, result)
  return result
}

async function checkDaemon(r: Preflight): Promise<string | undefined> {
  const out = await $`docker version --format ${'{{json .}}'}`.nothrow().quiet().timeout('30s')
  const v = parseVersion(out.stdout)
  r.client = v.client
  r.server = v.server
  r.checks.push(
    r.server ? { name: 'daemon', ok: true, detail: `client ${r.client}, daemon ${r.server} (API ${v.api ?? '?'})` } : {
      name: 'daemon',
      ok: false,
      detail: lastLine(out.stderr) || 'no answer',
      fix: 'start dockerd, or point DOCKER_HOST at a running daemon',
    },
  )
  return v.api
}

/** `docker info` once: the data root, the image store (graph driver or containerd snapshotter), insecure registries. */
async function readEngineInfo(): Promise<InfoAnswer | undefined> {
  const out = await $`docker info --format ${'{{json .}}'}`.nothrow().quiet().timeout('30s')
  return parseInfo(out.stdout)
}

function checkDataRoot(r: Preflight, o: PreflightOptions, info: InfoAnswer | undefined) {
  const reported = info?.dataRoot
  const local = o.dataRoot ?? reported
  if (!local || !fs.existsSync(local)) {
    r.checks.push({
      name: 'data root',
      ok: false,
      detail: `the daemon keeps its data in ${reported ?? '(unknown)'}, which is not visible on this machine`,
      fix: 'pass --data-root PATH where this machine sees it (free space cannot be measured otherwise)',
    })
    return
  }
  r.dataRoot = local
  r.free = sampleDisk(local).free
  const enough = r.free >= o.minFree
  r.checks.push({
    name: 'free space',
    ok: enough,
    detail: `${formatBytes(r.free)} free on the filesystem of ${local} (need ${formatBytes(o.minFree)})`,
    fix: enough ? undefined : 'free disk first (npx bun scripts/free-disk.ts) or lower --min-free',
  })
}

async function checkBuildx(r: Preflight, builder?: string) {
  const version = await $`docker buildx version`.nothrow().quiet().timeout('30s')
  const buildx = version.exitCode === 0 ? parseBuildxVersion(version.stdout) : undefined
  if (!buildx) {
    r.checks.push({
      name: 'buildx',
      ok: !builder,
      detail: 'not installed: bases are built with docker build + docker push',
      fix: builder ? `--builder ${builder} needs buildx: install the docker-buildx plugin` : undefined,
    })
    return
  }
  const inspect = await $`docker buildx inspect ${builder ? [builder] : []}`.nothrow().quiet().timeout('60s')
  const b = parseBuildxInspect(inspect.stdout)
  r.buildx = {
    version: buildx,
    builder: b.name ?? builder ?? 'default',
    driver: b.driver ?? 'unknown',
    buildkit: b.buildkit,
    endpoint: b.endpoint,
  }
  r.checks.push({
    name: 'buildx',
    ok: inspect.exitCode === 0,
    detail: `${r.buildx.version}, builder ${r.buildx.builder} (driver ${r.buildx.driver}, BuildKit ${
      r.buildx.buildkit ?? '?'
    }, endpoint ${r.buildx.endpoint ?? '?'}): its cache lives in ${
      DRIVERS[r.buildx.driver]?.why ?? 'an unknown place'
    }`,
    fix: inspect.exitCode === 0 ? undefined : `docker buildx inspect failed: ${lastLine(inspect.stderr)}`,
  })
}

/**
 * Which cleanup commands and flags this combination accepts, read from each command's own --help (flags move between
 * versions, and a deprecated one is hidden: see README "Engines"): `docker builder prune` (the daemon's default
 * builder; buildx answers it on Docker ≥ 23), and with buildx `docker buildx prune` and `docker buildx du`, which
 * take `--builder NAME`. `--max-used-space` / `--min-free-space` also need the builder's BuildKit ≥ 0.17.
 */
async function detectCleanupCommands(r: Preflight, info: InfoAnswer | undefined, api: string | undefined) {
  const listed = (out: ProcessOutput, command: string) =>
    out.exitCode === 0 ? helpFlags(out.stdout, command) : undefined
  const daemon = listed(await $`docker builder prune --help`.nothrow().quiet().timeout('30s'), 'builder prune')
  const buildxPrune = r.buildx
    ? listed(await $`docker buildx prune --help`.nothrow().quiet().timeout('30s'), 'buildx prune')
    : undefined
  const buildxDu = r.buildx
    ? listed(await $`docker buildx du --help`.nothrow().quiet().timeout('30s'), 'buildx du')
    : undefined
  const driver = r.buildx?.driver
  // the daemon's BuildKit is the inspected builder's only when that builder is the docker driver
  r.pruneFlags = pruneFlagsOf(daemon, driver === 'docker' ? r.buildx?.buildkit : undefined) ??
    { maxUsed: false, minFree: false }
  const named = r.buildx && driver !== 'docker' && buildxPrune?.includes('--builder') ? r.buildx.builder : undefined
  r.builderPruneFlags = named ? pruneFlagsOf(buildxPrune, r.buildx?.buildkit) : undefined
  r.engine = describeEngine(r, info, api, { daemon, buildxPrune, buildxDu, named })
  const p = r.engine.prunes
  r.checks.push({
    name: 'cleanup',
    ok: true,
    detail: `${p.daemon} (${flagWords(r.pruneFlags)})${
      p.builder ? `; ${p.builder} (${flagWords(r.builderPruneFlags)})` : ''
    }${p.usage ? `; usage: ${p.usage}` : ''}${
      p.bound ? `; --builder-max-used: ${p.bound} SIZE` : ''
    }; image store: ${r.engine.imageStore}${info?.storageDriver ? ` (${info.storageDriver})` : ''}`,
  })
}

/** preflight.json `engine`: versions, image store, what each cleanup command accepts, and the commands chosen. */
function describeEngine(
  r: Preflight,
  info: InfoAnswer | undefined,
  api: string | undefined,
  h: { daemon?: string[]; buildxPrune?: string[]; buildxDu?: string[]; named?: string },
): Engine {
  const local = h.named && onThisDisk(r.buildx?.driver)
  const bound = boundFlag(r.builderPruneFlags)
  return {
    client: r.client,
    server: r.server,
    api,
    imageStore: info?.imageStore ?? 'graphdriver',
    storageDriver: info?.storageDriver,
    accepts: {
      'builder prune': h.daemon ?? null,
      'buildx prune': h.buildxPrune ?? null,
      'buildx du': h.buildxDu ?? null,
    },
    prunes: {
      daemon: 'docker builder prune',
      ...(local ? { builder: `docker buildx prune --builder ${h.named}` } : {}),
      ...(h.named && h.buildxDu?.includes('--builder') ? { usage: `docker buildx du --builder ${h.named}` } : {}),
      ...(h.named && bound ? { bound: `docker buildx prune --builder ${h.named} ${bound}` } : {}),
    },
  }
}

const flagWords = (f: Preflight['pruneFlags'] | undefined) =>
  [
    f?.keep ?? 'no cache cap',
    f?.maxUsed && '--max-used-space',
    f?.minFree && '--min-free-space',
    f?.until && '--filter until=',
  ]
    .filter(Boolean).join(', ')

/**
 * The registries the daemon speaks plain HTTP to (its insecure-registries: by name in IndexConfigs with Secure
 * false, or by CIDR), plus --insecure-registry: the registry client follows the same rule as docker (ping.ts).
 */
function readInsecureRegistries(r: Preflight, info: InfoAnswer | undefined, extra: string[]) {
  const daemon = info?.registryConfig ?? {}
  const named = Object.values(daemon.IndexConfigs ?? {}).filter((i) => i.Secure === false && i.Name)
  r.insecure = { names: [...named.map((i) => i.Name!), ...extra], cidrs: daemon.InsecureRegistryCIDRs ?? [] }
}

/**
 * Can a RUN step run? Honest on a fresh engine (nothing to pull: the image is empty) and on a runner alike. What it
 * cannot tell: whether your images have the shell and tools your RUN lines call.
 */
async function checkRun(r: Preflight, o: PreflightOptions) {
  const context = fs.mkdtempSync(path.join(os.tmpdir(), 'imagefleet-run-check-'))
  fs.writeFileSync(path.join(context, 'Dockerfile'), `FROM scratch\nRUN ["${RUN_PROBE}"]\n`)
  const network = o.network ? ['--network', o.network] : []
  const out = o.builder
    ? await $`docker buildx build --builder ${o.builder} --progress=plain ${network} ${context}`.nothrow().quiet()
      .timeout('2m')
    : await $`docker build --progress=plain ${network} ${context}`.nothrow().quiet().timeout('2m')
  fs.rmSync(context, { recursive: true, force: true })
  const answer = RUN_ANSWERS.find((a) => a.pattern.test(out.stdout + out.stderr))
  const mode = `network ${o.network ?? 'default'}`
  if (answer?.ok) {
    return void r.checks.push({ name: 'RUN steps', ok: true, detail: `a RUN step starts (${mode})` })
  }
  r.checks.push({
    name: 'RUN steps',
    ok: false,
    detail: `a RUN step cannot start (${mode}): ${lastErrorLine(out.stderr, out.stdout) ?? `exit ${out.exitCode}`}`,
    fix: answer?.why === 'network'
      ? 'the daemon has no such network: pass --network none (RUN steps then have no network), or give dockerd a ' +
        "bridge; the sandbox's env sets IMAGEFLEET_NETWORK=none"
      : 'every build with a RUN step would fail the same way: check the engine (its runtime, or the builder)',
  })
}

async function checkRegistry(r: Preflight, registry: string) {
  const host = prefixHost(registry)
  const answer = await registryAnswers(host, { insecure: r.insecure })
  r.checks.push(
    answer.ok ? { name: 'registry', ok: true, detail: `${host} answers at ${answer.url} (${answer.status})` } : {
      name: 'registry',
      ok: false,
      detail: `${host}: ${answer.url}: ${answer.error}`,
      fix: 'check --registry, that the registry is up, and the network from this runner',
    },
  )
}

/** What a run will pull from one upstream registry: manifest pulls, one image to ask the allowance with (or its answer). */
export type PullNeed = { registry: string; pulls: number; sample: ImageRef; allowance?: Allowance }

/**
 * The pull budget (issue 12): what each upstream registry says is left (Docker Hub's ratelimit headers, read from a
 * manifest HEAD, which is free) against the pulls this run will make. It needs the plan, so the building scripts and
 * mirror call it once they know what they will pull. `fail`: not enough left is a preflight failure (exit 3, nothing
 * pulled); `warn`: a warning. A registry that states no limit passes.
 */
export async function checkPullBudget(
  needs: PullNeed[],
  o: { client: RegistryClient; policy: 'warn' | 'fail' | 'off' },
): Promise<Check[]> {
  if (o.policy === 'off') return []
  const checks: Check[] = []
  for (const need of needs.filter((n) => n.pulls > 0)) {
    const allowance = need.allowance ?? await pullAllowance(o.client, need.sample).catch((e: Error) => e)
    const name = `pull budget ${need.registry}`
    const wants = `this run needs ${need.pulls} pulls`
    if (allowance instanceof Error) {
      checks.push({ name, ok: true, detail: `${wants}; the allowance could not be read: ${allowance.message}` })
    } else if (!allowance) checks.push({ name, ok: true, detail: `${wants}; the registry states no pull limit` })
    else {
      const enough = allowance.remaining >= need.pulls
      const fix = enough
        ? undefined
        : 'log in (--registry-user/--password-env, or docker login) for a bigger allowance, ' +
          'mirror once and build from the mirror (--mirror), build fewer (--limit, --shard), or wait for the window'
      checks.push({
        name,
        ok: enough || o.policy === 'warn',
        detail: `${describeAllowance(allowance)}; ${wants}${
          enough ? '' : ` — ${need.pulls - allowance.remaining} short`
        }`,
        fix,
      })
    }
  }
  for (const c of checks) {
    if (c.fix && c.ok) report.warn(`${c.name}: ${c.detail} → ${c.fix}`)
    else printChecks({ checks: [c] })
  }
  const failed = checks.filter((c) => !c.ok)
  if (failed.length) throw new PreflightError(failed.map((c) => `${c.name}: ${c.detail} → ${c.fix}`))
  return checks
}

export function printChecks(r: Pick<Preflight, 'checks'>) {
  for (const c of r.checks) {
    if (c.ok) report.ok(`${c.name}: ${c.detail}`)
    else report.fail(`${c.name}: ${c.detail}${c.fix ? `\n    → ${c.fix}` : ''}`)
  }
}

function writeResult(out: string, r: Preflight) {
  fs.mkdirSync(out, { recursive: true })
  fs.writeFileSync(path.join(out, 'preflight.json'), mask(JSON.stringify(r, null, 2)) + '\n')
}

const lastLine = (text: string) => text.trim().split('\n').pop() ?? ''

async function main(argv: string[]) {
  const { flags } = parseFlags(FLAGS, argv, process.env)
  if (flags.help) {
    return void console.log(
      renderHelp(
        'npx bun scripts/preflight.ts [flags]',
        'Checks the daemon, its data root and free space, buildx and its prune flags, that a RUN step can start (a ' +
          'build of an empty image with --network), and the registry; writes OUT/preflight.json.',
        FLAGS,
      ),
    )
  }
  const problems: string[] = []
  if (flags.registry !== undefined) parseReferenceFlag('registry', flags.registry, parsePrefix, problems)
  if (problems.length) throw new UsageError(problems.join('\n'), problems)
  configureReport({ github: inGitHubActions(process.env), secrets: secretValues(process.env) })
  report.phase('preflight')
  const result = await preflight({ ...flags, checkRun: true, out: flags.out })
  printChecks(result)
  if (!result.ok) {
    throw new PreflightError(
      result.checks.filter((c) => !c.ok).map((c) => `${c.name}: ${c.detail}${c.fix ? ` → ${c.fix}` : ''}`),
    )
  }
  report.info(`preflight ok → ${path.join(flags.out, 'preflight.json')}`)
}

if (import.meta.main) runMain(() => main(process.argv.slice(2)))
