#!/usr/bin/env bun
// assemble: per instance, the thin agent layer on top of its base image. Two ways, one result:
//   registry — inside the registry: mount the base's layers into the final repository, add the agent layer
//              (made once from the builder image, uploaded once), write a new config and manifest.
//              No pull, no build, no local disk.
//   docker   — `docker build` of the assemble Dockerfile, `docker push`, then `docker rmi` of what it pushed.
//   auto     — registry when the assemble Dockerfile only adds files from the builder stage and metadata, else docker.
// Skips what the registry has.
//   npx bun scripts/assemble.ts --instances ids.txt --registry ghcr.io/me --context docker/ [--mode auto]
import fs from 'node:fs'
import pMap from 'p-map'
import { $ } from 'zx'
import { type FlagTable, parseFlags, renderHelp, UsageError } from '../lib/cli/flags.ts'
import {
  type AgentLayer,
  assembleInRegistry,
  type AssemblePlan,
  formatPlatform,
  makeAgentLayer,
  parseAssembleDockerfile,
  type Platform,
} from '../lib/image/assemble-registry.ts'
import { runMain } from '../lib/cli/main.ts'
import { type Fleet, FLEET_FLAGS, loadFleet } from '../lib/fleet/fleet.ts'
import type { Instance } from '../lib/fleet/instances.ts'
import type { RegistryClient } from '../lib/registry/client.ts'
import { report } from '../lib/cli/report.ts'
import { formatBytes } from '../lib/cli/size.ts'
import { recordSkip, runStep, type StepResult } from '../lib/run/step.ts'
import { alreadyPushed, commonBuildFlags } from './build-bases.ts'
import { startScript } from './_setup.ts'
import { type BuildOptions, RUN_FLAGS, runFlagProblems } from '../lib/engine/options.ts'

/** The assembly flag, shared with the pipeline (defined here, once). */
export const ASSEMBLE_FLAGS = {
  mode: {
    type: 'string',
    arg: 'MODE',
    default: 'auto',
    choices: ['auto', 'registry', 'docker'],
    help:
      'registry: append the agent layer to each base inside the registry (no pull, no build, no local disk); docker: docker build + push; auto: registry when the assemble Dockerfile only adds files from the builder stage and metadata, else docker',
  },
} as const satisfies FlagTable

export const FLAGS = { ...FLEET_FLAGS, ...RUN_FLAGS, ...ASSEMBLE_FLAGS } as const satisfies FlagTable

export type AssembleMode = 'auto' | 'registry' | 'docker'
/** How this run assembles, chosen once. `local`: the final image is left in the local image store (the caller removes it). */
export type Assembly = {
  mode: 'registry' | 'docker'
  local: boolean
  assemble: (inst: Instance) => Promise<StepResult | 'skipped'>
}

