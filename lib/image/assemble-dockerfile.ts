// Decides whether an assemble Dockerfile can be done inside the registry (it only adds files from the
// builder stage and metadata), and applies its metadata to an image config the way `docker build` does.
import path from 'node:path'
import type { CopySpec } from './copy.ts'
import {
  expandWord,
  type Instruction,
  jsonArgs,
  keyValues,
  logicalLines,
  splitWords,
  varsFrom,
} from './dockerfile-words.ts'

/** The instructions the registry path supports, each with why it is safe without a build. */
export const SUPPORTED = {
  ARG: 'build-time variable; only affects expansion and history',
  FROM: 'the builder stage alias and the final base image',
  COPY: '--from=<builder stage> only: files come from the builder image layers',
  ENV: 'config Env',
  LABEL: 'config Labels',
  WORKDIR: 'config WorkingDir',
  ENTRYPOINT: 'config Entrypoint (resets Cmd unless CMD came first)',
  CMD: 'config Cmd',
  USER: 'config User',
} as const

/** One metadata or copy step of the final stage, in Dockerfile order. Words stay unexpanded until applied. */
export type AssembleStep =
  | { kind: 'arg'; name: string; value?: string }
  | { kind: 'copy'; copy: CopySpec; createdBy: string }
  | { kind: 'env' | 'label'; pairs: [string, string][] }
  | { kind: 'workdir' | 'user'; word: string }
  | { kind: 'entrypoint' | 'cmd'; args: string[]; shellForm: boolean }

export type AssemblePlan = {
  ok: true
  steps: AssembleStep[]
  /** The builder stage's image and alias, the final stage's base image (ARGs expanded). */
  builderImage: string
  builderStage: string
  baseImage: string
  /** The COPY instructions, resolved to absolute destinations: the agent layer's recipe. */
  copies: CopySpec[]
}
export type ParseResult = AssemblePlan | { ok: false; why: string }
export type ParseOptions = { buildArgs?: Record<string, string> }

class NotRegistrySafe extends Error {}

/**
 * Parses an assemble Dockerfile. `ok: true` only when every instruction is in SUPPORTED, there is exactly one
 * builder stage with no instructions of its own, and COPY destinations do not depend on the base image.
 * Otherwise `why` says what needs a real `docker build`.
 */
export function parseAssembleDockerfile(text: string, options: ParseOptions = {}): ParseResult {
  try {
    return parse(text, options.buildArgs ?? {})
  } catch (e) {
    return { ok: false, why: (e as Error).message }
  }
}

function parse(text: string, buildArgs: Record<string, string>): AssemblePlan {
  const { instructions, directives } = logicalLines(text)
  if (directives.escape && directives.escape !== '\\') throw new NotRegistrySafe('# escape= directive is not supported')
  const globals = new Map<string, string>()
  const stages: { image: string; name?: string; body: Instruction[]; line: number }[] = []
  for (const ins of instructions) {
    if (!(ins.keyword in SUPPORTED)) throw new NotRegistrySafe(`line ${ins.line}: ${ins.keyword} needs a docker build`)
    if (ins.keyword === 'FROM') stages.push({ ...fromLine(ins, globals), body: [], line: ins.line })
    else if (!stages.length && ins.keyword === 'ARG') defineArgs(ins.rest, globals, globals, buildArgs)
    else if (!stages.length) throw new NotRegistrySafe(`line ${ins.line}: ${ins.keyword} before the first FROM`)
    else stages[stages.length - 1].body.push(ins)
  }
  if (stages.length !== 2) {
    throw new NotRegistrySafe(`expected a builder stage and a final stage, found ${stages.length} FROM lines`)
  }
  const [builder, final] = stages
  if (!builder.name) {
    throw new NotRegistrySafe(`line ${builder.line}: the builder stage needs an alias (FROM … AS builder)`)
  }
  const stray = builder.body.find((i) => i.keyword !== 'ARG')
  if (stray) throw new NotRegistrySafe(`line ${stray.line}: ${stray.keyword} in the builder stage needs a docker build`)
  if (final.image.toLowerCase() === builder.name.toLowerCase()) {
    throw new NotRegistrySafe('the final stage builds FROM the builder stage')
  }
  if (final.image === 'scratch') throw new NotRegistrySafe('FROM scratch has no registry image to assemble on')
  const steps = finalSteps(final.body, builder.name, globals, buildArgs)
  const copies = steps.flatMap((s) => (s.kind === 'copy' ? [s.copy] : []))
  return { ok: true, steps, builderImage: builder.image, builderStage: builder.name, baseImage: final.image, copies }
}

