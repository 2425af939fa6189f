// A SWE-bench-shaped fleet of upstream images made straight in a registry (no daemon, no local disk): one base
// layer under all (a static busybox and its applet links, so the images run `sh`, `cat`, `head` …), one layer of
// incompressible bytes per environment, shared by its instances, and one small layer per instance (its id in
// /instance/id, plus its own bytes). What the registry already holds in this shape is kept; see README.md.
//   eval "$(npx bun scripts/sandbox.ts env)" && npx bun examples/synthetic-fleet/generate.ts --groups 4 --per-group 6
import fs from 'node:fs'
import path from 'node:path'
import pMap from 'p-map'
import { type FlagTable, parseFlags, renderHelp, UsageError } from '../../lib/cli/flags.ts'
import { runMain } from '../../lib/cli/main.ts'
import { configureReport, report, seconds, secretValues } from '../../lib/cli/report.ts'
import { formatBytes, parseSize } from '../../lib/cli/size.ts'
import { RegistryClient } from '../../lib/registry/client.ts'
import { repoOf } from '../../lib/registry/image.ts'
import { parseImageRef } from '../../lib/registry/ref.ts'
import {
  busyboxFiles,
  layerSize,
  type LayerSpec,
  type PushedLayer,
  pushImage,
  pushLayer,
  readImage,
  textFile,
} from './push.ts'
import { type FleetPlan, ORDERS, orderSketch, planFleet, type ShapeOptions, upstreamTemplate } from './shape.ts'
import { inGitHubActions } from '../../lib/cli/environment.ts'

export const FLAGS = {
  registry: {
    type: 'string',
    arg: 'HOST:PORT',
    help: 'Registry that receives the upstream images (default: $IMAGEFLEET_SANDBOX_REGISTRY)',
  },
  groups: { type: 'int', default: 4, min: 1, help: 'Environments (instances of one share its layer)' },
  'per-group': { type: 'string', arg: 'N[,N…]', default: '6', help: 'Instances per environment, cycled over them' },
  'env-size': {
    type: 'string',
    arg: 'SIZE[,SIZE…]',
    default: '300MB',
    help: 'Incompressible bytes in each environment layer, cycled over them (300MB,120MB: different sizes)',
  },
  'instance-size': { type: 'size', default: '100MB', help: 'Incompressible bytes in each instance layer' },
  'base-size': {
    type: 'size',
    default: '0',
    help: 'Incompressible bytes in the base layer under all, besides busybox',
  },
  'envs-per-repo': {
    type: 'int',
    default: 1,
    min: 1,
    help: 'Environments per repository name (org0__proj0): its instance numbers interleave them, like versions',
  },
  order: {
    type: 'string',
    default: 'id',
    choices: ORDERS,
    help: 'Instance list order: id (repository by repository, by number), or grouped (environment by environment)',
  },
  busybox: { type: 'string', arg: 'FILE', default: '/bin/busybox', help: 'Static busybox for the base layer' },
  concurrency: { type: 'int', default: 3, min: 1, help: 'Layers streamed into the registry at once' },
  out: {
    type: 'string',
    default: 'instances.txt',
    arg: 'FILE',
    help: 'Instances file to write (fleet.json goes beside it)',
  },
} as const satisfies FlagTable

/** What generateFleet takes: where, and the shape (every shape field defaults to its flag's default). */
export type FleetOptions = Partial<Omit<ShapeOptions, 'perGroup' | 'envSizes'>> & {
  registry: string
  out: string
  perGroup?: number | number[]
  envSize?: number | number[]
  busybox?: string
  concurrency?: number
}
export type Fleet = {
  instances: number
  /** In the order of the instances file. */
  ids: string[]
  groups: number
  environments: Array<{ image: string; bytes: number; ids: string[] }>
  /** Σ over instances of their layers' sizes (what pulling every image would move, shared layers counted each time). */
  upstreamBytes: number
  /** Σ over the distinct layers of the fleet. */
  uniqueBytes: number
  registry: string
  /** The base image (busybox): a SEED_IMAGE for the synthetic context's builder stage. */
  seed: string
  /** The pipeline's --upstream template for these images. */
  upstream: string
}

const DEFAULTS = parseFlags(FLAGS, []).flags
// The sandbox registry is on 127.0.0.1: plain HTTP, no credentials. A streamed layer's PATCH is answered only once
// the whole layer is in: give it minutes, not the default 30 s.
const registry = new RegistryClient({ timeoutSeconds: 600 })
const asList = (v: number | number[] | undefined, fallback: number[]) => v === undefined ? fallback : [v].flat()

