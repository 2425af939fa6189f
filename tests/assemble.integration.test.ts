// Registry assembly against the real engine (sandbox): for the same instances, the image written inside the
// registry and the one `docker build` makes have the same files and the same effective config; the
// registry-made image runs; and assembling 100 instances writes nothing to the Docker data root.
import { afterAll, beforeAll, expect, test } from 'bun:test'
import { createHash } from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { $ } from 'zx'
import { sampleDisk } from '../lib/disk/statfs.ts'
import { type FsNode, readLayerData, readTar, treeFromLayers } from '../lib/image/layer.ts'
import { RegistryClient } from '../lib/registry/client.ts'
import { type Sandbox, sandboxDown, sandboxUp } from '../scripts/_sandbox-engine.ts'
import { describeIntegration } from './helpers/integration.ts'
import { CONFIG_FIELDS } from './helpers/image-listing.ts'
import { pushTestImage } from './helpers/registry-server.ts'

const ROOT = path.resolve(import.meta.dir, '..')
const IDS = ['org__equal-1', 'org__equal-2']
const dockerIds = (ids: string[]) => ids.map((id) => id.toLowerCase().replace(/__/g, '_1776_'))

// The synthetic fleet end to end through the scripts (pipeline --mode registry, assemble --mode docker), with modes,
// owners, a symlink, a 0700 directory, parents a COPY --chown creates (/usr, /usr/share: BuildKit gives them the
// --chown owner) and a WORKDIR the base lacks (made in the layer). The corpus of edge cases, one Dockerfile each, is
// assemble-corpus.integration.test.ts.
const DOCKERFILE = `ARG BASE_IMAGE=scratch
ARG SEED_IMAGE
FROM \${SEED_IMAGE} AS builder
RUN mkdir -p /opt/agent/bin /opt/agent/share /tools \\
 && echo "agent 1.0" > /opt/agent/VERSION \\
 && printf '#!/bin/sh\\nexec "$@"\\n' > /opt/agent/bin/run && chmod 755 /opt/agent/bin/run \\
 && ln -s ../VERSION /opt/agent/bin/version \\
 && echo secret > /opt/agent/share/key && chmod 600 /opt/agent/share/key && chmod 700 /opt/agent/share \\
 && chown -R 1000:1000 /opt/agent/share && printf '#!/bin/sh\\necho tool\\n' > /tools/agent-tool

FROM \${BASE_IMAGE} AS base
COPY imagefleet-base /etc/imagefleet-base
`
const ASSEMBLE = `ARG BASE_IMAGE
ARG BUILDER_IMAGE
FROM \${BUILDER_IMAGE} AS builder

FROM \${BASE_IMAGE}
ARG AGENT_VERSION=1.0
COPY --from=builder /opt/agent /opt/agent
COPY --from=builder --chown=1000:1000 --chmod=0755 /tools /tools
COPY --from=builder --chown=1000:1000 /opt/agent/VERSION /usr/share/agent/
ENV AGENT_HOME=/opt/agent PATH=/opt/agent/bin:/tools:$PATH
LABEL org.imagefleet.agent=synthetic org.imagefleet.version=$AGENT_VERSION
WORKDIR /testbed
USER 1000:1000
ENTRYPOINT ["/opt/agent/bin/run"]
CMD ["/bin/sh", "-c", "cat /opt/agent/VERSION"]
`

