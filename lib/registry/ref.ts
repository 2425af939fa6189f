// Image references as docker reads them: `ubuntu` is registry-1.docker.io/library/ubuntu,
// `127.0.0.1:5000/a/b:tag` stays on that registry, `name@sha256:…` pins a digest.
// Follows distribution/reference's grammar and docker's normalization.

/** A normalized image reference. `registry` is the API host (with port); Docker Hub is `registry-1.docker.io`. */
export type ImageRef = { registry: string; repository: string; tag?: string; digest?: string }

/** A reference docker would reject; the message names the reference and the rule it breaks. */
export class ImageRefError extends Error {}

export const DOCKER_HUB = 'registry-1.docker.io'
/** Names docker treats as Docker Hub. */
const HUB_ALIASES = new Set(['docker.io', 'index.docker.io', 'registry-1.docker.io'])

const COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/
const TAG = /^[\w][\w.-]{0,127}$/
const DIGEST = /^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}$/
const DOMAIN =
  /^(?:\[[0-9a-fA-F:.]+\]|[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?)*)(?::\d+)?$/

/**
 * Parses a reference the way `docker pull` does.
 * @example parseImageRef('ubuntu:22.04') // { registry: 'registry-1.docker.io', repository: 'library/ubuntu', tag: '22.04' }
 * @throws ImageRefError for anything docker would call an invalid reference format.
 */
export function parseImageRef(ref: string): ImageRef {
  const bad = (why: string) => new ImageRefError(`invalid image reference '${ref}': ${why}`)
  if (!ref || ref !== ref.trim()) throw bad('empty or surrounded by spaces')
  let rest = ref
  let digest: string | undefined
  const at = rest.indexOf('@')
  if (at >= 0) {
    digest = rest.slice(at + 1)
    rest = rest.slice(0, at)
    if (!DIGEST.test(digest)) throw bad(`'${digest}' is not a digest (algorithm:hex)`)
    if (digest.startsWith('sha256:') && !/^sha256:[a-f0-9]{64}$/.test(digest)) {
      throw bad('a sha256 digest has 64 lowercase hex digits')
    }
  }
  let tag: string | undefined
  const colon = rest.lastIndexOf(':')
  if (colon > rest.lastIndexOf('/')) {
    tag = rest.slice(colon + 1)
    rest = rest.slice(0, colon)
    if (!TAG.test(tag)) {
      throw bad(`'${tag}' is not a tag (letters, digits, _ . -, at most 128, not starting with . or -)`)
    }
  }
  let { registry, path } = splitDomain(rest)
  if (!DOMAIN.test(registry)) throw bad(`'${registry}' is not a registry host`)
  if (HUB_ALIASES.has(registry.toLowerCase())) registry = DOCKER_HUB
  if (registry === DOCKER_HUB && !path.includes('/')) path = `library/${path}`
  if (!path) throw bad('no repository name')
  if (path.length > 255) throw bad('repository name longer than 255 characters')
  for (const part of path.split('/')) {
    if (!COMPONENT.test(part)) throw bad(`'${part}' must be lowercase letters and digits separated by . _ __ or -`)
  }
  return { registry, repository: path, ...(tag ? { tag } : {}), ...(digest ? { digest } : {}) }
}

/** Docker's rule: the first component is a registry when it has a dot, a colon, is `localhost`, or has capitals. */
function splitDomain(name: string): { registry: string; path: string } {
  const slash = name.indexOf('/')
  const first = slash < 0 ? '' : name.slice(0, slash)
  if (slash < 0 || !(/[.:]/.test(first) || first === 'localhost' || first !== first.toLowerCase())) {
    return { registry: DOCKER_HUB, path: name }
  }
  return { registry: first, path: name.slice(slash + 1) }
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
