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
import { configureReport, report, secretValues } from '../lib/cli/report.ts'
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
  groups: { type: 'int', default: 3, min: 1, help: 'Environment groups in the fleet' },
  'per-group': { type: 'int', default: 8, min: 1, help: 'Instances per group' },
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

async function main(argv: string[]) {
  const { flags } = parseFlags(FLAGS, argv, process.env)
  if (flags.help) {
    return void console.log(
      renderHelp(
        'npx bun scripts/demo.ts [flags]',
        'Sandbox up → synthetic fleet ≥ 3× the disk → pipeline → summary → sandbox down.',
        FLAGS,
      ),
    )
  }
  configureReport({ github: inGitHubActions(process.env), secrets: secretValues(process.env) })
  const dir = path.resolve(flags.dir)
  const out = path.resolve(flags.out)
  fs.rmSync(out, { recursive: true, force: true })

  report.phase(`sandbox: ${formatBytes(flags.disk)} disk`)
  const sb = await sandboxUp({ dir, disk: flags.disk, baseEnv: process.env })
  try {
    report.phase('synthetic fleet')
    const fleet = await generateFleet({
      registry: sb.registry,
      seed: sb.seedImage,
      groups: flags.groups,
      perGroup: flags.perGroup,
      envSize: flags.envSize,
      instanceSize: flags.instanceSize,
      out: path.join(dir, 'fleet', 'instances.txt'),
      env: sb.env,
    })
    report.info(
      `${fleet.instances} instances, ${formatBytes(fleet.upstreamBytes)} of upstream images = ${
        (fleet.upstreamBytes / sb.diskBytes).toFixed(1)
      } × the ${formatBytes(sb.diskBytes)} disk`,
    )

    report.phase('pipeline')
    const t0 = Date.now()
    const result = await $({
      env: sb.env,
      stdio: 'inherit',
      nothrow: true,
    })`${runtimeCommand()} scripts/pipeline.ts --instances ${
      path.join(dir, 'fleet', 'instances.txt')
    } --upstream ${fleet.upstream} --registry ${sb.registry}/fleet --context examples/synthetic-fleet/context --build-arg SEED_IMAGE=${sb.seedImage} --concurrency ${flags.concurrency} --cleanup ${flags.cleanup} --min-free 200MB --reserve 200MB --out ${out}`
    const wall = (Date.now() - t0) / 1000
    printDemoSummary(out, fleet.upstreamBytes, sb.diskBytes, wall)
    return result.exitCode ?? 1
  } finally {
    if (!flags.keep) await sandboxDown({ dir })
    else report.info(`sandbox left up: eval "$(npx bun scripts/sandbox.ts env --dir ${flags.dir})"`)
  }
}

function printDemoSummary(out: string, fleetBytes: number, diskBytes: number, wall: number) {
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
    `wall time: ${wall.toFixed(1)}s · peak disk used: ${formatBytes(s.peakUsed)} · reclaimed by cleanups: ${
      formatBytes(s.reclaimed)
    }`,
    `details: ${path.join(out, 'summary.md')}`,
  ].join('\n'))
}

if (import.meta.main) runMain(() => main(process.argv.slice(2)))
