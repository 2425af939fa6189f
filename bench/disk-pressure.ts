#!/usr/bin/env bun
// bench:disk — the cleanup policies side by side in one run, each in a fresh sandbox (new dockerd, new
// loop disk), all pulling the same synthetic upstream fleet from one shared registry:
//   1. none      on a disk that holds everything (the reference)
//   2. none      on a disk that holds ≤ 1/4 of the fleet's bytes (shows the failure)
//   3. per-image on the small disk (the field's fix: rmi + system prune + builder prune after every image)
//   4. adaptive  on the small disk (imagefleet's disk budget)
// Prints a table and the ratios adaptive/reference and adaptive/per-image; writes bench/results/.
//   npm run bench:disk            (needs root and loop devices; ~15 minutes on 2 cores)
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { $ } from 'zx'
import { type FlagTable, parseFlags, renderHelp } from '../lib/cli/flags.ts'
import { runMain } from '../lib/cli/main.ts'
import { formatBytes } from '../lib/cli/size.ts'
import { generateFleet } from '../examples/synthetic-fleet/generate.ts'
import { sandboxDown, sandboxUp } from '../scripts/_sandbox-engine.ts'
import { startRegistry } from '../tests/helpers/registry-server.ts'

export const FLAGS = {
  groups: { type: 'int', default: 4, min: 1, help: 'Environment groups' },
  'per-group': { type: 'int', default: 10, min: 1, help: 'Instances per group' },
  'env-size': { type: 'size', default: '150MB', help: 'Environment layer per group' },
  'instance-size': { type: 'size', default: '40MB', help: 'Layer unique to each instance' },
  'small-disk': { type: 'size', help: 'Small disk (default: a quarter of the fleet bytes, rounded down to 64 MiB)' },
  'big-disk': { type: 'size', default: '12GiB', help: 'Disk that holds everything' },
  concurrency: { type: 'int', default: 4, min: 1, help: 'Images built at once' },
  only: { type: 'list', arg: 'RUN', help: 'Only these runs: reference, none-small, per-image, adaptive' },
  dir: { type: 'string', default: 'bench/tmp', help: 'Work directory (sandboxes, registry)' },
} as const satisfies FlagTable

type Result = {
  name: string
  policy: string
  disk: number
  code: number
  built: number
  failed: number
  noSpace: number
  wall: number
  peakUsed: number
  cleanupSeconds: number
  reclaimed: number
  cleanups: number
  overlaps: number
  silentZero: number
}

/** Disk write bandwidth of the filesystem under `dir`: 512 MiB written with fdatasync, in bytes/s. */
async function writeBandwidth(dir: string): Promise<number> {
  const file = path.join(dir, 'bandwidth.tmp')
  const t0 = Date.now()
  await $`dd if=/dev/zero of=${file} bs=4M count=128 conv=fdatasync status=none`
  const secs = (Date.now() - t0) / 1000
  fs.rmSync(file)
  return (512 * 2 ** 20) / secs
}

/** Prunes that overlapped in time, from the run's cleanup records (must be 0: one prune at a time). */
function overlappingPrunes(cleanups: Array<{ command: string; at: string; seconds: number }>): number {
  const spans = cleanups.filter((c) => !c.command.startsWith('docker rmi')).map((c) => {
    const end = Date.parse(c.at)
    return [end - c.seconds * 1000, end] as const
  }).sort((a, b) => a[0] - b[0])
  let overlaps = 0
  for (let i = 1; i < spans.length; i++) if (spans[i][0] < spans[i - 1][1] - 5) overlaps++
  return overlaps
}

async function runPolicy(
  name: string,
  policy: string,
  disk: number,
  o: { dir: string; registry: string; upstream: string; instances: string; seed: string; concurrency: number },
): Promise<Result> {
  const sbDir = path.join(o.dir, `sandbox-${name}`)
  const out = path.join(o.dir, `out-${name}`)
  fs.rmSync(out, { recursive: true, force: true })
  console.log(`\n== ${name}: --cleanup ${policy} on ${formatBytes(disk)}`)
  const sb = await sandboxUp({ dir: sbDir, disk, baseEnv: process.env })
  try {
    const t0 = Date.now()
    const r = await $({
      env: sb.env,
      nothrow: true,
      stdio: ['ignore', 'inherit', 'inherit'],
    })`${process.execPath} scripts/pipeline.ts --instances ${o.instances} --upstream ${o.upstream} --registry ${o.registry}/${name} --context examples/synthetic-fleet/context --build-arg SEED_IMAGE=${o.seed} --network none --concurrency ${o.concurrency} --cleanup ${policy} --min-free 100MB --reserve 150MB --retries 1 --out ${out}`
    const wall = (Date.now() - t0) / 1000
    const s = JSON.parse(fs.readFileSync(path.join(out, 'summary.json'), 'utf8'))
    const cleanups = s.cleanups.total as Array<
      { command: string; at: string; seconds: number; reclaimed: number; freeBefore: number }
    >
    return {
      name,
      policy,
      disk,
      code: r.exitCode ?? -1,
      wall,
      built: s.counts.assemble.built,
      failed: s.counts.assemble.failed,
      noSpace: new Set(
        s.failed.filter((f: { error_class?: string }) => f.error_class === 'no_space').map((f: { id: string }) => f.id),
      ).size,
      peakUsed: s.peakUsed,
      reclaimed: s.reclaimed,
      cleanups: cleanups.length,
      cleanupSeconds: cleanups.reduce((t, c) => t + c.seconds, 0),
      overlaps: overlappingPrunes(cleanups),
      silentZero: cleanups.filter((c) =>
        !c.command.startsWith('docker rmi') && c.reclaimed <= 0 && c.freeBefore < 300e6
      ).length,
    }
  } finally {
    await sandboxDown({ dir: sbDir })
  }
}

