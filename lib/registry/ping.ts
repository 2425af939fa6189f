// Is the registry there, and how is it spoken to? Plain HTTP for the registries docker itself treats as insecure,
// HTTPS for every other. A GET /v2/ answers 200 (open) or 401 (needs a token): both mean it is up.
// (The host of a prefix or reference comes from the one reference grammar: prefixHost / refHost in ref.ts.)
import { lookup } from 'node:dns/promises'
import net from 'node:net'
import { isLoopback } from './ref.ts'

/**
 * The registries spoken to over plain HTTP: the daemon's `insecure-registries` as `docker info` reports them
 * (RegistryConfig: IndexConfigs entries with Secure false → `names`, InsecureRegistryCIDRs → `cidrs`), plus any
 * the caller names (--insecure-registry). Loopback is always plain HTTP, as for docker.
 */
export type InsecureRegistries = { names?: string[]; cidrs?: string[] }

/** `host:port` → `host`; `[::1]:5000` → `::1`. */
const hostname = (registry: string) =>
  registry.startsWith('[') ? registry.slice(1, registry.indexOf(']')) : registry.replace(/:\d+$/, '')

/**
 * Docker's rule (moby registry/config.go, isSecureIndex): a registry named among the insecure ones is insecure;
 * otherwise it is when an address its host name resolves to lies in an insecure CIDR (docker's default list is
 * 127.0.0.0/8). A name that does not resolve is secure.
 */
export async function isInsecure(registry: string, insecure: InsecureRegistries = {}): Promise<boolean> {
  if (isLoopback(registry) || insecure.names?.includes(registry)) return true
  if (!insecure.cidrs?.length) return false
  const host = hostname(registry)
  const addresses = net.isIP(host)
    ? [host]
    : await lookup(host, { all: true }).then((found) => found.map((a) => a.address), () => [] as string[])
  const blocks = new net.BlockList()
  for (const cidr of insecure.cidrs) {
    const [network, bits] = cidr.split('/')
    const family = net.isIP(network) === 6 ? 'ipv6' : 'ipv4'
    if (net.isIP(network)) blocks.addSubnet(network, Number(bits ?? (family === 'ipv6' ? 128 : 32)), family)
  }
  return addresses.some((a) => blocks.check(a, net.isIP(a) === 6 ? 'ipv6' : 'ipv4'))
}

/** The API base URL of a registry host (`docker.io` is served at registry-1.docker.io). */
export async function registryBaseUrl(host: string, insecure?: InsecureRegistries): Promise<string> {
  if (host === 'docker.io') return 'https://registry-1.docker.io'
  return `${(await isInsecure(host, insecure)) ? 'http' : 'https'}://${host}`
}

export async function registryAnswers(
  host: string,
  o: { timeoutMs?: number; insecure?: InsecureRegistries } = {},
): Promise<{ ok: boolean; status?: number; error?: string; url?: string }> {
  const url = `${await registryBaseUrl(host, o.insecure)}/v2/`
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(o.timeoutMs ?? 10_000) })
    await res.body?.cancel()
    return res.status === 200 || res.status === 401
      ? { ok: true, status: res.status, url }
      : { ok: false, status: res.status, error: `answered HTTP ${res.status}`, url }
  } catch (e) {
    const cause = (e as { cause?: { code?: string; message?: string } }).cause
    return { ok: false, error: cause?.code ?? cause?.message ?? (e as Error).message, url }
  }
}