/** Makes what the registry lacks (or holds in another shape), then writes the instances file and fleet.json. */
export async function generateFleet(options: FleetOptions): Promise<Fleet> {
  const started = Date.now()
  const o = {
    groups: options.groups ?? DEFAULTS.groups,
    perGroup: asList(options.perGroup, parseList(DEFAULTS.perGroup, Number)),
    envSizes: asList(options.envSize, parseList(DEFAULTS.envSize, parseSize)),
    instanceSize: options.instanceSize ?? DEFAULTS.instanceSize,
    baseSize: options.baseSize ?? DEFAULTS.baseSize,
    envsPerRepo: options.envsPerRepo ?? DEFAULTS.envsPerRepo,
    order: options.order ?? (DEFAULTS.order as ShapeOptions['order']),
    busybox: options.busybox ?? DEFAULTS.busybox,
    concurrency: options.concurrency ?? DEFAULTS.concurrency,
  }
  const plan = planFleet(o, options.registry)
  report.info(
    `fleet: ${plan.instances.length} instances in ${o.groups} environments (${
      o.envSizes.map(formatBytes).join(', ')
    }), instance layers ${formatBytes(o.instanceSize)} → ${options.registry}; list order ${o.order}: ${
      orderSketch(plan)
    }`,
  )
  const tally: Tally = { images: 0, bytes: 0, stale: 0 }
  const images = await makeFleet(plan, o, tally)
  const fleet = describeFleet(plan, images, options.registry)
  writeFleetFiles(fleet, options.out)
  const secs = (Date.now() - started) / 1000
  report.ok(
    `${tally.images} images pushed (${formatBytes(tally.bytes)}, ${formatBytes(tally.bytes / secs)}/s)${
      tally.stale ? `, ${tally.stale} of them made before in another shape` : ''
    }; fleet ${formatBytes(fleet.upstreamBytes)} in ${seconds(Date.now() - started)}`,
  )
  return fleet
}

type Shape = ShapeOptions & { busybox: string; concurrency: number }
type Tally = { images: number; bytes: number; stale: number }
/** Each image of the fleet and its layers, bottom first. */
type Images = Map<string, PushedLayer[]>

/**
 * Base, then environments, then instances, `concurrency` layers streaming at once. An image is kept when the
 * registry has it on the very layers below it with a top layer of the planned size; otherwise it is made (again).
 */
async function makeFleet(plan: FleetPlan, o: Shape, tally: Tally): Promise<Images> {
  const busybox = await busyboxFiles(o.busybox)
  const refs = [plan.baseImage, ...plan.environments.map((e) => e.image), ...plan.instances.map((i) => i.image)]
  const found = new Map(
    await pMap(refs, async (ref) => [ref, await readImage(registry, ref)] as const, { concurrency: 16 }),
  )
  const images: Images = new Map()
  const make = async (ref: string, below: PushedLayer[], spec: LayerSpec) => {
    const have = found.get(ref)?.layers
    const same = have?.length === below.length + 1 && below.every((l, i) => l.digest === have[i].digest)
    if (same && have.at(-1)!.size === layerSize(spec)) return images.set(ref, have).get(ref)!
    const top = await pushLayer(registry, repoOf(parseImageRef(ref)), spec)
    const layers = [...below, top]
    await pushImage(registry, ref, layers, {
      architecture: busybox.architecture,
      history: HISTORY.slice(0, layers.length),
    })
    tally.images++
    tally.bytes += top.size
    if (have) tally.stale++
    return images.set(ref, layers).get(ref)!
  }
  const payload = (dir: string, bytes: number) => (bytes ? { dir, bytes } : undefined)
  const base = await make(plan.baseImage, [], { files: busybox.files, payload: payload('opt/base', o.baseSize) })
  await pMap(plan.environments, (env) =>
    make(env.image, base, {
      files: [textFile('env/group', `${env.index}\n`)],
      payload: payload('env/data', env.bytes),
    }), { concurrency: o.concurrency })
  await pMap(plan.instances, (instance) =>
    make(instance.image, images.get(plan.environments[instance.group].image)!, {
      files: [textFile('instance/id', `${instance.id}\n`)],
      payload: payload('instance/data', o.instanceSize),
    }), { concurrency: o.concurrency })
  return images
}