function table(results: Result[], n: number): string {
  const rows = results.map((r) =>
    `| ${r.name} | ${r.policy} | ${formatBytes(r.disk)} | ${r.built}/${n} | ${r.failed} (${r.noSpace} no_space) | ${
      r.wall.toFixed(1)
    } | ${formatBytes(r.peakUsed)} | ${r.cleanups} | ${r.cleanupSeconds.toFixed(1)} | ${
      formatBytes(r.reclaimed)
    } | ${r.overlaps} | ${r.silentZero} |`
  )
  return [
    '| run | policy | disk | done | failed images | wall s | peak used | cleanups | cleanup s | reclaimed | overlapping prunes | 0 B prunes under pressure |',
    '|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|',
    ...rows,
  ].join('\n')
}

async function main(argv: string[]) {
  const { flags } = parseFlags(FLAGS, argv, process.env)
  if (flags.help) {
    return void console.log(
      renderHelp(
        'npx bun bench/disk-pressure.ts [flags]',
        'Cleanup policies side by side on real sandboxes (see the header of this file).',
        FLAGS,
      ),
    )
  }
  const dir = path.resolve(flags.dir)
  fs.mkdirSync(dir, { recursive: true })
  fs.mkdirSync(path.join(dir, 'registry'), { recursive: true })
  const registry = await startRegistry({ dir: path.join(dir, 'registry') })
  const seedSandbox = await sandboxUp({
    dir: path.join(dir, 'sandbox-generate'),
    disk: 3 * 2 ** 30,
    baseEnv: process.env,
  })
  let fleet
  try {
    // the seed image lives in the generating sandbox's registry: copy it into the shared one
    const seed = `${registry.address}/imagefleet/busybox:latest`
    await $({ env: seedSandbox.env })`docker pull ${seedSandbox.seedImage}`
    await $({ env: seedSandbox.env })`docker tag ${seedSandbox.seedImage} ${seed}`
    await $({ env: seedSandbox.env })`docker push ${seed}`
    fleet = await generateFleet({
      registry: registry.address,
      seed,
      groups: flags.groups,
      perGroup: flags.perGroup,
      envSize: flags.envSize,
      instanceSize: flags.instanceSize,
      out: path.join(dir, 'instances.txt'),
      env: seedSandbox.env,
    })
  } finally {
    await sandboxDown({ dir: seedSandbox.dir })
  }
  // fleet bytes: what the final images add up to (each counts its shared layers), ≈ upstream + agent (20 MB each)
  const fleetBytes = fleet.upstreamBytes + fleet.instances * 20e6
  const small = flags.smallDisk ?? Math.floor(fleetBytes / 4 / 2 ** 26) * 2 ** 26
  const bandwidth = await writeBandwidth(dir)
  const o = {
    dir,
    registry: registry.address,
    upstream: fleet.upstream,
    instances: path.join(dir, 'instances.txt'),
    seed: fleet.seed,
    concurrency: flags.concurrency,
  }
  const runs: Array<[string, string, number]> = [['reference', 'none', flags.bigDisk], ['none-small', 'none', small], [
    'per-image',
    'per-image',
    small,
  ], ['adaptive', 'adaptive', small]]
  const results: Result[] = []
  for (const [name, policy, disk] of runs) {
    if (!flags.only.length || flags.only.includes(name)) results.push(await runPolicy(name, policy, disk, o))
  }
  await registry.stop()

  const by = (name: string) => results.find((r) => r.name === name)
  const ratio = (a?: Result, b?: Result) => (a && b ? (a.wall / b.wall).toFixed(2) : 'n/a')
  const uniqueBytes = fleet.groups * flags.envSize + fleet.instances * (flags.instanceSize + 20e6)
  const report = [
    `# bench:disk — ${new Date().toISOString().slice(0, 10)}`,
    '',
    `Machine: ${os.cpus().length} cores (${os.cpus()[0]?.model ?? 'unknown'}), ${
      formatBytes(os.totalmem())
    } RAM, kernel ${os.release()}, runtime ${
      'Bun' in globalThis ? `bun ${(globalThis as { Bun?: { version: string } }).Bun?.version}` : process.version
    }`,
    `Fleet: ${fleet.instances} instances in ${fleet.groups} groups (env ${formatBytes(flags.envSize)}, instance ${
      formatBytes(flags.instanceSize)
    }, agent 20 MB); fleet bytes ${formatBytes(fleetBytes)}; small disk ${formatBytes(small)} = ${
      (small / fleetBytes).toFixed(2)
    } of the fleet; concurrency ${flags.concurrency}`,
    '',
    table(results, fleet.instances),
    '',
    `wall(adaptive) / wall(reference) = ${ratio(by('adaptive'), by('reference'))} (target ≤ 1.15)`,
    `wall(adaptive) / wall(per-image) = ${ratio(by('adaptive'), by('per-image'))} (target ≤ 0.85)`,
    `disk write bandwidth: ${formatBytes(bandwidth)}/s; each run unpacks at least ${
      formatBytes(uniqueBytes)
    } of unique layers → ≥ ${(uniqueBytes / bandwidth).toFixed(1)} s of writes alone`,
    '',
  ].join('\n')
  console.log('\n' + report)
  const file = path.join('bench', 'results', `disk-pressure-${new Date().toISOString().slice(0, 10)}.md`)
  fs.mkdirSync(path.dirname(file), { recursive: true })
  fs.appendFileSync(file, (fs.existsSync(file) ? '\n---\n\n' : '') + report) // one section per run: the spread between runs shows
  console.log(`→ ${file}`)
}

if (import.meta.main) runMain(() => main(process.argv.slice(2)))
