#!/usr/bin/env bun
// build-bases: the builder image once, then one base image per instance FROM its upstream image.
// With buildx: `docker buildx build --push --provenance=false`; without: `docker build` + `docker push`.
// Skips tags the registry already has unless --force.
//   npx bun scripts/build-bases.ts --instances ids.txt --registry ghcr.io/me --context docker/
import { $ } from 'zx'
import { type FlagTable, parseFlags, renderHelp } from '../lib/cli/flags.ts'
import { runMain } from '../lib/cli/main.ts'
import { FLEET_FLAGS, loadFleet } from '../lib/fleet/fleet.ts'
import type { Instance } from '../lib/fleet/instances.ts'
import { recordBlocked, recordSkip, runStep, type StepResult } from '../lib/run/step.ts'
import { report } from '../lib/cli/report.ts'
import { admitEach, finishRun, openDisk, prefetchTags, startScript } from './_setup.ts'
import { costLayers, readUpstreams } from '../lib/fleet/upstreams.ts'
import { describeSchedule, type Order, scheduleFleet } from '../lib/fleet/schedule.ts'
import {
  alreadyPushed,
  baseStaysLocal,
  type BuildOptions,
  commonBuildFlags,
  DISK_FLAGS,
  RUN_FLAGS,
  runFlagProblems,
} from '../lib/engine/options.ts'

export const FLAGS = {
  ...FLEET_FLAGS,
  ...RUN_FLAGS,
  ...DISK_FLAGS,
} as const satisfies FlagTable

/** The builder image, once per key. A failure here stops the run: nothing can assemble without it. */
export async function buildBuilder(o: BuildOptions): Promise<StepResult | 'skipped'> {
  const { fleet } = o
  const builderTag = fleet.builderImage
  const info = { phase: 'builder' as const, id: 'builder', dockerId: 'builder', tag: builderTag }
  const skip = await alreadyPushed(builderTag, o)
  if (skip) return recordSkip(o.run, info, skip), 'skipped'
  // + BASE_IMAGE=scratch when the Dockerfile leaves it without a default (the builder has no instance: fleet.ts)
  const flags = [...commonBuildFlags(fleet, o.network), ...fleet.builderArgs.flatMap((arg) => ['--build-arg', arg])]
  return runStep(o.run, info, o.policy, async () => {
    if (o.buildx) {
      await $`docker buildx build --push --provenance=false ${
        o.buildx.builder ? ['--builder', o.buildx.builder] : []
      } ${flags} --target ${fleet.builderTarget} -t ${builderTag} -f ${fleet.dockerfile} ${fleet.context}`.timeout(
        o.timeout,
      )
    } else {
      await $`docker build ${flags} --target ${fleet.builderTarget} -t ${builderTag} -f ${fleet.dockerfile} ${fleet.context}`
        .timeout(o.timeout)
      await $`docker push ${builderTag}`.timeout(o.timeout)
    }
  })
}

/** One base image FROM the instance's upstream image, pushed. Resolves to the step result or 'skipped'. */
export async function buildBase(inst: Instance, o: BuildOptions): Promise<StepResult | 'skipped'> {
  const { fleet } = o
  const baseTag = fleet.baseImage(inst)
  const info = { phase: 'base' as const, id: inst.id, dockerId: inst.dockerId, tag: baseTag, from: inst.upstream }
  const skip = await alreadyPushed(baseTag, o)
  if (skip) return recordSkip(o.run, info, skip), 'skipped'
  const flags = commonBuildFlags(fleet, o.network)
  return runStep(o.run, info, o.policy, async () => {
    if (o.buildx) {
      await $`docker buildx build --push --provenance=false ${
        o.buildx.builder ? ['--builder', o.buildx.builder] : []
      } ${flags} --build-arg BASE_IMAGE=${inst.upstream} --target ${fleet.baseTarget} -t ${baseTag} -f ${fleet.dockerfile} ${fleet.context}`
        .timeout(o.timeout)
    } else {
      await $`docker build ${flags} --build-arg BASE_IMAGE=${inst.upstream} --target ${fleet.baseTarget} -t ${baseTag} -f ${fleet.dockerfile} ${fleet.context}`
        .timeout(o.timeout)
      await $`docker push ${baseTag}`.timeout(o.timeout)
    }
  })
}

async function main(argv: string[]) {
  const { flags } = parseFlags(FLAGS, argv, process.env)
  if (flags.help) {
    return void console.log(
      renderHelp(
        'npx bun scripts/build-bases.ts --instances FILE --registry PREFIX [flags]',
        'Builds the builder image, then one base image per instance, and pushes them, under the disk budget ' +
          '(--cleanup: local images removed after their push, cache pruned when the next base needs the room), in an ' +
          'order that pulls each shared environment once (--order).',
        FLAGS,
      ),
    )
  }
  const fleet = loadFleet(flags, runFlagProblems(flags, process.env))
  const s = await startScript(flags, fleet)
  report.phase('plan')
  await prefetchTags(s, [fleet.builderImage, ...fleet.instances.map((i) => fleet.baseImage(i))])
  const upstreams = await readUpstreams(s.registry, fleet.platform, fleet.instances)
  for (const inst of upstreams.missing) {
    const info = { phase: 'base' as const, id: inst.id, dockerId: inst.dockerId, tag: fleet.baseImage(inst) }
    recordBlocked(
      s.run,
      info,
      `upstream image ${inst.upstream} does not exist (the registry answered 404 in the plan)`,
      'upstream_missing',
    )
  }
  const buildable = fleet.instances.filter((i) => !upstreams.missing.includes(i))
  const schedule = scheduleFleet(buildable, (i) => upstreams.layers.get(i.id), flags.order as Order)
  for (const line of describeSchedule(schedule)) report.info(line)
  const disk = openDisk(s, flags)
  const layersOf = (inst: Instance) => s.offDisk ? [] : costLayers(inst, upstreams, flags.expectGrowth)
  disk.expect(schedule.order.map(layersOf))
  report.phase(`builder ${fleet.builderImage}`)
  const builder = await buildBuilder(s.build)
  if (builder !== 'skipped' && !builder.ok) return finishRun(s, disk)
  report.phase(`bases: ${buildable.length}`)
  await admitEach(s, disk, schedule.order, async (inst, build, ticket) => {
    const result = await buildBase(inst, build)
    ticket.based()
    return result !== 'skipped' && baseStaysLocal(build) ? [fleet.baseImage(inst)] : []
  }, { layersOf, groups: schedule.groups, offDisk: s.offDisk })
  await disk.settle()
  return finishRun(s, disk)
}

if (import.meta.main) runMain(() => main(process.argv.slice(2)))
