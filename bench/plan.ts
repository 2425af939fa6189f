#!/usr/bin/env bun
// bench:plan — the waits people notice before anything is built: a full `pipeline.ts --dry-run` of a 500-instance
// fleet against a local registry that holds the fleet's upstream images and none of its own (target ≤ 3 s), where its
// time goes (runtime start, registry checks, the rest: preflight, reading the upstream manifests, planning,
// printing), and every script's --help (target ≤ 0.3 s under Bun). The plan refuses an upstream image the registry
// lacks, so each instance gets a tiny one: its repository's environment layer and a layer of its own.
//   npx bun bench/plan.ts [--instances 500] [--rounds 3] [--engine fake|env]
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { $ } from 'zx'
import { type FlagTable, parseFlags, renderHelp } from '../lib/cli/flags.ts'
import { runMain } from '../lib/cli/main.ts'
import { FLEET_FLAGS, loadFleet } from '../lib/fleet/fleet.ts'
import { RegistryClient } from '../lib/registry/client.ts'
import { checkTags } from '../lib/registry/tags.ts'
import pMap from 'p-map'
import { fakeDocker } from '../tests/helpers/fake-docker.ts'
import { pushTestImage, startRegistry } from '../tests/helpers/registry-server.ts'
import { machineLine } from './_machine.ts'

export const FLAGS = {
  instances: { type: 'int', default: 500, min: 1, help: 'Instances in the synthetic fleet' },
  rounds: { type: 'int', default: 3, min: 1, help: 'Runs of each measurement (the median is reported)' },
  engine: {
    type: 'string',
    default: 'fake',
    choices: ['fake', 'env'],
    help: "Docker for preflight: fake (a recording script, no daemon) or env (this environment's, e.g. the sandbox's)",
  },
} as const satisfies FlagTable

const ROOT = path.resolve(import.meta.dirname ?? '.', '..')
const CONTEXT = path.join(ROOT, 'examples/synthetic-fleet/context')
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
const ms = (n: number) => `${n.toFixed(0)} ms`
const mark = (t: number, target: number) => `(target ≤ ${target} ms) ${t <= target ? 'ok' : 'SLOW'}`
type Work = { file: string; registry: string; out: string; env: Record<string, string | undefined> }

/** The fleet file: ids in SWE-bench's shape, 12 repositories. */
function writeInstances(n: number, file: string): string[] {
  const ids = Array.from({ length: n }, (_, i) => `org${i % 12}__repo${i % 12}-${1000 + i}`)
  fs.writeFileSync(file, ids.join('\n') + '\n')
  return ids
}

/** Each instance's upstream image where --upstream points (REGISTRY/up/{docker_id}:latest), a few bytes each. */
async function pushUpstreams(registry: string, ids: string[]): Promise<void> {
  const client = new RegistryClient()
  const text = (p: string, content: string) => ({
    path: p,
    type: 'file' as const,
    mode: 0o644,
    uid: 0,
    gid: 0,
    data: new TextEncoder().encode(content),
  })
  await pMap(ids, async (id) => {
    const ref = `${registry}/up/${id.toLowerCase().replace(/__/g, '_1776_')}:latest`
    await pushTestImage(client, ref, { layers: [[text('env/repo', id.split('-')[0])], [text('instance/id', id)]] })
  }, { concurrency: 16 })
}
const fleetArgs = (w: Work) => [
  ...['--instances', w.file, '--registry', `${w.registry}/fleet`, '--upstream', `${w.registry}/up/{docker_id}:latest`],
  ...['--context', CONTEXT],
]

/** The whole dry run, as a user starts it: a new process, preflight, plan, registry checks, every command printed. */
async function dryRunOnce(w: Work): Promise<{ wall: number; lines: number }> {
  const t0 = performance.now()
  const r = await $({ cwd: ROOT, quiet: true, env: w.env })`${process.execPath} scripts/pipeline.ts ${
    fleetArgs(w)
  } --dry-run --out ${w.out}`
  return { wall: performance.now() - t0, lines: r.stdout.split('\n').length }
}

