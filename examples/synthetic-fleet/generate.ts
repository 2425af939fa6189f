// A SWE-bench-shaped fleet of upstream images in a registry, generated on a disk much smaller than the fleet:
// groups of instances share an "environment" layer, each instance adds its own id and a unique layer.
//   eval "$(npx bun scripts/sandbox.ts env)" && npx bun examples/synthetic-fleet/generate.ts --groups 4 --per-group 6
import { $ } from 'zx'
import fs from 'node:fs'
import path from 'node:path'
import { type FlagTable, parseFlags, renderHelp, UsageError } from '../../lib/cli/flags.ts'
import { runMain } from '../../lib/cli/main.ts'
import { configureReport, report, seconds, secretValues } from '../../lib/cli/report.ts'
import { formatBytes } from '../../lib/cli/size.ts'
import { dockerIdOf } from '../../lib/fleet/instances.ts'
import { compressedImageBytes } from '../../lib/registry/image.ts'
import { RegistryClient } from '../../lib/registry/client.ts'
import { inGitHubActions } from '../../lib/cli/environment.ts'

export const FLAGS = {
  registry: {
    type: 'string',
    arg: 'HOST:PORT',
    help: 'Registry that receives the upstream images (default: $IMAGEFLEET_SANDBOX_REGISTRY)',
  },
  seed: {
    type: 'string',
    arg: 'IMAGE',
    help: 'Image the environments build FROM; needs sh and head (default: $IMAGEFLEET_SANDBOX_SEED)',
  },
  groups: {
    type: 'int',
    default: 4,
    min: 1,
    help: 'Environment groups (instances of a group share its environment layer)',
  },
  'per-group': { type: 'int', default: 6, min: 1, help: 'Instances per group' },
  'env-size': { type: 'size', default: '300MB', help: 'Incompressible bytes in each environment layer' },
  'instance-size': { type: 'size', default: '100MB', help: 'Incompressible bytes in each instance layer' },
  out: {
    type: 'string',
    default: 'instances.txt',
    arg: 'FILE',
    help: 'Instances file to write (fleet.json goes beside it)',
  },
} as const satisfies FlagTable

export type FleetOptions = {
  registry: string
  seed: string
  groups: number
  perGroup: number
  envSize: number
  instanceSize: number
  out: string
  env: Record<string, string | undefined> // the environment docker runs with (DOCKER_HOST, PATH, …)
}
export type Fleet = {
  instances: number
  ids: string[]
  groups: number
  upstreamBytes: number
  registry: string
  seed: string
  upstream: string // the pipeline's --upstream template for these images
}
type Instance = { id: string; image: string }
type Group = { index: number; envImage: string; instances: Instance[] }

// Each Dockerfile is one RUN so each image adds exactly one layer; urandom makes it incompressible.
const ENV_DOCKERFILE = `ARG SEED
FROM \${SEED}
ARG GROUP
ARG BYTES
RUN mkdir -p /env && echo "\${GROUP}" > /env/group && head -c "\${BYTES}" /dev/urandom > /env/blob
`
const INSTANCE_DOCKERFILE = `ARG ENV_IMAGE
FROM \${ENV_IMAGE}
ARG INSTANCE_ID
ARG BYTES
RUN mkdir -p /instance && echo "\${INSTANCE_ID}" > /instance/id && head -c "\${BYTES}" /dev/urandom > /instance/blob
`
// The sandbox registry is on 127.0.0.1: plain HTTP, no credentials
const registry = new RegistryClient()
const upstreamTemplate = (registry: string) => `${registry}/sweb.eval.x86_64.{docker_id}:latest`

/** Builds and pushes what the registry lacks, then writes the instances file and fleet.json. */
export async function generateFleet(o: FleetOptions): Promise<Fleet> {
  const started = Date.now()
  const plan = planFleet(o)
  report.info(
    `fleet: ${o.groups} groups × ${o.perGroup} instances, env ${formatBytes(o.envSize)}, instance ${
      formatBytes(o.instanceSize)
    } → ${o.registry}`,
  )
  let built = 0
  for (const group of plan) built += await generateGroup(group, o)
  const fleet = await describeFleet(plan, o)
  writeFleetFiles(fleet, o.out)
  const total = fleet.ids.length
  report.ok(
    `${built} built, ${total - built} already in the registry; fleet ${formatBytes(fleet.upstreamBytes)} in ${
      seconds(Date.now() - started)
    }`,
  )
  return fleet
}

function planFleet(o: FleetOptions): Group[] {
  return Array.from({ length: o.groups }, (_, g) => ({
    index: g,
    envImage: `${o.registry}/imagefleet/synthetic-env:g${g}`,
    instances: Array.from({ length: o.perGroup }, (_, i) => {
      const id = `org${g}__proj${g}-${101 + i}`
      return { id, image: upstreamTemplate(o.registry).replace('{docker_id}', dockerIdOf(id)) }
    }),
  }))
}

/** One group: its environment (reused from the registry when there), then each missing instance. Returns how many were built. */
async function generateGroup(group: Group, o: FleetOptions): Promise<number> {
  const missing: Instance[] = []
  for (const instance of group.instances) if (!(await registry.manifestExists(instance.image))) missing.push(instance)
  if (!missing.length) {
    report.skip(`group ${group.index}: all ${group.instances.length} instances already in the registry`)
    return 0
  }
  report.phase(`group ${group.index}: ${missing.length} to build`)
  if (await registry.manifestExists(group.envImage)) report.skip(`${group.envImage} already in the registry`)
  else await buildEnvironment(group, o)
  for (const instance of missing) {
    await buildInstance(instance, group, o)
    await pruneBuildCache(o)
  }
  await removeLocal(group.envImage, o)
  await pruneBuildCache(o)
  return missing.length
}

