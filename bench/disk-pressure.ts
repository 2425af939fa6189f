#!/usr/bin/env bun
// bench:disk — the disk budget against the field's per-image policy and against a disk that holds everything, side
// by side in one run. Each run gets a fresh sandbox (new dockerd, new loop disk); all pull one synthetic fleet from
// one registry through a counting proxy, so the bytes pulled are what the registry served, not the pipeline's account.
//   shapes   issue: 80 instances, 4 environments 2.5× an instance layer (the shape issue 10 measured)
//            swe:   12 environments of different sizes over one shared base layer, small instance layers, 120
//                   instances in 4 repositories of 3 versions each (SWE-bench's shape, scaled down)
//   orders   grouped (environment by environment), id (as SWE-bench lists them: a repository's versions
//            interleave), shuffled
//   runs     reference: --cleanup none on a disk that holds everything; per-image and adaptive on ¼ of the fleet;
//            adaptive on 1/10 and 1/20 of the fleet (swe: one environment plus --concurrency instances still fit)
// Prints a table per shape and order, the ratios, and appends them with the machine's facts to bench/results/.
//   npm run bench:disk        (root and loop devices; ~20 minutes on 2 cores)
import fs from 'node:fs'
import path from 'node:path'
import { $ } from 'zx'
import { type FlagTable, parseFlags, renderHelp } from '../lib/cli/flags.ts'
import { runMain } from '../lib/cli/main.ts'
import { formatBytes } from '../lib/cli/size.ts'
import { RegistryClient } from '../lib/registry/client.ts'
import { imageLayers } from '../lib/registry/image.ts'
import { type Fleet, type FleetOptions, generateFleet } from '../examples/synthetic-fleet/generate.ts'
import { sandboxDown, sandboxUp } from '../scripts/_sandbox-engine.ts'
import { type CountingProxy, repullFactor, startCountingProxy } from '../tests/helpers/counting-proxy.ts'
import { startRegistry } from '../tests/helpers/registry-server.ts'
import { shuffled } from '../tests/helpers/swe-bench.ts'
import { machineLine } from './_machine.ts'

export const FLAGS = {
  shapes: { type: 'list', arg: 'SHAPE', help: 'issue, swe (default: both)' },
  orders: { type: 'list', arg: 'ORDER', help: 'grouped, id, shuffled (default: all three)' },
  concurrency: { type: 'int', default: 4, min: 1, help: 'Images built at once' },
  dir: { type: 'string', default: 'bench/tmp', help: 'Work directory (sandboxes, registry)' },
} as const satisfies FlagTable

/** The fleets, as the synthetic generator takes them. */
const SHAPES = {
  issue: { groups: 4, envsPerRepo: 4, perGroup: 20, envSize: 20e6, instanceSize: 8e6, baseSize: 0 },
  swe: {
    groups: 12,
    envsPerRepo: 3,
    perGroup: [24, 18, 14, 12, 10, 9, 8, 7, 6, 5, 4, 3],
    envSize: [150e6, 60e6, 110e6, 40e6, 90e6, 130e6, 50e6, 70e6, 100e6, 45e6, 80e6, 120e6],
    instanceSize: 4e6,
    baseSize: 30e6,
  },
} satisfies Record<string, Omit<FleetOptions, 'registry' | 'out'>>
type ShapeName = keyof typeof SHAPES
type Order = 'grouped' | 'id' | 'shuffled'

type Run = { name: string; policy: 'none' | 'per-image' | 'adaptive'; disk: number }
type Result = Run & {
  done: number
  failed: number
  noSpace: number
  wall: number
  repull: number
  /** bytes of upstream layers imagefleet's own client read (registry assembly reads the bases), ÷ unique bytes */
  reads: number
  utilisation: number | null
  cleanups: number
  perImage: number
  reclaimed: number
  lowestFree: number | null
  waits: number
  overlaps: number
}

type Shared = { dir: string; proxy: CountingProxy; concurrency: number }

/** Prunes that overlapped in time, from the run's cleanup records (must be 0: one prune at a time). */
function overlappingPrunes(cleanups: Array<{ tier: string; at: string; seconds: number }>): number {
  const spans = cleanups.filter((c) => c.tier !== 'rmi').map((
    c,
  ) => [Date.parse(c.at) - c.seconds * 1000, Date.parse(c.at)])
    .sort((a, b) => a[0] - b[0])
  return spans.filter((s, i) => i > 0 && s[0] < spans[i - 1][1] - 5).length
}

