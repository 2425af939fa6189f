// Decides whether an assemble Dockerfile can be done inside the registry, and reads it into steps. Registry-safe:
// stages that only name an image (the builder), and a final stage that copies from those stages or from image
// references and sets metadata. Words stay unexpanded here: they are expanded per image, with the base image's
// config (image-config.ts), as `docker build` does.
import {
  expandWord,
  type Instruction,
  jsonArgs,
  keyValues,
  logicalLines,
  splitWords,
  varsFrom,
} from './dockerfile-words.ts'

/** The instructions the registry path supports in the final stage, each with why it needs no build. */
export const SUPPORTED = {
  ARG: 'build-time variable; only affects expansion and history',
  FROM: 'an image alias (a source stage) or the final base image',
  COPY: "--from=<stage or image>: files read from that image's layers, placed as BuildKit places them",
  ENV: 'config Env',
  LABEL: 'config Labels',
  WORKDIR: 'config WorkingDir; the directory is made (owned by USER) when the base lacks it',
  ENTRYPOINT: 'config Entrypoint (resets Cmd unless CMD came first)',
  CMD: 'config Cmd',
  USER: 'config User',
  EXPOSE: 'config ExposedPorts',
} as const

/** COPY flags: the ones the registry path follows, and why the others need `docker build`. */
const COPY_FLAGS = {
  from: 'supported',
  chown: 'supported',
  chmod: 'supported',
  // dockerd 20.10's built-in frontend (BuildKit v0.8) answers "Unknown flag: link" (checked on the sandbox); later
  // frontends put the files on an empty layer merged over the base, which this path does not reproduce
  link:
    'the sandbox engine\'s built-in frontend rejects it ("Unknown flag: link") and later ones build it on an empty layer',
  exclude: 'needs Dockerfile frontend 1.7 labs',
  parents: 'needs Dockerfile frontend 1.7 labs',
} as const

/** One metadata or copy step of the final stage, in Dockerfile order. Words stay unexpanded until applied. */
export type AssembleStep =
  | { kind: 'arg'; name: string; value?: string }
  | { kind: 'copy'; image: string; words: string[]; chown?: string; chmod?: number; flags: string[]; line: number }
  | { kind: 'env' | 'label'; pairs: [string, string][] }
  | { kind: 'workdir' | 'user'; word: string; line: number }
  | { kind: 'entrypoint' | 'cmd'; args: string[]; shellForm: boolean }
  | { kind: 'expose'; words: string[] }

export type AssemblePlan = {
  ok: true
  steps: AssembleStep[]
  /** The final stage's base image (ARGs expanded). */
  baseImage: string
  /** Every image COPY reads from (source stages and --from references), expanded. */
  sources: string[]
  /** The `# syntax=` directive, if any: a frontend request, ignored here (the steps are the same). */
  syntax?: string
}
export type ParseResult = AssemblePlan | { ok: false; why: string; line?: number }
export type ParseOptions = { buildArgs?: Record<string, string> }

class NotRegistrySafe extends Error {
  constructor(message: string, readonly line?: number) {
    super(message)
  }
}

/**
 * Parses an assemble Dockerfile. `ok: true` only when every instruction is in SUPPORTED and every stage but the last
 * only names an image. Otherwise `why` says which line needs a real `docker build`.
 */
export function parseAssembleDockerfile(text: string, options: ParseOptions = {}): ParseResult {
  try {
    return parse(text, options.buildArgs ?? {})
  } catch (e) {
    if (!(e instanceof NotRegistrySafe)) return { ok: false, why: (e as Error).message }
    return { ok: false, why: e.message, ...(e.line ? { line: e.line } : {}) }
  }
}

type Stage = { image: string; name?: string; body: Instruction[]; line: number }

function parse(text: string, buildArgs: Record<string, string>): AssemblePlan {
  const { instructions, directives } = logicalLines(text)
  if (directives.escape && directives.escape !== '\\') {
    throw new NotRegistrySafe('the # escape= directive is not read here', 1)
  }
  const globals = new Map<string, string>()
  const stages: Stage[] = []
  for (const ins of instructions) {
    const at = `line ${ins.line}: ${ins.keyword}`
    if (!(ins.keyword in SUPPORTED)) throw new NotRegistrySafe(`${at} needs a docker build`, ins.line)
    if (ins.keyword === 'FROM') stages.push({ ...fromLine(ins, globals, stages), body: [], line: ins.line })
    else if (!stages.length && ins.keyword === 'ARG') defineArgs(ins.rest, globals, globals, buildArgs)
    else if (!stages.length) throw new NotRegistrySafe(`${at} before the first FROM`, ins.line)
    else stages[stages.length - 1].body.push(ins)
  }
  const final = stages.pop()
  if (!final) throw new NotRegistrySafe('no FROM line')
  for (const s of stages) {
    const stray = s.body.find((i) => i.keyword !== 'ARG')
    if (stray) {
      throw new NotRegistrySafe(
        `line ${stray.line}: ${stray.keyword} in stage ${s.name ?? s.line} needs a build`,
        stray.line,
      )
    }
  }
  if (final.image === 'scratch') {
    throw new NotRegistrySafe('FROM scratch has no registry image to assemble on', final.line)
  }
  const steps = finalSteps(final.body, stages, globals, buildArgs)
  const sources = [...new Set(steps.flatMap((s) => (s.kind === 'copy' ? [s.image] : [])))]
  return {
    ok: true,
    steps,
    baseImage: final.image,
    sources,
    ...(directives.syntax ? { syntax: directives.syntax } : {}),
  }
}

