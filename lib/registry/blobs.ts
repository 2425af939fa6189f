// Blob operations on top of RegistryClient: HEAD, GET, cross-repository mount, upload, and copy.
// A copy never touches local disk: the source blob is streamed into the target as it arrives.
//
// How a blob is uploaded (the rule, and where it comes from):
//  1. Monolithic first: POST, then one PUT ?digest= carrying the whole blob (Content-Length, no Content-Range).
//     containerd's pusher (core/remotes/docker/pusher.go, what `buildx --push` runs) uploads every blob so, which is
//     why GHCR, Docker Hub, ECR and Harbor all take it. GHCR's 4 MiB cap is on requests that carry Content-Range
//     (openai/tart#179: monolithic PUTs without it pass; ranged ones over 4 MiB get 416 "exceeds the maximum
//     permissible limit of 4.00MiB": wasmCloud/wash-archive#268, oras-project/rust-oci-client#37).
//  2. Chunks when the registry refuses that PUT with 413 (a proxy's body limit: nginx client_max_body_size,
//     Cloudflare's 100 MB) or 416: the blob is sent again, read anew from its source, as PATCH chunks of at most
//     4 MiB with Content-Range, and the registry is remembered as one that wants chunks. The last chunk always
//     travels in the closing PUT: never an empty PATCH, never an empty PUT after chunks (ECR answers that with 500:
//     openai/tart#159; ECR's chunked uploads also lose data past the first PATCH, aws/containers-roadmap#2831 —
//     another reason chunks are only the fallback).
import { createHash } from 'node:crypto'
import { RegistryClient, RegistryError, type Repo } from './client.ts'

export const sha256 = (data: Uint8Array) => `sha256:${createHash('sha256').update(data).digest('hex')}`
/** The largest PATCH chunk: GHCR's cap, the smallest known. */
export const MAX_CHUNK = 4 * 2 ** 20
const blobPath = (repo: Repo, digest: string) => `/v2/${repo.repository}/blobs/${digest}`
const uploadsPath = (repo: Repo) => `/v2/${repo.repository}/blobs/uploads/`
const sameRegistry = (a: Repo, b: Repo) => a.registry === b.registry
/** Per client: registries that refused a monolithic PUT, with the answer that said so. */
const wantsChunks = new WeakMap<RegistryClient, Map<string, string>>()

/** Size of the blob when the repository has it, undefined when it does not (404). */
export async function blobExists(client: RegistryClient, repo: Repo, digest: string): Promise<number | undefined> {
  const res = await client.send(repo, 'pull', blobPath(repo, digest), { method: 'HEAD' })
  if (res.status === 200 || res.status === 404) await res.body?.cancel()
  if (res.status === 200) return Number(res.headers.get('content-length') ?? 0)
  if (res.status === 404) return undefined
  throw await client.statusError(res, `HEAD blob ${repo.repository}@${digest}`)
}

/** Opens a blob for streaming (the caller reads or cancels the body, read under the client's idle limit). */
export async function openBlob(client: RegistryClient, repo: Repo, digest: string): Promise<Response> {
  const res = await client.send(repo, 'pull', blobPath(repo, digest))
  if (res.status !== 200) throw await client.statusError(res, `GET blob ${repo.repository}@${digest}`)
  return res
}

/** Downloads a whole blob (configs, builder layers) and checks its digest. */
export async function getBlob(client: RegistryClient, repo: Repo, digest: string): Promise<Uint8Array> {
  const bytes = await client.readBody(await openBlob(client, repo, digest))
  if (digest.startsWith('sha256:') && sha256(bytes) !== digest) {
    throw new RegistryError(`blob ${repo.repository}@${digest} arrived with digest ${sha256(bytes)}`, 'protocol')
  }
  return bytes
}

/**
 * Cross-repository mount: `POST /v2/<to>/blobs/uploads/?mount=<digest>&from=<repo>`, with one token scoped
 * push,pull on the target and pull on the source. 201 → mounted. 202 → the registry declined and opened an
 * upload session, whose location is returned. Any other 4xx (Harbor answers 401 or 400 where the spec says
 * 202) → declined without a session: the caller starts a plain upload, as containerd's pusher does.
 */
