// A Docker Registry HTTP API v2 client: existence checks, manifests, blobs, mounts, uploads.
// Pure HTTP (global fetch): no docker CLI, no daemon. Works under Bun, Deno and Node.
// Credentials come from docker's config.json in the directory the caller names, and are read again after the
// registry refuses them or once they are `credentialSeconds` old (ECR passwords expire after 12 h). Plain HTTP
// for the registries docker itself treats as insecure (ping.ts), HTTPS for the rest.
import pMap from 'p-map'
import {
  basicHeader,
  type Challenge,
  type CredentialOptions,
  type Credentials,
  fetchToken,
  findCredentials,
  pickChallenge,
  TokenError,
} from './auth.ts'
import {
  errorBody,
  type ErrorClass,
  type HttpInit,
  type Limits,
  RegistryError,
  retryAfterMs,
  timedFetch,
} from './http.ts'
import { imageManifestType, MANIFEST_ACCEPT } from './media.ts'
import { type InsecureRegistries, registryBaseUrl } from './ping.ts'
import { type ImageRef, refReference, toRef } from './ref.ts'

export { ERROR_CLASSES, type ErrorClass, RegistryError } from './http.ts'
export { MANIFEST_ACCEPT, MEDIA } from './media.ts'
export { formatImageRef, type ImageRef, ImageRefError, parseImageRef } from './ref.ts'

/** What this client says it is: registries log it, and a test can tell its reads from the engine's pulls. */
export const USER_AGENT = 'imagefleet (registry client)'

export type RegistryClientOptions = CredentialOptions & {
  /** Extra attempts for transient failures (network, timeout, 5xx, 429, token server). Default 2. */
  retries?: number
  /** First backoff in ms; doubles each retry. Default 100. */
  retryDelayMs?: number
  /** The answer limit: seconds from a request sent (its body handed over whole) to its response headers. Default 30. */
  timeoutSeconds?: number
  /** Seconds a transfer may move no byte, sending or reading a body. Default 60. */
  idleSeconds?: number
  /** The longest Retry-After a 429 is waited for (a longer one is cut to this). Default 60. */
  maxRetryAfterSeconds?: number
  /** Seconds credentials read from docker's config (or `credentials`) are used before being read again. Default 600. */
  credentialSeconds?: number
  /** Registries spoken to over plain HTTP besides loopback (docker's insecure-registries rule, ping.ts). */
  insecure?: InsecureRegistries
  /** Replaces docker config lookup (tests, or a caller with its own secrets). */
  credentials?: (registry: string) => Promise<Credentials | undefined>
  fetch?: typeof fetch
}

/** Transfer totals since the client was made, for the run's report. */
export type RegistryCounters = { requests: number; retries: number; bytesUploaded: number; bytesDownloaded: number }
/** A repository on a registry (an ImageRef without tag/digest will do). */
export type Repo = Pick<ImageRef, 'registry' | 'repository'>
type Access = 'pull' | 'pull,push'
export type SendInit = {
  method?: string
  headers?: Record<string, string>
  /** A stream is sent once: no retry, no second authentication round (the caller starts over). */
  body?: Uint8Array | ReadableStream<Uint8Array> | null
  /** An absolute URL (an upload location) instead of `path`. */
  url?: string
  /** More token scopes, e.g. pull on the source repository of a mount. */
  scopes?: string[]
}
/** An Authorization header, where it is cached, and until when it may be reused. */
type Auth = { header: string; key: string; until: number }

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
const TRANSIENT_CLASSES: ReadonlySet<ErrorClass> = new Set(['network', 'timeout', 'rate_limited'])
const transient = (e: unknown) => e instanceof RegistryError && TRANSIENT_CLASSES.has(e.errorClass)
const statusClass = (status?: number): ErrorClass =>
  status === 401 || status === 403
    ? 'auth'
    : status === 429
    ? 'rate_limited'
    : status && status >= 500
    ? 'network'
    : 'protocol'

