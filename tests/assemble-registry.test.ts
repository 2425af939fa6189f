// lib/image/assemble-dockerfile.ts (which Dockerfiles the registry path takes, and why not), image-config.ts (the
// config docker build would write) and assemble-registry.ts (assembly in a real registry: docker-registry).
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import pMap from 'p-map'
import { type AssemblePlan, parseAssembleDockerfile } from '../lib/image/assemble-dockerfile.ts'
import { Assembler } from '../lib/image/assemble-registry.ts'
import { logicalLines } from '../lib/image/dockerfile-words.ts'
import { attachLayer, evaluateSteps, type ImageConfig } from '../lib/image/image-config.ts'
import { decompressLayer, readTar } from '../lib/image/layer.ts'
import { getBlob } from '../lib/registry/blobs.ts'
import { MEDIA, RegistryClient } from '../lib/registry/client.ts'
import { parseImageRef } from '../lib/registry/ref.ts'
import { pushTestImage, pushTestIndex, type RegistryServer, startRegistry } from './helpers/registry-server.ts'
import { file } from './helpers/layer-files.ts'

const decode = (b: Uint8Array) => JSON.parse(new TextDecoder().decode(b))
/** The field's assemble Dockerfile, in shape (issue 15 item 1), written here as our own. */
const FIELD = `# syntax=docker/dockerfile:1.7
ARG BUILDER_IMAGE
ARG BASE_IMAGE
FROM \${BUILDER_IMAGE} AS builder
FROM \${BASE_IMAGE}
ARG USER=agent
ENV AGENT_HOME=/agent-server PATH=/agent-server/bin:$PATH
COPY --chown=\${USER}:\${USER} --from=builder /agent-server /agent-server
ENTRYPOINT ["/agent-server/bin/run", "--serve"]
`
const ARGS = { BASE_IMAGE: 'r.io/base:1', BUILDER_IMAGE: 'r.io/builder:1' }
const plan = (text: string, buildArgs: Record<string, string> = ARGS) => parseAssembleDockerfile(text, { buildArgs })
const ok = (text: string, buildArgs?: Record<string, string>) => {
  const p = plan(text, buildArgs)
  if (!p.ok) throw new Error(`expected ok, got: ${p.why}`)
  return p
}
const HEAD = 'ARG BASE_IMAGE\nARG BUILDER_IMAGE\nFROM ${BUILDER_IMAGE} AS builder\nFROM ${BASE_IMAGE}\n'

describe('parseAssembleDockerfile', () => {
  test("takes the field's shape: # syntax= ignored, ARGs without defaults, ARG after FROM, --chown with ARGs, exec ENTRYPOINT", () => {
    const p = ok(FIELD)
    expect([p.baseImage, p.sources, p.syntax]).toEqual(['r.io/base:1', ['r.io/builder:1'], 'docker/dockerfile:1.7'])
    expect(p.steps.map((s) => s.kind)).toEqual(['arg', 'env', 'copy', 'entrypoint'])
    expect(p.steps[2]).toMatchObject({
      image: 'r.io/builder:1',
      words: ['/agent-server', '/agent-server'],
      chown: '${USER}:${USER}',
    })
  })

  test('COPY --from takes a stage by name or index, or an image reference read from its registry', () => {
    const p = ok(
      `${HEAD}COPY --from=0 /a /a\nCOPY --from=r.io/tools:2 /bin/t /usr/local/bin/\nCOPY --from=BUILDER /b /b`,
    )
    expect(p.sources).toEqual(['r.io/builder:1', 'r.io/tools:2'])
  })

  const refusals: [string, string][] = [
    [HEAD + 'RUN echo hi', 'line 5: RUN needs a docker build'],
    [HEAD + 'COPY agent /opt/agent', 'from the build context'],
    [HEAD + 'COPY --link --from=builder /a /b', 'Unknown flag: link'],
    [HEAD + 'COPY --from=${BUILDER_IMAGE} /a /b', 'does not expand variables in --from'],
    [HEAD + 'COPY --from=builder --exclude=*.pyc /a /b', '--exclude'],
    [HEAD + 'COPY --from=builder --chmod=u+x /a /b', 'is not octal'],
    [HEAD + 'COPY --from=builder <<EOF /b\nhi\nEOF', 'heredoc'],
    ['FROM --platform=$BUILDPLATFORM golang AS builder\nFROM base', 'FROM --platform'],
    ['FROM golang AS builder\nRUN make\nFROM base', 'line 2: RUN needs a docker build'],
    ['FROM a AS builder\nFROM builder', 'builds on another stage'],
    ['FROM a AS builder\nFROM scratch', 'FROM scratch'],
    ['# escape=`\nFROM a AS b\nFROM c', 'escape'],
  ]
  for (const [text, why] of refusals) {
    test(`refuses, saying why and where: ${why}`, () => {
      const p = plan(text)
      expect(p.ok).toBe(false)
      if (!p.ok) expect(p.why).toContain(why)
    })
  }

  test('needs the build args FROM uses', () => {
    const p = plan(FIELD, {})
    expect(p.ok ? '' : p.why).toContain('BUILDER_IMAGE')
  })
})

