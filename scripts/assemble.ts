#!/usr/bin/env bun
// assemble: per instance, the thin agent layer on top of its base image. Two ways, one result:
//   registry — inside the registry: read the base's layers where the steps write (streamed, never stored), mount
//              them into the final repository, add the layer the steps make (as BuildKit makes it; built once
//              per distinct content, uploaded once), write a new config and manifest. No pull, no build, no disk.
//   docker   — `docker build` of the assemble Dockerfile, `docker push`, then `docker rmi` of what it pushed.
//   auto     — registry when the assemble Dockerfile only copies from images and sets metadata, else docker; it
//              prints which, and for docker the line that forced it.
// Skips what the registry has.
//   npx bun scripts/assemble.ts --instances ids.txt --registry ghcr.io/me --context docker/ [--mode auto]
import fs from 'node:fs'
import { $ } from 'zx'
import { type FlagTable, parseFlags, renderHelp, UsageError } from '../lib/cli/flags.ts'
import { type AssemblePlan, Assembler, parseAssembleDockerfile } from '../lib/image/assemble-registry.ts'
import { buildkitVersion } from '../lib/image/buildkit-rules.ts'
import { runMain } from '../lib/cli/main.ts'
import { type Fleet, FLEET_FLAGS, loadFleet } from '../lib/fleet/fleet.ts'
import type { Instance } from '../lib/fleet/instances.ts'
import type { RegistryClient } from '../lib/registry/client.ts'
import { report } from '../lib/cli/report.ts'
import { formatBytes } from '../lib/cli/size.ts'
import { recordSkip, runStep, type StepResult } from '../lib/run/step.ts'
import { admitEach, finishRun, openDisk, prefetchTags, startScript } from './_setup.ts'
import { costLayers, readUpstreams } from '../lib/fleet/upstreams.ts'
import { type Order, scheduleFleet } from '../lib/fleet/schedule.ts'
import {
  alreadyPushed,
  type BuildOptions,
  commonBuildFlags,
  DISK_FLAGS,
  RUN_FLAGS,
  runFlagProblems,
} from '../lib/engine/options.ts'

/** The assembly flag, shared with the pipeline (defined here, once). */
export const ASSEMBLE_FLAGS = {
  mode: {
    type: 'string',
    arg: 'MODE',
    default: 'auto',
    choices: ['auto', 'registry', 'docker'],
    help:
      'registry: append the agent layer to each base inside the registry (no pull, no build, no local disk); docker: ' +
      'docker build + push; auto: registry when the assemble Dockerfile only copies from images and sets metadata, ' +
      'else docker (it says which, and the line that forced docker)',
  },
} as const satisfies FlagTable

export const FLAGS = { ...FLEET_FLAGS, ...RUN_FLAGS, ...ASSEMBLE_FLAGS, ...DISK_FLAGS } as const satisfies FlagTable

export type AssembleMode = 'auto' | 'registry' | 'docker'
/** How this run assembles, chosen once. `local`: the final image is left in the local image store (the caller removes it). */
export type Assembly = {
  mode: 'registry' | 'docker'
  local: boolean
  /** `build`: this instance's build options (its full-disk recovery bound to the disk budget); default: the run's */
  assemble: (inst: Instance, build?: BuildOptions) => Promise<StepResult | 'skipped'>
}
/** What preflight found about the engine that decides how `docker build` copies (see lib/image/buildkit-rules.ts). */
export type EngineFacts = { server?: string; buildx?: { buildkit?: string } }

/**
 * Picks the way once. `auto` parses the assemble Dockerfile and prints which way it took and, for docker, the line
 * that forced it. `engine` (preflight) tells the BuildKit version whose COPY rules registry mode follows.
 */
