#!/usr/bin/env bun
// bench:mirror — a fleet of upstream images copied into the fleet's registry two ways, in one run:
//   mirror  scripts/mirror.ts's steps (mirrorFleet, in this process): registry to registry over the API, every blob
//           streamed through, nothing written locally
//   docker  docker pull + docker tag + docker push (+ docker rmi) per image, on a sandbox engine (dockerd on a loop
//           disk), as it is done by hand
// Two registry processes (upstream, fleet) each behind a counting TCP proxy (bench/wire-proxy.ts, its own process):
// bytes over the wire both ways, headers included. Local disk written: the mirror's own write_bytes
// (/proc/self/io: what this process sent to storage) and the sandbox data root's loop device (sectors written).
// Then a rerun of the mirror, and base pushes as pipeline --mirror makes them: docker build FROM the upstream vs
// FROM its mirror, then docker push — the bytes each sends to the fleet's registry and the layers docker mounts.
// Appends the tables with the machine's facts to bench/results/mirror-<date>.md.
//   npm run bench:mirror      (root and loop devices; ~5 minutes on 2 cores)
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import readline from 'node:readline'
import { randomBytes } from 'node:crypto'
import pMap from 'p-map'
import { $ } from 'zx'
import { type FlagTable, parseFlags, renderHelp } from '../lib/cli/flags.ts'
import { runMain } from '../lib/cli/main.ts'
import { formatBytes } from '../lib/cli/size.ts'
import { writeLayer } from '../lib/image/layer.ts'
import { sha256, uploadBlob } from '../lib/registry/blobs.ts'
import { MEDIA, RegistryClient } from '../lib/registry/client.ts'
import { parseImageRef } from '../lib/registry/ref.ts'
import type { Instance } from '../lib/fleet/instances.ts'
import { mirrorTotals } from '../lib/run/mirror-totals.ts'
import { Run } from '../lib/run/records.ts'
import { DEFAULT_POLICY } from '../lib/run/step.ts'
import { mirrorFleet } from '../scripts/mirror.ts'
import { type Sandbox, sandboxDown, sandboxUp } from '../scripts/_sandbox-engine.ts'
import { startRegistry } from '../tests/helpers/registry-server.ts'

export const FLAGS = {
  images: { type: 'int', default: 22, min: 1, help: 'Upstream images in the fleet' },
  layers: { type: 'int', default: 2, min: 1, help: 'Layers per image, each its own random bytes' },
  'layer-size': { type: 'size', default: '26MB', help: 'Incompressible bytes in each layer' },
  concurrency: { type: 'int', default: 4, min: 1, help: 'Images at once, both ways' },
  bases: { type: 'int', default: 4, min: 1, help: 'Base builds measured each way (FROM upstream, FROM mirror)' },
  disk: { type: 'size', default: '6GiB', help: 'Sandbox disk (holds the Docker data root)' },
  dir: { type: 'string', arg: 'DIR', help: 'Work directory (default: a new temp dir, removed after)' },
} as const satisfies FlagTable

type Wire = Record<'src' | 'dst', { up: number; down: number }>
type Way = { name: string; wall: number; localWritten: number; dataRootWritten: number; wire: Wire; note: string }
type Proxies = { src: string; dst: string; control: string; stop: () => void }

/** This process's bytes sent to storage so far (/proc/self/io write_bytes). */
const writeBytes = () => Number(/write_bytes: (\d+)/.exec(fs.readFileSync('/proc/self/io', 'utf8'))![1])

/** Bytes written so far to the block device mounted at `mountPoint` (/sys/block/DEV/stat, 512-byte sectors). */
function deviceWritten(mountPoint: string): number {
  const line = fs.readFileSync('/proc/self/mounts', 'utf8').split('\n').find((l) => l.split(' ')[1] === mountPoint)
  const dev = line?.split(' ')[0].replace('/dev/', '')
  if (!dev) throw new Error(`no block device mounted at ${mountPoint}`)
  return Number(fs.readFileSync(`/sys/block/${dev}/stat`, 'utf8').trim().split(/\s+/)[6]) * 512
}