describe('reading Dockerfile lines as docker does', () => {
  test('comment and blank lines inside a continuation are dropped; exec-form whitespace is kept', () => {
    const { instructions } = logicalLines(
      'FROM x\nENV A=1 \\\n# note\n\n  B=2\nENTRYPOINT ["/bin/sh", "-c", "echo a  b"]\n',
    )
    expect(instructions.map((i) => [i.keyword, i.rest, i.line])).toEqual([
      ['FROM', 'x', 1],
      ['ENV', 'A=1   B=2', 2],
      ['ENTRYPOINT', '["/bin/sh", "-c", "echo a  b"]', 6],
    ])
    const p = ok(`${HEAD}ENTRYPOINT ["/bin/sh", "-c", "echo a  b"]`)
    expect(p.steps[0]).toMatchObject({ args: ['/bin/sh', '-c', 'echo a  b'], shellForm: false })
  })
})

const baseConfig = (): ImageConfig => ({
  architecture: 'amd64',
  os: 'linux',
  created: '2024-01-01T00:00:00Z',
  config: {
    Env: ['PATH=/usr/bin:/bin', 'LANG=C.UTF-8', 'HOME=/root'],
    Cmd: ['python3'],
    WorkingDir: '/base',
    Labels: { base: 'yes' },
    ExposedPorts: { '22/tcp': {} },
  },
  rootfs: { type: 'layers', diff_ids: ['sha256:base'] },
  history: [{ created_by: 'base' }],
})
const evaluate = (body: string, base = baseConfig()) =>
  evaluateSteps(base, (ok(HEAD + body) as AssemblePlan).steps, '1970-01-01T00:00:00Z')
const apply = (body: string, base = baseConfig()) => evaluate(body, base).image

