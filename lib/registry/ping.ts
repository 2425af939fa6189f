// Is the registry there? A GET /v2/ answers 200 (open) or 401 (needs a token): both mean it is up.
// (The host of a prefix or reference comes from the one reference grammar: prefixHost / refHost in ref.ts.)
import { isLoopback } from './ref.ts'

export const registryBaseUrl = (host: string) =>
  host === 'docker.io' ? 'https://registry-1.docker.io' : `${isLoopback(host) ? 'http' : 'https'}://${host}`

export async function registryAnswers(
  host: string,
  timeoutMs = 10_000,
): Promise<{ ok: boolean; status?: number; error?: string }> {
  try {
    const res = await fetch(`${registryBaseUrl(host)}/v2/`, { signal: AbortSignal.timeout(timeoutMs) })
    await res.body?.cancel()
    return res.status === 200 || res.status === 401
      ? { ok: true, status: res.status }
      : { ok: false, status: res.status, error: `answered HTTP ${res.status}` }
  } catch (e) {
    const cause = (e as { cause?: { code?: string; message?: string } }).cause
    return { ok: false, error: cause?.code ?? cause?.message ?? (e as Error).message }
  }
}