async function startProxies(src: string, dst: string): Promise<Proxies> {
  const child = spawn(process.execPath, ['bench/wire-proxy.ts', `src=${src}`, `dst=${dst}`], {
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  const first = await readline.createInterface({ input: child.stdout! })[Symbol.asyncIterator]().next()
  return { ...JSON.parse(first.value), stop: () => child.kill() }
}
const wire = async (p: Proxies, reset = false): Promise<Wire> =>
  (await fetch(`http://${p.control}/`, { method: reset ? 'POST' : 'GET' })).json() as Promise<Wire>

/** `n` upstream images of `layers` random layers each, pushed straight into the upstream registry (no proxy). */
async function generate(registry: string, o: { images: number; layers: number; layerSize: number }) {
  const client = new RegistryClient()
  const instances: Instance[] = []
  let bytes = 0
  for (let i = 1; i <= o.images; i++) {
    const id = `bench__img-${String(i).padStart(2, '0')}`
    const dockerId = id.replace('__', '_1776_')
    const ref = parseImageRef(`${registry}/swebench/sweb.eval.x86_64.${dockerId}:latest`)
    const layers = Array.from(
      { length: o.layers },
      (_, l) =>
        writeLayer([{ path: `data/${l}`, type: 'file', mode: 0o644, uid: 0, gid: 0, data: randomBytes(o.layerSize) }]),
    )
    // uncompressed layers (random bytes do not compress; gzip would only cost the bench's CPU): the OCI tar media type
    for (const l of layers) await uploadBlob(client, ref, l.tar)
    const config = new TextEncoder().encode(JSON.stringify({
      architecture: 'amd64',
      os: 'linux',
      config: { Env: ['PATH=/bin'] },
      rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) },
    }))
    await uploadBlob(client, ref, config)
    const manifest = new TextEncoder().encode(JSON.stringify({
      schemaVersion: 2,
      mediaType: MEDIA.ociManifest,
      config: { mediaType: MEDIA.ociConfig, digest: sha256(config), size: config.length },
      layers: layers.map((l) => ({
        mediaType: 'application/vnd.oci.image.layer.v1.tar',
        digest: l.diffId,
        size: l.tar.length,
      })),
    }))
    await client.putManifest(ref, manifest, MEDIA.ociManifest)
    bytes += layers.reduce((n, l) => n + l.tar.length, config.length)
    instances.push({ id, dockerId, upstream: `swebench/sweb.eval.x86_64.${dockerId}:latest`, line: i })
  }
  return { instances, bytes }
}

/** The mirror: scripts/mirror.ts's mirrorFleet in this process, measured from outside it. */
async function mirrorWay(
  name: string,
  fleet: Instance[],
  p: Proxies,
  sb: Sandbox,
  o: { dir: string; concurrency: number },
) {
  const mnt = path.dirname(sb.dataRoot)
  await wire(p, true)
  const [io0, dev0, t0] = [writeBytes(), deviceWritten(mnt), Date.now()]
  const run = new Run(path.join(o.dir, `out-${name}`), undefined)
  await mirrorFleet(fleet.map((i) => ({ ...i, upstream: `${p.src}/${i.upstream}` })), {
    run,
    client: new RegistryClient(),
    policy: DEFAULT_POLICY,
    prefix: `${p.dst}/fleet`,
    allPlatforms: false,
    concurrency: o.concurrency,
    pullBudget: 'off',
  })
  const wall = (Date.now() - t0) / 1000
  const m = mirrorTotals(run.records).mirror!
  if (m.failed) throw new Error(`${name}: ${m.failed} images failed to mirror`)
  const note =
    `${m.images} copied, ${m.present} already there; blobs ${m.blobs.copied} copied / ${m.blobs.mounted} mounted`
  return {
    name,
    wall,
    localWritten: writeBytes() - io0,
    dataRootWritten: deviceWritten(mnt) - dev0,
    wire: await wire(p),
    note,
  }
}