describe('the config docker build writes', () => {
  test('ENV replaces in place or appends, expands base Env, and sees the values from before the instruction', () => {
    const c = apply('ENV PATH=/opt/agent/bin:$PATH A=1\nENV A=2 B=$A\nENV LEGACY the rest "of" line')
    expect(c.config!.Env).toEqual([
      'PATH=/opt/agent/bin:/usr/bin:/bin',
      'LANG=C.UTF-8',
      'HOME=/root',
      'A=2',
      'B=1',
      'LEGACY=the rest of line',
    ])
  })

  test("WORKDIR resolves against the previous one (the base's first), with ENV expansion", () => {
    expect(apply('WORKDIR rel').config!.WorkingDir).toBe('/base/rel')
    expect(apply('ENV D=/srv\nWORKDIR $D\nWORKDIR ../x/./y').config!.WorkingDir).toBe('/x/y')
  })

  test('ENTRYPOINT clears the base Cmd unless CMD came first; shell forms use /bin/sh -c or the base SHELL', () => {
    const e = apply('ENTRYPOINT run --fast')
    expect([e.config!.Entrypoint, e.config!.Cmd]).toEqual([['/bin/sh', '-c', 'run --fast'], undefined])
    const both = apply('CMD ["--help"]\nENTRYPOINT ["tool"]')
    expect([both.config!.Entrypoint, both.config!.Cmd, both.config!.ArgsEscaped]).toEqual([['tool'], ['--help'], true])
    const base = baseConfig()
    base.config!.Shell = ['/bin/bash', '-lc']
    expect(apply('CMD make test', base).config!.Cmd).toEqual(['/bin/bash', '-lc', 'make test'])
  })

  test('USER, LABEL and EXPOSE expand ARGs and ENV; labels and ports merge into the base ones', () => {
    const c = apply(
      'ARG UID=1000\nENV TEAM=fleet\nUSER ${UID}:${UID}\nLABEL "org.team"="$TEAM" other=x\nEXPOSE 8080 53/udp 9000-9001',
    )
    expect(c.config!.User).toBe('1000:1000')
    expect(c.config!.Labels).toEqual({ base: 'yes', 'org.team': 'fleet', other: 'x' })
    expect(Object.keys(c.config!.ExposedPorts!)).toEqual(['22/tcp', '8080/tcp', '53/udp', '9000/tcp', '9001/tcp'])
    expect(c.config!.Env).not.toContain('UID=1000')
  })

  test("COPY words expand with the base's Env; a relative destination is under WORKDIR; WORKDIR makes its directory as USER", () => {
    const e = evaluate(
      'ARG U=agent\nCOPY --from=builder --chown=$U:$U /a $HOME/x\nUSER $U\nWORKDIR w\nCOPY --from=builder /b sub/',
    )
    expect(e.ops).toEqual([
      { kind: 'copy', source: 'r.io/builder:1', sources: ['/a'], dest: '/root/x', chown: 'agent:agent' },
      { kind: 'workdir', path: '/base/w', user: 'agent' },
      { kind: 'copy', source: 'r.io/builder:1', sources: ['/b'], dest: '/base/w/sub/' },
    ])
  })

  test('a base with ONBUILD triggers is refused: docker build would run them', () => {
    const base = baseConfig()
    base.config!.OnBuild = ['RUN make']
    expect(() => apply('ENV A=1', base)).toThrow('ONBUILD')
  })

  test('history: one BuildKit-style entry per instruction; the step that made the layer carries it', () => {
    const e = evaluate('ARG V=1\nWORKDIR /exists\nCOPY --from=builder /a /b\nENV X=$V\nCOPY --from=builder /c /d')
    const c = attachLayer(e, { diffId: 'sha256:agent', op: 1 }) // the WORKDIR's directory existed: the first COPY
    expect(c.history!.slice(1).map((h) => [h.created_by, h.empty_layer ?? false])).toEqual([
      ['ARG V=1', true],
      ['WORKDIR /exists', true],
      ['COPY /a /b # buildkit', false],
      ['ENV X=1', true],
      ['COPY /c /d # buildkit', true],
    ])
    expect(c.rootfs.diff_ids).toEqual(['sha256:base', 'sha256:agent'])
    expect(c.created).toBe('1970-01-01T00:00:00Z')
  })
})

