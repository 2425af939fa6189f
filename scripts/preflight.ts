#!/usr/bin/env bun
// preflight: cheap checks before anything is built. Writes OUT/preflight.json; exit 3 when a check fails.
//   bun run scripts/preflight.ts --registry 127.0.0.1:5000/fleet --min-free 20GB
import fs from 'node:fs'
import path from 'node:path'
import { $ } from 'zx'
import { type FlagTable, parseFlags, renderHelp } from '../lib/cli/flags.ts'
import { PreflightError, runMain } from '../lib/cli/main.ts'
import { sampleDisk } from '../lib/disk/statfs.ts'
import { formatBytes } from '../lib/cli/size.ts'
import { configureReport, mask, report, secretValues } from '../lib/cli/report.ts'
import { registryAnswers, registryHost } from '../lib/registry/ping.ts'
import type { RegistryClient } from '../lib/registry/client.ts'
import { type Allowance, describeAllowance, pullAllowance } from '../lib/registry/pull-budget.ts'
import type { ImageRef } from '../lib/registry/ref.ts'
import { type Check, type Preflight, versionAtLeast } from '../lib/engine/facts.ts'

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
  out?: string
  /** Registries spoken to over plain HTTP besides the daemon's own insecure ones (--insecure-registry). */
  insecureRegistry?: string[]
}

/** Runs every check; never throws for a failed check (the caller decides). */
export async function preflight(o: PreflightOptions): Promise<Preflight> {
  const checks: Check[] = []
  const result: Preflight = { ok: false, checks, pruneFlags: { maxUsed: false, minFree: false } }
  await checkDaemon(result)
  if (result.server) await checkDataRoot(result, o)
  await checkBuildx(result, o.builder)
  if (result.server) await detectPruneFlags(result)
  await readInsecureRegistries(result, o.insecureRegistry ?? [])
  if (o.registry) await checkRegistry(result, o.registry)
  result.ok = checks.every((c) => c.ok)
  if (o.out) writeResult(o.out, result)
  return result
}

async function checkDaemon(r: Preflight) {
  const out = await $`docker version --format ${'{{json .}}'}`.nothrow().quiet().timeout('30s')
  const v = safeJson(out.stdout)
  r.client = v?.Client?.Version
  r.server = v?.Server?.Version
  r.checks.push(
    r.server ? { name: 'daemon', ok: true, detail: `client ${r.client}, daemon ${r.server}` } : {
      name: 'daemon',
      ok: false,
      detail: lastLine(out.stderr) || 'no answer',
      fix: 'start dockerd, or point DOCKER_HOST at a running daemon',
    },
  )
}

async function checkDataRoot(r: Preflight, o: PreflightOptions) {
  const out = await $`docker info --format ${'{{json .DockerRootDir}}'}`.nothrow().quiet().timeout('30s')
  const reported = safeJson(out.stdout) as string | undefined
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
    fix: enough ? undefined : 'free disk first (bun run scripts/free-disk.ts) or lower --min-free',
  })
}

async function checkBuildx(r: Preflight, builder?: string) {
  const version = await $`docker buildx version`.nothrow().quiet().timeout('30s')
  if (version.exitCode !== 0) {
    r.checks.push({
      name: 'buildx',
      ok: !builder,
      detail: 'not installed: bases are built with docker build + docker push',
      fix: builder ? `--builder ${builder} needs buildx: install the docker-buildx plugin` : undefined,
    })
    return
  }
  const inspect = await $`docker buildx inspect ${builder ? [builder] : []}`.nothrow().quiet().timeout('60s')
  const field = (name: string) => new RegExp(`^${name}:\\s*(.+)$`, 'mi').exec(inspect.stdout)?.[1]?.trim()
  r.buildx = {
    version: version.stdout.trim().split(/\s+/)[1] ?? version.stdout.trim(),
    builder: field('Name') ?? builder ?? 'default',
    driver: field('Driver') ?? 'unknown',
    buildkit: field('BuildKit version')?.replace(/^v/, ''),
  }
  r.checks.push({
    name: 'buildx',
    ok: inspect.exitCode === 0,
    detail: `${r.buildx.version}, builder ${r.buildx.builder} (driver ${r.buildx.driver})`,
    fix: inspect.exitCode === 0 ? undefined : `docker buildx inspect failed: ${lastLine(inspect.stderr)}`,
  })
}