async function buildEnvironment(group: Group, o: FleetOptions): Promise<void> {
  const t = Date.now()
  const docker = $({ quiet: true, env: o.env, timeout: '30m', input: ENV_DOCKERFILE })
  await docker`docker build --network=none --build-arg SEED=${o.seed} --build-arg GROUP=${group.index} --build-arg BYTES=${o.envSize} -t ${group.envImage} -`
  await $({ quiet: true, env: o.env, timeout: '30m' })`docker push ${group.envImage}`
  report.ok(`${group.envImage}: built and pushed in ${seconds(Date.now() - t)}`)
}

/** Build, push, remove: the local disk only ever holds one instance image. */
async function buildInstance(instance: Instance, group: Group, o: FleetOptions): Promise<void> {
  const t = Date.now()
  const docker = $({ quiet: true, env: o.env, timeout: '30m', input: INSTANCE_DOCKERFILE })
  await docker`docker build --network=none --build-arg ENV_IMAGE=${group.envImage} --build-arg INSTANCE_ID=${instance.id} --build-arg BYTES=${o.instanceSize} -t ${instance.image} -`
  await $({ quiet: true, env: o.env, timeout: '30m' })`docker push ${instance.image}`
  await removeLocal(instance.image, o)
  report.ok(`${instance.id}: ${instance.image} built and pushed in ${seconds(Date.now() - t)}`)
}

async function removeLocal(image: string, o: FleetOptions): Promise<void> {
  const rmi = await $({ quiet: true, nothrow: true, env: o.env, timeout: '5m' })`docker rmi ${image}`
  if (rmi.exitCode !== 0 && !/No such image/i.test(rmi.stderr)) report.warn(`docker rmi ${image}: ${rmi.stderr.trim()}`)
}

/** Pushed images still hold their layers in BuildKit's cache: give the disk back after every image. */
async function pruneBuildCache(o: FleetOptions): Promise<void> {
  const prune = await $({ quiet: true, nothrow: true, env: o.env, timeout: '5m' })`docker builder prune -af`
  if (prune.exitCode !== 0) report.warn(`docker builder prune -af failed: ${prune.stderr.trim()}`)
}

async function describeFleet(plan: Group[], o: FleetOptions): Promise<Fleet> {
  const instances = plan.flatMap((g) => g.instances)
  let upstreamBytes = 0
  for (const instance of instances) upstreamBytes += await compressedImageBytes(registry, instance.image)
  return {
    instances: instances.length,
    ids: instances.map((i) => i.id),
    groups: plan.length,
    upstreamBytes,
    registry: o.registry,
    seed: o.seed,
    upstream: upstreamTemplate(o.registry),
  }
}

function writeFleetFiles(fleet: Fleet, out: string): void {
  fs.mkdirSync(path.dirname(path.resolve(out)), { recursive: true })
  const header = [
    `# synthetic SWE-bench-shaped fleet: ${fleet.groups} groups, ${fleet.instances} instances, ${
      formatBytes(fleet.upstreamBytes)
    } of upstream images`,
    `# upstream: ${fleet.upstream}`,
  ]
  fs.writeFileSync(out, [...header, ...fleet.ids, ''].join('\n'))
  fs.writeFileSync(path.join(path.dirname(out), 'fleet.json'), JSON.stringify(fleet, null, 2) + '\n')
  report.ok(`wrote ${out} and ${path.join(path.dirname(out), 'fleet.json')}`)
}

// ---- the command line -----------------------------------------------------------------------

async function main(argv: string[]): Promise<number> {
  const env = process.env
  // the generator targets the sandbox: its exports are the defaults for --registry and --seed
  const defaults = {
    ...env,
    IMAGEFLEET_REGISTRY: env.IMAGEFLEET_SANDBOX_REGISTRY ?? env.IMAGEFLEET_REGISTRY,
    IMAGEFLEET_SEED: env.IMAGEFLEET_SANDBOX_SEED ?? env.IMAGEFLEET_SEED,
  }
  const { flags } = parseFlags(FLAGS, argv, defaults)
  if ((flags as { help?: boolean }).help) {
    process.stdout.write(
      renderHelp(
        'generate.ts [--registry HOST:PORT] [--seed IMAGE] [--groups N] [--per-group N] [--env-size SIZE] [--instance-size SIZE] [--out FILE]',
        'Pushes a SWE-bench-shaped fleet of upstream images REGISTRY/sweb.eval.x86_64.{docker_id}:latest, building one\n' +
          'image at a time and pruning after each so the fleet can be far larger than the disk. Tags already in the registry\n' +
          'are skipped. Writes the instances file (one id a line) and fleet.json beside it.',
        FLAGS,
      ),
    )
    return 0
  }
  const problems = [
    !flags.registry && '--registry is required (or run `eval "$(npx bun scripts/sandbox.ts env)"` first)',
    flags.registry && !/^[\w.-]+(:\d+)?$/.test(flags.registry) && `--registry wants HOST:PORT, got '${flags.registry}'`,
    !flags.seed && '--seed is required (or run `eval "$(npx bun scripts/sandbox.ts env)"` first)',
  ].filter((p): p is string => !!p)
  if (problems.length) throw new UsageError(problems.join('\n'), problems)
  configureReport({ github: inGitHubActions(env), secrets: secretValues(env) })
  await generateFleet({ ...flags, registry: flags.registry!, seed: flags.seed!, env })
  return 0
}

if (import.meta.main) runMain(() => main(process.argv.slice(2)))
