#!/usr/bin/env bun
// bench:assemble — the same instances assembled both ways in one run, on one sandbox (dockerd on a loop disk
// + registry): `assemble --mode registry` (read the base's layers where the steps write, mount them, add the layer,
// new config/manifest inside the registry) and `assemble --mode docker` (pull the base, docker build, docker push,
// rmi). The assemble Dockerfile has the field's shape (a user named in --chown, read from each base's /etc/passwd
// and /etc/group; the base stage adds that user in its own small top layer), so registry mode pays for reading the
// bases. Measures seconds per image, what reading the bases cost (bytes streamed, seconds), bytes written to the
// Docker data root's disk (the loop device's write counter), statfs, registry bytes uploaded and stored; prints the
// ratios; writes bench/results/assemble-<date>.md. Every size it prints about the fleet and the agent layer is read
// back from the registry (manifests), not taken from its flags.
//   npm run bench:assemble        (needs root and loop devices; ~5 minutes on 2 cores)
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { $ } from 'zx'
import { type FlagTable, parseFlags, renderHelp } from '../lib/cli/flags.ts'
import { runMain } from '../lib/cli/main.ts'
import { sampleDisk } from '../lib/disk/statfs.ts'
import { formatBytes } from '../lib/cli/size.ts'
import { count } from '../lib/cli/report.ts'
import { type Fleet, generateFleet } from '../examples/synthetic-fleet/generate.ts'
import { type Sandbox, sandboxDown, sandboxUp } from '../scripts/_sandbox-engine.ts'
import { RegistryClient } from '../lib/registry/client.ts'
import { imageLayers } from '../lib/registry/image.ts'
import { machineLine } from './_machine.ts'

export const FLAGS = {
  groups: { type: 'int', default: 4, min: 1, help: 'Environment groups of the synthetic fleet' },
  'per-group': { type: 'int', default: 11, min: 1, help: 'Instances per group' },
  'env-size': { type: 'size', default: '60MB', help: 'Environment layer per group' },
  'instance-size': { type: 'size', default: '15MB', help: 'Layer unique to each instance' },
  disk: { type: 'size', default: '8GiB', help: 'Sandbox disk (holds the Docker data root)' },
  concurrency: { type: 'int', default: 4, min: 1, help: 'Images assembled at once (both ways)' },
  dir: { type: 'string', arg: 'DIR', help: 'Work directory (default: a new temp dir, removed after)' },
} as const satisfies FlagTable

/** Appended to the synthetic fleet's Dockerfile: its base stage adds the user in a small layer, as the field's does. */
const BASE_ADDS_USER =
  `RUN echo 'agent:x:1000:1000::/home/agent:/bin/sh' >> /etc/passwd && echo 'agent:x:1000:' >> /etc/group \\
 && mkdir -p /home/agent && chown 1000:1000 /home/agent && chmod 700 /home/agent
`
/**
 * The field's assemble Dockerfile in shape (tests/fixtures/assemble/01-field-shape.Dockerfile) over the synthetic
 * builder's 20 MB /opt/agent. No `# syntax=` line: the sandbox cannot fetch a frontend for docker mode.
 */
const ASSEMBLE_DOCKERFILE = `ARG BUILDER_IMAGE
ARG BASE_IMAGE
FROM \${BUILDER_IMAGE} AS builder
FROM \${BASE_IMAGE}
ARG USER=agent
ENV HOME=/home/\${USER} PATH=/agent-server/bin:$PATH
COPY --chown=\${USER}:\${USER} --from=builder /opt/agent /agent-server
LABEL org.imagefleet.agent=synthetic
USER \${USER}
WORKDIR /testbed
ENTRYPOINT ["/bin/sh", "-c", "cat /agent-server/VERSION"]
`

/** The bench's build context in `dir`: the synthetic fleet's, with the two changes above. */
function writeContext(dir: string): string {
  const synthetic = 'examples/synthetic-fleet/context'
  fs.mkdirSync(dir, { recursive: true })
  fs.writeFileSync(path.join(dir, 'Dockerfile'), fs.readFileSync(`${synthetic}/Dockerfile`, 'utf8') + BASE_ADDS_USER)
  fs.copyFileSync(`${synthetic}/imagefleet-base`, path.join(dir, 'imagefleet-base'))
  fs.writeFileSync(path.join(dir, 'Dockerfile.assemble'), ASSEMBLE_DOCKERFILE)
  return dir
}