export async function mountBlob(
  client: RegistryClient,
  to: Repo,
  digest: string,
  from: Repo,
): Promise<{ mounted: true } | { mounted: false; location?: string }> {
  const query = `?mount=${encodeURIComponent(digest)}&from=${encodeURIComponent(from.repository)}`
  const res = await client.send(to, 'pull,push', uploadsPath(to) + query, {
    method: 'POST',
    scopes: [`repository:${from.repository}:pull`],
  })
  await res.body?.cancel()
  if (res.status === 201) return { mounted: true }
  if (res.status === 202) return { mounted: false, location: await uploadLocation(client, to, res) }
  if (res.status >= 400 && res.status < 500 && res.status !== 429) return { mounted: false }
  throw await client.statusError(res, `mount ${digest} from ${from.repository} into ${to.repository}`)
}

/** Starts an upload session; returns its absolute location. */
export async function startUpload(client: RegistryClient, repo: Repo): Promise<string> {
  const res = await client.send(repo, 'pull,push', uploadsPath(repo), { method: 'POST' })
  if (res.status !== 202) throw await client.statusError(res, `start upload to ${repo.repository}`)
  await res.body?.cancel()
  return uploadLocation(client, repo, res)
}

/** The session's Location, relative (resolved against the registry) or absolute. */
async function uploadLocation(client: RegistryClient, repo: Repo, res: Response, current?: string): Promise<string> {
  const location = res.headers.get('location')
  if (!location && current) return current
  if (!location) {
    throw new RegistryError(`registry opened an upload to ${repo.repository} without a Location`, 'protocol')
  }
  return new URL(location, current ?? (await client.baseUrl(repo.registry))).toString()
}

const withDigest = (location: string, digest: string) => {
  const url = new URL(location)
  url.searchParams.set('digest', digest)
  return url.toString()
}

/** Uploads bytes held in memory (monolithic, chunks as the fallback). Skips it when the repository has the blob. */
export async function uploadBlob(
  client: RegistryClient,
  repo: Repo,
  data: Uint8Array,
  location?: string,
): Promise<{ digest: string; uploaded: boolean }> {
  const digest = sha256(data)
  if (!location && (await blobExists(client, repo, digest)) !== undefined) return { digest, uploaded: false }
  const open = () => Promise.resolve<Source>({ bytes: data, size: data.byteLength })
  await sendBlob(client, repo, digest, location ?? (await startUpload(client, repo)), open)
  return { digest, uploaded: true }
}

export type CopyOutcome = 'present' | 'mounted' | 'copied'
export type CopyOptions = { chunkBytes?: number }

/**
 * Makes `digest` exist in `to`: already there (HEAD) → 'present'; same registry → try a mount → 'mounted';
 * otherwise (declined mount, or another registry) stream it from `from` and upload it → 'copied'.
 * The v2 API has no server-side copy, so a copy downloads and uploads through this process, in memory, streaming.
 */
export async function ensureBlob(
  client: RegistryClient,
  from: Repo,
  to: Repo,
  digest: string,
  options: CopyOptions = {},
): Promise<CopyOutcome> {
  if (sameRegistry(from, to) && from.repository === to.repository) return 'present'
  if ((await blobExists(client, to, digest)) !== undefined) return 'present'
  let location: string | undefined
  if (sameRegistry(from, to)) {
    const mount = await mountBlob(client, to, digest, from)
    if (mount.mounted) return 'mounted'
    location = mount.location
  }
  await copyBlob(client, from, to, digest, location ?? (await startUpload(client, to)), options)
  return 'copied'
}

/** Streams a blob from one repository into an open upload (monolithic; chunks where the registry wants them). */
export async function copyBlob(
  client: RegistryClient,
  from: Repo,
  to: Repo,
  digest: string,
  location: string,
  options: CopyOptions = {},
): Promise<void> {
  const open = async (): Promise<Source> => {
    const res = await openBlob(client, from, digest)
    const length = res.headers.get('content-length')
    return { ...verified(client, res.body!, digest, from), size: length ? Number(length) : undefined }
  }
  await sendBlob(client, to, digest, location, open, options)
}

/** A blob to send: in memory, or a stream (read once; `open` again for a second attempt; `release` what is left). */
type Source = { bytes?: Uint8Array; stream?: ReadableStream<Uint8Array>; size?: number; release?: () => Promise<void> }

