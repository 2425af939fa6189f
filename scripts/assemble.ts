#!/usr/bin/env bun
// assemble: per instance, the thin agent layer on top of its base image — `docker build` of the
// assemble Dockerfile (FROM the base, with the builder image), `docker push`, then `docker rmi` of
// what it pushed. Skips what the registry has.
//   bun run scripts/assemble.ts --instances ids.txt --registry ghcr.io/me --context docker/
import pMap from 'p-map'
import { $ } from 'zx'
import { parseFlags, renderHelp, type FlagTable } from '../lib/args.ts'
import { runMain } from '../lib/cli.ts'
import { FLEET_FLAGS, loadFleet } from '../lib/fleet.ts'
import type { Instance } from '../lib/instances.ts'
import { report } from '../lib/report.ts'
import { type StepResult, recordSkip, runStep } from '../lib/step.ts'
import { alreadyPushed, type BuildOptions, commonBuildFlags } from './build-bases.ts'
import { RUN_FLAGS, runFlagProblems, startScript } from './_setup.ts'

export const FLAGS = { ...FLEET_FLAGS, ...RUN_FLAGS } as const satisfies FlagTable

/** Builds and pushes one final image FROM the instance's base, with the builder image. */
export async function assembleInstance(inst: Instance, o: BuildOptions): Promise<StepResult | 'skipped'> {
  const { fleet } = o
  const tag = fleet.finalImage(inst)
  const info = { phase: 'assemble' as const, id: inst.id, dockerId: inst.dockerId, tag, from: fleet.baseImage(inst) }
  const skip = await alreadyPushed(tag, o)
  if (skip) return recordSkip(o.run, info, skip), 'skipped'
  const flags = commonBuildFlags(fleet, o.network)
  return runStep(o.run, info, o.policy, async () => {
    await $`docker build ${flags} --build-arg BASE_IMAGE=${fleet.baseImage(inst)} --build-arg BUILDER_IMAGE=${fleet.builderImage} -t ${tag} -f ${fleet.assembleDockerfile} ${fleet.context}`.timeout(o.timeout)
    await $`docker push ${tag}`.timeout(o.timeout)
  })
}

async function main(argv: string[]) {
  const { flags } = parseFlags(FLAGS, argv, process.env)
  if (flags.help) return void console.log(renderHelp('bun run scripts/assemble.ts --instances FILE --registry PREFIX [flags]', 'Builds and pushes one final image per instance FROM its base image (built by build-bases), then removes it locally.', FLAGS))
  const fleet = loadFleet(flags, runFlagProblems(flags, process.env))
  const s = await startScript(flags, fleet)
  report.phase(`assemble: ${fleet.instances.length}`)
  await pMap(fleet.instances, async (inst) => {
    const result = await assembleInstance(inst, s.build)
    if (result !== 'skipped' && result.ok) await s.removeImages([fleet.finalImage(inst)])
  }, { concurrency: s.concurrency })
  return s.finish()
}

if (import.meta.main) runMain(() => main(process.argv.slice(2)))