describeIntegration('registry assembly vs docker build', () => {
  let tmp: string, sb: Sandbox, context: string, sh: typeof $
  const script = (name: string, args: string[]) =>
    $({
      env: sb.env,
      cwd: ROOT,
      nothrow: true,
      quiet: true,
    })`${process.execPath} scripts/${name}.ts --registry ${sb.registry}/fleet --upstream ${sb.registry}/up/{docker_id}:latest --context ${context} --build-arg SEED_IMAGE=${sb.seedImage} --network none --min-free 100MB ${args}`
  const instancesFile = (name: string, ids: string[]) => {
    const f = path.join(tmp, name)
    fs.writeFileSync(f, ids.join('\n') + '\n')
    return f
  }
  const image = (mode: 'registry' | 'docker', dockerId: string) =>
    `${sb.registry}/fleet/${mode === 'registry' ? 'eval-agent' : 'docker-agent'}:eq-${dockerId}`

  beforeAll(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'imagefleet-assemble-it-'))
    sb = await sandboxUp({ dir: path.join(tmp, 'sb'), disk: 2 * 2 ** 30, baseEnv: process.env })
    sh = $({ env: sb.env, quiet: true })
    context = path.join(tmp, 'context')
    fs.mkdirSync(context)
    fs.writeFileSync(path.join(context, 'Dockerfile'), DOCKERFILE)
    fs.writeFileSync(path.join(context, 'Dockerfile.assemble'), ASSEMBLE)
    fs.writeFileSync(path.join(context, 'imagefleet-base'), 'base\n')
    // upstream images: the seed busybox under each instance's name (a push of layers the registry already has)
    await sh`docker pull ${sb.seedImage}`
    for (const d of dockerIds(IDS)) {
      await sh`docker tag ${sb.seedImage} ${sb.registry}/up/${d}:latest`
      await sh`docker push ${sb.registry}/up/${d}:latest`
    }
    const t = Date.now()
    const registryRun = await script('pipeline', [
      '--instances',
      instancesFile('ids.txt', IDS),
      '--key',
      'eq',
      '--mode',
      'registry',
      '--out',
      path.join(tmp, 'out-registry'),
    ])
    if (registryRun.exitCode !== 0) {
      throw new Error(`pipeline --mode registry failed:\n${registryRun.stdout}\n${registryRun.stderr}`)
    }
    console.log(registryRun.stdout.split('\n').filter((l) => /registry|assemble/i.test(l)).join('\n'))
    const dockerRun = await script('assemble', [
      '--instances',
      instancesFile('ids.txt', IDS),
      '--key',
      'eq',
      '--mode',
      'docker',
      '--final-repo',
      `${sb.registry}/fleet/docker-agent`,
      '--out',
      path.join(tmp, 'out-docker'),
    ])
    if (dockerRun.exitCode !== 0) {
      throw new Error(`assemble --mode docker failed:\n${dockerRun.stdout}\n${dockerRun.stderr}`)
    }
    console.log(
      `builder + 2 bases + 2 registry assemblies, then 2 docker assemblies: ${((Date.now() - t) / 1000).toFixed(1)}s`,
    )
  })
  afterAll(async () => {
    if (!tmp) return
    await sandboxDown({ dir: path.join(tmp, 'sb') })
    fs.rmSync(tmp, { recursive: true, force: true })
  })

  /** path → "type mode uid:gid size sha256 → link" of an image's merged layers (`docker save`), or a container's filesystem (`docker export`). */
  async function listing(img: string, how: 'image' | 'container'): Promise<Map<string, string>> {
    const file = path.join(tmp, `${how}-${createHash('sha1').update(img).digest('hex')}.tar`)
    if (how === 'image') await sh`docker save -o ${file} ${img}`
    else {
      const id = (await sh`docker create ${img}`).stdout.trim()
      await sh`docker export -o ${file} ${id}`
      await sh`docker rm ${id}`
    }
    const tar = new Uint8Array(fs.readFileSync(file))
    fs.rmSync(file)
    const layers = how === 'container' ? [tar] : savedLayers(tar)
    return walk(treeFromLayers(layers).root, layers)
  }

  test('the registry-made image has the same files as the docker-built one (paths, contents, modes, owners)', async () => {
    for (const d of dockerIds(IDS)) {
      await sh`docker pull ${image('registry', d)}`
      await sh`docker pull ${image('docker', d)}`
      const [reg, dock] = [
        await listing(image('registry', d), 'container'),
        await listing(image('docker', d), 'container'),
      ]
      console.log(
        `${d}: container filesystems (docker export) — ${dock.size} entries from docker build, ${reg.size} from the registry; differences: ${
          JSON.stringify(differences(dock, reg))
        }`,
      )
      expect(differences(dock, reg)).toEqual([])
      const [regImage, dockImage] = [
        await listing(image('registry', d), 'image'),
        await listing(image('docker', d), 'image'),
      ]
      const diff = differences(dockImage, regImage)
      console.log(
        `${d}: image filesystems (docker save, layers merged) — ${dockImage.size} vs ${regImage.size} entries; differences: ${
          JSON.stringify(diff)
        }`,
      )
      // BuildKit's WORKDIR makes /testbed in a layer of its own; registry mode makes it in its one layer
      expect(diff).toEqual([])
      for (
        const p of [
          'opt/agent/bin/run',
          'opt/agent/share/key',
          'opt/agent/bin/version',
          'tools/agent-tool',
          'usr/share/agent/VERSION',
        ]
      ) expect(regImage.has(p)).toBe(true)
    }
  })

  test('the registry-made image has the same effective config (Env, Entrypoint, Cmd, WorkingDir, User, Labels, ExposedPorts)', async () => {
    for (const d of dockerIds(IDS)) {
      const config = async (img: string) => {
        const c = JSON.parse((await sh`docker image inspect --format ${'{{json .Config}}'} ${img}`).stdout)
        return Object.fromEntries(CONFIG_FIELDS.map((k) => [k, c[k] ?? null]))
      }
      const [reg, dock] = [await config(image('registry', d)), await config(image('docker', d))]
      console.log(
        `${d}: config from docker build ${JSON.stringify(dock)}\n${d}: config from the registry ${JSON.stringify(reg)}`,
      )
      expect(reg).toEqual(dock)
      expect(reg.User).toBe('1000:1000')
    }
  })

  test('a container from the registry-made image runs and sees the agent files', async () => {
    const img = image('registry', dockerIds(IDS)[0])
    const cat = await sh`docker run --rm --network none ${img} /bin/sh -c ${'cat /opt/agent/VERSION'}`
    expect(cat.stdout.trim()).toBe('agent 1.0')
    const defaults = await sh`docker run --rm --network none ${img}` // ENTRYPOINT + CMD as configured
    expect(defaults.stdout.trim()).toBe('agent 1.0')
    const where =
      await sh`docker run --rm --network none ${img} /bin/sh -c ${'pwd; id -u; cat /opt/agent/share/key; agent-tool; cat /etc/imagefleet-base'}`
    expect(where.stdout.trim().split('\n')).toEqual(['/testbed', '1000', 'secret', 'tool', 'base'])
  })

  test('assembling 100 instances in the registry writes no bytes to the Docker data root', async () => {
    const client = new RegistryClient()
    const ids = Array.from({ length: 100 }, (_, i) => `many__inst-${i}`)
    // tiny bases pushed over the HTTP API, and the builder under this key: nothing goes through the daemon
    const builder = await client.getManifest(`${sb.registry}/fleet/eval-builder:eq`)
    await client.putManifest(`${sb.registry}/fleet/eval-builder:many`, builder.bytes, builder.mediaType)
    const sh0 = { path: 'bin/sh', type: 'symlink' as const, mode: 0o777, uid: 0, gid: 0, linkname: 'busybox' }
    for (const d of dockerIds(ids)) {
      await pushTestImage(client, `${sb.registry}/fleet/eval-base:many-${d}`, {
        layers: [[sh0], [{
          path: 'etc/instance',
          type: 'file',
          mode: 0o644,
          uid: 0,
          gid: 0,
          data: new TextEncoder().encode(d),
        }]],
      })
    }
    await sh`sync`
    const before = sampleDisk(sb.dataRoot)
    const t = Date.now()
    const r = await script('assemble', [
      '--instances',
      instancesFile('many.txt', ids),
      '--key',
      'many',
      '--mode',
      'registry',
      '--concurrency',
      '8',
      '--out',
      path.join(tmp, 'out-many'),
    ])
    const secs = (Date.now() - t) / 1000
    await sh`sync`
    const after = sampleDisk(sb.dataRoot)
    console.log(
      `100 instances in the registry: ${
        secs.toFixed(1)
      }s wall (script start to end), data root free ${before.free} → ${after.free} bytes (${after.free - before.free})`,
    )
    console.log(r.stdout.split('\n').filter((l) => /Assembled in the registry|ok,|✗/.test(l)).join('\n'))
    expect(r.exitCode).toBe(0)
    const summary = JSON.parse(fs.readFileSync(path.join(tmp, 'out-many', 'summary.json'), 'utf8'))
    expect(summary.registry.images).toBe(100)
    expect(summary.counts.assemble.built).toBe(100)
    expect(before.free - after.free).toBe(0)
    expect(before.used).toBe(after.used)
  })
})