/** By hand: docker pull, tag, push, rmi per image (the rmi keeps the disk, as the field's scripts do). */
async function dockerWay(fleet: Instance[], p: Proxies, sb: Sandbox, o: { concurrency: number }): Promise<Way> {
  const mnt = path.dirname(sb.dataRoot)
  const docker = $({ env: sb.env, quiet: true, timeout: '30m' })
  await wire(p, true)
  await $`sync`
  const [dev0, t0] = [deviceWritten(mnt), Date.now()]
  await pMap(fleet, async (inst) => {
    const from = `${p.src}/${inst.upstream}`
    const to = `${p.dst}/dock/mirror/${inst.upstream}`
    await docker`docker pull ${from}`
    await docker`docker tag ${from} ${to}`
    await docker`docker push ${to}`
    await docker`docker rmi ${from} ${to}`
  }, { concurrency: o.concurrency })
  const wall = (Date.now() - t0) / 1000
  await $`sync`
  return {
    name: 'docker pull/tag/push',
    wall,
    localWritten: NaN,
    dataRootWritten: deviceWritten(mnt) - dev0,
    wire: await wire(p),
    note: 'rmi after each push',
  }
}

/** Base builds as the pipeline makes them, FROM the upstream or FROM its mirror, then pushed: what the push sends. */
async function basePushes(from: 'upstream' | 'mirror', fleet: Instance[], p: Proxies, sb: Sandbox, dir: string) {
  const ctx = path.join(dir, 'base-context')
  fs.mkdirSync(ctx, { recursive: true })
  fs.writeFileSync(path.join(ctx, 'Dockerfile'), 'ARG BASE\nFROM ${BASE}\nCOPY marker /etc/imagefleet-base\n')
  fs.writeFileSync(path.join(ctx, 'marker'), 'base\n')
  const docker = $({ env: sb.env, quiet: true, timeout: '30m' })
  await wire(p, true)
  let mounted = 0
  let pushed = 0
  for (const inst of fleet) {
    const base = from === 'upstream' ? `${p.src}/${inst.upstream}` : `${p.dst}/fleet/mirror/${inst.upstream}`
    const tag = `${p.dst}/fleet/eval-base:${from}-${inst.dockerId}`
    await docker`docker build --network none --build-arg BASE=${base} -t ${tag} ${ctx}`
    const out = (await docker`docker push ${tag}`).stdout
    mounted += out.split('\n').filter((l) => /: Mounted from /.test(l)).length
    pushed += out.split('\n').filter((l) => /: Pushed$/.test(l)).length
  }
  return { from, images: fleet.length, sent: (await wire(p)).dst.up, mounted, pushed }
}

async function main(argv: string[]) {
  const { flags } = parseFlags(FLAGS, argv, process.env)
  if (flags.help) {
    return void console.log(
      renderHelp(
        'bun run bench/mirror.ts [flags]',
        'scripts/mirror.ts vs docker pull/tag/push (see the header of this file).',
        FLAGS,
      ),
    )
  }
  const dir = flags.dir ? path.resolve(flags.dir) : fs.mkdtempSync(path.join(os.tmpdir(), 'bench-mirror-'))
  const [upstream, target] = [await startRegistry(), await startRegistry()]
  const proxies = await startProxies(upstream.address, target.address)
  let sb: Sandbox | undefined
  try {
    console.log(
      `== generating ${flags.images} images of ${flags.layers} × ${
        formatBytes(flags.layerSize)
      } in ${upstream.address}`,
    )
    const { instances, bytes } = await generate(upstream.address, flags)
    sb = await sandboxUp({ dir: path.join(dir, 'sandbox'), disk: flags.disk, baseEnv: process.env })
    const o = { dir, concurrency: flags.concurrency }
    console.log('\n== mirror (scripts/mirror.ts)')
    const ways: Way[] = [
      await mirrorWay('mirror', instances, proxies, sb, o),
      await mirrorWay('mirror, rerun', instances, proxies, sb, o),
    ]
    console.log('\n== docker pull + tag + push (a cold engine)')
    ways.push(await dockerWay(instances, proxies, sb, flags))
    // a fresh engine for the base builds: dockerd remembers which repositories hold a layer it pushed, and would
    // mount the docker way's copies
    await sandboxDown({ dir: sb.dir })
    sb = await sandboxUp({ dir: path.join(dir, 'sandbox'), disk: flags.disk, baseEnv: process.env })
    console.log('\n== base pushes: FROM the upstream vs FROM the mirror (a fresh engine)')
    const pick = (k: number) => instances.slice(k * flags.bases, (k + 1) * flags.bases)
    const bases = [
      await basePushes('upstream', pick(0), proxies, sb, dir),
      await basePushes('mirror', pick(1), proxies, sb, dir),
    ]
    writeReport(ways, bases, { ...flags, bytes })
  } finally {
    if (sb) await sandboxDown({ dir: sb.dir })
    proxies.stop()
    await upstream.stop()
    await target.stop()
    if (!flags.dir) fs.rmSync(dir, { recursive: true, force: true })
  }
}

