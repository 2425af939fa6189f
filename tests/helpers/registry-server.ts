// A throwaway `docker-registry serve` (distribution 2.8) on 127.0.0.1 for tests: filesystem storage in a
// temp dir, deletes enabled, optional htpasswd (basic) auth. No Docker daemon needed.
import { type ChildProcess, spawn } from 'node:child_process'
import fs from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { type BuiltLayer, type LayerFile, writeLayer } from '../../lib/image/layer.ts'
import { sha256, uploadBlob } from '../../lib/registry/blobs.ts'
import { MEDIA, type RegistryClient } from '../../lib/registry/client.ts'
import { parseImageRef } from '../../lib/registry/ref.ts'

export type RegistryServer = { address: string; dir: string; stop(): Promise<void> }
export type StartRegistryOptions = {
  /** Storage and config directory (default: a new temp dir, removed on stop). */
  dir?: string
  /** Require basic auth with this user (htpasswd, bcrypt). */
  auth?: { username: string; password: string }
}

/** A free TCP port on 127.0.0.1 (bound and released). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo
      server.close(() => resolve(port))
    })
  })
}

/** bcrypt for the htpasswd file: Bun's built-in hasher (distribution accepts $2b$). */
function bcryptLine(username: string, password: string): string {
  const bun = (globalThis as { Bun?: { password: { hashSync(p: string, o: object): string } } }).Bun
  if (!bun) throw new Error('startRegistry({ auth }) needs Bun (for bcrypt) — run the tests with bun test')
  return `${username}:${bun.password.hashSync(password, { algorithm: 'bcrypt', cost: 4 })}\n`
}

function configYaml(dir: string, port: number, auth: boolean): string {
  return [
    'version: 0.1',
    'log:',
    '  level: error',
    '  accesslog:',
    '    disabled: true',
    'storage:',
    `  filesystem:`,
    `    rootdirectory: ${path.join(dir, 'data')}`,
    '  delete:',
    '    enabled: true',
    'http:',
    `  addr: 127.0.0.1:${port}`,
    ...(auth ? ['auth:', '  htpasswd:', '    realm: imagefleet-test', `    path: ${path.join(dir, 'htpasswd')}`] : []),
    '',
  ].join('\n')
}

async function waitUntilUp(address: string, child: ChildProcess, log: () => string): Promise<void> {
  const deadline = Date.now() + 15_000
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`docker-registry exited (${child.exitCode}): ${log()}`)
    try {
      const res = await fetch(`http://${address}/v2/`)
      await res.body?.cancel()
      if (res.status === 200 || res.status === 401) return
    } catch { /* not listening yet */ }
    await new Promise((r) => setTimeout(r, 50))
  }
  throw new Error(`docker-registry did not answer on ${address} within 15s: ${log()}`)
}

/** Starts a registry and resolves once `/v2/` answers. Call stop() in afterAll. */
export async function startRegistry(options: StartRegistryOptions = {}): Promise<RegistryServer> {
  const ownDir = !options.dir
  const dir = options.dir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'imagefleet-registry-'))
  const port = await freePort()
  const address = `127.0.0.1:${port}`
  if (options.auth) {
    fs.writeFileSync(path.join(dir, 'htpasswd'), bcryptLine(options.auth.username, options.auth.password))
  }
  const config = path.join(dir, 'config.yml')
  fs.writeFileSync(config, configYaml(dir, port, Boolean(options.auth)))
  const child = spawn('docker-registry', ['serve', config], { stdio: ['ignore', 'ignore', 'pipe'] })
  let stderr = ''
  child.stderr!.on('data', (d) => {
    stderr = (stderr + d).slice(-4000)
  })
  await waitUntilUp(address, child, () => stderr)
  return {
    address,
    dir,
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once('exit', r))
        child.kill('SIGTERM')
        await exited
      }
      if (ownDir) fs.rmSync(dir, { recursive: true, force: true })
    },
  }
}

// ---- pushing test images over the HTTP API (no daemon): layers made with lib/layer.ts ----

export type TestImage = {
  digest: string
  mediaType: string
  manifest: Uint8Array
  config: Record<string, unknown>
  layers: BuiltLayer[]
}

/** Pushes an image made of the given layers (each a list of files) with the given config fields. */
export async function pushTestImage(
  client: RegistryClient,
  ref: string,
  o: {
    layers: LayerFile[][]
    config?: Record<string, unknown>
    oci?: boolean
    platform?: { os: string; architecture: string }
    /** the config's `created` (default 2024-01-01T00:00:00Z) */
    created?: string
  },
): Promise<TestImage> {
  const r = parseImageRef(ref)
  const layers = o.layers.map((files) => writeLayer(files))
  for (const l of layers) await uploadBlob(client, r, l.gzip)
  const platform = o.platform ?? { os: 'linux', architecture: 'amd64' }
  const config = {
    ...platform,
    created: o.created ?? '2024-01-01T00:00:00Z',
    config: {
      Env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'],
      Cmd: ['/bin/sh'],
      ...o.config,
    },
    rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) },
    history: layers.map(() => ({ created: '2024-01-01T00:00:00Z', created_by: 'test layer' })),
  }
  const configBytes = new TextEncoder().encode(JSON.stringify(config))
  await uploadBlob(client, r, configBytes)
  const mediaType = o.oci ? MEDIA.ociManifest : MEDIA.dockerManifest
  const manifest = new TextEncoder().encode(JSON.stringify({
    schemaVersion: 2,
    mediaType,
    config: {
      mediaType: o.oci ? MEDIA.ociConfig : MEDIA.dockerConfig,
      digest: sha256(configBytes),
      size: configBytes.length,
    },
    layers: layers.map((l) => ({
      mediaType: o.oci ? MEDIA.ociLayer : MEDIA.dockerLayer,
      digest: l.digest,
      size: l.size,
    })),
  }))
  await client.putManifest(r, manifest, mediaType)
  return { digest: sha256(manifest), mediaType, manifest, config, layers }
}

/** Pushes an OCI index over already-pushed images (by digest) under `ref`. */
export async function pushTestIndex(
  client: RegistryClient,
  ref: string,
  images: { image: TestImage; platform: { os: string; architecture: string } }[],
) {
  const bytes = new TextEncoder().encode(JSON.stringify({
    schemaVersion: 2,
    mediaType: MEDIA.ociIndex,
    manifests: images.map(({ image, platform }) => ({
      mediaType: image.mediaType,
      digest: image.digest,
      size: image.manifest.length,
      platform,
    })),
  }))
  await client.putManifest(parseImageRef(ref), bytes, MEDIA.ociIndex)
  return sha256(bytes)
}