describe('assembly in a real registry', () => {
  let reg: RegistryServer
  let other: RegistryServer
  const client = new RegistryClient()
  const agentFiles = [
    { path: 'agent-server', type: 'dir' as const, mode: 0o755, uid: 0, gid: 0 },
    file('agent-server/bin/run', '#!/bin/sh\necho agent\n', 0o755),
    file('agent-server/VERSION', '1'),
    file('agent-server/old.txt', 'old'),
  ]
  const distro = [file('bin/sh', 'fake shell', 0o755), file('etc/os-release', 'ID=test')]
  const userLayer = [
    file('etc/passwd', 'root:x:0:0::/root:/bin/sh\nagent:x:1000:1001::/home/agent:/bin/sh\n'),
    file('etc/group', 'agent:x:1001:\n'),
  ]
  let p: AssemblePlan
  const fieldPlan = (base: string, builder = `${reg.address}/fleet/builder:1`) =>
    ok(FIELD, { BASE_IMAGE: base, BUILDER_IMAGE: builder })

  beforeAll(async () => {
    ;[reg, other] = await Promise.all([startRegistry(), startRegistry()])
    await pushTestImage(client, `${reg.address}/fleet/builder:1`, {
      layers: [agentFiles, [file('agent-server/.wh.old.txt', '')]],
    })
    await pushTestImage(client, `${reg.address}/fleet/base:1`, {
      layers: [distro, userLayer],
      config: { WorkingDir: '/' },
    })
    p = fieldPlan(`${reg.address}/fleet/base:1`)
  })
  afterAll(async () => {
    await reg?.stop()
    await other?.stop()
  })

  test("the field's Dockerfile: base layers mounted, one layer added with the base's user as owner, config as docker build's", async () => {
    const finalRef = `${reg.address}/fleet/final-one:latest`
    const result = await new Assembler({ client, buildkit: '0.8' }).assemble(p, finalRef)
    console.log(`assembled ${finalRef}: ${JSON.stringify({ ...result, notes: result.notes.length })}`)
    const m = await client.getManifest(parseImageRef(finalRef))
    const manifest = decode(m.bytes)
    expect(m.mediaType).toBe(MEDIA.dockerManifest)
    expect(manifest.layers.length).toBe(3)
    expect([result.mounted, result.copied]).toEqual([2, 0])
    const added = await getBlob(client, parseImageRef(finalRef), manifest.layers[2].digest)
    expect(readTar(decompressLayer(added)).map((e) => [e.path, e.mode.toString(8), `${e.uid}:${e.gid}`])).toEqual([
      ['agent-server', '755', '1000:1001'],
      ['agent-server/VERSION', '644', '1000:1001'],
      ['agent-server/bin', '755', '1000:1001'],
      ['agent-server/bin/run', '755', '1000:1001'],
    ])
    const config = decode(await getBlob(client, parseImageRef(finalRef), manifest.config.digest))
    expect(config.config.Entrypoint).toEqual(['/agent-server/bin/run', '--serve'])
    expect(config.config.Env).toContain(
      'PATH=/agent-server/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
    )
    expect(config.history.filter((h: { empty_layer?: boolean }) => !h.empty_layer).length).toBe(3)
    expect(result.base.bytesRead).toBe(
      manifest.layers.slice(0, 2).reduce((n: number, l: { size: number }) => n + l.size, 0),
    )
    expect(m.digest).toBe(result.digest)
  })

  test('instances on the same base: the same digest, the layer built once, the base layers answered from the first read', async () => {
    const assembler = new Assembler({ client, buildkit: '0.8' })
    const refs = Array.from({ length: 12 }, (_, i) => `${reg.address}/fleet/final-${i}:latest`)
    const first = await assembler.assemble(p, refs[0])
    const rest = await pMap(refs.slice(1), (ref) => assembler.assemble(p, ref), { concurrency: 6 })
    expect(new Set([first, ...rest].map((r) => r.digest)).size).toBe(1)
    expect(first.layer?.reused).toBe(false)
    expect(rest.every((r) => r.layer?.reused && r.base.bytesRead === 0 && r.base.layersCached === 2)).toBe(true)
  })

  test('a user the base does not have fails that image, with the words docker uses', async () => {
    await pushTestImage(client, `${reg.address}/fleet/base:nouser`, { layers: [distro] })
    const run = new Assembler({ client, buildkit: '0.8' }).assemble(
      fieldPlan(`${reg.address}/fleet/base:nouser`),
      `${reg.address}/fleet/x:1`,
    )
    await expect(run).rejects.toThrow('unable to find user agent: no matching entries in passwd file')
  })

  test('an OCI base gives an OCI manifest and OCI layer media types', async () => {
    await pushTestImage(client, `${reg.address}/fleet/oci-base:1`, { layers: [distro, userLayer], oci: true })
    const finalRef = `${reg.address}/fleet/oci-final:1`
    await new Assembler({ client, buildkit: '0.8' }).assemble(fieldPlan(`${reg.address}/fleet/oci-base:1`), finalRef)
    const m = await client.getManifest(parseImageRef(finalRef))
    expect(m.mediaType).toBe(MEDIA.ociManifest)
    expect(decode(m.bytes).layers.at(-1).mediaType).toBe(MEDIA.ociLayer)
  })

  test("a multi-platform base: each platform gets the builder's files for that platform; --platform picks one", async () => {
    const amd = await pushTestImage(client, `${reg.address}/fleet/multi:amd64`, {
      layers: [distro, userLayer],
      oci: true,
    })
    const arm = await pushTestImage(client, `${reg.address}/fleet/multi:arm64`, {
      layers: [distro, userLayer],
      oci: true,
      platform: { os: 'linux', architecture: 'arm64' },
    })
    await pushTestIndex(client, `${reg.address}/fleet/multi:1`, [
      { image: amd, platform: { os: 'linux', architecture: 'amd64' } },
      { image: arm, platform: { os: 'linux', architecture: 'arm64' } },
    ])
    const bAmd = await pushTestImage(client, `${reg.address}/fleet/mbuilder:amd64`, {
      layers: [[file('agent-server/bin/run', 'amd64')]],
      oci: true,
    })
    const bArm = await pushTestImage(client, `${reg.address}/fleet/mbuilder:arm64`, {
      layers: [[file('agent-server/bin/run', 'arm64')]],
      oci: true,
      platform: { os: 'linux', architecture: 'arm64' },
    })
    await pushTestIndex(client, `${reg.address}/fleet/mbuilder:1`, [
      { image: bAmd, platform: { os: 'linux', architecture: 'amd64' } },
      { image: bArm, platform: { os: 'linux', architecture: 'arm64' } },
    ])
    const multi = fieldPlan(`${reg.address}/fleet/multi:1`, `${reg.address}/fleet/mbuilder:1`)
    const all = await new Assembler({ client, buildkit: '0.8' }).assemble(multi, `${reg.address}/fleet/multi-final:all`)
    expect([all.mediaType, all.platforms]).toEqual([MEDIA.ociIndex, ['linux/amd64', 'linux/arm64']])
    const index = decode((await client.getManifest(parseImageRef(`${reg.address}/fleet/multi-final:all`))).bytes)
    for (const [i, arch] of ['amd64', 'arm64'].entries()) {
      const ref = { ...parseImageRef(`${reg.address}/fleet/multi-final`), digest: index.manifests[i].digest }
      const layer = await getBlob(client, ref, decode((await client.getManifest(ref)).bytes).layers.at(-1).digest)
      const run = readTar(decompressLayer(layer), () => true).find((e) => e.path === 'agent-server/bin/run')!
      expect(new TextDecoder().decode(run.data)).toBe(arch)
    }
    const one = await new Assembler({ client, buildkit: '0.8', platform: 'linux/arm64' }).assemble(
      multi,
      `${reg.address}/fleet/multi-final:arm`,
    )
    expect([one.mediaType, one.platforms]).toEqual([MEDIA.ociManifest, ['linux/arm64']])
  })

  test('a single-platform builder for another platform than the base is refused, not mixed in', async () => {
    await pushTestImage(client, `${reg.address}/fleet/armbuilder:1`, {
      layers: [agentFiles],
      platform: { os: 'linux', architecture: 'arm64' },
    })
    const mixed = fieldPlan(`${reg.address}/fleet/base:1`, `${reg.address}/fleet/armbuilder:1`)
    await expect(new Assembler({ client, buildkit: '0.8' }).assemble(mixed, `${reg.address}/fleet/mixed:1`)).rejects
      .toThrow('is for linux/arm64, not linux/amd64')
  })

  test('a child manifest whose bytes do not hash to the digest it was fetched by is refused', async () => {
    // a fake in front of the real registry, for this logic only: it alters the body of manifest GETs by digest
    const tampering = ((input: string | URL | Request, init?: RequestInit) =>
      fetch(input, init).then(async (res) => {
        if (!String(input).includes('/manifests/sha256:') || (init?.method ?? 'GET') !== 'GET') return res
        const body = new TextDecoder().decode(await res.arrayBuffer()).replace(
          '"schemaVersion":2',
          '"schemaVersion": 2',
        )
        return new Response(body, { status: res.status, headers: res.headers })
      })) as typeof fetch
    const lying = new RegistryClient({ fetch: tampering })
    const multi = fieldPlan(`${reg.address}/fleet/multi:1`, `${reg.address}/fleet/mbuilder:1`)
    await expect(new Assembler({ client: lying, buildkit: '0.8' }).assemble(multi, `${reg.address}/fleet/lie:1`))
      .rejects
      .toThrow('arrived with digest')
  })

  test('a base on another registry is copied (streamed), and the result says so', async () => {
    const result = await new Assembler({ client, buildkit: '0.8' }).assemble(p, `${other.address}/fleet/final:x`)
    expect([result.mounted, result.copied]).toEqual([0, 2])
    expect(result.notes.join('\n')).toContain('copied')
    expect(await client.manifestExists(`${other.address}/fleet/final:x`)).toBe(true)
  })
})