const HISTORY = ['synthetic base: busybox --install -s', 'synthetic environment', 'synthetic instance']

/** The fleet as the registry holds it: every instance's layers were read back or answered when pushed (digests checked). */
function describeFleet(plan: FleetPlan, images: Images, registryAddress: string): Fleet {
  const layers = plan.instances.flatMap((i) => images.get(i.image)!)
  const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0)
  return {
    instances: plan.instances.length,
    ids: plan.instances.map((i) => i.id),
    groups: plan.environments.length,
    environments: plan.environments.map((e) => ({ image: e.image, bytes: e.bytes, ids: e.instances.map((i) => i.id) })),
    upstreamBytes: sum(layers.map((l) => l.size)),
    uniqueBytes: sum([...new Map(layers.map((l) => [l.digest, l.size])).values()]),
    registry: registryAddress,
    seed: plan.baseImage,
    upstream: upstreamTemplate(registryAddress),
  }
}

function writeFleetFiles(fleet: Fleet, out: string): void {
  fs.mkdirSync(path.dirname(path.resolve(out)), { recursive: true })
  const header = [
    `# synthetic SWE-bench-shaped fleet: ${fleet.groups} environments, ${fleet.instances} instances, ${
      formatBytes(fleet.upstreamBytes)
    } of upstream images (${formatBytes(fleet.uniqueBytes)} unique)`,
    `# upstream: ${fleet.upstream}`,
  ]
  fs.writeFileSync(out, [...header, ...fleet.ids, ''].join('\n'))
  fs.writeFileSync(path.join(path.dirname(out), 'fleet.json'), JSON.stringify(fleet, null, 2) + '\n')
  report.ok(`wrote ${out} and ${path.join(path.dirname(out), 'fleet.json')}`)
}

const sizeOrNaN = (s: string) => {
  try {
    return parseSize(s)
  } catch {
    return NaN
  }
}

/** `300MB,120MB` → [300e6, 120e6]; throws UsageError naming the flag. */
function parseList(text: string, parse: (s: string) => number, flag = ''): number[] {
  const values = text.split(',').map((s) => s.trim()).filter(Boolean).map(parse)
  if (!values.length || values.some((v) => !Number.isFinite(v) || v < 0)) {
    throw new UsageError(`${flag || 'a list'} wants comma-separated values, got '${text}'`)
  }
  return values
}

// ---- the command line -----------------------------------------------------------------------

async function main(argv: string[]): Promise<number> {
  const env = process.env
  // the generator targets the sandbox: its export is the default for --registry
  const { flags } = parseFlags(FLAGS, argv, {
    ...env,
    IMAGEFLEET_REGISTRY: env.IMAGEFLEET_SANDBOX_REGISTRY ?? env.IMAGEFLEET_REGISTRY,
  })
  if (flags.help) {
    process.stdout.write(
      renderHelp(
        'generate.ts [--registry HOST:PORT] [--groups N] [--per-group N,…] [--env-size SIZE,…] [--instance-size SIZE] [--order id|grouped] [--out FILE]',
        'Pushes a SWE-bench-shaped fleet of upstream images REGISTRY/sweb.eval.x86_64.{docker_id}:latest straight into the\n' +
          'registry (no daemon, no local disk): a busybox base layer under all, one incompressible layer per environment,\n' +
          'one per instance. Images already there in this shape are kept. Writes the instances file and fleet.json beside it.',
        FLAGS,
      ),
    )
    return 0
  }
  const problems = [
    !flags.registry && '--registry is required (or run `eval "$(npx bun scripts/sandbox.ts env)"` first)',
    flags.registry && !/^[\w.-]+(:\d+)?$/.test(flags.registry) && `--registry wants HOST:PORT, got '${flags.registry}'`,
  ].filter((p): p is string => !!p)
  if (problems.length) throw new UsageError(problems.join('\n'), problems)
  configureReport({ github: inGitHubActions(env), secrets: secretValues(env) })
  await generateFleet({
    ...flags,
    registry: flags.registry!,
    perGroup: parseList(flags.perGroup, (s) => (/^\d+$/.test(s) && Number(s) >= 1 ? Number(s) : NaN), '--per-group'),
    envSize: parseList(flags.envSize, sizeOrNaN, '--env-size'),
    order: flags.order as ShapeOptions['order'],
  })
  return 0
}

if (import.meta.main) runMain(() => main(process.argv.slice(2)))
