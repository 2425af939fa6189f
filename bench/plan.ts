#!/usr/bin/env bun
// bench:plan — the two waits people notice: planning a 500-instance fleet with its registry check
// (target ≤ 3 s against a local registry) and every script's --help (target ≤ 0.3 s under Bun).
//   npx bun bench/plan.ts [--instances 500] [--rounds 3]
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { $ } from 'zx'
import { type FlagTable, parseFlags, renderHelp } from '../lib/cli/flags.ts'
import { runMain } from '../lib/cli/main.ts'
import { FLEET_FLAGS, loadFleet } from '../lib/fleet/fleet.ts'
import { RegistryClient } from '../lib/registry/client.ts'
import { startRegistry } from '../tests/helpers/registry-server.ts'

export const FLAGS = {
  instances: { type: 'int', default: 500, min: 1, help: 'Instances in the synthetic fleet' },
  rounds: { type: 'int', default: 3, min: 1, help: 'Runs of each measurement (the median is reported)' },
} as const satisfies FlagTable

const ROOT = path.resolve(import.meta.dirname ?? '.', '..')
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]
const ms = (n: number) => `${n.toFixed(0)} ms`

/** loadFleet (parse + validate + key) and one parallel registry check of every tag the pipeline asks about. */
async function planOnce(
  n: number,
  registry: string,
  work: string,
): Promise<{ load: number; check: number; tags: number }> {
  const file = path.join(work, 'instances.txt')
  fs.writeFileSync(
    file,
    Array.from({ length: n }, (_, i) => `org${i % 12}__repo${i % 12}-${1000 + i}`).join('\n') + '\n',
  )
  const flags = parseFlags(FLEET_FLAGS, [
    '--instances',
    file,
    '--registry',
    `${registry}/fleet`,
    '--upstream',
    `${registry}/up/{docker_id}:latest`,
    '--context',
    path.join(ROOT, 'examples/synthetic-fleet/context'),
  ]).flags
  const t0 = performance.now()
  const fleet = loadFleet(flags)
  const t1 = performance.now()
  const tags = [fleet.builderImage, ...fleet.instances.flatMap((i) => [fleet.baseImage(i), fleet.finalImage(i)])]
  const answers = await new RegistryClient().checkMany(tags)
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
        "Times planning + registry check of a synthetic fleet against a local registry, and every script's --help.",
        FLAGS,
      ),
    )
  }
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-plan-'))
  const registry = await startRegistry()
  try {
    const runs = []
    for (let i = 0; i < flags.rounds; i++) runs.push(await planOnce(flags.instances, registry.address, work))
    const total = median(runs.map((r) => r.load + r.check))
    console.log(
      `machine: ${os.cpus().length} CPUs, load average ${os.loadavg()[0].toFixed(1)} (timings scale with load)`,
    )
    console.log(
      `plan: ${flags.instances} instances, ${runs[0].tags} registry checks: load ${
        ms(median(runs.map((r) => r.load)))
      } + check ${ms(median(runs.map((r) => r.check)))} = ${ms(total)} (target ≤ 3000 ms) ${
        total <= 3000 ? 'ok' : 'SLOW'
      }`,
    )
    const helps = await helpTimes(flags.rounds)
    for (const [script, t] of helps) {
      console.log(`--help ${script.padEnd(16)} ${ms(t).padStart(7)} (target ≤ 300 ms) ${t <= 300 ? 'ok' : 'SLOW'}`)
    }
    return total <= 3000 && helps.every(([, t]) => t <= 300) ? 0 : 1
  } finally {
    await registry.stop()
    fs.rmSync(work, { recursive: true, force: true })
  }
}

if (import.meta.main) runMain(() => main(process.argv.slice(2)))
