#!/usr/bin/env bun
// sandbox: a throwaway Docker engine on a small loop-mounted disk, plus a real registry, for tests, the demo,
// benchmarks and operators who want a full CI disk on their desk. The command line only: starting and stopping
// is scripts/_sandbox-engine.ts, package installs scripts/_sandbox-packages.ts, the files lib/sandbox/state.ts.
//   npx bun scripts/sandbox.ts up|down|env|status [--dir DIR] [--disk SIZE]
import path from 'node:path'
import { type FlagTable, parseFlags, renderHelp, unexpectedArguments, UsageError } from '../lib/cli/flags.ts'
import { FatalError, runMain } from '../lib/cli/main.ts'
import { sampleDisk } from '../lib/disk/statfs.ts'
import { configureReport, report, secretValues } from '../lib/cli/report.ts'
import { formatBytes } from '../lib/cli/size.ts'
import { inGitHubActions } from '../lib/cli/environment.ts'
import { exportsOf, layout, readState, type Sandbox } from '../lib/sandbox/state.ts'
import { sandboxDown, sandboxState, sandboxUp } from './_sandbox-engine.ts'

export const FLAGS = {
  dir: {
    type: 'string',
    default: '.sandbox',
    arg: 'DIR',
    help: 'Directory holding the disk image, sockets, logs and registry storage',
  },
  disk: {
    type: 'size',
    default: '3G',
    arg: 'SIZE',
    help: 'Size of the loop-mounted ext4 disk that holds the Docker data root',
  },
  json: { type: 'boolean', help: 'With env: print the environment as JSON instead of shell exports' },
} as const satisfies FlagTable

const COMMANDS = ['up', 'down', 'env', 'status']
const USAGE = 'npx bun scripts/sandbox.ts up|down|env|status [--dir DIR] [--disk SIZE] [--json]'
const SUMMARY = [
  'A throwaway dockerd whose data root is a loop-mounted ext4 disk of --disk, a registry on 127.0.0.1 and a seeded busybox image.',
  '  up      start it (idempotent: "already up" when it is), then print the exports',
  '  down    stop everything, unmount, remove DIR (idempotent)',
  '  env     print the exports: eval "$(npx bun scripts/sandbox.ts env)"',
  '  status  disk and registry; exit 1 when down',
  'The exports point docker at it (DOCKER_HOST, DOCKER_CONFIG, a BuildKit client first on PATH), name its registry',
  'and seed image (IMAGEFLEET_SANDBOX_REGISTRY, IMAGEFLEET_SANDBOX_SEED), and set IMAGEFLEET_NETWORK=none: dockerd',
  'has no bridge network, so RUN steps build with --network none (nothing outside is reachable from it anyway).',
  'Needs root and loop devices; installs docker.io docker-registry busybox-static with apt-get when missing.',
].join('\n')

/** Shell exports (PATH extends "$PATH" at eval time) or, with --json, the same values fully expanded. */
function printEnv(dir: string, basePath: string | undefined, json: boolean): void {
  const state = readState(layout(dir))!
  if (json) return void process.stdout.write(JSON.stringify(exportsOf(state, basePath), null, 2) + '\n')
  const lines = Object.entries(exportsOf(state)).map(([k, v]) =>
    `export ${k}=${shellQuote(v)}${k === 'PATH' ? ':"$PATH"' : ''}`
  )
  process.stdout.write(lines.join('\n') + '\n')
}

function printStatus(s: Sandbox): void {
  const disk = sampleDisk(s.dataRoot)
  report.info(`sandbox:  up at ${s.dir}`)
  report.info(
    `disk:     ${formatBytes(disk.total)} total, ${formatBytes(disk.used)} used, ${
      formatBytes(disk.free)
    } free (${s.dataRoot})`,
  )
  report.info(`registry: ${s.registry}   seed: ${s.seedImage}`)
}

const shellQuote = (v: string) => /^[\w@%+=:,./-]*$/.test(v) ? v : `'${v.replace(/'/g, `'\\''`)}'`

async function main(argv: string[]): Promise<number> {
  const { flags, positionals } = parseFlags(FLAGS, argv, process.env, { positionals: true })
  if (flags.help) {
    process.stdout.write(renderHelp(USAGE, SUMMARY, FLAGS))
    return 0
  }
  const [command, ...extra] = positionals
  if (!COMMANDS.includes(command)) {
    throw new UsageError(`expected one of ${COMMANDS.join(', ')}; got '${positionals.join(' ')}'`)
  }
  if (extra.length) throw new UsageError(unexpectedArguments(extra, `sandbox.ts ${command} takes flags only`))
  configureReport({ github: inGitHubActions(process.env), secrets: secretValues(process.env) })
  if (command === 'up') {
    printEnv((await sandboxUp({ dir: flags.dir, disk: flags.disk, baseEnv: process.env })).dir, process.env.PATH, false)
  }
  if (command === 'down') await sandboxDown({ dir: flags.dir })
  if (command === 'up' || command === 'down') return 0
  const running = sandboxState(flags.dir, process.env)
  if (!running) {
    if (command === 'status') {
      report.info(`sandbox:  down (${path.resolve(flags.dir)})`)
      return 1
    }
    throw new FatalError(
      `no sandbox is up at ${path.resolve(flags.dir)}: run 'npx bun scripts/sandbox.ts up${
        flags.dir === FLAGS.dir.default ? '' : ` --dir ${flags.dir}`
      }' first`,
    )
  }
  if (command === 'env') printEnv(running.dir, process.env.PATH, flags.json)
  else printStatus(running)
  return 0
}

if (import.meta.main) runMain(() => main(process.argv.slice(2)))