/**
 * One client per run, shared by every task (it caches credentials and tokens per registry and scope).
 * @example
 *   const client = new RegistryClient({ dockerConfigDir: flags.dockerConfig })
 *   const found = await client.checkMany(tags, 64)        // Map<tag, boolean | RegistryError>
 *   client.counters                                       // requests, retries, bytes up/down
 * Blob operations (mount, upload, copy) are in blobs.ts and take the client as first argument.
 */
export class RegistryClient {
  readonly counters: RegistryCounters = { requests: 0, retries: 0, bytesUploaded: 0, bytesDownloaded: 0 }
  readonly limits: Limits
  private readonly fetch: typeof fetch
  private readonly challenges = new Map<string, Challenge>()
  private readonly authCache = new Map<string, Auth>()
  private readonly pending = new Map<string, Promise<Auth>>()
  private readonly creds = new Map<string, { value: Promise<Credentials | undefined>; until: number }>()
  private readonly bases = new Map<string, Promise<string>>()

  constructor(readonly options: RegistryClientOptions = {}) {
    this.fetch = options.fetch ?? globalThis.fetch.bind(globalThis)
    this.limits = { answerMs: (options.timeoutSeconds ?? 30) * 1000, idleMs: (options.idleSeconds ?? 60) * 1000 }
  }

  /** `http://` for loopback and insecure registries (docker's rule), `https://` otherwise; decided once per registry. */
  baseUrl(registry: string): Promise<string> {
    let base = this.bases.get(registry)
    if (!base) this.bases.set(registry, base = registryBaseUrl(registry, this.options.insecure))
    return base
  }

  /**
   * True when the tag or digest exists (200), false when the registry says 404; RegistryError otherwise.
   * Note: Docker Hub and GHCR answer 401 (class `auth`), not 404, for a repository the token may not see —
   * including one that does not exist yet.
   */
  async manifestExists(ref: string | ImageRef): Promise<boolean> {
    const r = toRef(ref)
    const res = await this.send(r, 'pull', `/v2/${r.repository}/manifests/${refReference(r)}`, {
      method: 'HEAD',
      headers: { accept: MANIFEST_ACCEPT },
    })
    await res.body?.cancel()
    if (res.status === 200) return true
    if (res.status === 404) return false
    throw await this.statusError(res, `HEAD manifest ${r.repository}:${refReference(r)}`)
  }

  /** Checks many references in parallel; each maps to true/false or the RegistryError it met (never throws). */
  async checkMany(refs: string[], concurrency = 64): Promise<Map<string, boolean | RegistryError>> {
    const results = new Map<string, boolean | RegistryError>()
    await pMap(refs, async (ref) => {
      try {
        results.set(ref, await this.manifestExists(ref))
      } catch (e) {
        results.set(ref, e instanceof RegistryError ? e : new RegistryError((e as Error).message, 'protocol'))
      }
    }, { concurrency })
    return results
  }

  /**
   * GETs an index or an image manifest as bytes plus its media type and digest (from the registry header, else
   * computed by the caller). A schema 1 manifest or an artifact that is not an image throws class `unsupported`.
   */
  async getManifest(ref: string | ImageRef): Promise<{ bytes: Uint8Array; mediaType: string; digest?: string }> {
    const r = toRef(ref)
    const res = await this.send(r, 'pull', `/v2/${r.repository}/manifests/${refReference(r)}`, {
      headers: { accept: MANIFEST_ACCEPT },
    })
    if (res.status !== 200) throw await this.statusError(res, `GET manifest ${r.repository}:${refReference(r)}`)
    const bytes = await this.readBody(res)
    const contentType = (res.headers.get('content-type') ?? '').split(';')[0].trim()
    const mediaType = imageManifestType(bytes, contentType, `${r.registry}/${r.repository}:${refReference(r)}`)
    return { bytes, mediaType, digest: res.headers.get('docker-content-digest') ?? undefined }
  }

