// A source registry's pull allowance, where it says so. Docker Hub answers a manifest request with
//   ratelimit-limit: 100;w=21600        pulls allowed in the window (w: seconds)
//   ratelimit-remaining: 76;w=21600     pulls left in it
//   docker-ratelimit-source: 203.0.113.7   whose allowance it is (an IP, or the account)
// (docs.docker.com/docker-hub/usage/pulls, "View pull rate and limit"). A HEAD of a manifest carries the headers and
// is not counted; each GET of a manifest is (up to two GETs, an index and its image, make one pull). Registries
// without a pull limit (GHCR, ECR, a self-hosted distribution) send neither header, and accounts without a limit
// (paid Docker Hub plans) neither.
import { MANIFEST_ACCEPT, type RegistryClient } from './client.ts'
import { type ImageRef, refReference } from './ref.ts'

export type Allowance = {
  /** pulls allowed per window */
  limit: number
  /** pulls left in the current window */
  remaining: number
  windowSeconds?: number
  /** whose allowance: Docker Hub's docker-ratelimit-source (an address, or an account id) */
  source?: string
}

/** `76;w=21600` → { count: 76, window: 21600 }; undefined when the header is absent or not a count. */
function readCount(value: string | null): { count: number; window?: number } | undefined {
  const m = /^\s*(\d+)\s*(?:;\s*w\s*=\s*(\d+))?/.exec(value ?? '')
  return m ? { count: Number(m[1]), window: m[2] ? Number(m[2]) : undefined } : undefined
}

/** The allowance a response's headers state, or undefined when they state none. */
export function readAllowance(headers: Headers): Allowance | undefined {
  const limit = readCount(headers.get('ratelimit-limit'))
  const remaining = readCount(headers.get('ratelimit-remaining'))
  if (!limit || !remaining) return undefined
  const source = headers.get('docker-ratelimit-source') ?? undefined
  const windowSeconds = remaining.window ?? limit.window
  return { limit: limit.count, remaining: remaining.count, ...(windowSeconds ? { windowSeconds } : {}), source }
}

/** HEADs one manifest (free on Docker Hub) and reads the allowance from its answer; undefined when none is stated. */
export async function pullAllowance(client: RegistryClient, ref: ImageRef): Promise<Allowance | undefined> {
  const res = await client.send(ref, 'pull', `/v2/${ref.repository}/manifests/${refReference(ref)}`, {
    method: 'HEAD',
    headers: { accept: MANIFEST_ACCEPT },
  })
  await res.body?.cancel()
  if (res.status !== 200 && res.status !== 404) {
    throw await client.statusError(res, `HEAD manifest ${ref.repository}:${refReference(ref)}`)
  }
  return readAllowance(res.headers)
}

/** One line for a person: `76 of 100 pulls left (window 6h) for 203.0.113.7`. */
export function describeAllowance(a: Allowance): string {
  const window = a.windowSeconds ? ` (window ${+(a.windowSeconds / 3600).toFixed(2)}h)` : ''
  return `${a.remaining} of ${a.limit} pulls left${window}${a.source ? ` for ${a.source}` : ''}`
}
