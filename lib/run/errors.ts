// Error classes for failed commands: what went wrong, in words a CI log reader can act on.
// The catalogue is ordered: the first pattern that matches a command's output wins.
import { RegistryError } from '../registry/client.ts'
import { lastErrorLine } from './error-line.ts'

export type ErrorClass =
  | 'no_space'
  | 'upstream_missing'
  | 'auth'
  | 'rate_limited'
  | 'unsupported_image'
  | 'network'
  | 'timeout'
  | 'build_error'
  | 'interrupted'

/** One regex matching any of `alternatives` (written a few to a line), with `flags`. */
const anyOf = (flags: string, ...alternatives: RegExp[]) =>
  new RegExp(alternatives.map((r) => r.source).join('|'), flags)

const CATALOGUE: Array<[ErrorClass, RegExp, string]> = [
  // BuildKit and containerd both say this when the data root fills; recoverable by cleaning up
  ['no_space', /no space left on device|ENOSPC|disk quota exceeded/i, 'the Docker data root ran out of space'],
  // The FROM image is not in the registry (typo in --upstream, or the upstream was never pushed). A quoted path that
  // is `: not found` is a COPY source BuildKit ≥ 0.10 could not find (docker/buildx#1075): a build error, not this
  [
    'upstream_missing',
    anyOf(
      'im',
      /manifest unknown|not found: manifest|failed to resolve source metadata .*not found/,
      /pull access denied.*repository does not exist|no such manifest|[^"]: not found$/,
    ),
    'the image to build FROM does not exist',
  ],
  // Docker Hub's pull limit, GHCR's and ECR's throttling: transient, never the image's own fault. Before `auth`:
  // Docker Hub words it "toomanyrequests: You have reached your unauthenticated pull rate limit"
  [
    'rate_limited',
    /toomanyrequests|429 Too Many Requests|rate limit(ed| exceeded)|reached your (unauthenticated )?pull rate limit/i,
    'the registry rate-limited us (429); retried after the wait it asked for',
  ],
  [
    'auth',
    /unauthorized|authentication required|denied: |401 Unauthorized|403 Forbidden|no basic auth credentials/i,
    'the registry refused the credentials',
  ],
  // Killed by our own --timeout (zx reports SIGTERM) or a registry/daemon timeout
  [
    'timeout',
    /timed out|timeout exceeded|deadline exceeded|i\/o timeout|TLS handshake timeout/i,
    'the command timed out',
  ],
  // Transient: registry down or restarting, daemon restarting
  [
    'network',
    anyOf(
      'im',
      /connection refused|connection reset|no route to host|EOF$|server misbehaving|broken pipe|unexpected EOF/,
      /502 Bad Gateway|503 Service Unavailable|500 Internal Server Error/,
      /Cannot connect to the Docker daemon|is the docker daemon running/,
    ),
    'the registry or daemon could not be reached',
  ],
]

/** Classes worth retrying with backoff: the same command may pass a little later. */
export const TRANSIENT: ReadonlySet<ErrorClass> = new Set(['network', 'timeout', 'rate_limited'])

export function classify(output: string, signal?: string | null): ErrorClass {
  if (signal === 'SIGTERM' || signal === 'SIGKILL') return 'timeout'
  for (const [cls, pattern] of CATALOGUE) if (pattern.test(output)) return cls
  return 'build_error'
}

/** Classes no command output is matched to: only the registry client (or the run itself) gives them. */
const OTHER_WORDS: Partial<Record<ErrorClass, string>> = {
  interrupted: 'the run was interrupted',
  // a schema 1 manifest (no image config) or an OCI artifact: nothing to assemble; the message names which
  unsupported_image: 'the image is not one this tool can read (Docker schema 1 manifest, or not a container image)',
}

export function explain(cls: ErrorClass): string {
  return CATALOGUE.find(([c]) => c === cls)?.[2] ?? OTHER_WORDS[cls] ?? 'the build failed'
}

/** A failed docker command with the class of its failure, the last lines of its output and (`line`) the one that says why. */
export class CommandError extends Error {
  constructor(
    readonly what: string,
    readonly errorClass: ErrorClass,
    readonly tail: string,
    readonly exitCode: number | null,
    readonly line?: string,
  ) {
    super(`${what} failed (${errorClass}: ${explain(errorClass)})${tail ? `\n${tail}` : ''}`)
  }
}

/** Registry API failures (registry assembly) in this catalogue's terms; a missing manifest is a missing FROM image. */
const REGISTRY_CLASSES: Record<RegistryError['errorClass'], ErrorClass> = {
  auth: 'auth',
  network: 'network',
  timeout: 'timeout',
  rate_limited: 'rate_limited',
  unsupported: 'unsupported_image',
  protocol: 'build_error',
}

/** Turns a thrown zx ProcessOutput, a RegistryError (or anything else) into a CommandError. */
export function toCommandError(what: string, error: unknown): CommandError {
  if (error instanceof CommandError) return error
  if (error instanceof RegistryError) {
    const cls = error.status === 404 && /manifest/i.test(error.message)
      ? 'upstream_missing'
      : REGISTRY_CLASSES[error.errorClass]
    return new CommandError(what, cls, error.message, null, error.message)
  }
  const e = error as {
    stderr?: string
    stdout?: string
    exitCode?: number | null
    signal?: string | null
    message?: string
  }
  const text = `${e.stderr ?? ''}\n${e.stdout ?? ''}`.trim() || String(e.message ?? error)
  const tail = text.split('\n').filter(Boolean).slice(-6).join('\n')
  const line = e.signal ? `killed by ${e.signal}` : lastErrorLine(e.stderr ?? '', e.stdout ?? '') ?? e.message
  return new CommandError(what, classify(text, e.signal), tail, e.exitCode ?? null, line)
}