/** Reads the help of the prune command that will run: flags change across buildx versions (see README). */
async function detectPruneFlags(r: Preflight) {
  const help = r.buildx
    ? await $`docker buildx prune --help`.nothrow().quiet().timeout('30s')
    : await $`docker builder prune --help`.nothrow().quiet().timeout('30s')
  const text = help.stdout + help.stderr
  const newBuildkit = r.buildx?.buildkit ? versionAtLeast(r.buildx.buildkit, '0.17') : false
  r.pruneFlags = {
    keep: text.includes('--reserved-space')
      ? '--reserved-space'
      : text.includes('--keep-storage')
      ? '--keep-storage'
      : undefined,
    maxUsed: text.includes('--max-used-space') && newBuildkit,
    minFree: text.includes('--min-free-space') && newBuildkit,
  }
  r.checks.push({
    name: 'prune flags',
    ok: true,
    detail: `cache cap flag: ${r.pruneFlags.keep ?? 'none (full prunes only)'}${
      r.pruneFlags.maxUsed ? ', --max-used-space' : ''
    }${r.pruneFlags.minFree ? ', --min-free-space' : ''}`,
  })
}

/**
 * The registries the daemon speaks plain HTTP to (its insecure-registries: by name in IndexConfigs with Secure
 * false, or by CIDR), plus --insecure-registry: the registry client follows the same rule as docker (ping.ts).
 */
async function readInsecureRegistries(r: Preflight, extra: string[]) {
  const out = r.server
    ? await $`docker info --format ${'{{json .RegistryConfig}}'}`.nothrow().quiet().timeout('30s')
    : undefined
  const config = safeJson(out?.stdout ?? '') as {
    IndexConfigs?: Record<string, { Name?: string; Secure?: boolean }>
    InsecureRegistryCIDRs?: string[]
  } | undefined
  const daemon = config && typeof config === 'object' ? config : {}
  const named = Object.values(daemon.IndexConfigs ?? {}).filter((i) => i.Secure === false && i.Name)
  r.insecure = { names: [...named.map((i) => i.Name!), ...extra], cidrs: daemon.InsecureRegistryCIDRs ?? [] }
}

async function checkRegistry(r: Preflight, registry: string) {
  const host = registryHost(registry)
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

const safeJson = (text: string) => {
  try {
    return JSON.parse(text)
  } catch {
    return undefined
  }
}
const lastLine = (text: string) => text.trim().split('\n').pop() ?? ''

async function main(argv: string[]) {
  const { flags } = parseFlags(FLAGS, argv, process.env)
  if (flags.help) {
    return void console.log(
      renderHelp(
        'bun run scripts/preflight.ts [flags]',
        'Checks the daemon, its data root and free space, buildx and its prune flags, and the registry; writes OUT/preflight.json.',
        FLAGS,
      ),
    )
  }
  configureReport({ github: process.env.GITHUB_ACTIONS === 'true', secrets: secretValues(process.env) })
  report.phase('preflight')
  const result = await preflight({ ...flags, out: flags.out })
  printChecks(result)
  if (!result.ok) {
    throw new PreflightError(
      result.checks.filter((c) => !c.ok).map((c) => `${c.name}: ${c.detail}${c.fix ? ` → ${c.fix}` : ''}`),
    )
  }
  report.info(`preflight ok → ${path.join(flags.out, 'preflight.json')}`)
}

if (import.meta.main) runMain(() => main(process.argv.slice(2)))
