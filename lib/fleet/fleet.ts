// The fleet: flags shared by every script that builds, and the validated plan they produce
// (instances, image names, build settings). Everything here is checked before anything is built.
import fs from 'node:fs'
import path from 'node:path'
import { createHash } from 'node:crypto'
import { type Flags, type FlagTable, UsageError } from '../cli/flags.ts'
import { count } from '../cli/report.ts'
import { type Instance, parseInstances, parseSelection, templateProblems } from './instances.ts'
import { ImageRefError, parsePrefix, parseRepository } from '../registry/ref.ts'
import {
  builderBuildArgs,
  contractProblems,
  type DockerfileShape,
  readDockerfile,
  stageNames,
} from './dockerfile-contract.ts'

export const FLEET_FLAGS = {
  instances: { type: 'string', arg: 'FILE', help: 'Instances: one id or JSON object a line (required)' },
  upstream: {
    type: 'string',
    arg: 'TEMPLATE',
    default: 'docker.io/swebench/sweb.eval.x86_64.{docker_id}:latest',
    help: 'Image a base builds FROM; {id}, {docker_id}',
  },
  registry: { type: 'string', arg: 'PREFIX', help: 'Push to PREFIX/eval-builder, PREFIX/eval-base, PREFIX/eval-agent' },
  'builder-repo': { type: 'string', arg: 'REPO', help: 'Builder repository (default PREFIX/eval-builder)' },
  'base-repo': { type: 'string', arg: 'REPO', help: 'Base repository (default PREFIX/eval-base)' },
  'final-repo': { type: 'string', arg: 'REPO', help: 'Final repository (default PREFIX/eval-agent)' },
  context: {
    type: 'string',
    arg: 'DIR',
    default: '.',
    help: 'Build context; DIR/Dockerfile has the builder and base stages',
  },
  'builder-target': {
    type: 'string',
    arg: 'STAGE',
    default: 'builder',
    help: 'Stage of DIR/Dockerfile for the builder image',
  },
  'base-target': { type: 'string', arg: 'STAGE', default: 'base', help: 'Stage of DIR/Dockerfile for each base image' },
  'assemble-dockerfile': {
    type: 'string',
    arg: 'FILE',
    help: 'Thin per-instance Dockerfile (default DIR/Dockerfile.assemble)',
  },
  'build-arg': { type: 'list', arg: 'K=V', help: 'Build argument for every build' },
  platform: { type: 'string', arg: 'P', help: 'Platform for every build, e.g. linux/amd64' },
  key: {
    type: 'string',
    arg: 'STRING',
    help: 'Version in every tag (default: short hash of the Dockerfiles, targets and build args)',
  },
  concurrency: { type: 'int', arg: 'N', default: 4, min: 1, help: 'Images built at once' },
  limit: { type: 'int', arg: 'N', help: 'Only the first N instances' },
  select: { type: 'string', arg: 'FILE', help: 'Only the ids listed in FILE (one a line)' },
  force: { type: 'boolean', help: 'Rebuild tags the registry already has' },
  'dry-run': { type: 'boolean', help: 'Print every docker command in order; run none' },
  out: { type: 'string', arg: 'DIR', default: 'builds', help: 'Manifest, logs and summary go here' },
} as const satisfies FlagTable

export type FleetFlags = Flags<typeof FLEET_FLAGS>

export type Repositories = Record<'builder' | 'base' | 'final', string>

export type Fleet = {
  instances: Instance[]
  key: string
  repos: Repositories
  builderImage: string
  baseImage: (i: Instance) => string
  finalImage: (i: Instance) => string
  context: string
  dockerfile: string
  assembleDockerfile: string
  builderTarget: string
  /** build args of the builder build only: BASE_IMAGE=scratch when the Dockerfile leaves it without a default */
  builderArgs: string[]
  baseTarget: string
  buildArgs: string[]
  platform?: string
}

export function contextKey(parts: string[]): string {
  const hash = createHash('sha256')
  for (const part of parts) hash.update(part).update('\0')
  return hash.digest('hex').slice(0, 12)
}