async function sendBlob(
  client: RegistryClient,
  to: Repo,
  digest: string,
  location: string,
  open: () => Promise<Source>,
  options: CopyOptions = {},
): Promise<void> {
  let chunked = wantsChunks.get(client)
  if (!chunked) wantsChunks.set(client, chunked = new Map())
  if (!chunked.has(to.registry)) {
    const source = await open()
    const res = await client.send(to, 'pull,push', '', {
      url: withDigest(location, digest),
      method: 'PUT',
      body: source.bytes ?? source.stream,
      headers: {
        'content-type': 'application/octet-stream',
        ...(source.size !== undefined ? { 'content-length': String(source.size) } : {}),
      },
    })
    if (res.status === 201 || res.status === 204 || res.status === 200) {
      if (source.stream) client.counters.bytesUploaded += source.size ?? 0 // bytes in memory were counted as sent
      return void (await res.body?.cancel())
    }
    const refusal = await client.statusError(res, `upload of ${digest} to ${to.repository}`)
    await source.release?.() // the registry answered before reading it all: the source download goes
    if (res.status !== 413 && res.status !== 416) throw refusal
    chunked.set(to.registry, refusal.message)
    location = await startUpload(client, to)
  }
  const source = await open()
  await sendChunks(client, to, digest, location, source, options.chunkBytes ?? MAX_CHUNK).catch(async (e) => {
    await source.release?.()
    throw e
  })
}

/** PATCH chunks of exactly `chunkBytes` while more follows; the rest (never empty, unless the blob is) closes the PUT. */
async function sendChunks(
  client: RegistryClient,
  to: Repo,
  digest: string,
  location: string,
  source: Source,
  chunkBytes: number,
) {
  const reader = (source.stream ?? new Blob([source.bytes!]).stream()).getReader()
  let offset = 0
  let held: Uint8Array[] = []
  let heldBytes = 0
  const send = async (method: 'PATCH' | 'PUT', chunk: Uint8Array) => {
    const range: Record<string, string> = chunk.byteLength
      ? { 'content-range': `${offset}-${offset + chunk.byteLength - 1}` }
      : {}
    const res = await client.send(to, 'pull,push', '', {
      url: method === 'PUT' ? withDigest(location, digest) : location,
      method,
      body: chunk,
      headers: { 'content-type': 'application/octet-stream', ...range },
    })
    const ok = method === 'PATCH' ? res.status === 202 : [200, 201, 204].includes(res.status)
    const what = `upload ${method === 'PUT' ? 'last ' : ''}chunk ${offset}+${chunk.byteLength} of ${digest}`
    if (!ok) throw await client.statusError(res, `${what} to ${to.repository}`)
    await res.body?.cancel()
    offset += chunk.byteLength
    const stored = /^\d+-(\d+)$/.exec(res.headers.get('range') ?? '')
    if (method === 'PATCH' && stored && Number(stored[1]) + 1 !== offset) {
      throw new RegistryError(`${what}: the registry holds ${Number(stored[1]) + 1} bytes, not ${offset}`, 'protocol')
    }
    location = await uploadLocation(client, to, res, location)
  }
  for (let next = await reader.read(); !next.done; next = await reader.read()) {
    held.push(next.value)
    heldBytes += next.value.byteLength
    while (heldBytes > chunkBytes) { // strictly more: the last bytes always stay for the closing PUT
      const all = concat(held, heldBytes)
      await send('PATCH', all.subarray(0, chunkBytes))
      held = [all.subarray(chunkBytes)]
      heldBytes -= chunkBytes
    }
  }
  await send('PUT', concat(held, heldBytes))
}

/** The source body, hashed as it passes: a blob whose bytes do not match its digest fails before the upload ends. */
function verified(client: RegistryClient, body: ReadableStream<Uint8Array>, digest: string, from: Repo) {
  const reader = body.getReader()
  const hash = createHash('sha256')
  const release = () => reader.cancel().catch(() => {})
  const stream = new ReadableStream<Uint8Array>({
    async pull(controller) {
      const { done, value } = await reader.read()
      if (!done) {
        client.counters.bytesDownloaded += value.byteLength
        hash.update(value)
        return controller.enqueue(value)
      }
      const actual = `sha256:${hash.digest('hex')}`
      if (digest.startsWith('sha256:') && actual !== digest) {
        return controller.error(
          new RegistryError(`blob ${digest} from ${from.repository} arrived as ${actual}`, 'protocol'),
        )
      }
      controller.close()
    },
    cancel: (reason) => reader.cancel(reason),
  }, { highWaterMark: 0 })
  return { stream, release }
}

function concat(parts: Uint8Array[], size: number): Uint8Array {
  if (parts.length === 1) return parts[0]
  const out = new Uint8Array(size)
  let at = 0
  for (const p of parts) {
    out.set(p, at)
    at += p.byteLength
  }
  return out
}
