// A Docker Registry HTTP API v2 client: existence checks, manifests, blobs, mounts, uploads.
// Pure HTTP (global fetch): no docker CLI, no daemon. Works under Bun, Deno and Node.
// Credentials come from docker's config.json in the directory the caller names; loopback registries use plain HTTP.
import pMap from 'p-map'
import {
  basicHeader,
  type Challenge,
  type CredentialOptions,
  type Credentials,
  fetchToken,
  findCredentials,
  parseChallenge,
} from './auth.ts'
import { type ImageRef, isLoopback, refReference, toRef } from './ref.ts'

export { formatImageRef, type ImageRef, ImageRefError, parseImageRef } from './ref.ts'

/** Why a registry call failed — the pipeline records this class per image. */
export const ERROR_CLASSES = {
  auth: 'credentials missing or refused (401/403, token server refused)',
  network: 'connection refused, DNS failure, reset, or the registry answered 5xx/429',
  timeout: 'no answer within the request timeout',
  protocol: 'the registry answered something this client does not understand (other 4xx, bad JSON)',
} as const
export type ErrorClass = keyof typeof ERROR_CLASSES

export class RegistryError extends Error {
  constructor(message: string, readonly errorClass: ErrorClass, readonly status?: number) {
    super(message)
  }
}

export type RegistryClientOptions = CredentialOptions & {
  /** Extra attempts for transient failures (network, timeout, 5xx, 429). Default 2. */
  retries?: number
  /** First backoff in ms; doubles each retry. Default 100. */
  retryDelayMs?: number
  /** Seconds to wait for response headers. Default 30. */
  timeoutSeconds?: number
  /** Registries (host:port) spoken to over plain HTTP besides loopback ones. */
  insecureRegistries?: string[]
  /** Replaces docker config lookup (tests, or a caller with its own secrets). */
  credentials?: (registry: string) => Promise<Credentials | undefined>
  fetch?: typeof fetch
}

/** Transfer totals since the client was made, for the run's report. */
export type RegistryCounters = { requests: number; retries: number; bytesUploaded: number; bytesDownloaded: number }
/** A repository on a registry (an ImageRef without tag/digest will do). */
export type Repo = Pick<ImageRef, 'registry' | 'repository'>
type Access = 'pull' | 'pull,push'
type SendInit = {
  method?: string
  headers?: Record<string, string>
  body?: Uint8Array | ReadableStream<Uint8Array> | null
  /** An absolute URL (an upload location) instead of `path`. */
  url?: string
  /** More token scopes, e.g. pull on the source repository of a mount. */
  scopes?: string[]
}

export const MEDIA = {
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  dockerConfig: 'application/vnd.docker.container.image.v1+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  dockerLayer: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
  ociLayer: 'application/vnd.oci.image.layer.v1.tar+gzip',
} as const
export const MANIFEST_ACCEPT = [MEDIA.dockerManifest, MEDIA.dockerList, MEDIA.ociManifest, MEDIA.ociIndex].join(', ')

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
const transient = (status: number) => status >= 500 || status === 429

/**
 * One client per run, shared by every task (it caches credentials and tokens per registry and scope).
 * @example
 *   const client = new RegistryClient({ dockerConfigDir: flags.dockerConfig })
 *   const found = await client.checkMany(tags, 64)        // Map<tag, boolean | RegistryError>
 *   client.counters                                       // requests, retries, bytes up/down
 * Blob operations (mount, upload, copy) are in registry-blobs.ts and take the client as first argument.
 */
export class RegistryClient {
  readonly counters: RegistryCounters = { requests: 0, retries: 0, bytesUploaded: 0, bytesDownloaded: 0 }
  private readonly fetch: typeof fetch
  private readonly challenges = new Map<string, Challenge | null>()
  private readonly authCache = new Map<string, { header: string; until: number }>()
  private readonly pending = new Map<string, Promise<string | undefined>>()
  private readonly creds = new Map<string, Promise<Credentials | undefined>>()

  constructor(readonly options: RegistryClientOptions = {}) {
    this.fetch = options.fetch ?? globalThis.fetch.bind(globalThis)
  }