  /** PUTs a manifest under a tag or digest, with Content-Type its mediaType; returns the digest the registry reports. */
  async putManifest(ref: string | ImageRef, bytes: Uint8Array, mediaType: string): Promise<string> {
    const r = toRef(ref)
    const res = await this.send(r, 'pull,push', `/v2/${r.repository}/manifests/${refReference(r)}`, {
      method: 'PUT',
      headers: { 'content-type': mediaType },
      body: bytes,
    })
    if (res.status !== 201) throw await this.statusError(res, `PUT manifest ${r.repository}:${refReference(r)}`)
    await res.body?.cancel()
    return res.headers.get('docker-content-digest') ?? ''
  }

  /**
   * Sends one request with auth, limits and retries. `path` is relative to the registry (`/v2/...`), or `init.url`
   * an absolute upload location. A 401 starts one new authentication round (the header it carried and the
   * credentials behind it are dropped); token requests, network failures, timeouts, 5xx and 429 (after its
   * Retry-After) are retried with backoff.
   */
  async send(repo: Repo, access: Access, path: string, init: SendInit = {}): Promise<Response> {
    const url = init.url ?? `${await this.baseUrl(repo.registry)}${path}`
    const scope = [`repository:${repo.repository}:${access}`, ...(init.scopes ?? [])].join(' ')
    const replayable = !(init.body instanceof ReadableStream)
    const retries = replayable ? this.options.retries ?? 2 : 0
    // an upload Location on another host gets none of this registry's credentials (containerd's pusher drops its
    // authorizer there too, core/remotes/docker/pusher.go)
    const foreign = new URL(url).host !== new URL(await this.baseUrl(repo.registry)).host
    let reauthenticated = false
    for (let attempt = 0;; attempt++) {
      let auth: Auth | undefined
      let res: Response
      try {
        auth = foreign ? undefined : await this.authorization(repo.registry, scope)
        res = await this.fetchOnce(url, init, auth?.header)
      } catch (e) {
        if (!transient(e) || attempt >= retries) throw e
        await this.backoff(attempt)
        continue
      }
      const challenge = res.status === 401 ? pickChallenge(res.headers.get('www-authenticate') ?? '') : undefined
      if (challenge && replayable && !reauthenticated && !foreign) {
        reauthenticated = true
        this.forget(repo.registry, challenge, auth)
        await res.body?.cancel()
        attempt--
        continue
      }
      if ((res.status === 429 || res.status >= 500) && attempt < retries) {
        await res.body?.cancel()
        await this.backoff(attempt, res.status === 429 ? retryAfterMs(res.headers.get('retry-after')) : undefined)
        continue
      }
      return res
    }
  }

  /** Sends a request as it is (no auth round, no retry): the answer and idle limits apply, the bytes are counted. */
  private fetchOnce(url: string, init: SendInit, auth?: string): Promise<Response> {
    const headers = { 'user-agent': USER_AGENT, ...init.headers, ...(auth ? { authorization: auth } : {}) }
    this.counters.requests++
    if (init.body instanceof Uint8Array) this.counters.bytesUploaded += init.body.byteLength
    const request: HttpInit = { method: init.method ?? 'GET', headers, body: init.body ?? undefined }
    return timedFetch(this.fetch, url, request, this.limits)
  }

  /** Waits before a retry: what a 429's Retry-After asked (at most maxRetryAfterSeconds), else exponential backoff. */
  private async backoff(attempt: number, askedMs?: number) {
    this.counters.retries++
    const cap = (this.options.maxRetryAfterSeconds ?? 60) * 1000
    await sleep(askedMs !== undefined ? Math.min(askedMs, cap) : (this.options.retryDelayMs ?? 100) * 2 ** attempt)
  }

  /** After a 401: answer the new challenge from now on; the refused header and the credentials behind it go. */
  private forget(registry: string, challenge: Challenge, used?: Auth) {
    this.challenges.set(registry, challenge)
    if (used) this.authCache.delete(used.key)
    this.creds.delete(registry)
  }

