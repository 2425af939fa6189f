import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import pMap from 'p-map'
import { applySteps, type AssemblePlan, type ImageConfig } from '../lib/image/assemble-dockerfile.ts'
import { assembleInRegistry, makeAgentLayer, parseAssembleDockerfile } from '../lib/image/assemble-registry.ts'
import { decompressLayer, type LayerFile, readTar } from '../lib/image/layer.ts'
import { getBlob } from '../lib/registry/blobs.ts'
import { parseImageRef } from '../lib/registry/ref.ts'
import { MEDIA, RegistryClient } from '../lib/registry/client.ts'
import { pushTestImage, pushTestIndex, type RegistryServer, startRegistry } from './helpers/registry-server.ts'

const bytes = (s: string) => new TextEncoder().encode(s)
const decode = (b: Uint8Array) => JSON.parse(new TextDecoder().decode(b))
const file = (path: string, content: string, mode = 0o644, uid = 0, gid = 0): LayerFile => ({
  path,
  type: 'file',
  mode,
  uid,
  gid,
  data: bytes(content),
})

const SYNTHETIC = `# The thin per-instance image
ARG BASE_IMAGE
ARG BUILDER_IMAGE
FROM \${BUILDER_IMAGE} AS builder

FROM \${BASE_IMAGE}
COPY --from=builder /opt/agent /opt/agent
ENV AGENT_HOME=/opt/agent
LABEL org.imagefleet.agent=synthetic
WORKDIR /testbed
`
const ARGS = { BASE_IMAGE: 'r.io/base:1', BUILDER_IMAGE: 'r.io/builder:1' }
const plan = (text: string, buildArgs: Record<string, string> = ARGS) => parseAssembleDockerfile(text, { buildArgs })
const ok = (text: string) => {
  const p = plan(text)
  if (!p.ok) throw new Error(`expected ok, got: ${p.why}`)
  return p
}
const HEAD = 'ARG BASE_IMAGE\nARG BUILDER_IMAGE\nFROM ${BUILDER_IMAGE} AS builder\nFROM ${BASE_IMAGE}\n'

describe('parseAssembleDockerfile', () => {
  test('accepts the synthetic fleet Dockerfile and resolves images and copies', () => {
    const p = ok(SYNTHETIC)
    expect([p.builderImage, p.builderStage, p.baseImage]).toEqual(['r.io/builder:1', 'builder', 'r.io/base:1'])
    expect(p.copies).toEqual([{ sources: ['/opt/agent'], dest: '/opt/agent' }])
    expect(p.steps.map((s) => s.kind)).toEqual(['copy', 'env', 'label', 'workdir'])
  })

  const refusals: [string, string][] = [
    [HEAD + 'RUN echo hi', 'RUN needs a docker build'],
    [HEAD + 'COPY agent /opt/agent', 'from the build context'],
    [HEAD + 'COPY --from=alpine:3 /bin/sh /bin/', '--from=alpine:3 is not the builder stage'],
    [HEAD + 'COPY --from=builder --chown=app:app /a /b', 'names a user'],
    [HEAD + 'COPY --from=builder /a rel/', "depends on the base image's WORKDIR"],
    [HEAD + 'COPY --from=builder /a $HOME/a', 'only the base image would define'],
    ['FROM golang AS builder\nRUN make\nFROM base', 'line 2: RUN needs a docker build'],
    ['FROM a AS builder\nFROM b\nFROM c', 'found 3 FROM lines'],
    ['FROM a AS builder\nFROM builder', 'FROM the builder stage'],
    [HEAD + 'ADD x /y', 'ADD needs a docker build'],
    [HEAD + 'COPY --from=builder --exclude=*.pyc /a /b', '--exclude needs a docker build'],
  ]
  for (const [text, why] of refusals) {
    test(`falls back to docker build, saying why: ${why}`, () => {
      const p = plan(text)
      expect(p.ok).toBe(false)
      if (!p.ok) expect(p.why).toContain(why)
    })
  }

  test('needs the build args FROM uses', () => {
    const p = plan(SYNTHETIC, {})
    expect(p.ok ? '' : p.why).toContain('BUILDER_IMAGE')
  })

  test('handles continuations, comments, ARG defaults, JSON COPY, WORKDIR-relative and --chown/--chmod', () => {
    const p = ok(`${HEAD}ARG DEST=/opt
# a comment between
COPY --from=builder \\
  # comment inside a continuation
  --chown=1000:1000 --chmod=750 /src/a /src/b \${DEST}/agent/
WORKDIR /work
WORKDIR sub
COPY --from=builder ["/src/c", "bin/"]
COPY --from=builder /src/d .`)
    expect(p.copies).toEqual([
      { sources: ['/src/a', '/src/b'], dest: '/opt/agent/', chown: { uid: 1000, gid: 1000 }, chmod: 0o750 },
      { sources: ['/src/c'], dest: '/work/sub/bin/' },
      { sources: ['/src/d'], dest: '/work/sub/' },
    ])
    const copy = p.steps.find((s) => s.kind === 'copy')!
    expect(copy.kind === 'copy' && copy.createdBy).toBe(
      'COPY --chown=1000:1000 --chmod=750 /src/a /src/b /opt/agent/ # buildkit',
    )
  })
})