export function prepareAssembly(
  mode: AssembleMode,
  o: BuildOptions,
  client: RegistryClient,
  engine: EngineFacts = {},
): Assembly {
  const file = o.fleet.assembleDockerfile
  const text = fs.readFileSync(file, 'utf8')
  const probe = o.fleet.instances[0] && planFor(text, o.fleet, o.fleet.instances[0])
  if (mode === 'registry' && probe && !probe.ok) throw new UsageError(`--mode registry: ${file} ${probe.why}`)
  if (mode === 'docker' || (probe && !probe.ok)) {
    if (mode === 'auto' && probe && !probe.ok) {
      report.info(`assemble: ${file}: docker build, forced by ${forcedBy(text, probe)}`)
    }
    return { mode: 'docker', local: true, assemble: (inst, build) => assembleInstance(inst, build ?? o) }
  }
  const buildkit = buildkitVersion({ server: engine.server, buildkit: engine.buildx?.buildkit })
  report.info(
    `assemble: ${file}: in the registry (it only copies from images and sets metadata; COPY rules of BuildKit ${
      buildkit ?? 'unknown: a COPY whose result depends on the version fails with the reason'
    })`,
  )
  if (o.run.dry && probe?.ok) {
    report.info(
      `registry (per instance): read the base's layers where the steps write, add one layer from ${
        probe.sources.join(', ') || '(no COPY)'
      } (built once per distinct content, uploaded once, mounted into every final repository)`,
    )
  }
  const assembler = new Assembler({ client, buildkit, platform: o.fleet.platform })
  return {
    mode: 'registry',
    local: false,
    assemble: (inst, build) => assembleInstanceInRegistry(inst, build ?? o, { text, assembler }),
  }
}

/** The line that makes a Dockerfile need `docker build`, as written, and why. */
function forcedBy(text: string, probe: { why: string; line?: number }): string {
  const line = probe.line && text.replace(/\r\n?/g, '\n').split('\n')[probe.line - 1]?.trim()
  return line ? `line ${probe.line}: ${line} — ${probe.why.replace(/^line \d+: /, '')}` : probe.why
}

/** Builds and pushes one final image FROM the instance's base, with the builder image (docker mode). */
export async function assembleInstance(inst: Instance, o: BuildOptions): Promise<StepResult | 'skipped'> {
  const { fleet } = o
  const tag = fleet.finalImage(inst)
  const info = { phase: 'assemble' as const, id: inst.id, dockerId: inst.dockerId, tag, from: fleet.baseImage(inst) }
  const skip = await alreadyPushed(tag, o)
  if (skip) return recordSkip(o.run, info, skip), 'skipped'
  const flags = commonBuildFlags(fleet, o.network)
  return runStep(o.run, info, o.policy, async () => {
    await $`docker build ${flags} --build-arg BASE_IMAGE=${
      fleet.baseImage(inst)
    } --build-arg BUILDER_IMAGE=${fleet.builderImage} -t ${tag} -f ${fleet.assembleDockerfile} ${fleet.context}`
      .timeout(o.timeout)
    await $`docker push ${tag}`.timeout(o.timeout)
  })
}

type RegistryContext = { text: string; assembler: Assembler }

/** One final image written inside the registry: base layers mounted, the steps' layer added, new config + manifest. */
export async function assembleInstanceInRegistry(
  inst: Instance,
  o: BuildOptions,
  r: RegistryContext,
): Promise<StepResult | 'skipped'> {
  const tag = o.fleet.finalImage(inst)
  const info = { phase: 'assemble' as const, id: inst.id, dockerId: inst.dockerId, tag, from: o.fleet.baseImage(inst) }
  const skip = await alreadyPushed(tag, o)
  if (skip) return recordSkip(o.run, info, skip), 'skipped'
  return runStep(o.run, info, o.policy, async () => {
    const plan = planFor(r.text, o.fleet, inst)
    if (!plan.ok) throw new Error(`the assemble Dockerfile cannot be done in the registry for ${inst.id}: ${plan.why}`)
    if (o.run.dry) {
      return void report.info(
        `registry: ${tag} ← ${plan.baseImage}: read its layers where the steps write, mount them, add the layer, put a new config and manifest`,
      )
    }
    const result = await r.assembler.assemble(plan, tag)
    // the record's registry tally (lib/run/records.ts RegistryTally), plus what reading the base cost
    const tally = {
      bytes_uploaded: result.bytesUploaded,
      mounted: result.mounted,
      copied: result.copied,
      present: result.present,
      base_bytes_read: result.base.bytesRead,
      base_read_seconds: Number(result.base.seconds.toFixed(3)),
      ...(result.notes.length ? { notes: result.notes } : {}),
    }
    o.run.attach('assemble', inst.id, { registry: tally })
    fs.appendFileSync(o.run.logFile('assemble', inst.dockerId), logLines(tag, plan, result).join('\n') + '\n')
  })
}

