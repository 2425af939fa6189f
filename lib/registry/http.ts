// The HTTP layer under the registry client: one request with two limits, the registry's error body, Retry-After.
//   answer: from the moment the request is sent (its body handed over whole) until the response headers arrive;
//   idle:   no byte moved for this long while a body is sent or read (openBlob, getBlob, copyBlob, big PUTs).
// A slow transfer that keeps moving never fails as `timeout`; a stalled one fails within the idle limit.

/** Why a registry call failed — the pipeline records this class per image (lib/run/errors.ts maps it). */
export const ERROR_CLASSES = {
  auth: 'credentials missing or refused (401/403, token server refused)',
  network: 'connection refused, DNS failure, reset, or the registry answered 5xx',
  timeout: 'no answer within the answer limit, or a transfer that moved no byte for the idle limit',
  rate_limited: 'the registry kept answering 429 Too Many Requests after waiting what it asked (Retry-After)',
  unsupported:
    'not an image this client reads: a Docker schema 1 manifest, or an artifact that is not a container image',
  protocol: 'the registry answered something this client does not understand (other 4xx, bad JSON)',
} as const
export type ErrorClass = keyof typeof ERROR_CLASSES

/** A failed registry call: its class, the HTTP status, and the registry's own error code (DENIED, TOOMANYREQUESTS…). */
export class RegistryError extends Error {
  constructor(message: string, readonly errorClass: ErrorClass, readonly status?: number, readonly code?: string) {
    super(message)
  }
}

/** Milliseconds: `answerMs` until the headers, `idleMs` without a byte while a body moves. */
export type Limits = { answerMs: number; idleMs: number }
export type HttpInit = {
  method: string
  headers: Record<string, string>
  body?: Uint8Array | ReadableStream<Uint8Array>
}

/** In-memory bodies above this are sent piece by piece, so the idle limit watches them move (not the answer limit). */
const WATCHED_BODY = 1 << 20
const PIECE = 256 << 10
/** Statuses whose Response may not carry a body (the Response constructor refuses one). */
const NULL_BODY = new Set([101, 103, 204, 205, 304])
const secs = (ms: number) => `${+(ms / 1000).toFixed(3)}s`

/** One timer per request that aborts it; re-armed with a new limit at each phase. */
class Watchdog {
  readonly controller = new AbortController()
  fired?: string
  private timer?: ReturnType<typeof setTimeout>
  arm(ms: number, why: string) {
    this.disarm()
    this.timer = setTimeout(() => {
      this.fired = why
      this.controller.abort()
    }, ms)
  }
  disarm() {
    clearTimeout(this.timer)
  }
}

/**
 * fetch with the answer and idle limits; failures become RegistryError `timeout` or `network`.
 * Redirects are followed by the runtime, which drops Authorization when the origin changes (Bun, Deno and Node
 * all do: the Fetch standard's "HTTP-redirect fetch"), so a blob GET redirected to a CDN carries no credentials.
 * A stream body gets its Content-Length header from the caller; Bun and Node send it, Deno sends the stream chunked.
 */
export async function timedFetch(fetchFn: typeof fetch, url: string, init: HttpInit, limits: Limits) {
  const dog = new Watchdog()
  const what = `${init.method} ${url.replace(/\?.*/, '')}`
  const headers = { ...init.headers }
  let body = init.body
  if (body instanceof Uint8Array && body.byteLength > WATCHED_BODY) {
    headers['content-length'] ??= String(body.byteLength)
    body = pieces(body)
  }
  const sending = body instanceof ReadableStream ? watchSending(body, dog, limits) : undefined
  if (sending) dog.arm(limits.idleMs, `stalled: no byte sent for ${secs(limits.idleMs)}`)
  else dog.arm(limits.answerMs, `no answer within ${secs(limits.answerMs)}`)
  let res: Response
  try {
    res = await fetchFn(url, {
      method: init.method,
      headers,
      body: sending?.stream ?? body,
      signal: dog.controller.signal,
      redirect: 'follow',
      ...(sending ? { duplex: 'half' } : {}),
    } as RequestInit)
  } catch (e) {
    dog.disarm()
    if (sending?.failure) throw sending.failure
    if (dog.fired) throw new RegistryError(`${what}: ${dog.fired}`, 'timeout')
    throw new RegistryError(`${what}: ${describeFetchError(e)}`, 'network')
  }
  dog.disarm()
  return watchReading(res, dog, limits, what)
}