/** The layer tars of a `docker save` archive, bottom-up (manifest.json names them). */
function savedLayers(save: Uint8Array): Uint8Array[] {
  const members = new Map([...readTar(save, () => true)].map((e) => [e.path, e.data]))
  const manifest = JSON.parse(new TextDecoder().decode(members.get('manifest.json')!))
  return (manifest[0].Layers as string[]).map((p) => members.get(p)!)
}

/** Every path of a merged tree with type, mode, owner, size and content hash (mtimes left out: they differ by design). */
function walk(root: FsNode, layers: Uint8Array[]): Map<string, string> {
  const nodes: [string, FsNode][] = []
  const visit = (node: FsNode, at: string) => {
    for (const [name, child] of node.children ?? []) {
      nodes.push([at + name, child])
      if (child.type === 'dir') visit(child, `${at}${name}/`)
    }
  }
  visit(root, '')
  const data = readLayerData(layers, new Set(nodes.flatMap(([, n]) => (n.dataKey ? [n.dataKey] : []))))
  const out = new Map<string, string>()
  for (const [p, n] of nodes.sort(([a], [b]) => (a < b ? -1 : 1))) {
    const bytes = n.dataKey ? data.get(n.dataKey) : undefined
    const content = n.type === 'file'
      ? `${bytes?.length ?? 0} ${createHash('sha256').update(bytes ?? new Uint8Array()).digest('hex').slice(0, 16)}`
      : ''
    out.set(
      p,
      `${n.type} ${(n.mode & 0o7777).toString(8)} ${n.uid}:${n.gid} ${content}${n.linkname ? ` → ${n.linkname}` : ''}`
        .trim(),
    )
  }
  return out
}

function differences(docker: Map<string, string>, registry: Map<string, string>): string[] {
  const paths = [...new Set([...docker.keys(), ...registry.keys()])].sort()
  return paths.filter((p) => docker.get(p) !== registry.get(p))
    .map((p) => `${p}: docker build ${docker.get(p) ?? '(absent)'} | registry ${registry.get(p) ?? '(absent)'}`)
}