/** In this process: loadFleet (parse + validate + key) and one parallel registry check of every tag the plan asks about. */
async function checksOnce(w: Work): Promise<{ load: number; check: number; tags: number }> {
  const flags = parseFlags(FLEET_FLAGS, fleetArgs(w)).flags
  const t0 = performance.now()
  const fleet = loadFleet(flags)
  const t1 = performance.now()
  const tags = [fleet.builderImage, ...fleet.instances.flatMap((i) => [fleet.baseImage(i), fleet.finalImage(i)])]
  const answers = await checkTags(new RegistryClient(), tags) // as the pipeline's plan asks
  const t2 = performance.now()
  const errors = [...answers.values()].filter((a) => typeof a !== 'boolean')
  if (errors.length) throw new Error(`${errors.length} registry checks failed: ${(errors[0] as Error).message}`)
  return { load: t1 - t0, check: t2 - t1, tags: tags.length }
}

async function helpTimes(rounds: number): Promise<Array<[string, number]>> {
  const scripts = fs.readdirSync(path.join(ROOT, 'scripts')).filter((f) => f.endsWith('.ts') && !f.startsWith('_'))
    .sort()
  const rows: Array<[string, number]> = []
  for (const script of scripts) {
    const times: number[] = []
    for (let i = 0; i < rounds + 1; i++) {
      const t0 = performance.now()
      await $({ cwd: ROOT, quiet: true })`${process.execPath} ${`scripts/${script}`} --help`
      if (i > 0) times.push(performance.now() - t0) // the first run warms the file cache
    }
    rows.push([script, median(times)])
  }
  return rows
}

async function main(argv: string[]) {
  const { flags } = parseFlags(FLAGS, argv, process.env)
  if (flags.help) {
    return void console.log(
      renderHelp(
        'npx bun bench/plan.ts [flags]',
        "Times a full --dry-run of a synthetic fleet against an empty local registry, its parts, and every script's --help.",
        FLAGS,
      ),
    )
  }
  const started = machineLine()
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-plan-'))
  const registry = await startRegistry()
  const fake = flags.engine === 'fake' ? fakeDocker() : undefined
  try {
    const w: Work = {
      file: path.join(work, 'instances.txt'),
      registry: registry.address,
      out: path.join(work, 'out'),
      env: { ...process.env, ...fake?.env, CI: '', GITHUB_ACTIONS: '' },
    }
    await pushUpstreams(registry.address, writeInstances(flags.instances, w.file))
    const dry = []
    const parts = []
    for (let i = 0; i < flags.rounds + 1; i++) {
      const run = await dryRunOnce(w)
      if (i > 0) dry.push(run) // the first run warms the file cache and the registry
      parts.push(await checksOnce(w))
    }
    const helps = await helpTimes(flags.rounds)
    const wall = median(dry.map((d) => d.wall))
    const start = helps.find(([s]) => s === 'pipeline.ts')![1]
    const checks = median(parts.map((p) => p.load + p.check))
    const lines = [
      `${started} (timings scale with load)`,
      `After: ${machineLine()}`,
      `docker: ${fake ? 'recording fake (no daemon)' : 'this environment'}`,
      `dry run: ${flags.instances} instances, ${dry[0].lines} lines printed, ${parts[0].tags} tags checked: ${
        ms(wall)
      } ${mark(wall, 3000)}`,
      `  runtime start + imports (pipeline.ts --help) ${ms(start)} = ${pct(start, wall)}`,
      `  load + registry checks (in process)          ${ms(checks)} = ${pct(checks, wall)}`,
      `  the rest: preflight, plan, printing          ${ms(wall - start - checks)} = ${
        pct(wall - start - checks, wall)
      }`,
      ...helps.map(([script, t]) => `--help ${script.padEnd(16)} ${ms(t).padStart(7)} ${mark(t, 300)}`),
    ]
    console.log(lines.join('\n'))
    const file = path.join(ROOT, 'bench', 'results', `plan-${new Date().toISOString().slice(0, 10)}.md`)
    fs.mkdirSync(path.dirname(file), { recursive: true })
    fs.appendFileSync(
      file,
      `${fs.existsSync(file) ? '\n---\n\n' : '# bench:plan\n\n'}\`\`\`\n${lines.join('\n')}\n\`\`\`\n`,
    )
    console.log(`→ ${path.relative(ROOT, file)}`)
    return wall <= 3000 && helps.every(([, t]) => t <= 300) ? 0 : 1
  } finally {
    await registry.stop()
    fake?.cleanup()
    fs.rmSync(work, { recursive: true, force: true })
  }
}

const pct = (part: number, whole: number) => `${((100 * part) / whole).toFixed(0)} %`

if (import.meta.main) runMain(() => main(process.argv.slice(2)))