function readOrProblem(file: string, what: string, problems: string[]): string | undefined {
  try {
    return fs.readFileSync(file, 'utf8')
  } catch (e) {
    problems.push(
      `${what} ${file}: ${(e as NodeJS.ErrnoException).code === 'ENOENT' ? 'not found' : (e as Error).message}`,
    )
  }
}

/** The three repositories, from --registry PREFIX or their own flags; one problem line per problem, naming the flag. */
function checkRepos(flags: FleetFlags, problems: string[]) {
  const prefix = flags.registry === undefined
    ? undefined
    : parseReferenceFlag('registry', flags.registry, parsePrefix, problems)
  const repo = (what: 'builder' | 'base' | 'final', own: string | undefined, suffix: string) => {
    if (own !== undefined) return parseReferenceFlag(`${what}-repo`, own, parseRepository, problems) && own
    if (prefix === undefined) {
      if (flags.registry === undefined) {
        problems.push(`no ${what} repository: give --registry PREFIX (or --${what}-repo)`)
      }
      return undefined
    }
    return parseReferenceFlag('registry', `${prefix.prefix}/${suffix}`, parseRepository, problems) &&
      `${prefix.prefix}/${suffix}`
  }
  return {
    builder: repo('builder', flags.builderRepo, 'eval-builder'),
    base: repo('base', flags.baseRepo, 'eval-base'),
    final: repo('final', flags.finalRepo, 'eval-agent'),
  } as Repositories
}

/** Parses a flag's value with the reference grammar; on failure one problem per thing wrong, each with the fix. */
export function parseReferenceFlag<T>(
  flag: string,
  value: string,
  parse: (text: string) => T,
  problems: string[],
): T | undefined {
  try {
    return parse(value)
  } catch (e) {
    if (!(e instanceof ImageRefError)) throw e
    const fix = e.suggestion ? ` → use --${flag} ${e.suggestion}` : ''
    problems.push(...e.problems.map((p) => `--${flag} ${value}: ${p}${fix}`))
  }
}

/** The builder and base targets exist, and every FROM of DIR/Dockerfile can be read by both builds. */
function checkStages(dockerfile: string, shape: DockerfileShape, flags: FleetFlags, problems: string[]) {
  const names = stageNames(shape)
  for (const stage of [flags.builderTarget, flags.baseTarget]) {
    if (!names.includes(stage.toLowerCase())) {
      problems.push(`${dockerfile} has no stage '${stage}' (stages: ${names.join(', ') || 'none'})`)
    }
  }
  problems.push(
    ...contractProblems(dockerfile, shape, {
      given: ['BASE_IMAGE'],
      buildArgs: flags.buildArg,
      builder: flags.builderTarget.toLowerCase(),
    }),
  )
}