  /** The Authorization header for a registry and scope, fetched once (shared) when the registry asked for one. */
  private async authorization(registry: string, scope: string): Promise<Auth | undefined> {
    const challenge = this.challenges.get(registry)
    if (!challenge) return undefined
    const key = challenge.scheme === 'basic' ? registry : `${registry} ${scope}`
    const cached = this.authCache.get(key)
    if (cached && cached.until > Date.now()) return cached
    let inflight = this.pending.get(key)
    if (!inflight) {
      inflight = this.authenticate(registry, challenge, scope, key)
        .then((auth) => (this.authCache.set(key, auth), auth))
        .finally(() => this.pending.delete(key))
      this.pending.set(key, inflight)
    }
    return inflight
  }

  private async authenticate(registry: string, challenge: Challenge, scope: string, key: string): Promise<Auth> {
    const creds = await this.credentialsFor(registry)
    const credentialsUntil = Date.now() + (this.options.credentialSeconds ?? 600) * 1000
    if (challenge.scheme === 'basic') {
      if (!creds?.username) {
        throw new RegistryError(`${registry} wants a login and no credentials were found for it`, 'auth', 401)
      }
      return { header: basicHeader(creds), key, until: credentialsUntil }
    }
    if (challenge.scheme !== 'bearer') {
      throw new RegistryError(`${registry} asks for unsupported auth scheme '${challenge.scheme}'`, 'auth', 401)
    }
    try {
      const send = (url: string, init: HttpInit) => this.fetchOnce(url, init)
      const { token, expiresInSeconds } = await fetchToken(challenge, scope.split(' '), creds, send)
      const until = Math.min(credentialsUntil, Date.now() + Math.max(10, expiresInSeconds - 10) * 1000)
      return { header: `Bearer ${token}`, key, until }
    } catch (e) {
      if (!(e instanceof TokenError)) throw e // RegistryError: the token server timed out or could not be reached
      throw new RegistryError(`${registry}: ${e.message}`, e.status ? statusClass(e.status) : 'auth', e.status)
    }
  }

  /** Credentials for a registry, read again once they are credentialSeconds old (or after a 401, see forget). */
  private credentialsFor(registry: string): Promise<Credentials | undefined> {
    const cached = this.creds.get(registry)
    if (cached && cached.until > Date.now()) return cached.value
    const read = this.options.credentials ? this.options.credentials(registry) : findCredentials(registry, this.options)
    const value = read.catch((e: Error) => {
      this.creds.delete(registry)
      throw new RegistryError(`credentials for ${registry}: ${e.message}`, 'auth')
    })
    this.creds.set(registry, { value, until: Date.now() + (this.options.credentialSeconds ?? 600) * 1000 })
    return value
  }

  /** Reads a whole body (under the idle limit), counting the bytes as downloaded. */
  async readBody(res: Response): Promise<Uint8Array> {
    const bytes = new Uint8Array(await res.arrayBuffer())
    this.counters.bytesDownloaded += bytes.byteLength
    return bytes
  }

  /**
   * A RegistryError for an unexpected answer, with the registry's own code and message (`DENIED: …`,
   * `TOOMANYREQUESTS: …`, `MANIFEST_BLOB_UNKNOWN: …`) and, for a 429, what Retry-After asked.
   */
  async statusError(res: Response, what: string): Promise<RegistryError> {
    const { code, text } = await errorBody(res)
    const errorClass = code === 'TOOMANYREQUESTS' ? 'rate_limited' : statusClass(res.status)
    const retryAfter = res.status === 429 ? res.headers.get('retry-after') : null
    const message = `${what}: registry answered ${res.status} ${res.statusText}`.trim() +
      (text ? ` — ${text}` : '') + (retryAfter ? ` (Retry-After: ${retryAfter})` : '')
    return new RegistryError(message, errorClass, res.status, code)
  }
}
