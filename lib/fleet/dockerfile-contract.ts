// The Dockerfile contract, checked before anything is built. DIR/Dockerfile has a builder stage, built once for
// the whole fleet, and a base stage, built once per instance with --build-arg BASE_IMAGE=<its upstream image>; the
// assemble Dockerfile gets BASE_IMAGE and BUILDER_IMAGE. A FROM can only use a global ARG (declared before the first
// FROM), and one without a default and without a value makes BuildKit stop with `base name (${X}) should not be
// blank` — for any stage, even one the target does not need. So: every variable a FROM uses must be a global ARG,
// and have a default, a --build-arg, or be one of the arguments imagefleet passes. The builder build is the one
// exception it repairs itself: it has no instance, so when ARG BASE_IMAGE has no default it gets a harmless
// BASE_IMAGE=scratch — as long as no stage the builder needs builds FROM it (then it is a mistake, refused).
import { logicalLines, splitWords } from '../image/dockerfile-words.ts'

type Stage = { name?: string; image: string; vars: string[]; needs: string[]; line: number }

/** A Dockerfile read for the contract: global ARGs (name → has a default) and its stages in order. */
export type DockerfileShape = { globals: Map<string, boolean>; stages: Stage[] }

/** What the builder build gets so BuildKit can read every FROM (BASE_IMAGE has no instance there). */
export const BUILDER_BASE_IMAGE = 'BASE_IMAGE=scratch'

export function readDockerfile(text: string): DockerfileShape {
  const globals = new Map<string, boolean>()
  const stages: Stage[] = []
  for (const ins of logicalLines(text).instructions) {
    if (ins.keyword === 'ARG' && !stages.length) {
      for (const word of splitWords(ins.rest)) globals.set(word.split('=')[0], word.includes('='))
    } else if (ins.keyword === 'FROM') {
      const words = splitWords(ins.rest).filter((w) => !w.startsWith('--'))
      const image = words[0] ?? ''
      const vars = [...image.matchAll(/\$\{?(\w+)/g)].map((m) => m[1])
      const name = words[1]?.toUpperCase() === 'AS' ? words[2]?.toLowerCase() : undefined
      stages.push({ name, image, vars, needs: [image.toLowerCase()], line: ins.line })
    } else if (stages.length && (ins.keyword === 'COPY' || ins.keyword === 'RUN')) {
      // COPY --from=stage, RUN --mount=…,from=stage: stages this one needs
      for (const m of ins.rest.matchAll(/--(?:from=|mount=\S*?from=)([^\s,]+)/g)) stages.at(-1)!.needs.push(m[1])
    }
  }
  return { globals, stages }
}

/** Stage names as declared (`FROM … AS name`), lower-cased. */
export const stageNames = (shape: DockerfileShape) => shape.stages.flatMap((s) => (s.name ? [s.name] : []))

/** The stages `target` builds (itself and what it needs, by name or index), in order. */
function reachable(shape: DockerfileShape, target: number): Stage[] {
  const seen = new Set<number>()
  const visit = (i: number) => {
    if (i < 0 || seen.has(i)) return
    seen.add(i)
    for (const need of shape.stages[i].needs) {
      const byIndex = /^\d+$/.test(need) ? Number(need) : -1
      visit(byIndex >= 0 && byIndex < i ? byIndex : shape.stages.slice(0, i).findIndex((s) => s.name === need))
    }
  }
  visit(target)
  return shape.stages.filter((_, i) => seen.has(i))
}

/**
 * Problems with `file` (one line each, naming the fix). `given`: the build args imagefleet passes every build of
 * this file; `builder`: the target built once for all instances (no BASE_IMAGE of its own).
 */
export function contractProblems(
  file: string,
  shape: DockerfileShape,
  o: { given: string[]; buildArgs: string[]; builder?: string },
): string[] {
  const provided = new Set([...o.given, ...o.buildArgs.map((a) => a.split('=')[0])])
  const builder = o.builder === undefined ? [] : reachable(shape, shape.stages.findIndex((s) => s.name === o.builder))
  const problems: string[] = []
  for (const stage of shape.stages) {
    for (const v of new Set(stage.vars)) {
      const where = `${file} line ${stage.line}: FROM ${stage.image}`
      if (!shape.globals.has(v)) {
        problems.push(`${where} uses ${v}, which is not a global ARG → declare \`ARG ${v}\` before the first FROM`)
      } else if (shape.globals.get(v)) continue
      else if (!provided.has(v)) {
        // BuildKit reads every stage's FROM: a variable without a value fails the build even in a stage it skips
        problems.push(
          `${where} needs ${v}, but \`ARG ${v}\` has no default and no --build-arg ${v}=… is given → give it a default ` +
            `(\`ARG ${v}=IMAGE\`) or pass --build-arg ${v}=IMAGE`,
        )
      } else if (
        v === 'BASE_IMAGE' && builder.includes(stage) && !o.buildArgs.some((a) => a.startsWith('BASE_IMAGE='))
      ) {
        problems.push(
          `${where}: the builder stage '${o.builder}' needs it, but BASE_IMAGE is each instance's image and the builder ` +
            `is built once for all → build the builder FROM a fixed image (or give \`ARG BASE_IMAGE\` a default)`,
        )
      }
    }
  }
  return problems
}

/** Extra build args of the builder build: BASE_IMAGE=scratch when the Dockerfile declares it without a default. */
export function builderBuildArgs(shape: DockerfileShape, buildArgs: string[]): string[] {
  const given = buildArgs.some((a) => a.startsWith('BASE_IMAGE='))
  return shape.globals.get('BASE_IMAGE') === false && !given ? [BUILDER_BASE_IMAGE] : []
}