function fromLine(ins: Instruction, globals: Map<string, string>, stages: Stage[]): { image: string; name?: string } {
  const words = splitWords(ins.rest)
  const flag = words.find((w) => w.startsWith('--'))
  if (flag) {
    throw new NotRegistrySafe(
      `line ${ins.line}: FROM ${
        flag.split('=')[0]
      } needs a docker build (every image here is read for the one target platform)`,
      ins.line,
    )
  }
  const missing = new Set<string>()
  const image = expandWord(words[0] ?? '', varsFrom(globals, missing))
  if (missing.size || !image) {
    throw new NotRegistrySafe(
      `line ${ins.line}: FROM needs build arg(s) ${[...missing].join(', ') || '(image)'}`,
      ins.line,
    )
  }
  const earlier = stages.find((s) => s.name?.toLowerCase() === image.toLowerCase())
  if (earlier) throw new NotRegistrySafe(`line ${ins.line}: FROM ${image} builds on another stage`, ins.line)
  if (words.length === 3 && words[1].toLowerCase() === 'as') return { image, name: words[2] }
  if (words.length !== 1) throw new NotRegistrySafe(`line ${ins.line}: cannot read FROM ${ins.rest}`, ins.line)
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
  stages: Stage[],
  globals: Map<string, string>,
  buildArgs: Record<string, string>,
) {
  const args = new Map<string, string>()
  const steps: AssembleStep[] = []
  for (const ins of body) {
    switch (ins.keyword) {
      case 'ARG':
        for (const [name, value] of defineArgs(ins.rest, args, globals, buildArgs)) {
          steps.push({ kind: 'arg', name, value })
        }
        break
      case 'ENV':
      case 'LABEL':
        steps.push({ kind: ins.keyword === 'ENV' ? 'env' : 'label', pairs: keyValues(ins.rest) })
        break
      case 'WORKDIR':
      case 'USER':
        steps.push({ kind: ins.keyword === 'USER' ? 'user' : 'workdir', word: ins.rest, line: ins.line })
        break
      case 'ENTRYPOINT':
      case 'CMD': {
        const json = jsonArgs(ins.rest)
        steps.push({ kind: ins.keyword === 'CMD' ? 'cmd' : 'entrypoint', args: json ?? [ins.rest], shellForm: !json })
        break
      }
      case 'EXPOSE':
        steps.push({ kind: 'expose', words: splitWords(ins.rest) })
        break
      case 'COPY':
        steps.push(copyStep(ins, stages))
        break
      default:
        throw new NotRegistrySafe(`line ${ins.line}: ${ins.keyword} needs a docker build`, ins.line)
    }
  }
  return steps
}

function copyStep(ins: Instruction, stages: Stage[]): AssembleStep {
  const at = `line ${ins.line}: COPY`
  const words = splitWords(ins.rest)
  const flags: Record<string, string> = {}
  const raw: string[] = []
  while (words[0]?.startsWith('--')) {
    const word = words.shift()!
    const [name, ...value] = word.slice(2).split('=')
    const why = COPY_FLAGS[name.toLowerCase() as keyof typeof COPY_FLAGS]
    if (why !== 'supported') {
      throw new NotRegistrySafe(`${at} --${name}: ${why ?? 'unknown flag'}; needs a docker build`, ins.line)
    }
    flags[name.toLowerCase()] = value.join('=')
    raw.push(word)
  }
  if (!flags.from) throw new NotRegistrySafe(`${at} from the build context needs a docker build`, ins.line)
  const image = copySource(flags.from, stages, at, ins.line)
  const rest = ins.rest.replace(/^(\s*--\S+)*\s*/, '')
  const args = jsonArgs(rest) ?? words
  if (ins.heredoc) throw new NotRegistrySafe(`${at} with a heredoc needs a docker build`, ins.line)
  if (args.length < 2) throw new NotRegistrySafe(`${at} needs a source and a destination`, ins.line)
  let chmod: number | undefined
  if (flags.chmod) {
    // the v0.8 frontend reads --chmod with strconv.ParseUint(s, 8, 32), unexpanded; symbolic modes came later
    if (!/^[0-7]{1,4}$/.test(flags.chmod)) {
      throw new NotRegistrySafe(`${at} --chmod=${flags.chmod} is not octal`, ins.line)
    }
    chmod = parseInt(flags.chmod, 8)
  }
  return {
    kind: 'copy',
    image,
    words: args,
    ...(flags.chown ? { chown: flags.chown } : {}),
    ...(chmod !== undefined ? { chmod } : {}),
    flags: raw.filter((f) => !f.startsWith('--from')),
    line: ins.line,
  }
}

/**
 * `--from=`: a stage by name (case-insensitive) or index, else an image reference. BuildKit v0.8 does not expand
 * variables here (`--from=${IMAGE}` fails: "invalid reference format"); a stage `FROM ${IMAGE} AS name` is the way.
 */
function copySource(from: string, stages: Stage[], at: string, line: number): string {
  const stage = stages.find((s) => s.name?.toLowerCase() === from.toLowerCase()) ??
    (/^\d+$/.test(from) ? stages[Number(from)] : undefined)
  if (stage) return stage.image
  if (from.includes('$')) {
    throw new NotRegistrySafe(`${at} --from=${from}: docker build does not expand variables in --from`, line)
  }
  return from
}