async function runOne(
  run: Run,
  list: string,
  fleet: Fleet,
  layers: Array<{ digest: string; size: number }>,
  o: Shared,
): Promise<Result> {
  const sbDir = path.join(o.dir, `sandbox-${run.name}`)
  const out = path.join(o.dir, `out-${run.name}`)
  fs.rmSync(out, { recursive: true, force: true })
  console.log(`\n== ${run.name}: --cleanup ${run.policy} on ${formatBytes(run.disk)}`)
  const sb = await sandboxUp({ dir: sbDir, disk: run.disk, baseEnv: process.env })
  o.proxy.reset()
  try {
    const t0 = Date.now()
    const r = await $({
      env: sb.env,
      nothrow: true,
      stdio: ['ignore', 'ignore', 'inherit'],
    })`${process.execPath} scripts/pipeline.ts --instances ${list} --upstream ${fleet.upstream} --registry ${o.proxy.address}/${run.name} --context examples/synthetic-fleet/context --build-arg SEED_IMAGE=${fleet.seed} --network none --concurrency ${o.concurrency} --cleanup ${run.policy} --min-free 64MB --reserve 64MB --retries 1 --out ${out}`
    const wall = (Date.now() - t0) / 1000
    const s = JSON.parse(fs.readFileSync(path.join(out, 'summary.json'), 'utf8'))
    const failedIds = (cls?: string) =>
      new Set(
        s.failed.filter((f: { error_class?: string }) => !cls || f.error_class === cls).map((f: { id: string }) =>
          f.id
        ),
      ).size
    const cleanups = s.cleanups.total as Array<{ tier: string; at: string; seconds: number }>
    const done = s.counts.assemble.built + s.counts.assemble.skipped
    const result = {
      ...run,
      done,
      failed: failedIds(),
      noSpace: failedIds('no_space'),
      wall,
      repull: repullFactor(o.proxy, layers, 'engine'),
      reads: repullFactor(o.proxy, layers, 'imagefleet'),
      utilisation: s.disk?.utilisation ?? null,
      cleanups: cleanups.length,
      perImage: done ? cleanups.length / done : 0,
      reclaimed: s.reclaimed,
      lowestFree: s.minFree,
      waits: s.disk?.waits ?? 0,
      overlaps: overlappingPrunes(cleanups),
    }
    console.log(
      `   exit ${r.exitCode}: ${done}/${fleet.instances} in ${wall.toFixed(1)}s, re-pull ${
        result.repull.toFixed(2)
      }, ${cleanups.length} cleanups`,
    )
    return result
  } finally {
    await sandboxDown({ dir: sbDir })
  }
}

function table(results: Result[], n: number): string {
  const pct = (x: number | null) => (x === null ? 'n/a' : `${Math.round(x * 100)}%`)
  return [
    '| run | policy | disk | done | failed (no_space) | wall s | re-pull (engine, at the registry) | assembly reads | utilisation | cleanups (per image) | reclaimed | lowest free | waits | overlapping prunes |',
    '|---|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|',
    ...results.map((r) =>
      `| ${r.name} | ${r.policy} | ${formatBytes(r.disk)} | ${r.done}/${n} | ${r.failed} (${r.noSpace}) | ${
        r.wall.toFixed(1)
      } | ${r.repull.toFixed(2)} | ${r.reads.toFixed(2)} | ${pct(r.utilisation)} | ${r.cleanups} (${
        r.perImage.toFixed(2)
      }) | ${formatBytes(r.reclaimed)} | ${
        r.lowestFree === null ? 'n/a' : formatBytes(r.lowestFree)
      } | ${r.waits} | ${r.overlaps} |`
    ),
  ].join('\n')
}

/** The fleet's instance list in the asked order; `id` is the generator's (SWE-bench's) own. */
function writeList(fleet: Fleet, order: Order, file: string): string {
  const ids = order === 'grouped'
    ? fleet.environments.flatMap((e) => e.ids)
    : order === 'shuffled'
    ? shuffled(fleet.ids, 20261126)
    : fleet.ids
  fs.writeFileSync(file, ids.join('\n') + '\n')
  return file
}