const baseConfig = (): ImageConfig => ({
  architecture: 'amd64',
  os: 'linux',
  created: '2024-01-01T00:00:00Z',
  config: {
    Env: ['PATH=/usr/bin:/bin', 'LANG=C.UTF-8'],
    Cmd: ['python3'],
    WorkingDir: '/base',
    Labels: { base: 'yes' },
  },
  rootfs: { type: 'layers', diff_ids: ['sha256:base'] },
  history: [{ created_by: 'base' }],
})
const apply = (body: string, base = baseConfig(), layerDiffId?: string) =>
  applySteps(base, (ok(HEAD + body) as AssemblePlan).steps, { created: '1970-01-01T00:00:00Z', layerDiffId })

describe('applySteps follows docker build semantics', () => {
  test('ENV replaces in place or appends, expands base Env, and sees the values from before the instruction', () => {
    const c = apply('ENV PATH=/opt/agent/bin:$PATH A=1\nENV A=2 B=$A\nENV LEGACY the rest "of" line')
    expect(c.config!.Env).toEqual([
      'PATH=/opt/agent/bin:/usr/bin:/bin',
      'LANG=C.UTF-8',
      'A=2',
      'B=1',
      'LEGACY=the rest of line',
    ])
  })

  test("WORKDIR resolves against the previous one (the base's first), with ENV expansion", () => {
    expect(apply('WORKDIR rel').config!.WorkingDir).toBe('/base/rel')
    expect(apply('ENV D=/srv\nWORKDIR $D\nWORKDIR ../x/./y').config!.WorkingDir).toBe('/x/y')
  })

  test('ENTRYPOINT clears the base Cmd unless CMD came first; shell forms use /bin/sh -c', () => {
    const e = apply('ENTRYPOINT run --fast')
    expect([e.config!.Entrypoint, e.config!.Cmd]).toEqual([['/bin/sh', '-c', 'run --fast'], undefined])
    const both = apply('CMD ["--help"]\nENTRYPOINT ["tool"]')
    expect([both.config!.Entrypoint, both.config!.Cmd, both.config!.ArgsEscaped]).toEqual([['tool'], ['--help'], true])
    const after = apply('ENTRYPOINT ["tool"]\nCMD echo $HOME')
    expect(after.config!.Cmd).toEqual(['/bin/sh', '-c', 'echo $HOME'])
  })

  test('shell forms use the base image SHELL when it has one', () => {
    const base = baseConfig()
    base.config!.Shell = ['/bin/bash', '-lc']
    expect(apply('CMD make test', base).config!.Cmd).toEqual(['/bin/bash', '-lc', 'make test'])
  })

  test('USER and LABEL expand ARGs and ENV; LABEL merges into base labels', () => {
    const c = apply('ARG UID=1000\nENV TEAM=fleet\nUSER ${UID}:${UID}\nLABEL "org.team"="$TEAM" other=x')
    expect(c.config!.User).toBe('1000:1000')
    expect(c.config!.Labels).toEqual({ base: 'yes', 'org.team': 'fleet', other: 'x' })
    expect(c.config!.Env).not.toContain('UID=1000')
  })

  test('history gets one BuildKit-style entry per instruction; the first COPY carries the layer', () => {
    const c = apply(
      'ARG V=1\nCOPY --from=builder /a /b\nENV X=$V\nCMD ["a", "b"]\nCOPY --from=builder /c /d',
      baseConfig(),
      'sha256:agent',
    )
    expect(c.history!.slice(1)).toEqual([
      { created: '1970-01-01T00:00:00Z', created_by: 'ARG V=1', comment: 'buildkit.dockerfile.v0', empty_layer: true },
      { created: '1970-01-01T00:00:00Z', created_by: 'COPY /a /b # buildkit', comment: 'buildkit.dockerfile.v0' },
      { created: '1970-01-01T00:00:00Z', created_by: 'ENV X=1', comment: 'buildkit.dockerfile.v0', empty_layer: true },
      {
        created: '1970-01-01T00:00:00Z',
        created_by: 'CMD ["a" "b"]',
        comment: 'buildkit.dockerfile.v0',
        empty_layer: true,
      },
      {
        created: '1970-01-01T00:00:00Z',
        created_by: 'COPY /c /d # buildkit',
        comment: 'buildkit.dockerfile.v0',
        empty_layer: true,
      },
    ])
    expect(c.rootfs.diff_ids).toEqual(['sha256:base', 'sha256:agent'])
    expect(c.created).toBe('1970-01-01T00:00:00Z')
  })
})