function writeReport(
  ways: Way[],
  bases: Awaited<ReturnType<typeof basePushes>>[],
  f: { images: number; layers: number; layerSize: number; concurrency: number; bytes: number },
) {
  const [mirror, , docker] = ways
  const b = (n: number) => (Number.isNaN(n) ? 'not measured' : formatBytes(n))
  const runtime = 'Bun' in globalThis
    ? `bun ${(globalThis as { Bun?: { version: string } }).Bun?.version}`
    : process.version
  const report = [
    `# bench:mirror — ${new Date().toISOString()}`,
    '',
    `Machine: ${os.cpus().length} cores (${os.cpus()[0]?.model ?? 'unknown'}), ${
      formatBytes(os.totalmem())
    } RAM, kernel ${os.release()}, ${runtime}; load average after: ${os.loadavg().map((l) => l.toFixed(1)).join(' ')}`,
    `Fleet: ${f.images} images of ${f.layers} layers × ${formatBytes(f.layerSize)} (random: incompressible), ${
      formatBytes(f.bytes)
    } in all; two docker-registry processes (upstream, fleet) behind counting TCP proxies; concurrency ${f.concurrency} both ways`,
    '',
    '| way | wall s | local disk written (this process) | data-root disk written (loop device) | upstream → runner | runner → fleet registry | notes |',
    '|---|---:|---:|---:|---:|---:|---|',
    ...ways.map((w) =>
      `| ${w.name} | ${w.wall.toFixed(1)} | ${b(w.localWritten)} | ${b(w.dataRootWritten)} | ${
        formatBytes(w.wire.src.down)
      } | ${formatBytes(w.wire.dst.up)} | ${w.note} |`
    ),
    '',
    `wall: docker/mirror = ${(docker.wall / mirror.wall).toFixed(1)}× (target ≥ 3×)`,
    `local disk written while mirroring: ${formatBytes(mirror.localWritten)} by the mirror (its records and logs in ` +
    `--out; target 0 B of image bytes), ${formatBytes(mirror.dataRootWritten)} on the data root (dockerd idle: the ` +
    `mirror runs no docker) · docker: ${formatBytes(docker.dataRootWritten)} on the data root for a fleet of ${
      formatBytes(f.bytes)
    }`,
    '',
    '| base builds (pipeline --mirror) | images | sent to the fleet registry by docker push | layers mounted | layers pushed |',
    '|---|---:|---:|---:|---:|',
    ...bases.map((x) => `| FROM the ${x.from} | ${x.images} | ${formatBytes(x.sent)} | ${x.mounted} | ${x.pushed} |`),
    '',
  ].join('\n')
  console.log('\n' + report)
  const file = path.join('bench', 'results', `mirror-${new Date().toISOString().slice(0, 10)}.md`)
  fs.mkdirSync(path.dirname(file), { recursive: true })
  fs.appendFileSync(file, report + '\n')
  console.log(`→ ${file}`)
}

if (import.meta.main) runMain(() => main(process.argv.slice(2)))
