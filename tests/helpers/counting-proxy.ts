// A counting HTTP proxy in front of a registry: every request is forwarded as it is (the Host header kept, so the
// registry writes upload locations that point back at the proxy), and the bytes of every blob the registry serves
// are counted per digest. This is how tests and benches measure what dockerd really pulled — from the registry's
// side, never from the pipeline's own account.
import http from 'node:http'
import type { AddressInfo } from 'node:net'

/** Who asked: the engine (dockerd, BuildKit) or imagefleet's own registry client (its User-Agent says so). */
export type Asker = 'engine' | 'imagefleet'

export type CountingProxy = {
  /** host:port to give dockerd and the pipeline instead of the registry's */
  address: string
  /** bytes served per blob digest (GET …/blobs/<digest> answered 200) since the last reset; `to` one asker only */
  served(to?: Asker): Map<string, number>
  /** how many times each blob was served since the last reset */
  pulls(to?: Asker): Map<string, number>
  reset(): void
  stop(): Promise<void>
}

const BLOB_GET = /^\/v2\/.+\/blobs\/(sha256:[0-9a-f]{64})$/

/** Starts a proxy on 127.0.0.1 (a free port) forwarding to `target` (host:port, plain HTTP). */
export async function startCountingProxy(target: string): Promise<CountingProxy> {
  const [host, port] = target.split(':')
  const served = { engine: new Map<string, number>(), imagefleet: new Map<string, number>() }
  const pulls = { engine: new Map<string, number>(), imagefleet: new Map<string, number>() }
  const sum = (maps: Map<string, number>[]) => {
    const out = new Map<string, number>()
    for (const m of maps) for (const [k, v] of m) out.set(k, (out.get(k) ?? 0) + v)
    return out
  }
  const server = http.createServer((req, res) => {
    const digest = req.method === 'GET' ? BLOB_GET.exec(req.url?.split('?')[0] ?? '')?.[1] : undefined
    const asker: Asker = /^imagefleet/.test(String(req.headers['user-agent'] ?? '')) ? 'imagefleet' : 'engine'
    const upstream = http.request(
      { host, port: Number(port), method: req.method, path: req.url, headers: req.headers },
      (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers)
        if (digest && answer.statusCode === 200) {
          pulls[asker].set(digest, (pulls[asker].get(digest) ?? 0) + 1)
          answer.on(
            'data',
            (chunk: Buffer) => served[asker].set(digest, (served[asker].get(digest) ?? 0) + chunk.length),
          )
        }
        answer.pipe(res)
      },
    )
    upstream.on('error', (e) => {
      if (!res.headersSent) res.writeHead(502)
      res.end(String(e))
    })
    req.pipe(upstream)
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const address = `127.0.0.1:${(server.address() as AddressInfo).port}`
  return {
    address,
    served: (to) => sum(to ? [served[to]] : [served.engine, served.imagefleet]),
    pulls: (to) => sum(to ? [pulls[to]] : [pulls.engine, pulls.imagefleet]),
    reset: () => {
      for (const m of [...Object.values(served), ...Object.values(pulls)]) m.clear()
    },
    stop: () => new Promise<void>((resolve) => server.close(() => resolve())),
  }
}

/**
 * Bytes served of the given layers ÷ their sizes: 1 when each was pulled once (0 pulls count as 0). `to`: only what
 * that asker pulled (the engine's pulls are what the disk budget is about).
 */
export function repullFactor(
  proxy: CountingProxy,
  layers: Array<{ digest: string; size: number }>,
  to?: Asker,
): number {
  const unique = new Map(layers.map((l) => [l.digest, l.size]))
  const total = [...unique.values()].reduce((a, b) => a + b, 0)
  const served = proxy.served(to)
  const pulled = [...unique.keys()].reduce((n, d) => n + (served.get(d) ?? 0), 0)
  return total ? pulled / total : 0
}