  /** `http://` for loopback and listed insecure registries, `https://` otherwise. */
  baseUrl(registry: string): string {
    const plain = isLoopback(registry) || (this.options.insecureRegistries ?? []).includes(registry)
    return `${plain ? 'http' : 'https'}://${registry}`
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
    throw this.statusError(res, `HEAD manifest ${r.repository}:${refReference(r)}`)
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

  /** GETs a manifest or index as bytes plus its media type and digest (from the registry header, else computed by the caller). */
  async getManifest(ref: string | ImageRef): Promise<{ bytes: Uint8Array; mediaType: string; digest?: string }> {
    const r = toRef(ref)
    const res = await this.send(r, 'pull', `/v2/${r.repository}/manifests/${refReference(r)}`, {
      headers: { accept: MANIFEST_ACCEPT },
    })
    if (res.status !== 200) throw this.statusError(res, `GET manifest ${r.repository}:${refReference(r)}`)
    const bytes = await this.readBody(res)
    const mediaType = (res.headers.get('content-type') ?? '').split(';')[0] ||
      JSON.parse(new TextDecoder().decode(bytes)).mediaType
    return { bytes, mediaType, digest: res.headers.get('docker-content-digest') ?? undefined }
  }

  /** PUTs a manifest under a tag or digest; returns the digest the registry reports. */
  async putManifest(ref: string | ImageRef, bytes: Uint8Array, mediaType: string): Promise<string> {
    const r = toRef(ref)
    const res = await this.send(r, 'pull,push', `/v2/${r.repository}/manifests/${refReference(r)}`, {
      method: 'PUT',
      headers: { 'content-type': mediaType },
      body: bytes,
    })
    await res.body?.cancel()
    if (res.status !== 201) throw this.statusError(res, `PUT manifest ${r.repository}:${refReference(r)}`)
    return res.headers.get('docker-content-digest') ?? ''
  }

  /**
   * Sends one request with auth, timeout and retries. `path` is relative to the registry (`/v2/...`), or
   * `init.url` an absolute upload location. 401 triggers one authentication round; transient failures retry.
   */
  async send(repo: Repo, access: Access, path: string, init: SendInit = {}): Promise<Response> {
    const url = init.url ?? `${this.baseUrl(repo.registry)}${path}`
    const scope = [`repository:${repo.repository}:${access}`, ...(init.scopes ?? [])].join(' ')
    const retryable = !(init.body instanceof ReadableStream)
    const retries = retryable ? this.options.retries ?? 2 : 0
    let authTried = false
    for (let attempt = 0;; attempt++) {
      const auth = await this.authorization(repo.registry, scope)
      let res: Response
      try {
        res = await this.fetchOnce(url, init, auth)
      } catch (e) {
        if (attempt < retries) {
          await this.backoff(attempt)
          continue
        }
        throw e
      }
      if (res.status === 401 && !authTried && res.headers.get('www-authenticate')) {
        authTried = true
        this.challenges.set(repo.registry, parseChallenge(res.headers.get('www-authenticate')!))
        this.authCache.delete(`${repo.registry} ${scope}`)
        await res.body?.cancel()
        attempt--
        continue
      }
      if (transient(res.status) && attempt < retries) {
        await res.body?.cancel()
        await this.backoff(attempt)
        continue
      }
      return res
    }
  }

  private async fetchOnce(url: string, init: SendInit, auth: string | undefined): Promise<Response> {
    const controller = new AbortController()
    const seconds = this.options.timeoutSeconds ?? 30
    const timer = setTimeout(() => controller.abort(), seconds * 1000)
    const headers = { ...init.headers, ...(auth ? { authorization: auth } : {}) }
    this.counters.requests++
    try {
      const body = init.body ?? undefined
      const res = await this.fetch(
        url,
        {
          method: init.method ?? 'GET',
          headers,
          body,
          signal: controller.signal,
          redirect: 'follow',
          ...(body instanceof ReadableStream ? { duplex: 'half' } : {}),
        } as RequestInit,
      )
      if (body instanceof Uint8Array) this.counters.bytesUploaded += body.byteLength
      return res
    } catch (e) {
      if (controller.signal.aborted) {
        throw new RegistryError(`${init.method ?? 'GET'} ${url}: no answer within ${seconds}s`, 'timeout')
      }
      throw new RegistryError(`${init.method ?? 'GET'} ${url}: ${describeFetchError(e)}`, 'network')
    } finally {
      clearTimeout(timer)
    }
  }

  private async backoff(attempt: number) {
    this.counters.retries++
    await sleep((this.options.retryDelayMs ?? 100) * 2 ** attempt)
  }

  /** The Authorization header for a registry and scope, fetching (once, shared) a token when the registry asked for one. */
  private async authorization(registry: string, scope: string): Promise<string | undefined> {
    const challenge = this.challenges.get(registry)
    if (!challenge) return undefined
    const key = challenge.scheme === 'basic' ? registry : `${registry} ${scope}`
    const cached = this.authCache.get(key)
    if (cached && cached.until > Date.now()) return cached.header
    let inflight = this.pending.get(key)
    if (!inflight) {
      inflight = this.authenticate(registry, challenge, scope, key).finally(() => this.pending.delete(key))
      this.pending.set(key, inflight)
    }
    return inflight
  }

  private async authenticate(
    registry: string,
    challenge: Challenge,
    scope: string,
    key: string,
  ): Promise<string | undefined> {
    const creds = await this.credentialsFor(registry).catch((e: Error) => {
      throw new RegistryError(`credentials for ${registry}: ${e.message}`, 'auth')
    })
    if (challenge.scheme === 'basic') {
      if (!creds?.username) {
        throw new RegistryError(`${registry} wants a login and no credentials were found for it`, 'auth', 401)
      }
      const header = basicHeader(creds)
      this.authCache.set(key, { header, until: Infinity })
      return header
    }
    if (challenge.scheme !== 'bearer') {
      throw new RegistryError(`${registry} asks for unsupported auth scheme '${challenge.scheme}'`, 'auth', 401)
    }
    try {
      const { token, expiresInSeconds } = await fetchToken(challenge, scope.split(' '), creds, this.fetch)
      const header = `Bearer ${token}`
      this.authCache.set(key, { header, until: Date.now() + Math.max(10, expiresInSeconds - 10) * 1000 })
      return header
    } catch (e) {
      const status = (e as { status?: number }).status
      throw new RegistryError(
        `${registry}: ${(e as Error).message}`,
        status && !transient(status) ? 'auth' : 'network',
        status,
      )
    }
  }

  private credentialsFor(registry: string): Promise<Credentials | undefined> {
    let found = this.creds.get(registry)
    if (!found) {
      found = this.options.credentials ? this.options.credentials(registry) : findCredentials(registry, this.options)
      this.creds.set(registry, found)
    }
    return found
  }

  /** Reads a whole body, counting the bytes as downloaded. */
  async readBody(res: Response): Promise<Uint8Array> {
    const bytes = new Uint8Array(await res.arrayBuffer())
    this.counters.bytesDownloaded += bytes.byteLength
    return bytes
  }

  /** A RegistryError for an unexpected status, with the registry's own error text when it sent one. */
  statusError(res: Response, what: string): RegistryError {
    const status = res.status
    const errorClass: ErrorClass = status === 401 || status === 403
      ? 'auth'
      : transient(status)
      ? 'network'
      : 'protocol'
    res.body?.cancel().catch(() => {})
    return new RegistryError(`${what}: registry answered ${status} ${res.statusText}`.trim(), errorClass, status)
  }
}

/** Bun, Deno and Node word refused connections and DNS failures differently; this names the cause. */
function describeFetchError(e: unknown): string {
  const err = e as { message?: string; code?: string; cause?: { code?: string; message?: string } }
  const code = err.code ?? err.cause?.code
  const message = err.cause?.message ?? err.message ?? String(e)
  return code && !message.includes(code) ? `${code}: ${message}` : message
}