async function benchShape(shape: ShapeName, orders: Order[], o: Shared): Promise<string[]> {
  const fleet = await generateFleet({
    registry: o.proxy.address,
    ...SHAPES[shape],
    order: 'id',
    out: path.join(o.dir, `${shape}.txt`),
  })
  const client = new RegistryClient()
  const refs = fleet.ids.map((id) => fleet.upstream.replace('{docker_id}', id.toLowerCase().replace(/__/g, '_1776_')))
  const layers = (await Promise.all(refs.map((ref) => imageLayers(client, ref)))).flat()
  // fleet bytes: what pulling every image whole would move (shared layers counted per image), as pushed
  const fleetBytes = fleet.upstreamBytes
  const disk = (part: number) => Math.floor(fleetBytes / part / 2 ** 24) * 2 ** 24
  const lines = [
    `## ${shape}: ${fleet.instances} instances, ${fleet.groups} environments (${
      fleet.environments.map((e) => formatBytes(e.bytes)).join(', ')
    })`,
    '',
    `Fleet bytes ${formatBytes(fleetBytes)} (each image whole), unique layers ${
      formatBytes(fleet.uniqueBytes)
    }; ¼ disk ${formatBytes(disk(4))}, 1/10 disk ${formatBytes(disk(10))}, 1/20 disk ${
      formatBytes(disk(20))
    }; concurrency ${o.concurrency}`,
    '',
  ]
  for (const order of orders) {
    const list = writeList(fleet, order, path.join(o.dir, `${shape}-${order}.txt`))
    const runs: Run[] = [
      { name: `${shape}-${order}-reference`, policy: 'none', disk: Math.max(4 * fleetBytes, 2 * 2 ** 30) },
      { name: `${shape}-${order}-per-image`, policy: 'per-image', disk: disk(4) },
      { name: `${shape}-${order}-adaptive`, policy: 'adaptive', disk: disk(4) },
      ...(shape === 'swe'
        ? [
          { name: `${shape}-${order}-adaptive-tenth`, policy: 'adaptive' as const, disk: disk(10) },
          // SWE-bench's environments are shared by many instances, so ¼ and 1/10 of the fleet's bytes (each image
          // counted whole) still hold most of its unique layers: 1/20 is where the budget must evict environments
          { name: `${shape}-${order}-adaptive-twentieth`, policy: 'adaptive' as const, disk: disk(20) },
        ]
        : []),
    ]
    const results: Result[] = []
    for (const run of runs) results.push(await runOne(run, list, fleet, layers, o))
    const [reference, perImage, adaptive, tenth, twentieth] = results
    const ratio = (a?: Result, b?: Result) => (a && b ? (a.wall / b.wall).toFixed(2) : 'n/a')
    lines.push(
      `### ${shape}, list ${order}`,
      '',
      table(results, fleet.instances),
      '',
      `wall(adaptive ¼) / wall(reference) = ${
        ratio(adaptive, reference)
      } (target ≤ 1.15); wall(adaptive ¼) / wall(per-image ¼) = ${
        perImage.done === fleet.instances ? ratio(adaptive, perImage) : 'n/a (per-image did not finish)'
      } (target ≤ 0.85)` +
        (tenth ? `; wall(adaptive 1/10) / wall(reference) = ${ratio(tenth, reference)} (target ≤ 1.3)` : '') +
        (twentieth ? `; wall(adaptive 1/20) / wall(reference) = ${ratio(twentieth, reference)}` : ''),
      '',
    )
  }
  return lines
}

async function main(argv: string[]) {
  const { flags } = parseFlags(FLAGS, argv, process.env)
  if (flags.help) {
    return void console.log(
      renderHelp(
        'npx bun bench/disk-pressure.ts [flags]',
        'The disk budget side by side with per-image and a big disk (see the header of this file).',
        FLAGS,
      ),
    )
  }
  const dir = path.resolve(flags.dir)
  fs.mkdirSync(path.join(dir, 'registry'), { recursive: true })
  const registry = await startRegistry({ dir: path.join(dir, 'registry') })
  const proxy = await startCountingProxy(registry.address)
  const shapes = (flags.shapes.length ? flags.shapes : Object.keys(SHAPES)) as ShapeName[]
  const orders = (flags.orders.length ? flags.orders : ['grouped', 'id', 'shuffled']) as Order[]
  const started = machineLine({ diskDir: dir })
  const sections: string[] = []
  try {
    for (const shape of shapes) {
      sections.push(...await benchShape(shape, orders, { dir, proxy, concurrency: flags.concurrency }))
    }
  } finally {
    await proxy.stop()
    await registry.stop()
  }
  const report = [
    `# bench:disk — ${new Date().toISOString().slice(0, 16).replace('T', ' ')}`,
    '',
    started,
    `After: ${machineLine()}`,
    '',
    ...sections,
  ].join('\n')
  console.log('\n' + report)
  const file = path.join('bench', 'results', `disk-pressure-${new Date().toISOString().slice(0, 10)}.md`)
  fs.mkdirSync(path.dirname(file), { recursive: true })
  fs.appendFileSync(file, (fs.existsSync(file) ? '\n---\n\n' : '') + report + '\n') // one section per run: the spread shows
  console.log(`→ ${file}`)
}

if (import.meta.main) runMain(() => main(process.argv.slice(2)))