function fromLine(ins: Instruction, globals: Map<string, string>): { image: string; name?: string } {
  const words = splitWords(ins.rest).filter((w) => !w.startsWith('--platform='))
  if (words.some((w) => w.startsWith('--'))) {
    throw new NotRegistrySafe(`line ${ins.line}: FROM flags other than --platform`)
  }
  const missing = new Set<string>()
  const image = expandWord(words[0] ?? '', varsFrom(globals, missing))
  if (missing.size || !image) {
    throw new NotRegistrySafe(`line ${ins.line}: FROM needs build arg(s) ${[...missing].join(', ') || '(image)'}`)
  }
  if (words.length === 3 && words[1].toLowerCase() === 'as') return { image, name: words[2] }
  if (words.length !== 1) throw new NotRegistrySafe(`line ${ins.line}: cannot read FROM ${ins.rest}`)
  return { image }
}

/** ARG in the global scope or a stage: build arg value > default > (in a stage) the global value. */
function defineArgs(
  rest: string,
  scope: Map<string, string>,
  globals: Map<string, string>,
  buildArgs: Record<string, string>,
) {
  const defined: [string, string | undefined][] = []
  for (const word of splitWords(rest)) {
    const eq = word.indexOf('=')
    const name = eq < 0 ? word : word.slice(0, eq)
    const value = name in buildArgs
      ? buildArgs[name]
      : eq >= 0
      ? expandWord(word.slice(eq + 1), varsFrom(scope))
      : globals.get(name)
    if (value !== undefined) scope.set(name, value)
    defined.push([name, value])
  }
  return defined
}

function finalSteps(
  body: Instruction[],
  builderStage: string,
  globals: Map<string, string>,
  buildArgs: Record<string, string>,
): AssembleStep[] {
  const known = new Map<string, string>() // what this Dockerfile itself defines: enough to place COPYs
  let workdir: string | undefined
  const steps: AssembleStep[] = []
  for (const ins of body) {
    const at = `line ${ins.line}: ${ins.keyword}`
    const missing = new Set<string>()
    const expand = (w: string) => expandWord(w, varsFrom(known, missing))
    switch (ins.keyword) {
      case 'ARG':
        for (const [name, value] of defineArgs(ins.rest, known, globals, buildArgs)) {
          steps.push({ kind: 'arg', name, value })
        }
        break
      case 'ENV':
      case 'LABEL': {
        const pairs = keyValues(ins.rest)
        if (ins.keyword === 'ENV') {
          for (const [k, v] of pairs) {
            const x = expand(v)
            if (!missing.size) known.set(k, x)
          }
        }
        steps.push({ kind: ins.keyword === 'ENV' ? 'env' : 'label', pairs })
        break
      }
      case 'WORKDIR': {
        const wd = expand(ins.rest)
        const fromBase = missing.size > 0 || (!wd.startsWith('/') && workdir === undefined)
        workdir = fromBase ? undefined : path.posix.resolve(workdir ?? '/', wd)
        steps.push({ kind: 'workdir', word: ins.rest })
        break
      }
      case 'USER':
        steps.push({ kind: 'user', word: ins.rest })
        break
      case 'ENTRYPOINT':
      case 'CMD': {
        const args = jsonArgs(ins.rest)
        steps.push({ kind: ins.keyword === 'CMD' ? 'cmd' : 'entrypoint', args: args ?? [ins.rest], shellForm: !args })
        break
      }
      case 'COPY':
        steps.push(copyStep(ins, at, builderStage, expand, missing, workdir))
        break
      default:
        throw new NotRegistrySafe(`${at} needs a docker build`)
    }
  }
  return steps
}

