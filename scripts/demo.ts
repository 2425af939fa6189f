#!/usr/bin/env bun
// demo: the whole story on this machine — a throwaway Docker engine on a 3 GiB disk, a SWE-bench-shaped
// fleet three times that size in a real registry, the pipeline building every image, the summary, and
// the sandbox torn down. Needs root and loop devices (see scripts/sandbox.ts).
//   npm run demo                       # = npx bun scripts/demo.ts
//   npx bun scripts/demo.ts --keep     # leave the sandbox up (then: npx bun scripts/sandbox.ts down --dir .sandbox-demo)
import fs from 'node:fs'
import path from 'node:path'
import { $ } from 'zx'
import { type FlagTable, parseFlags, renderHelp } from '../lib/cli/flags.ts'
import { runMain } from '../lib/cli/main.ts'
import { configureReport, report, seconds, secretValues } from '../lib/cli/report.ts'
import { formatBytes } from '../lib/cli/size.ts'
import { runtimeCommand } from '../lib/cli/runtime.ts'
import { generateFleet } from '../examples/synthetic-fleet/generate.ts'
import { sandboxDown, sandboxUp } from './_sandbox-engine.ts'
import { inGitHubActions } from '../lib/cli/environment.ts'

export const FLAGS = {
  dir: {
    type: 'string',
    arg: 'DIR',
    default: '.sandbox-demo',
    help: 'Sandbox directory (removed at the end unless --keep)',
  },
  disk: { type: 'size', default: '3GiB', help: 'Size of the sandbox disk' },
  groups: { type: 'int', default: 3, min: 1, help: 'Environments in the fleet (each shared by its instances)' },
  'per-group': { type: 'int', default: 8, min: 1, help: 'Instances per environment' },
  'env-size': { type: 'size', default: '300MB', help: 'Environment layer, shared by a group' },
  'instance-size': {
    type: 'size',
    default: '110MB',
    help: 'Layer unique to each instance (24 × 110MB alone outgrow the 3 GiB disk)',
  },
  concurrency: { type: 'int', default: 4, min: 1, help: 'Images built at once' },
  cleanup: {
    type: 'string',
    default: 'adaptive',
    choices: ['adaptive', 'per-image', 'none'],
    help: 'Cleanup policy for the pipeline',
  },
  out: { type: 'string', arg: 'DIR', default: 'builds/demo', help: 'Pipeline output directory' },
  keep: { type: 'boolean', help: 'Leave the sandbox up at the end' },
} as const satisfies FlagTable

/** The demo's parts and what each took, printed at the end (the target: all of it in about a minute). */
type Times = Array<[part: string, ms: number]>
async function timed<T>(times: Times, part: string, step: () => Promise<T>): Promise<T> {
  const started = Date.now()
  try {
    return await step()
  } finally {
    times.push([part, Date.now() - started])
  }
}

async function main(argv: string[]) {
  const { flags } = parseFlags(FLAGS, argv, process.env)
  if (flags.help) {
    return void console.log(
      renderHelp(
        'npx bun scripts/demo.ts [flags]',
        'Sandbox up → synthetic fleet ≥ 3× the disk → pipeline → summary → sandbox down, with the time of each.',
        FLAGS,
      ),
    )
  }
  configureReport({ github: inGitHubActions(process.env), secrets: secretValues(process.env) })
  const dir = path.resolve(flags.dir)
  const out = path.resolve(flags.out)
  fs.rmSync(out, { recursive: true, force: true })
  const times: Times = []
  let code = 1
  report.phase(`sandbox: ${formatBytes(flags.disk)} disk`)
  const sb = await timed(times, 'sandbox up', () => sandboxUp({ dir, disk: flags.disk, baseEnv: process.env }))
  try {
    report.phase('synthetic fleet, made in the registry')
    const fleet = await timed(times, 'fleet', () =>
      generateFleet({
        registry: sb.registry,
        groups: flags.groups,
        perGroup: flags.perGroup,
        envSize: flags.envSize,
        instanceSize: flags.instanceSize,
        out: path.join(dir, 'fleet', 'instances.txt'),
      }))
    report.info(
      `${fleet.instances} instances, ${formatBytes(fleet.upstreamBytes)} of upstream images = ${
        (fleet.upstreamBytes / sb.diskBytes).toFixed(1)
      } × the ${formatBytes(sb.diskBytes)} disk`,
    )
    report.phase('pipeline')
    const result = await timed(times, 'pipeline', () =>
      $({
        env: sb.env,
        stdio: 'inherit',
        nothrow: true,
      })`${runtimeCommand()} scripts/pipeline.ts --instances ${
        path.join(dir, 'fleet', 'instances.txt')
      } --upstream ${fleet.upstream} --registry ${sb.registry}/fleet --context examples/synthetic-fleet/context --build-arg SEED_IMAGE=${fleet.seed} --concurrency ${flags.concurrency} --cleanup ${flags.cleanup} --min-free 200MB --reserve 200MB --out ${out}`)
    printDemoSummary(out, fleet.upstreamBytes, sb.diskBytes)
    code = result.exitCode ?? 1
  } finally {
    if (!flags.keep) await timed(times, 'teardown', () => sandboxDown({ dir }))
    else report.info(`sandbox left up: eval "$(npx bun scripts/sandbox.ts env --dir ${flags.dir})"`)
    const total = times.reduce((sum, [, ms]) => sum + ms, 0)
    report.info(`time: ${times.map(([part, ms]) => `${part} ${seconds(ms)}`).join(' · ')} · total ${seconds(total)}`)
  }
  return code
}

function printDemoSummary(out: string, fleetBytes: number, diskBytes: number) {
  const file = path.join(out, 'summary.json')
  if (!fs.existsSync(file)) return report.error(`no summary at ${file}: the pipeline stopped before building`)
  const s = JSON.parse(fs.readFileSync(file, 'utf8'))
  const a = s.counts.assemble
  report.phase('demo result')
  report.info([
    `final images: ${a.built + a.skipped}/${s.instances} (${a.failed} failed)`,
    `fleet: ${formatBytes(fleetBytes)} of upstream images on a ${formatBytes(diskBytes)} disk (${
      (fleetBytes / diskBytes).toFixed(1)
    }×)`,
    `peak disk used: ${formatBytes(s.peakUsed)} · reclaimed by cleanups: ${formatBytes(s.reclaimed)}`,
    `details: ${path.join(out, 'summary.md')}`,
  ].join('\n'))
}

if (import.meta.main) runMain(() => main(process.argv.slice(2)))