/** Picks the way once: `auto` parses the assemble Dockerfile and says why when it cannot use the registry. */
export function prepareAssembly(mode: AssembleMode, o: BuildOptions, client: RegistryClient): Assembly {
  const text = fs.readFileSync(o.fleet.assembleDockerfile, 'utf8')
  const probe = o.fleet.instances[0] && planFor(text, o.fleet, o.fleet.instances[0])
  if (mode === 'registry' && probe && !probe.ok) {
    throw new UsageError(`--mode registry: ${o.fleet.assembleDockerfile} ${probe.why}`)
  }
  if (mode === 'docker' || (probe && !probe.ok)) {
    if (mode === 'auto' && probe && !probe.ok) report.info(`assemble: docker build, not the registry: ${probe.why}`)
    return { mode: 'docker', local: true, assemble: (inst) => assembleInstance(inst, o) }
  }
  report.info('assemble: in the registry (the assemble Dockerfile only adds files from the builder stage and metadata)')
  if (o.run.dry && probe?.ok) {
    report.info(
      `registry (once): agent layer from ${probe.builderImage}: ${
        probe.copies.map((c) => `${c.sources.join(' ')} → ${c.dest}`).join(', ')
      } (made once, uploaded once, mounted into every final repository)`,
    )
  }
  const layers = agentLayers(client, o.fleet.platform)
  return {
    mode: 'registry',
    local: false,
    assemble: (inst) => assembleInstanceInRegistry(inst, o, { client, text, layers }),
  }
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

type RegistryContext = {
  client: RegistryClient
  text: string
  layers: (plan: AssemblePlan, p: Platform) => Promise<AgentLayer>
}

/** One final image written inside the registry: base layers mounted, agent layer added, new config + manifest. */
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
        `registry: ${tag} ← ${plan.baseImage}: mount its layers, add the agent layer, put a new config and manifest`,
      )
    }
    const result = await assembleInRegistry({
      client: r.client,
      baseRef: plan.baseImage,
      finalRef: tag,
      steps: plan.steps,
      platform: o.fleet.platform,
      layer: plan.copies.length ? (p) => r.layers(plan, p) : undefined,
    })
    o.run.attach('assemble', inst.id, {
      registry: {
        bytes_uploaded: result.bytesUploaded,
        mounted: result.mounted,
        copied: result.copied,
        present: result.present,
        ...(result.notes.length ? { notes: result.notes } : {}),
      },
    })
    fs.appendFileSync(
      o.run.logFile('assemble', inst.dockerId),
      [
        `registry: ${tag}@${result.digest} (${result.platforms.join(', ')}) from ${plan.baseImage} in ${
          result.seconds.toFixed(2)
        }s`,
        `registry: ${
          formatBytes(result.bytesUploaded)
        } uploaded; blobs ${result.mounted} mounted, ${result.copied} copied, ${result.present} already there`,
        ...result.notes.map((n) => `registry: ${n}`),
        '',
      ].join('\n'),
    )
  })
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

/** The agent layer per builder, copies and platform: made once for the run (one download of the builder), shared by every instance. */
function agentLayers(client: RegistryClient, platform?: string) {
  const made = new Map<string, Promise<AgentLayer>>()
  const cache = new Map<string, AgentLayer>()
  return (plan: AssemblePlan, p: Platform): Promise<AgentLayer> => {
    const want = platform ?? formatPlatform(p)
    const key = JSON.stringify([plan.builderImage, plan.copies, want])
    let layer = made.get(key)
    if (!layer) {
      layer = makeAgentLayer({ client, builderRef: plan.builderImage, copies: plan.copies, platform: want, cache })
      layer.catch(() => made.delete(key)) // a failed download lets the next instance try again
      made.set(key, layer)
    }
    return layer
  }
}

async function main(argv: string[]) {
  const { flags } = parseFlags(FLAGS, argv, process.env)
  if (flags.help) {
    return void console.log(
      renderHelp(
        'npx bun scripts/assemble.ts --instances FILE --registry PREFIX [flags]',
        'Assembles one final image per instance from its base image (built by build-bases) and the builder image: inside the registry, or with docker build + push (then removed locally).',
        FLAGS,
      ),
    )
  }
  const fleet = loadFleet(flags, runFlagProblems(flags, process.env))
  // --mode registry builds nothing: no RUN check (its probe build would write to the data root)
  const s = await startScript({ ...flags, checkRun: flags.mode !== 'registry' }, fleet)
  const assembly = prepareAssembly(flags.mode as AssembleMode, s.build, s.registry)
  report.phase(`assemble: ${fleet.instances.length} (${assembly.mode})`)
  await pMap(fleet.instances, async (inst) => {
    const result = await assembly.assemble(inst)
    if (assembly.local && result !== 'skipped' && result.ok) await s.removeImages([fleet.finalImage(inst)])
  }, { concurrency: s.concurrency })
  return s.finish()
}

if (import.meta.main) runMain(() => main(process.argv.slice(2)))