function copyStep(
  ins: Instruction,
  at: string,
  builderStage: string,
  expand: (w: string) => string,
  missing: Set<string>,
  workdir?: string,
): AssembleStep {
  const words = splitWords(ins.rest)
  const flags: Record<string, string> = {}
  while (words[0]?.startsWith('--')) {
    const [name, ...value] = words.shift()!.slice(2).split('=')
    flags[name] = value.join('=')
  }
  const unknown = Object.keys(flags).filter((f) => !['from', 'chown', 'chmod', 'link'].includes(f))
  if (unknown.length) throw new NotRegistrySafe(`${at} --${unknown[0]} needs a docker build`)
  if (!flags.from || flags.from.toLowerCase() !== builderStage.toLowerCase()) {
    throw new NotRegistrySafe(
      `${at} ${
        flags.from ? `--from=${flags.from} is not the builder stage` : 'from the build context'
      } needs a docker build`,
    )
  }
  const args = (jsonArgs(ins.rest.replace(/^(\s*--\S+)*\s*/, '')) ?? words).map(expand)
  if (args.some((a) => a.startsWith('<<'))) throw new NotRegistrySafe(`${at} with a heredoc needs a docker build`)
  if (args.length < 2) throw new NotRegistrySafe(`${at} needs a source and a destination`)
  const dest = args[args.length - 1]
  if (missing.size) throw new NotRegistrySafe(`${at} uses $${[...missing][0]}, which only the base image would define`)
  if (!dest.startsWith('/') && workdir === undefined) {
    throw new NotRegistrySafe(`${at} to a relative path depends on the base image's WORKDIR`)
  }
  const absolute = path.posix.resolve(workdir ?? '/', dest) + (dest.endsWith('/') || dest === '.' ? '/' : '')
  const copy: CopySpec = {
    sources: args.slice(0, -1).map((s) => path.posix.resolve('/', s)),
    dest: absolute.replace(/\/+$/, '/'),
  }
  if (flags.chown) copy.chown = chownIds(expand(flags.chown), at)
  if (flags.chmod) {
    if (!/^[0-7]{1,4}$/.test(flags.chmod)) throw new NotRegistrySafe(`${at} --chmod=${flags.chmod} is not octal`)
    copy.chmod = parseInt(flags.chmod, 8)
  }
  const createdBy = [
    'COPY',
    ...(flags.chown ? [`--chown=${flags.chown}`] : []),
    ...(flags.chmod ? [`--chmod=${flags.chmod}`] : []),
    ...args,
  ].join(' ') + ' # buildkit'
  return { kind: 'copy', copy, createdBy }
}

/** `--chown` needs the base image's /etc/passwd for names; numeric ids and root need nothing. */
function chownIds(spec: string, at: string): { uid: number; gid: number } {
  const [user, group] = spec.split(':')
  const id = (v: string) => (v === 'root' ? 0 : /^\d+$/.test(v) ? Number(v) : undefined)
  const uid = id(user)
  const gid = group === undefined ? uid : id(group)
  if (uid === undefined || gid === undefined) {
    throw new NotRegistrySafe(
      `${at} --chown=${spec} names a user; only numeric ids work without the base image's /etc/passwd`,
    )
  }
  return { uid, gid }
}

/** The parts of an image config (docker or OCI: same field names) that assembly reads and writes. */
export type ImageConfig = {
  created?: string
  architecture?: string
  os?: string
  variant?: string
  config?: {
    Env?: string[] | null
    Entrypoint?: string[] | null
    Cmd?: string[] | null
    WorkingDir?: string
    User?: string
    Labels?: Record<string, string> | null
    Shell?: string[]
    ArgsEscaped?: boolean
    [k: string]: unknown
  }
  rootfs: { type: string; diff_ids: string[] }
  history?: { created?: string; created_by?: string; comment?: string; empty_layer?: boolean }[]
  [k: string]: unknown
}
export type ApplyOptions = {
  /** RFC 3339 time written as the image's and the new history entries' `created` (fixed: reproducible digests). */
  created: string
  /** diff_id of the agent layer; the first COPY's history entry carries it. Absent: no COPY layer is added. */
  layerDiffId?: string
}