function logLines(tag: string, plan: AssemblePlan, result: Awaited<ReturnType<Assembler['assemble']>>): string[] {
  const b = result.base
  const layer = result.layer
  return [
    `registry: ${tag}@${result.digest} (${result.platforms.join(', ')}) from ${plan.baseImage} in ${
      result.seconds.toFixed(2)
    }s`,
    `registry: base read ${formatBytes(b.bytesRead)} in ${
      b.seconds.toFixed(2)
    }s (${b.layersRead} layers streamed, ${b.layersCached} answered from earlier instances, ${b.rounds} round${
      b.rounds === 1 ? '' : 's'
    })`,
    layer
      ? `registry: added layer ${layer.digest} (${layer.files} members, ${formatBytes(layer.size)}${
        layer.reused ? ', the same as an earlier instance' : ''
      })`
      : 'registry: no layer added (the steps change no file of this base)',
    `registry: ${
      formatBytes(result.bytesUploaded)
    } uploaded; blobs ${result.mounted} mounted, ${result.copied} copied, ${result.present} already there`,
    ...result.notes.map((n) => `registry: ${n}`),
  ]
}

/** The assemble Dockerfile for one instance, with the build args `docker build` would get. */
function planFor(text: string, fleet: Fleet, inst: Instance) {
  const buildArgs = Object.fromEntries(
    fleet.buildArgs.map((a) => [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)]),
  )
  return parseAssembleDockerfile(text, {
    buildArgs: { ...buildArgs, BASE_IMAGE: fleet.baseImage(inst), BUILDER_IMAGE: fleet.builderImage },
  })
}

async function main(argv: string[]) {
  const { flags } = parseFlags(FLAGS, argv, process.env)
  if (flags.help) {
    return void console.log(
      renderHelp(
        'npx bun scripts/assemble.ts --instances FILE --registry PREFIX [flags]',
        'Assembles one final image per instance from its base image (built by build-bases) and the builder image: ' +
          'inside the registry, or with docker build + push (then removed locally).',
        FLAGS,
      ),
    )
  }
  const fleet = loadFleet(flags, runFlagProblems(flags, process.env))
  // --mode registry builds nothing: no RUN check (its probe build would write to the data root)
  const s = await startScript({ ...flags, checkRun: flags.mode !== 'registry' }, fleet)
  const assembly = prepareAssembly(flags.mode as AssembleMode, s.build, s.registry, s.pre)
  report.phase('plan')
  await prefetchTags(s, fleet.instances.map((i) => fleet.finalImage(i)))
  // docker mode pulls each base: its layers are what the disk budget counts; registry mode writes nothing local
  const bases = assembly.local
    ? await readUpstreams(s.registry, fleet.platform, fleet.instances, (i) => fleet.baseImage(i))
    : undefined
  const schedule = scheduleFleet(fleet.instances, (i) => bases?.layers.get(i.id), flags.order as Order)
  const disk = openDisk(s, flags)
  const layersOf = (inst: Instance) => (bases ? costLayers(inst, bases, flags.expectGrowth) : [])
  disk.expect(schedule.order.map(layersOf))
  report.phase(`assemble: ${fleet.instances.length} (${assembly.mode})`)
  await admitEach(s, disk, schedule.order, async (inst, build, ticket) => {
    const result = await assembly.assemble(inst, build)
    ticket.based()
    return assembly.local && result !== 'skipped' && result.ok ? [fleet.finalImage(inst)] : []
  }, { layersOf })
  await disk.settle()
  return finishRun(s, disk)
}

if (import.meta.main) runMain(() => main(process.argv.slice(2)))