/** Reads and validates everything a build needs; throws one UsageError listing every problem (with `more` found by the caller). */
export function loadFleet(flags: FleetFlags, more: string[] = []): Fleet {
  const problems: string[] = [...more]
  const repos = checkRepos(flags, problems)
  problems.push(...templateProblems(flags.upstream))
  for (const arg of flags.buildArg) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*=/.test(arg)) problems.push(`--build-arg '${arg}' is not K=V`)
  }
  if (flags.platform && !/^[a-z0-9_]+\/[a-z0-9_]+(\/[a-z0-9_]+)?$/.test(flags.platform)) {
    problems.push(`--platform '${flags.platform}' is not os/arch[/variant]`)
  }
  if (flags.key !== undefined && !/^[A-Za-z0-9][A-Za-z0-9._-]{0,11}$/.test(flags.key)) {
    problems.push(`--key '${flags.key}' must be 1–12 letters, digits, '.', '_' or '-'`)
  }

  const context = path.resolve(flags.context)
  const dockerfile = path.join(context, 'Dockerfile')
  const assembleDockerfile = path.resolve(flags.assembleDockerfile ?? path.join(context, 'Dockerfile.assemble'))
  if (!fs.existsSync(context) || !fs.statSync(context).isDirectory()) {
    problems.push(`--context ${context}: not a directory`)
  }
  const main = readOrProblem(dockerfile, 'Dockerfile', problems)
  const assemble = readOrProblem(assembleDockerfile, 'assemble Dockerfile', problems)
  const shape = main === undefined ? undefined : readDockerfile(main)
  if (shape) checkStages(dockerfile, shape, flags, problems)
  if (assemble !== undefined) {
    problems.push(
      ...contractProblems(assembleDockerfile, readDockerfile(assemble), {
        given: ['BASE_IMAGE', 'BUILDER_IMAGE'],
        buildArgs: flags.buildArg,
      }),
    )
  }

  const instances = loadInstances(flags, problems)
  if (problems.length) throw new UsageError(`bad input (${count(problems.length, 'problem')})`, problems)

  const key = flags.key ??
    contextKey([main!, assemble!, flags.builderTarget, flags.baseTarget, ...flags.buildArg, flags.platform ?? ''])
  return {
    instances,
    context,
    dockerfile,
    assembleDockerfile,
    ...imageNames(repos, key),
    builderTarget: flags.builderTarget,
    builderArgs: builderBuildArgs(shape!, flags.buildArg),
    baseTarget: flags.baseTarget,
    buildArgs: flags.buildArg,
    platform: flags.platform,
  }
}

/** The fleet's image names under a key: `REPO:KEY` for the builder, `REPO:KEY-DOCKER_ID` per instance. */
function imageNames(
  repos: Repositories,
  key: string,
): Pick<Fleet, 'key' | 'repos' | 'builderImage' | 'baseImage' | 'finalImage'> {
  return {
    key,
    repos,
    builderImage: `${repos.builder}:${key}`,
    baseImage: (i) => `${repos.base}:${key}-${i.dockerId}`,
    finalImage: (i) => `${repos.final}:${key}-${i.dockerId}`,
  }
}

/** The same fleet with its images named under another key (--retry-failed keeps the key of the run it retries). */
export const withKey = (fleet: Fleet, key: string): Fleet => ({ ...fleet, ...imageNames(fleet.repos, key) })

/** The key in a tag this fleet names: `REPO:KEY` (the builder, `dockerId` undefined) or `REPO:KEY-DOCKER_ID`. */
export function keyOfTag(tag: string, dockerId?: string): string | undefined {
  const version = tag.slice(tag.lastIndexOf(':') + 1)
  if (dockerId === undefined) return version
  return version.endsWith(`-${dockerId}`) ? version.slice(0, -dockerId.length - 1) : undefined
}

function loadInstances(flags: FleetFlags, problems: string[]): Instance[] {
  if (!flags.instances) {
    problems.push('--instances FILE is required')
    return []
  }
  const text = readOrProblem(flags.instances, 'instances file', problems)
  if (text === undefined) return []
  const parsed = parseInstances(text, flags.upstream)
  problems.push(...parsed.problems.map((p) => `${flags.instances} ${p}`))
  let instances = parsed.instances
  if (flags.select) {
    const selection = readOrProblem(flags.select, '--select file', problems)
    if (selection !== undefined) {
      const wanted = parseSelection(selection)
      const unknown = [...wanted].filter((id) => !instances.some((i) => i.id === id))
      if (unknown.length) {
        problems.push(
          `--select names ids not in ${flags.instances}: ${unknown.slice(0, 5).join(', ')}${
            unknown.length > 5 ? ', …' : ''
          }`,
        )
      }
      instances = instances.filter((i) => wanted.has(i.id))
    }
  }
  if (flags.limit !== undefined) instances = instances.slice(0, flags.limit)
  if (!parsed.problems.length && instances.length === 0) {
    problems.push(
      `${flags.instances}: no instances to build (empty list${
        flags.select || flags.limit !== undefined ? ' after --select/--limit' : ''
      })`,
    )
  }
  return instances
}
