// The instances file: one instance a line, validated whole before anything is built.
//   django__django-11099                                  a bare id
//   {"id": "x", "upstream": "reg/img:tag"}                an id with its own upstream image
//   {"instance_id": "x", "repo": "django/django", ...}    a SWE-bench dataset row, as it is
// Blank lines and `#` comments are skipped. Every problem is reported with its line number.

export type Instance = {
  id: string
  /** lower-cased, `__` → `_1776_` (SWE-bench's image naming) */
  dockerId: string
  /** the image the base builds FROM */
  upstream: string
  line: number
  /** A SWE-bench row's `repo` and `version`: the dataset's environment key (lib/fleet/groups.ts) */
  repo?: string
  version?: string
}

const ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,114}$/
const PLACEHOLDER = /\{([^}]*)\}/g
const KNOWN_PLACEHOLDERS = ['id', 'docker_id']

// Docker's reference grammar (distribution/reference), anchored: what `docker build -t` accepts.
const DOMAIN = String
  .raw`(?:[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*(?::[0-9]+)?`
const COMPONENT = String.raw`[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*`
const TAG = String.raw`[\w][\w.-]{0,127}`
const DIGEST = String.raw`[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}`
const REFERENCE = new RegExp(`^(?:${DOMAIN}/)?${COMPONENT}(?:/${COMPONENT})*(?::${TAG})?(?:@${DIGEST})?$`)
const REPOSITORY = new RegExp(`^(?:${DOMAIN}/)?${COMPONENT}(?:/${COMPONENT})*$`)

export const dockerIdOf = (id: string) => id.toLowerCase().replace(/__/g, '_1776_')
export const isImageReference = (ref: string) => ref.length <= 255 && REFERENCE.test(ref)
export const isRepository = (repo: string) => repo.length <= 255 && REPOSITORY.test(repo)

/** Names what is wrong with an id, or undefined when it can be a tag suffix and a log file name. */
export function idProblem(id: string): string | undefined {
  if (ID.test(id)) return undefined
  if (/[$`;|&<>\\\n\r'"]/.test(id)) return `id ${JSON.stringify(id)} carries shell characters`
  if (id.includes('/') || id.includes('..')) return `id ${JSON.stringify(id)} carries a path`
  if (/\s/.test(id)) return `id ${JSON.stringify(id)} contains white space`
  if (id.length > 115) return `id is ${id.length} characters; at most 115 fit in an image tag`
  return `id ${JSON.stringify(id)} must be letters, digits, '.', '_' or '-', starting with a letter or digit`
}

/** Checks an --upstream template's placeholders; returns problems (empty when fine). */
export function templateProblems(template: string): string[] {
  const unknown = [...template.matchAll(PLACEHOLDER)].map((m) => m[1]).filter((p) => !KNOWN_PLACEHOLDERS.includes(p))
  const problems = unknown.map((p) => `--upstream: unknown placeholder {${p}} (use {id} or {docker_id})`)
  const sample = fillTemplate(template, 'example__example-1')
  if (!unknown.length && !isImageReference(sample)) {
    problems.push(`--upstream: '${template}' does not make a valid image reference (e.g. ${JSON.stringify(sample)})`)
  }
  return problems
}

export const fillTemplate = (template: string, id: string) =>
  template.replace(/\{id\}/g, id).replace(/\{docker_id\}/g, dockerIdOf(id))

type Entry = { id?: unknown; upstream?: unknown; repo?: unknown; version?: unknown; problem?: string }

function parseLine(text: string): Entry {
  if (!text.startsWith('{')) return { id: text }
  let row: Record<string, unknown>
  try {
    row = JSON.parse(text)
  } catch (e) {
    return { problem: `malformed JSON: ${(e as Error).message}` }
  }
  if (!row || typeof row !== 'object' || Array.isArray(row)) return { problem: 'JSON line must be an object' }
  const id = row.id ?? row.instance_id
  if (id === undefined) return { problem: 'JSON object has neither "id" nor "instance_id"' }
  return { id, upstream: row.upstream, repo: row.repo, version: row.version }
}

/**
 * Parses and validates an instances file. Throws nothing: returns instances and every problem found,
 * each prefixed with its line number, so the caller can refuse the whole list at once.
 */
export function parseInstances(text: string, upstreamTemplate: string): { instances: Instance[]; problems: string[] } {
  const instances: Instance[] = []
  const problems: string[] = []
  const seen = new Map<string, number>()
  text.split(/\r?\n/).forEach((raw, index) => {
    const line = index + 1
    const trimmed = raw.trim()
    if (!trimmed || trimmed.startsWith('#')) return
    const entry = parseLine(trimmed)
    const say = (p: string) => problems.push(`line ${line}: ${p}`)
    if (entry.problem) return say(entry.problem)
    if (typeof entry.id !== 'string') return say(`id must be a string, got ${JSON.stringify(entry.id)}`)
    const bad = idProblem(entry.id)
    if (bad) return say(bad)
    const dockerId = dockerIdOf(entry.id)
    if (seen.has(dockerId)) return say(`duplicate id ${entry.id} (first on line ${seen.get(dockerId)})`)
    seen.set(dockerId, line)
    if (entry.upstream !== undefined && typeof entry.upstream !== 'string') return say('"upstream" must be a string')
    const upstream = entry.upstream ?? fillTemplate(upstreamTemplate, entry.id)
    if (!isImageReference(upstream)) return say(`upstream ${JSON.stringify(upstream)} is not a valid image reference`)
    const env = {
      ...(typeof entry.repo === 'string' && entry.repo ? { repo: entry.repo } : {}),
      ...(typeof entry.version === 'string' || typeof entry.version === 'number'
        ? { version: String(entry.version) }
        : {}),
    }
    instances.push({ id: entry.id, dockerId, upstream, line, ...env })
  })
  return { instances, problems }
}

/** Ids from a --select file: one a line, `#` comments allowed. */
export function parseSelection(text: string): Set<string> {
  return new Set(text.split(/\r?\n/).map((l) => l.trim()).filter((l) => l && !l.startsWith('#')))
}