type Way = {
  mode: 'registry' | 'docker'
  code: number
  wall: number
  built: number
  failed: number
  diskWritten: number
  freeDelta: number
  peakUsedDelta: number
  registryUploaded?: number
  registryStored: number
  mounted?: number
  copied?: number
  stepMedian: number
  /** Registry mode: median per image of the bytes streamed from the base's layers and the seconds that took. */
  baseBytesMedian?: number
  baseSecondsMedian?: number
  /** Median over the final images of the bytes they hold over their base (the agent layer), read from the registry */
  agentBytes: number
}

/** The fleet as the registry holds it: distinct environment layers, the instance layers, the images whole. */
type FleetFacts = { environments: number[]; instanceMedian: number; imageMean: number; dataRootBytes: number }

const registry = new RegistryClient()
type StepRecord = {
  phase: string
  id: string
  status: string
  tag: string
  seconds: number
  registry?: { base_bytes_read?: number; base_read_seconds?: number }
}
const records = (out: string): StepRecord[] =>
  fs.readFileSync(path.join(out, 'manifest.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l))
const dockerId = (id: string) => id.toLowerCase().replace(/__/g, '_1776_')

/** Every upstream image's manifest: its top layer is the instance's own, the one below its environment's. */
async function fleetFacts(fleet: Fleet, sb: Sandbox): Promise<FleetFacts> {
  const images = await Promise.all(
    fleet.ids.map((id) => imageLayers(registry, fleet.upstream.replace('{docker_id}', dockerId(id)))),
  )
  const environments = new Map(images.map((layers) => [layers.at(-2)!.digest, layers.at(-2)!.size]))
  return {
    environments: [...environments.values()],
    instanceMedian: median(images.map((layers) => layers.at(-1)!.size)),
    imageMean: images.flat().reduce((n, l) => n + l.size, 0) / images.length,
    dataRootBytes: sampleDisk(sb.dataRoot).total,
  }
}

/** Median bytes each final image of `out` holds over the base it was assembled on (base tags from `basesOut`). */
async function agentBytes(out: string, basesOut: string): Promise<number> {
  const bases = new Map(records(basesOut).filter((m) => m.phase === 'base').map((m) => [m.id, m.tag]))
  const finals = records(out).filter((m) => m.phase === 'assemble' && m.status === 'built')
  return median(
    await Promise.all(finals.map(async (m) => {
      const below = new Set((await imageLayers(registry, bases.get(m.id)!)).map((l) => l.digest))
      return (await imageLayers(registry, m.tag)).filter((l) => !below.has(l.digest)).reduce((n, l) => n + l.size, 0)
    })),
  )
}

/** Bytes written so far to the block device that holds `mountPoint` (/sys/block/DEV/stat, sectors of 512 bytes). */
function bytesWritten(mountPoint: string): number {
  const line = fs.readFileSync('/proc/self/mounts', 'utf8').split('\n').find((l) => l.split(' ')[1] === mountPoint)
  const dev = line?.split(' ')[0].replace('/dev/', '')
  if (!dev) throw new Error(`no block device mounted at ${mountPoint}`)
  return Number(fs.readFileSync(`/sys/block/${dev}/stat`, 'utf8').trim().split(/\s+/)[6]) * 512
}

async function duBytes(dir: string): Promise<number> {
  return Number((await $({ quiet: true })`du -sb ${dir}`).stdout.split('\t')[0])
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length ? s[Math.floor(s.length / 2)] : 0
}

/** One way: the assemble script on every instance, measured from outside (device writes, statfs, registry storage). */
async function assembleWay(
  mode: Way['mode'],
  sb: Sandbox,
  o: { dir: string; args: string[]; basesOut: string },
): Promise<Way> {
  const out = path.join(o.dir, `out-${mode}`)
  const mnt = path.dirname(sb.dataRoot)
  const finalRepo = `${sb.registry}/fleet/${mode}-agent`
  await $({ env: sb.env, quiet: true })`sync`
  const [written0, disk0, stored0] = [
    bytesWritten(mnt),
    sampleDisk(sb.dataRoot),
    await duBytes(path.join(sb.dir, 'registry')),
  ]
  console.log(`\n== assemble --mode ${mode} → ${finalRepo}`)
  const t0 = Date.now()
  const r = await $({
    env: sb.env,
    nothrow: true,
    stdio: ['ignore', 'inherit', 'inherit'],
  })`${process.execPath} scripts/assemble.ts ${o.args} --mode ${mode} --final-repo ${finalRepo} --out ${out}`
  const wall = (Date.now() - t0) / 1000
  await $({ env: sb.env, quiet: true })`sync`
  const [written1, disk1, stored1] = [
    bytesWritten(mnt),
    sampleDisk(sb.dataRoot),
    await duBytes(path.join(sb.dir, 'registry')),
  ]
  const s = JSON.parse(fs.readFileSync(path.join(out, 'summary.json'), 'utf8'))
  const steps = records(out).filter((m) => m.phase === 'assemble' && m.status === 'built')
  return {
    mode,
    code: r.exitCode ?? -1,
    wall,
    built: s.counts.assemble.built,
    failed: s.counts.assemble.failed,
    diskWritten: written1 - written0,
    freeDelta: disk1.free - disk0.free,
    peakUsedDelta: Math.max(0, s.peakUsed - disk0.used),
    registryUploaded: s.registry?.bytesUploaded,
    registryStored: stored1 - stored0,
    mounted: s.registry?.mounted,
    copied: s.registry?.copied,
    stepMedian: median(steps.map((m) => m.seconds)),
    agentBytes: await agentBytes(out, o.basesOut),
    ...(mode === 'registry'
      ? {
        baseBytesMedian: median(steps.map((m) => m.registry?.base_bytes_read ?? 0)),
        baseSecondsMedian: median(steps.map((m) => m.registry?.base_read_seconds ?? 0)),
      }
      : {}),
  }
}

function table(ways: Way[], n: number): string {
  const rows = ways.map((w) =>
    `| ${w.mode} | ${w.built}/${n} | ${w.wall.toFixed(1)} | ${(w.wall / n).toFixed(3)} | ${w.stepMedian.toFixed(2)} | ${
      formatBytes(w.diskWritten)
    } | ${formatBytes(w.peakUsedDelta)} | ${formatBytes(-w.freeDelta)} | ${
      w.registryUploaded === undefined ? 'n/a (docker push)' : formatBytes(w.registryUploaded)
    } | ${formatBytes(w.registryStored)} | ${w.mounted ?? '–'} / ${w.copied ?? '–'} | ${
      w.baseBytesMedian === undefined ? '–' : `${formatBytes(w.baseBytesMedian)} / ${w.baseSecondsMedian!.toFixed(2)}s`
    } |`
  )
  return [
    '| mode | built | wall s | s/image (wall) | median step s | disk written (loop device) | peak data-root growth | data-root net growth | registry bytes uploaded | registry storage growth | mounts / copies | median base read (bytes / s) |',
    '|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|',
    ...rows,
  ].join('\n')
}

async function main(argv: string[]) {
  const { flags } = parseFlags(FLAGS, argv, process.env)
  if (flags.help) {
    return void console.log(
      renderHelp(
        'npx bun bench/assemble.ts [flags]',
        'Registry assembly vs docker build, the same instances both ways, on a sandbox (see the header of this file).',
        FLAGS,
      ),
    )
  }
  const dir = flags.dir ? path.resolve(flags.dir) : fs.mkdtempSync(path.join(os.tmpdir(), 'bench-assemble-'))
  const started = machineLine({ diskDir: dir })
  const sb = await sandboxUp({ dir: path.join(dir, 'sandbox'), disk: flags.disk, baseEnv: process.env })
  try {
    const fleet = await generateFleet({
      registry: sb.registry,
      groups: flags.groups,
      perGroup: flags.perGroup,
      envSize: flags.envSize,
      instanceSize: flags.instanceSize,
      out: path.join(dir, 'instances.txt'),
    })
    const context = writeContext(path.join(dir, 'context'))
    const args = [
      '--instances',
      path.join(dir, 'instances.txt'),
      '--upstream',
      fleet.upstream,
      '--registry',
      `${sb.registry}/fleet`,
      '--context',
      context,
      '--build-arg',
      `SEED_IMAGE=${sb.seedImage}`,
      '--network',
      'none',
      '--concurrency',
      String(flags.concurrency),
      '--min-free',
      '100MB',
      '--key',
      'bench',
    ]
    console.log('\n== the builder and the bases (not measured): build-bases')
    const basesOut = path.join(dir, 'out-bases')
    await $({
      env: sb.env,
      stdio: ['ignore', 'inherit', 'inherit'],
    })`${process.execPath} scripts/build-bases.ts ${args} --out ${basesOut}`
    // start docker mode cold, as on a fresh runner: no base layers, no build cache
    await $({ env: sb.env, quiet: true, timeout: '10m' })`docker system prune -af`
    await $({ env: sb.env, quiet: true, timeout: '10m' })`docker builder prune -af`
    const ways = [
      await assembleWay('registry', sb, { dir, args, basesOut }),
      await assembleWay('docker', sb, { dir, args, basesOut }),
    ]
    writeReport(ways, { n: fleet.instances, upstreamBytes: fleet.upstreamBytes, ...await fleetFacts(fleet, sb) }, {
      started,
      concurrency: flags.concurrency,
    })
  } finally {
    await sandboxDown({ dir: sb.dir })
    if (!flags.dir) fs.rmSync(dir, { recursive: true, force: true })
  }
}

function writeReport(
  ways: Way[],
  f: FleetFacts & { n: number; upstreamBytes: number },
  o: { started: string; concurrency: number },
) {
  const [reg, dock] = ways
  const n = f.n
  const report = [
    `# bench:assemble — ${new Date().toISOString().slice(0, 10)}`,
    '',
    o.started,
    `After: ${machineLine()}`,
    `Fleet, as the registry holds it: ${n} instances over ${count(f.environments.length, 'environment layer')} (${
      f.environments.map(formatBytes).join(', ')
    }), instance layers ${formatBytes(f.instanceMedian)} (median), upstream images ${
      formatBytes(f.imageMean)
    } on average and ${formatBytes(f.upstreamBytes)} in all; data root filesystem ${formatBytes(f.dataRootBytes)}`,
    `Agent layer, as stored (what each final image holds over its base, median): registry mode ${
      formatBytes(reg.agentBytes)
    } · docker mode ${formatBytes(dock.agentBytes)}`,
    `Assemble Dockerfile of the field's shape (COPY --chown=agent:agent, USER, WORKDIR); concurrency ${o.concurrency} both ways; docker mode starts with no local images and no build cache`,
    '',
    table(ways, n),
    '',
    `median assembly per image (registry, base reading included): ${reg.stepMedian.toFixed(2)} s (target ≤ 1); ` +
    `median base read ${formatBytes(reg.baseBytesMedian ?? 0)} in ${(reg.baseSecondsMedian ?? 0).toFixed(2)} s ` +
    `(the layers an instance does not share with an earlier one, streamed to prove /agent-server absent and to read /etc/passwd, /etc/group)`,
    `s/image: registry ${(reg.wall / n).toFixed(3)} (target ≤ 1) · docker ${
      (dock.wall / n).toFixed(3)
    } · docker/registry = ${(dock.wall / reg.wall).toFixed(1)}× (target ≥ 20×)`,
    `Docker data root disk written: registry ${formatBytes(reg.diskWritten)} (target 0) · docker ${
      formatBytes(dock.diskWritten)
    }`,
    '',
  ].join('\n')
  console.log('\n' + report)
  const file = path.join('bench', 'results', `assemble-${new Date().toISOString().slice(0, 10)}.md`)
  fs.mkdirSync(path.dirname(file), { recursive: true })
  fs.writeFileSync(file, report)
  console.log(`→ ${file}`)
}

if (import.meta.main) runMain(() => main(process.argv.slice(2)))