describe('assembly in a real registry', () => {
  let reg: RegistryServer
  let other: RegistryServer
  const downloads: string[] = []
  /** Records every blob GET, to prove base layers are never downloaded. */
  const spyFetch = ((input: string | URL | Request, init?: RequestInit) => {
    const url = String(input)
    if ((init?.method ?? 'GET') === 'GET' && url.includes('/blobs/sha256:')) downloads.push(url.split('/blobs/')[1])
    return fetch(input, init)
  }) as typeof fetch
  const client = new RegistryClient({ fetch: spyFetch })
  const agentFiles = [
    file('opt/agent/bin/agent', '#!/bin/sh\necho agent\n', 0o755),
    file('opt/agent/VERSION', '1'),
    file('opt/agent/old.txt', 'old'),
  ]
  const baseLayers = [[file('bin/sh', 'fake shell', 0o755), file('etc/os-release', 'ID=test')], [
    file('testbed/setup.py', 'print(1)', 0o644, 1000, 1000),
  ]]
  let base: Awaited<ReturnType<typeof pushTestImage>>
  let p: AssemblePlan

  beforeAll(async () => {
    ;[reg, other] = await Promise.all([startRegistry(), startRegistry()])
    await pushTestImage(client, `${reg.address}/fleet/builder:1`, {
      layers: [agentFiles, [file('opt/agent/.wh.old.txt', '')]],
    })
    base = await pushTestImage(client, `${reg.address}/fleet/base:1`, {
      layers: baseLayers,
      config: { WorkingDir: '/', Cmd: ['/bin/sh'] },
    })
    p = parseAssembleDockerfile(SYNTHETIC, {
      buildArgs: { BASE_IMAGE: `${reg.address}/fleet/base:1`, BUILDER_IMAGE: `${reg.address}/fleet/builder:1` },
    }) as AssemblePlan
  })
  afterAll(async () => {
    await reg?.stop()
    await other?.stop()
  })

  test('makeAgentLayer packs the copied files reproducibly, honouring the builder whiteout', async () => {
    const a = await makeAgentLayer({ client, builderRef: p.builderImage, copies: p.copies })
    const b = await makeAgentLayer({ client, builderRef: p.builderImage, copies: p.copies })
    expect(a.digest).toBe(b.digest)
    expect(a.key).toBe(b.key)
    const paths = [...readTar(decompressLayer(a.gzip))].map((e) => e.path)
    expect(paths).toEqual(['opt', 'opt/agent', 'opt/agent/VERSION', 'opt/agent/bin', 'opt/agent/bin/agent'])
    const cache = new Map([[a.key, a]])
    expect(await makeAgentLayer({ client, builderRef: p.builderImage, copies: p.copies, cache })).toBe(a)
  })

  test('assembles a docker v2 image without downloading a base layer: mounts, new config, extended manifest', async () => {
    const layer = await makeAgentLayer({ client, builderRef: p.builderImage, copies: p.copies })
    downloads.length = 0
    const finalRef = `${reg.address}/fleet/final-one:latest`
    const result = await assembleInRegistry({ client, baseRef: p.baseImage, finalRef, layer, steps: p.steps })
    console.log(`assembled ${finalRef}: ${JSON.stringify({ ...result, notes: result.notes.length })}`)
    expect(downloads.filter((d) => base.layers.some((l) => d.startsWith(l.digest)))).toEqual([])
    expect([result.mounted, result.copied]).toEqual([2, 0])
    const m = await client.getManifest(parseImageRef(finalRef))
    expect(m.mediaType).toBe(MEDIA.dockerManifest)
    const manifest = decode(m.bytes)
    expect(manifest.layers.map((l: { digest: string }) => l.digest)).toEqual([
      ...base.layers.map((l) => l.digest),
      layer.digest,
    ])
    expect(manifest.layers[2].mediaType).toBe(MEDIA.dockerLayer)
    const config = decode(await getBlob(client, parseImageRef(finalRef), manifest.config.digest))
    expect(config.rootfs.diff_ids).toEqual([...base.layers.map((l) => l.diffId), layer.diffId])
    expect(config.config.Env).toContain('AGENT_HOME=/opt/agent')
    expect(config.config.WorkingDir).toBe('/testbed')
    expect(config.config.Labels).toEqual({ 'org.imagefleet.agent': 'synthetic' })
    expect(config.history.filter((h: { empty_layer?: boolean }) => !h.empty_layer).length).toBe(manifest.layers.length)
    expect(m.digest).toBe(result.digest)
  })

  test('the same inputs give the same final digest; many instances assemble in well under a second each', async () => {
    const layer = await makeAgentLayer({ client, builderRef: p.builderImage, copies: p.copies })
    const refs = Array.from({ length: 20 }, (_, i) => `${reg.address}/fleet/final-${i}:latest`)
    const started = performance.now()
    const results = await pMap(
      refs,
      (finalRef) => assembleInRegistry({ client, baseRef: p.baseImage, finalRef, layer, steps: p.steps }),
      { concurrency: 8 },
    )
    const perImage = (performance.now() - started) / 1000 / refs.length
    console.log(
      `20 instances: ${perImage.toFixed(3)} s/image wall, slowest ${
        Math.max(...results.map((r) => r.seconds)).toFixed(3)
      } s`,
    )
    expect(new Set(results.map((r) => r.digest)).size).toBe(1)
    expect(perImage).toBeLessThan(1)
    expect(results.reduce((n, r) => n + r.mounted, 0)).toBeGreaterThanOrEqual(20 * 2)
  })

  test('bases sharing a layer, assembled at once into one repository: each blob is mounted once, every manifest lands', async () => {
    const fresh = new RegistryClient() // placements are remembered per client (one client per run)
    const shared = [file('bin/sh', 'shared shell', 0o755)]
    const refs = Array.from({ length: 24 }, (_, i) => `${reg.address}/fleet/shared-base:${i}`)
    for (const [i, ref] of refs.entries()) {
      await pushTestImage(fresh, ref, { layers: [shared, [file('etc/instance', String(i))]] })
    }
    const layer = await makeAgentLayer({ client: fresh, builderRef: p.builderImage, copies: p.copies })
    const results = await pMap(
      refs,
      (baseRef, i) =>
        assembleInRegistry({
          client: fresh,
          baseRef,
          finalRef: `${reg.address}/fleet/shared-final:${i}`,
          layer,
          steps: p.steps,
        }),
      { concurrency: 12 },
    )
    expect(results.reduce((n, r) => n + r.mounted, 0)).toBe(1 + 24) // the shared layer once, each instance layer once
    expect(results.reduce((n, r) => n + r.present, 0)).toBe(23 + 23) // the shared layer and the agent layer after the first
    for (let i = 0; i < 24; i++) expect(await fresh.manifestExists(`${reg.address}/fleet/shared-final:${i}`)).toBe(true)
  })

  test('an OCI base gives an OCI manifest and OCI layer media types', async () => {
    await pushTestImage(client, `${reg.address}/fleet/oci-base:1`, { layers: baseLayers, oci: true })
    const layer = await makeAgentLayer({ client, builderRef: p.builderImage, copies: p.copies })
    const finalRef = `${reg.address}/fleet/oci-final:1`
    await assembleInRegistry({ client, baseRef: `${reg.address}/fleet/oci-base:1`, finalRef, layer, steps: p.steps })
    const m = await client.getManifest(parseImageRef(finalRef))
    expect(m.mediaType).toBe(MEDIA.ociManifest)
    expect(decode(m.bytes).layers.at(-1).mediaType).toBe(MEDIA.ociLayer)
  })

  test('a multi-platform base: --platform picks one, otherwise every platform gets a new index', async () => {
    const amd = await pushTestImage(client, `${reg.address}/fleet/multi:amd64`, { layers: baseLayers, oci: true })
    const arm = await pushTestImage(client, `${reg.address}/fleet/multi:arm64`, {
      layers: [[file('bin/sh', 'arm shell', 0o755)]],
      oci: true,
      platform: { os: 'linux', architecture: 'arm64' },
    })
    await pushTestIndex(client, `${reg.address}/fleet/multi:1`, [{
      image: amd,
      platform: { os: 'linux', architecture: 'amd64' },
    }, { image: arm, platform: { os: 'linux', architecture: 'arm64' } }])
    const layer = await makeAgentLayer({ client, builderRef: p.builderImage, copies: p.copies })
    const one = await assembleInRegistry({
      client,
      baseRef: `${reg.address}/fleet/multi:1`,
      finalRef: `${reg.address}/fleet/multi-final:arm`,
      layer,
      steps: p.steps,
      platform: 'linux/arm64',
    })
    expect([one.mediaType, one.platforms]).toEqual([MEDIA.ociManifest, ['linux/arm64']])
    const all = await assembleInRegistry({
      client,
      baseRef: `${reg.address}/fleet/multi:1`,
      finalRef: `${reg.address}/fleet/multi-final:all`,
      layer,
      steps: p.steps,
    })
    expect([all.mediaType, all.platforms]).toEqual([MEDIA.ociIndex, ['linux/amd64', 'linux/arm64']])
    const index = decode((await client.getManifest(parseImageRef(`${reg.address}/fleet/multi-final:all`))).bytes)
    for (const entry of index.manifests) {
      expect(
        await client.manifestExists({ ...parseImageRef(`${reg.address}/fleet/multi-final`), digest: entry.digest }),
      ).toBe(true)
    }
  })

  test('a base on another registry is copied (streamed), and the result says so', async () => {
    const layer = await makeAgentLayer({ client, builderRef: p.builderImage, copies: p.copies })
    const result = await assembleInRegistry({
      client,
      baseRef: p.baseImage,
      finalRef: `${other.address}/fleet/final:x`,
      layer,
      steps: p.steps,
    })
    expect([result.mounted, result.copied]).toEqual([0, 2])
    expect(result.notes.join('\n')).toContain('copied')
    expect(result.bytesUploaded).toBeGreaterThan(base.layers.reduce((n, l) => n + l.size, 0))
    expect(await client.manifestExists(`${other.address}/fleet/final:x`)).toBe(true)
  })
})