/** Go's %q of a []string, as BuildKit writes ENTRYPOINT/CMD history: ["a" "b"]. */
const goQuoted = (args: string[]) => `[${args.map((a) => JSON.stringify(a)).join(' ')}]`

/**
 * Applies the steps to a base image config as `docker build` (BuildKit) would: ENV replaces or appends,
 * expansion sees the base Env and ARGs, WORKDIR resolves against the previous one, ENTRYPOINT clears Cmd unless
 * CMD came first, shell forms use the base's Shell or /bin/sh -c, one history entry per instruction.
 */
export function applySteps(base: ImageConfig, steps: AssembleStep[], options: ApplyOptions): ImageConfig {
  const image: ImageConfig = structuredClone(base)
  const config = (image.config ??= {})
  const vars = new Map(
    (config.Env ?? []).map((e) => [e.slice(0, e.indexOf('=') >>> 0), e.slice(e.indexOf('=') + 1)] as [string, string]),
  )
  const expand = (w: string) => expandWord(w, varsFrom(vars))
  const history = (image.history ??= [])
  const commit = (createdBy: string, layer = false) =>
    history.push({
      created: options.created,
      created_by: createdBy,
      comment: 'buildkit.dockerfile.v0',
      ...(layer ? {} : { empty_layer: true }),
    })
  let cmdSet = false
  let layerUsed = false
  for (const step of steps) {
    switch (step.kind) {
      case 'arg':
        if (step.value !== undefined) vars.set(step.name, step.value)
        commit(`ARG ${step.name}${step.value !== undefined ? `=${step.value}` : ''}`)
        break
      case 'env':
      case 'label': {
        const pairs = step.pairs.map(([k, v]) => [expand(k), expand(v)] as const)
        for (const [k, v] of pairs) {
          if (step.kind === 'label') (config.Labels ??= {})[k] = v
          else {
            vars.set(k, v)
            config.Env = setEnv(config.Env ?? [], k, v)
          }
        }
        commit(`${step.kind.toUpperCase()} ${pairs.map(([k, v]) => `${k}=${v}`).join(' ')}`)
        break
      }
      case 'workdir':
        config.WorkingDir = path.posix.resolve(config.WorkingDir || '/', expand(step.word))
        commit(`WORKDIR ${config.WorkingDir}`)
        break
      case 'user':
        config.User = expand(step.word)
        commit(`USER ${config.User}`)
        break
      case 'entrypoint':
      case 'cmd': {
        const args = step.shellForm
          ? [...(config.Shell?.length ? config.Shell : ['/bin/sh', '-c']), step.args.join(' ')]
          : step.args
        if (step.kind === 'cmd') {
          config.Cmd = args
          config.ArgsEscaped = true
          cmdSet = true
        } else {
          config.Entrypoint = args
          if (!cmdSet) delete config.Cmd
        }
        commit(`${step.kind.toUpperCase()} ${goQuoted(args)}`)
        break
      }
      case 'copy':
        commit(step.createdBy, Boolean(options.layerDiffId) && !layerUsed)
        layerUsed = true
        break
    }
  }
  if (options.layerDiffId) image.rootfs = { ...image.rootfs, diff_ids: [...image.rootfs.diff_ids, options.layerDiffId] }
  image.created = options.created
  return image
}

function setEnv(env: string[], key: string, value: string): string[] {
  const at = env.findIndex((e) => e.split('=')[0] === key)
  return at >= 0 ? env.map((e, i) => (i === at ? `${key}=${value}` : e)) : [...env, `${key}=${value}`]
}