function pieces(bytes: Uint8Array): ReadableStream<Uint8Array> {
  let at = 0
  return new ReadableStream({
    pull(controller) {
      if (at >= bytes.byteLength) return controller.close()
      controller.enqueue(bytes.subarray(at, at += PIECE))
    },
  })
}

/** The body as fetch pulls it: each pull re-arms the idle limit; once it is all handed over, the answer limit runs. */
function watchSending(source: ReadableStream<Uint8Array>, dog: Watchdog, limits: Limits) {
  const reader = source.getReader()
  const state: { stream?: ReadableStream<Uint8Array>; failure?: unknown } = {}
  state.stream = new ReadableStream<Uint8Array>({
    async pull(controller) {
      dog.disarm() // waiting on our own source is not the network stalling (a source from a registry has its own limit)
      try {
        const { done, value } = await reader.read()
        if (done) {
          controller.close()
          return dog.arm(limits.answerMs, `no answer within ${secs(limits.answerMs)} after the body was sent`)
        }
        controller.enqueue(value)
        dog.arm(limits.idleMs, `stalled: no byte sent for ${secs(limits.idleMs)}`)
      } catch (e) {
        state.failure = e // the source failed (digest, its own stall): stop the request, never send a short body
        controller.error(e)
        dog.controller.abort()
      }
    },
    cancel: (reason) => reader.cancel(reason),
  }, { highWaterMark: 0 })
  return state
}

/** The response with its body read under the idle limit (armed only while the reader waits for bytes). */
function watchReading(res: Response, dog: Watchdog, limits: Limits, what: string): Response {
  if (!res.body || NULL_BODY.has(res.status)) {
    res.body?.cancel().catch(() => {})
    return new Response(null, { status: res.status, statusText: res.statusText, headers: res.headers })
  }
  const reader = res.body.getReader()
  const body = new ReadableStream<Uint8Array>({
    async pull(controller) {
      dog.arm(limits.idleMs, `stalled: no byte received for ${secs(limits.idleMs)}`)
      try {
        const { done, value } = await reader.read()
        dog.disarm()
        if (done) controller.close()
        else controller.enqueue(value)
      } catch (e) {
        dog.disarm()
        controller.error(
          dog.fired
            ? new RegistryError(`${what}: ${dog.fired}`, 'timeout')
            : new RegistryError(`${what}: ${describeFetchError(e)} while reading the body`, 'network'),
        )
      }
    },
    cancel(reason) {
      dog.disarm()
      return reader.cancel(reason)
    },
  }, { highWaterMark: 0 })
  return new Response(body, { status: res.status, statusText: res.statusText, headers: res.headers })
}

/** Bun, Deno and Node word refused connections and DNS failures differently; this names the cause. */
export function describeFetchError(e: unknown): string {
  const err = e as { message?: string; code?: string; cause?: { code?: string; message?: string } }
  const code = err.code ?? err.cause?.code
  const message = err.cause?.message ?? err.message ?? String(e)
  return code && !message.includes(code) ? `${code}: ${message}` : message
}

/**
 * The registry's own words from an error answer: `{"errors":[{"code","message","detail"}]}` (distribution spec,
 * "Error Codes") becomes `CODE: message`; any other text is kept short. Never throws; a HEAD has no body.
 */
export async function errorBody(res: Response): Promise<{ code?: string; text?: string }> {
  const raw = await res.text().catch(() => '')
  if (!raw.trim()) return {}
  try {
    const errors = (JSON.parse(raw) as { errors?: Array<{ code?: string; message?: string }> }).errors
    if (Array.isArray(errors) && errors.length) {
      const text = errors.map((e) => [e.code, e.message].filter(Boolean).join(': ')).join('; ')
      return { code: errors[0].code, text: text.slice(0, 500) }
    }
  } catch { /* not JSON: keep the text */ }
  return { text: raw.replace(/\s+/g, ' ').trim().slice(0, 300) }
}

/** Retry-After (RFC 9110 §10.2.3) in ms: delay-seconds or an HTTP-date; undefined when absent or unreadable. */
export function retryAfterMs(value: string | null, now = Date.now()): number | undefined {
  if (!value) return undefined
  if (/^\s*\d+\s*$/.test(value)) return Number(value) * 1000
  const at = Date.parse(value)
  return Number.isNaN(at) ? undefined : Math.max(0, at - now)
}
