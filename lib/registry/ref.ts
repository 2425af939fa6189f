// Image references as docker reads them: `ubuntu` is registry-1.docker.io/library/ubuntu,
// `127.0.0.1:5000/a/b:tag` stays on that registry, `name@sha256:…` pins a digest.
// The one grammar of the project (instances, --upstream, --registry and the repositories, the registry client):
// distribution/reference's grammar and docker's normalization (reference/normalize.go, splitDockerDomain).

/** A normalized image reference. `registry` is the API host (with port); Docker Hub is `registry-1.docker.io`. */
export type ImageRef = { registry: string; repository: string; tag?: string; digest?: string }

/**
 * A reference docker would reject. `problems` names each thing wrong, one phrase each; `suggestion` is the text
 * with every fixable problem fixed (URL scheme dropped, repository lower-cased) when that parses.
 */
export class ImageRefError extends Error {
  constructor(readonly text: string, readonly problems: string[], readonly suggestion?: string) {
    super(`invalid image reference '${text}': ${problems.join('; ')}${suggestion ? ` (use '${suggestion}')` : ''}`)
  }
}

export const DOCKER_HUB = 'registry-1.docker.io'
/** Names docker treats as Docker Hub. */
const HUB_ALIASES = new Set(['docker.io', 'index.docker.io', 'registry-1.docker.io'])
/** distribution/reference: NameTotalLengthMax */
const NAME_MAX = 255

const COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/
const TAG = /^[\w][\w.-]{0,127}$/
const DIGEST = /^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}$/
const DOMAIN =
  /^(?:\[[0-9a-fA-F:.]+\]|[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*)(?::\d+)?$/
/** `http://`, `https://`, `oci://`: URLs, not image names */
const SCHEME = /^[a-zA-Z][a-zA-Z0-9+.-]*:\/\//

/** reference: `name[:tag][@digest]`; repository: `name`; prefix: `name`, or a registry host alone */
type Kind = 'reference' | 'repository' | 'prefix'

/**
 * Parses a reference the way `docker pull` does.
 * @example parseImageRef('ubuntu:22.04') // { registry: 'registry-1.docker.io', repository: 'library/ubuntu', tag: '22.04' }
 * @throws ImageRefError for anything docker would call an invalid reference format.
 */
export function parseImageRef(ref: string): ImageRef {
  return parse(ref, 'reference')
}

/** A repository: a reference without tag or digest (`ghcr.io/me/fleet/eval-base`). */
export function parseRepository(name: string): ImageRef {
  return parse(name, 'repository')
}

/**
 * A --registry PREFIX: a registry host alone (`127.0.0.1:5000`, `ghcr.io`) or a repository path under which the
 * fleet's repositories go (`ghcr.io/me/fleet` → `ghcr.io/me/fleet/eval-base`). Returns it without trailing slashes.
 * @throws ImageRefError naming each problem, with the fixed prefix as its suggestion when there is one.
 */
export function parsePrefix(prefix: string): { prefix: string; registry: string } {
  const trimmed = prefix.replace(/\/+$/, '')
  return { prefix: trimmed, registry: parse(trimmed, 'prefix').registry }
}

/** The host docker logs in to and preflight pings for a reference: Docker Hub is `docker.io`. */
export const hostOf = (ref: ImageRef) => (ref.registry === DOCKER_HUB ? 'docker.io' : ref.registry)
/** The registry host of an image reference (`127.0.0.1:5000/a/b:t` → `127.0.0.1:5000`; `a/b` → `docker.io`). */
export const refHost = (ref: string) => hostOf(parseImageRef(ref))
/** The registry host of a --registry PREFIX (`ghcr.io/me/fleet` → `ghcr.io`; `127.0.0.1:5000` → itself). */
export const prefixHost = (prefix: string) => hostOf({ registry: parsePrefix(prefix).registry, repository: '' })

function parse(text: string, kind: Kind): ImageRef {
  const fixable = fixableProblems(text, kind)
  if (fixable.length) {
    const fixed = fix(text, fixable.some((p) => p.startsWith('repository names')))
    const rest = check(fixed, kind)
    const problems = typeof rest === 'string' ? [...fixable, rest] : fixable
    throw new ImageRefError(text, problems, typeof rest === 'string' ? undefined : fixed)
  }
  const ref = check(text, kind)
  if (typeof ref === 'string') throw new ImageRefError(text, [ref])
  return ref
}

/** Problems a user makes by pasting a URL or an owner's name with capitals: each has an obvious fix. */
function fixableProblems(text: string, kind: Kind): string[] {
  const problems: string[] = []
  const scheme = SCHEME.exec(text)?.[0]
  const rest = text.slice(scheme?.length ?? 0)
  const hostAlone = kind === 'prefix' && !rest.includes('/') && isHostLike(rest) // host names are not case-sensitive
  if (scheme) {
    problems.push(
      `'${scheme}' is a URL scheme: image names have none (docker picks HTTPS, or plain HTTP for a loopback or insecure registry)`,
    )
  }
  const path = repositoryPath(rest)
  if (!hostAlone && path !== path.toLowerCase() && path.toLowerCase().split('/').every((c) => COMPONENT.test(c))) {
    problems.push(`repository names are lower-case: '${path}'`)
  }
  return problems
}

/** The text with the scheme dropped and (`lower`) the repository path lower-cased; the registry host keeps its case. */
function fix(text: string, lower: boolean): string {
  const rest = text.replace(SCHEME, '')
  const name = stripTagAndDigest(rest)
  const path = repositoryPath(rest)
  if (!lower) return rest
  return `${name.slice(0, name.length - path.length)}${path.toLowerCase()}${rest.slice(name.length)}`
}

/** The repository path as the user meant it: a first component that is a host only for its capitals belongs to it. */
function repositoryPath(text: string): string {
  const name = stripTagAndDigest(text)
  const { registry, path, explicit } = splitDomain(name)
  return explicit && !isHostLike(registry) ? name : path
}

const isHostLike = (first: string) => /[.:]/.test(first) || first === 'localhost'

/** The parsed reference, or the problem (a phrase) for anything docker would refuse. */
function check(ref: string, kind: Kind): ImageRef | string {
  if (!ref || /\s/.test(ref)) return 'empty or contains white space'
  if (kind === 'prefix' && !ref.includes('/') && isHostLike(ref) && DOMAIN.test(ref)) {
    return { registry: HUB_ALIASES.has(ref.toLowerCase()) ? DOCKER_HUB : ref, repository: '' }
  }
  let rest = ref
  let digest: string | undefined
  const at = rest.indexOf('@')
  if (at >= 0) {
    digest = rest.slice(at + 1)
    rest = rest.slice(0, at)
    if (kind !== 'reference') return `a repository has no digest ('@${digest}')`
    if (!DIGEST.test(digest)) return `'${digest}' is not a digest (algorithm:hex)`
    if (digest.startsWith('sha256:') && !/^sha256:[a-f0-9]{64}$/.test(digest)) {
      return 'a sha256 digest has 64 lowercase hex digits'
    }
  }
  let tag: string | undefined
  const colon = rest.lastIndexOf(':')
  if (colon > rest.lastIndexOf('/')) {
    tag = rest.slice(colon + 1)
    rest = rest.slice(0, colon)
    if (kind !== 'reference') return `a repository has no tag (':${tag}')`
    if (!TAG.test(tag)) return `'${tag}' is not a tag (letters, digits, _ . -, at most 128, not starting with . or -)`
  }
  if (rest.length > NAME_MAX) return `the name is longer than ${NAME_MAX} characters`
  let { registry, path, explicit } = splitDomain(rest)
  if (!DOMAIN.test(registry)) return `'${registry}' is not a registry host`
  // docker reads a first component with capitals as a host; a Docker Hub owner was meant (fixable above)
  if (explicit && !isHostLike(registry)) return `'${registry}' has capitals: repository names are lower-case`
  if (HUB_ALIASES.has(registry.toLowerCase())) registry = DOCKER_HUB
  if (registry === DOCKER_HUB && !path.includes('/')) path = `library/${path}`
  if (!path) return 'no repository name'
  for (const part of path.split('/')) {
    if (!part) return 'an empty path component (//)'
    if (!COMPONENT.test(part)) return `'${part}' must be lower-case letters and digits separated by . _ __ or -`
  }
  return { registry, repository: path, ...(tag ? { tag } : {}), ...(digest ? { digest } : {}) }
}

const stripTagAndDigest = (text: string) => {
  const name = text.split('@')[0]
  const colon = name.lastIndexOf(':')
  return colon > name.lastIndexOf('/') ? name.slice(0, colon) : name
}

/** Docker's rule: the first component is a registry when it has a dot, a colon, is `localhost`, or has capitals. */
function splitDomain(name: string): { registry: string; path: string; explicit: boolean } {
  const slash = name.indexOf('/')
  const first = slash < 0 ? '' : name.slice(0, slash)
  if (slash < 0 || !(/[.:]/.test(first) || first === 'localhost' || first !== first.toLowerCase())) {
    return { registry: DOCKER_HUB, path: name, explicit: false }
  }
  return { registry: first, path: name.slice(slash + 1), explicit: true }
}

/** The reference back as text: `registry/repository[:tag][@digest]`. */
export function formatImageRef(ref: ImageRef): string {
  return `${ref.registry}/${ref.repository}${ref.tag ? `:${ref.tag}` : ''}${ref.digest ? `@${ref.digest}` : ''}`
}

/** What to ask the registry for: the digest when pinned, else the tag, else `latest`. */
export const refReference = (ref: ImageRef) => ref.digest ?? ref.tag ?? 'latest'

/** Loopback registries (127.0.0.0/8, localhost, ::1) are spoken to over plain HTTP, as docker does. */
export function isLoopback(registry: string): boolean {
  const host = registry.startsWith('[') ? registry.slice(1, registry.indexOf(']')) : registry.replace(/:\d+$/, '')
  return host === 'localhost' || host === '::1' || /^127\.\d+\.\d+\.\d+$/.test(host)
}

/** Accepts either a string or an already-parsed reference. */
export const toRef = (ref: string | ImageRef): ImageRef => (typeof ref === 'string' ? parseImageRef(ref) : ref)
