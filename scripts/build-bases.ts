#!/usr/bin/env bun
// build-bases: the builder image once, then one base image per instance FROM its upstream image.
// With buildx: `docker buildx build --push --provenance=false`; without: `docker build` + `docker push`.
// Skips tags the registry already has unless --force.
//   npx bun scripts/build-bases.ts --instances ids.txt --registry ghcr.io/me --context docker/
import pMap from 'p-map'
import { $ } from 'zx'
import { type FlagTable, parseFlags, renderHelp } from '../lib/cli/flags.ts'
import { runMain } from '../lib/cli/main.ts'
import { type Fleet, FLEET_FLAGS, loadFleet } from '../lib/fleet/fleet.ts'
import type { Instance } from '../lib/fleet/instances.ts'
import { recordSkip, runStep, type StepResult } from '../lib/run/step.ts'
import { report } from '../lib/cli/report.ts'
import { startScript } from './_setup.ts'
import { type BuildOptions, RUN_FLAGS, runFlagProblems } from '../lib/engine/options.ts'

export const FLAGS = {
  ...FLEET_FLAGS,
  ...RUN_FLAGS,
} as const satisfies FlagTable

/** Flags every build gets: --build-arg, --platform, --network. */
export function commonBuildFlags(fleet: Fleet, network?: string): string[] {
  return [
    ...fleet.buildArgs.flatMap((arg) => ['--build-arg', arg]),
    ...(fleet.platform ? ['--platform', fleet.platform] : []),
    ...(network ? ['--network', network] : []),
  ]
}

/** Skips what the registry has (unless --force); resolves to the reason when skipping. */
export async function alreadyPushed(tag: string, o: BuildOptions): Promise<string | undefined> {
  if (o.force) return undefined
  try {
    return (await o.exists(tag)) ? 'registry has it' : undefined
  } catch (e) {
    report.warn(`cannot tell whether the registry has ${tag} (${(e as Error).message}); building it`)
  }
}

/** The builder image, once per key. A failure here stops the run: nothing can assemble without it. */
export async function buildBuilder(o: BuildOptions): Promise<StepResult | 'skipped'> {
  const { fleet } = o
  const tag = fleet.builderImage
  const info = { phase: 'builder' as const, id: 'builder', dockerId: 'builder', tag }
  const skip = await alreadyPushed(tag, o)
  if (skip) return recordSkip(o.run, info, skip), 'skipped'
  // + BASE_IMAGE=scratch when the Dockerfile leaves it without a default (the builder has no instance: fleet.ts)
  const flags = [...commonBuildFlags(fleet, o.network), ...fleet.builderArgs.flatMap((arg) => ['--build-arg', arg])]
  return runStep(o.run, info, o.policy, async () => {
    if (o.buildx) {
      await $`docker buildx build --push --provenance=false ${
        o.buildx.builder ? ['--builder', o.buildx.builder] : []
      } ${flags} --target ${fleet.builderTarget} -t ${tag} -f ${fleet.dockerfile} ${fleet.context}`.timeout(o.timeout)
    } else {
      await $`docker build ${flags} --target ${fleet.builderTarget} -t ${tag} -f ${fleet.dockerfile} ${fleet.context}`
        .timeout(o.timeout)
      await $`docker push ${tag}`.timeout(o.timeout)
    }
  })
}

/** One base image FROM the instance's upstream image, pushed. Resolves to the step result or 'skipped'. */
export async function buildBase(inst: Instance, o: BuildOptions): Promise<StepResult | 'skipped'> {
  const { fleet } = o
  const tag = fleet.baseImage(inst)
  const info = { phase: 'base' as const, id: inst.id, dockerId: inst.dockerId, tag, from: inst.upstream }
  const skip = await alreadyPushed(tag, o)
  if (skip) return recordSkip(o.run, info, skip), 'skipped'
  const flags = commonBuildFlags(fleet, o.network)
  return runStep(o.run, info, o.policy, async () => {
    if (o.buildx) {
      await $`docker buildx build --push --provenance=false ${
        o.buildx.builder ? ['--builder', o.buildx.builder] : []
      } ${flags} --build-arg BASE_IMAGE=${inst.upstream} --target ${fleet.baseTarget} -t ${tag} -f ${fleet.dockerfile} ${fleet.context}`
        .timeout(o.timeout)
    } else {
      await $`docker build ${flags} --build-arg BASE_IMAGE=${inst.upstream} --target ${fleet.baseTarget} -t ${tag} -f ${fleet.dockerfile} ${fleet.context}`
        .timeout(o.timeout)
      await $`docker push ${tag}`.timeout(o.timeout)
    }
  })
}

async function main(argv: string[]) {
  const { flags } = parseFlags(FLAGS, argv, process.env)
  if (flags.help) {
    return void console.log(
      renderHelp(
        'npx bun scripts/build-bases.ts --instances FILE --registry PREFIX [flags]',
        'Builds the builder image, then one base image per instance, and pushes them. Removes each local image after its push.',
        FLAGS,
      ),
    )
  }
  const fleet = loadFleet(flags, runFlagProblems(flags, process.env))
  const s = await startScript(flags, fleet)
  report.phase(`builder ${fleet.builderImage}`)
  const builder = await buildBuilder(s.build)
  if (builder !== 'skipped' && !builder.ok) return 1
  report.phase(`bases: ${fleet.instances.length}`)
  await pMap(fleet.instances, async (inst) => {
    const result = await buildBase(inst, s.build)
    if (result !== 'skipped' && result.ok && !s.build.buildx) await s.removeImages([fleet.baseImage(inst)])
  }, { concurrency: s.concurrency })
  return s.finish()
}

if (import.meta.main) runMain(() => main(process.argv.slice(2)))
