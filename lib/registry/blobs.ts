// Blob operations on top of RegistryClient: HEAD, GET, cross-repository mount, upload, and copy.
// A copy never touches local disk: the source blob is streamed and re-uploaded in bounded chunks.
import { createHash } from 'node:crypto'
import { RegistryClient, RegistryError, type Repo } from './client.ts'

export const sha256 = (data: Uint8Array) => `sha256:${createHash('sha256').update(data).digest('hex')}`
const blobPath = (repo: Repo, digest: string) => `/v2/${repo.repository}/blobs/${digest}`
const uploadsPath = (repo: Repo) => `/v2/${repo.repository}/blobs/uploads/`
const sameRegistry = (a: Repo, b: Repo) => a.registry === b.registry

/** Size of the blob when the repository has it, undefined when it does not (404). */
export async function blobExists(client: RegistryClient, repo: Repo, digest: string): Promise<number | undefined> {
  const res = await client.send(repo, 'pull', blobPath(repo, digest), { method: 'HEAD' })
  await res.body?.cancel()
  if (res.status === 200) return Number(res.headers.get('content-length') ?? 0)
  if (res.status === 404) return undefined
  throw client.statusError(res, `HEAD blob ${repo.repository}@${digest}`)
}

/** Opens a blob for streaming (the caller reads or cancels the body). */
export async function openBlob(client: RegistryClient, repo: Repo, digest: string): Promise<Response> {
  const res = await client.send(repo, 'pull', blobPath(repo, digest))
  if (res.status !== 200) throw client.statusError(res, `GET blob ${repo.repository}@${digest}`)
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
 * Cross-repository mount: `POST /v2/<to>/blobs/uploads/?mount=<digest>&from=<repo>`.
 * 201 → mounted. 202 → the registry refused (or lacks the source) and opened an upload session instead,
 * whose location is returned so the caller can copy into it.
 */
export async function mountBlob(
  client: RegistryClient,
  to: Repo,
  digest: string,
  from: Repo,
): Promise<{ mounted: true } | { mounted: false; location: string }> {
  const query = `?mount=${encodeURIComponent(digest)}&from=${encodeURIComponent(from.repository)}`
  const res = await client.send(to, 'pull,push', uploadsPath(to) + query, {
    method: 'POST',
    scopes: [`repository:${from.repository}:pull`],
  })
  await res.body?.cancel()
  if (res.status === 201) return { mounted: true }
  if (res.status === 202) return { mounted: false, location: uploadLocation(client, to, res) }
  throw client.statusError(res, `mount ${digest} from ${from.repository} into ${to.repository}`)
}

/** Starts an upload session; returns its absolute location. */
export async function startUpload(client: RegistryClient, repo: Repo): Promise<string> {
  const res = await client.send(repo, 'pull,push', uploadsPath(repo), { method: 'POST' })
  await res.body?.cancel()
  if (res.status !== 202) throw client.statusError(res, `start upload to ${repo.repository}`)
  return uploadLocation(client, repo, res)
}

function uploadLocation(client: RegistryClient, repo: Repo, res: Response): string {
  const location = res.headers.get('location')
  if (!location) {
    throw new RegistryError(`registry opened an upload to ${repo.repository} without a Location`, 'protocol')
  }
  return new URL(location, client.baseUrl(repo.registry)).toString()
}

const withDigest = (location: string, digest: string) => {
  const url = new URL(location)
  url.searchParams.set('digest', digest)
  return url.toString()
}

/** Monolithic upload (POST, then PUT with the digest). Skips the upload when the repository already has the blob. */
export async function uploadBlob(
  client: RegistryClient,
  repo: Repo,
  data: Uint8Array,
  location?: string,
): Promise<{ digest: string; uploaded: boolean }> {
  const digest = sha256(data)
  if (!location && (await blobExists(client, repo, digest)) !== undefined) return { digest, uploaded: false }
  await finishUpload(client, repo, location ?? (await startUpload(client, repo)), digest, data)
  return { digest, uploaded: true }
}

async function finishUpload(client: RegistryClient, repo: Repo, location: string, digest: string, data: Uint8Array) {
  const res = await client.send(repo, 'pull,push', '', {
    url: withDigest(location, digest),
    method: 'PUT',
    body: data,
    headers: { 'content-type': 'application/octet-stream' },
  })
  await res.body?.cancel()
  if (res.status !== 201) throw client.statusError(res, `finish upload of ${digest} to ${repo.repository}`)
}

export type CopyOutcome = 'present' | 'mounted' | 'copied'
export type CopyOptions = { chunkBytes?: number }

/**
 * Makes `digest` exist in `to`: already there → 'present'; same registry → try a mount → 'mounted';
 * otherwise (refused mount, or another registry) stream it from `from` and upload it → 'copied'.
 * The v2 API has no server-side copy, so a copy downloads and uploads through this process, in memory, chunk by chunk.
 */
export async function ensureBlob(
  client: RegistryClient,
  from: Repo,
  to: Repo,
  digest: string,
  options: CopyOptions = {},
): Promise<CopyOutcome> {
  let location: string | undefined
  if (sameRegistry(from, to)) {
    if (from.repository === to.repository) return 'present'
    const mount = await mountBlob(client, to, digest, from)
    if (mount.mounted) return 'mounted'
    location = mount.location
  } else if ((await blobExists(client, to, digest)) !== undefined) return 'present'
  await copyBlob(client, from, to, digest, location ?? (await startUpload(client, to)), options)
  return 'copied'
}

/** Streams a blob from one repository into an open upload: monolithic when small, PATCH chunks otherwise. */
export async function copyBlob(
  client: RegistryClient,
  from: Repo,
  to: Repo,
  digest: string,
  location: string,
  options: CopyOptions = {},
): Promise<void> {
  const chunkBytes = options.chunkBytes ?? 16 * 2 ** 20
  const source = await openBlob(client, from, digest)
  const hash = createHash('sha256')
  let offset = 0
  let buffered: Uint8Array[] = []
  let size = 0
  const flush = async () => {
    const chunk = concat(buffered, size)
    buffered = []
    size = 0
    const res = await client.send(to, 'pull,push', '', {
      url: location,
      method: 'PATCH',
      body: chunk,
      headers: {
        'content-type': 'application/octet-stream',
        'content-range': `${offset}-${offset + chunk.byteLength - 1}`,
      },
    })
    await res.body?.cancel()
    if (res.status !== 202) throw client.statusError(res, `upload chunk of ${digest} to ${to.repository}`)
    location = new URL(res.headers.get('location') ?? location, client.baseUrl(to.registry)).toString()
    offset += chunk.byteLength
  }
  for await (const piece of source.body as unknown as AsyncIterable<Uint8Array>) {
    client.counters.bytesDownloaded += piece.byteLength
    hash.update(piece)
    buffered.push(piece)
    size += piece.byteLength
    if (size >= chunkBytes) await flush()
  }
  const actual = `sha256:${hash.digest('hex')}`
  if (digest.startsWith('sha256:') && actual !== digest) {
    throw new RegistryError(`blob ${digest} from ${from.repository} arrived as ${actual}`, 'protocol')
  }
  await finishUpload(client, to, location, digest, concat(buffered, size))
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
