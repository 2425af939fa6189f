// The instances file: one instance a line, validated whole before anything is built.
//   django__django-11099                                  a bare id
//   {"id": "x", "upstream": "reg/img:tag"}                an id with its own upstream image
//   {"instance_id": "x", "repo": "django/django", ...}    a SWE-bench dataset row, as it is
// Blank lines and `#` comments are skipped. Every problem is reported with its line number.
import { ImageRefError, parseImageRef } from '../registry/ref.ts'

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

export const dockerIdOf = (id: string) => id.toLowerCase().replace(/__/g, '_1776_')

/** What is wrong with an image reference (the one grammar, lib/registry/ref.ts), or undefined when docker accepts it. */
export function referenceProblem(ref: string): string | undefined {
  try {
    parseImageRef(ref)
  } catch (e) {
    if (!(e instanceof ImageRefError)) throw e
    return `${e.problems.join('; ')}${e.suggestion ? ` (use '${e.suggestion}')` : ''}`
  }
}

/** Names what is wrong with an id, or undefined when it can be a tag suffix and a log file name. */
export function idProblem(id: string): string | undefined {
  if (ID.test(id)) return undefined
  if (/[$`;|&<>\\\n\r'"]/.test(id)) return `id ${JSON.stringify(id)} carries shell characters`
  if (id.includes('/') || id.includes('..')) return `id ${JSON.stringify(id)} carries a path`
  if (/\s/.test(id)) return `id ${JSON.stringify(id)} contains white space`
  if (id.length > 115) return `id is ${id.length} characters; at most 115 fit in an image tag`
  return `id ${JSON.stringify(id)} must be letters, digits, '.', '_' or '-', starting with a letter or digit`
}

/** Checks an --upstream template's placeholders; returns problems (empty when fine), one per problem, with the fix. */
export function templateProblems(template: string): string[] {
  const unknown = [...template.matchAll(PLACEHOLDER)].map((m) => m[1]).filter((p) => !KNOWN_PLACEHOLDERS.includes(p))
  const problems = unknown.map((p) => `--upstream: unknown placeholder {${p}} (use {id} or {docker_id})`)
  if (unknown.length) return problems
  // the template's reference problems are those of any id filled in; a sample id, put back as placeholders
  const id = 'example__example-1'
  const unfill = (text: string) => text.replaceAll(dockerIdOf(id), '{docker_id}').replaceAll(id, '{id}')
  try {
    parseImageRef(fillTemplate(template, id))
  } catch (e) {
    if (!(e instanceof ImageRefError)) throw e
    const fix = e.suggestion ? ` → use --upstream ${unfill(e.suggestion)}` : ''
    problems.push(...e.problems.map((p) => `--upstream ${template}: ${unfill(p)}${fix}`))
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
  const wrongFormat = wholeDocument(text)
  if (wrongFormat) return { instances: [], problems: [wrongFormat] }
  const templateOk = templateProblems(upstreamTemplate).length === 0 // else named once, as --upstream's problem
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
    const badRef = entry.upstream !== undefined || templateOk ? referenceProblem(upstream) : undefined
    if (badRef) return say(`upstream ${JSON.stringify(upstream)} is not a valid image reference: ${badRef}`)
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

/**
 * A file that is one JSON document (an array of rows, as datasets are often saved, or one object over several
 * lines) instead of one instance a line: named as the wrong format, not reported line by line.
 */
function wholeDocument(text: string): string | undefined {
  const t = text.trim()
  if (!t.startsWith('[') && !(t.startsWith('{') && t.includes('\n'))) return undefined
  let doc: unknown
  try {
    doc = JSON.parse(t)
  } catch {
    if (!t.startsWith('[')) return undefined // JSON lines with a bad line: reported line by line
  }
  const fix = "write one id or JSON object a line (JSON lines), e.g. with jq -c '.[]'"
  if (Array.isArray(doc)) return `is a JSON array of ${doc.length} rows, not one instance a line: ${fix}`
  if (doc && typeof doc === 'object') return `is one JSON object over several lines, not one instance a line: ${fix}`
  return `starts with '[' like a JSON array (and is not valid JSON): ${fix}`
}

/** Ids from a --select file: one a line, `#` comments allowed. */
export function parseSelection(text: string): Set<string> {
  return new Set(text.split(/\r?\n/).map((l) => l.trim()).filter((l) => l && !l.startsWith('#')))
}
