// scripts/assemble.ts --mode registry|docker|auto against a real registry server and a recording fake docker:
// which way it picks and why, that registry mode runs no docker command, its records, summary and dry-run.
// That the registry-made image equals the docker-built one is proven in assemble.integration.test.ts.
import { describe, expect, test } from 'bun:test'
import fs from 'node:fs'
import path from 'node:path'
import { $ } from 'zx'
import { RegistryClient } from '../lib/registry/client.ts'
import { fixtureFlags, registryFixture, ROOT } from './helpers/fixture.ts'
import { fakeDocker, mutatingCalls } from './helpers/fake-docker.ts'
import { pushTestImage } from './helpers/registry-server.ts'
import { file } from './helpers/layer-files.ts'
import { jsonLines } from './helpers/json-lines.ts'

const fx = registryFixture('assemble-test')

const client = new RegistryClient()

const write = (name: string, text: string) => {
  const f = path.join(fx.work, name)
  fs.writeFileSync(f, text)
  return f
}
const instances = (key: string, ids: string[]) => write(`instances-${key}.txt`, ids.join('\n') + '\n')

/** A builder and one base per instance in the registry, as build-bases would have left them (the base's top layer adds a user). */
async function pushFleet(key: string, dockerIds: string[]) {
  await pushTestImage(client, `${fx.registry.address}/fleet/eval-builder:${key}`, {
    layers: [[
      file('opt/agent/VERSION', 'agent 1.0\n'),
      file('opt/agent/bin/run', '#!/bin/sh\nexec "$@"\n', 0o755),
      file('agent-server/bin/run', '#!/bin/sh\n', 0o755),
    ]],
  })
  for (const d of dockerIds) {
    await pushTestImage(client, `${fx.registry.address}/fleet/eval-base:${key}-${d}`, {
      layers: [[file('bin/sh', 'shell', 0o755)], [
        file('etc/imagefleet-base', d),
        file('etc/passwd', PASSWD),
        file('etc/group', GROUP),
      ]],
    })
  }
}
const PASSWD = 'root:x:0:0::/root:/bin/sh\nagent:x:1000:1000::/home/agent:/bin/sh\n'
const GROUP = 'root:x:0:\nagent:x:1000:\n'

async function run(script: 'assemble' | 'pipeline', args: string[], fake = fakeDocker()) {
  const out = path.join(fx.work, `out-${Math.random().toString(36).slice(2)}`)
  const env = { ...process.env, ...fake.env, CI: '', GITHUB_ACTIONS: '' }
  const r = await $({
    env,
    nothrow: true,
    quiet: true,
    cwd: ROOT,
  })`${process.execPath} scripts/${script}.ts ${fixtureFlags(fx)} --out ${out} ${args}`
  const calls = fake.calls()
  fake.cleanup()
  const manifest = fs.existsSync(path.join(out, 'manifest.jsonl')) ? jsonLines(path.join(out, 'manifest.jsonl')) : []
  const summary = fs.existsSync(path.join(out, 'summary.json'))
    ? JSON.parse(fs.readFileSync(path.join(out, 'summary.json'), 'utf8'))
    : undefined
  return {
    out,
    code: r.exitCode,
    stdout: r.stdout,
    stderr: r.stderr,
    calls,
    mutating: mutatingCalls(calls),
    manifest,
    summary,
  }
}

describe('assemble --mode', () => {
  test('auto assembles in the registry when the Dockerfile only copies from the builder: no docker command, the tally recorded', async () => {
    await pushFleet('r1', ['a_1776_b-1', 'a_1776_b-2'])
    const r = await run('assemble', ['--instances', instances('r1', ['a__b-1', 'a__b-2']), '--key', 'r1'])
    expect(r.code).toBe(0)
    expect(r.mutating).toEqual([])
    expect(r.stdout).toContain(': in the registry (it only copies from images and sets metadata')
    const records = r.manifest.filter((m) => m.phase === 'assemble')
    expect(records.map((m) => m.status)).toEqual(['built', 'built'])
    for (const m of records) expect(m.registry).toMatchObject({ copied: 0 })
    // the bases share their first layer: mounted once, then present; the agent layer: uploaded once, then present
    expect(r.summary.registry).toMatchObject({ images: 2, mounted: 3, copied: 0, present: 2 })
    expect(r.summary.registry.bytesUploaded).toBeGreaterThan(0)
    expect(r.stdout).toContain('Assembled in the registry: 2 images')
    for (const d of ['a_1776_b-1', 'a_1776_b-2']) {
      expect(await client.manifestExists(`${fx.registry.address}/fleet/eval-agent:r1-${d}`)).toBe(true)
    }
  })

  test('the pipeline assembles in the registry by default: nothing built, pushed or removed locally', async () => {
    await pushFleet('r2', ['c_1776_d-1'])
    const r = await run('pipeline', ['--instances', instances('r2', ['c__d-1']), '--key', 'r2'])
    expect(r.code).toBe(0)
    expect(r.mutating).toEqual([])
    const record = r.manifest.find((m) => m.phase === 'assemble')
    expect(record).toMatchObject({ status: 'built', registry: { copied: 0 } })
    // a base layer the final repository already holds (shared with r1's bases) is found by HEAD: present, not mounted
    expect(record!.registry!.mounted + record!.registry!.present).toBe(2)
    expect(await client.manifestExists(`${fx.registry.address}/fleet/eval-agent:r2-c_1776_d-1`)).toBe(true)
  })

  test("auto takes the registry for the field's Dockerfile (named --chown, # syntax=): says so, runs no docker command", async () => {
    await pushFleet('r7', ['m_1776_n-1', 'm_1776_n-2'])
    const field = path.join(ROOT, 'tests/fixtures/assemble/01-field-shape.Dockerfile')
    const r = await run('assemble', [
      '--instances',
      instances('r7', ['m__n-1', 'm__n-2']),
      '--key',
      'r7',
      '--assemble-dockerfile',
      field,
    ])
    if (r.code !== 0) console.log(r.stdout, r.stderr)
    expect(r.code).toBe(0)
    expect(r.mutating).toEqual([])
    expect(r.stdout).toContain(`assemble: ${field}: in the registry`)
    const records = r.manifest.filter((m) => m.phase === 'assemble')
    expect(records.map((m) => m.status)).toEqual(['built', 'built'])
    for (const m of records) expect(m.registry.base_bytes_read).toBeGreaterThan(0)
    const log = fs.readFileSync(path.join(r.out, 'logs/assemble/m_1776_n-1.log'), 'utf8')
    expect(log).toMatch(/registry: base read [\d.]+ \w?B in [\d.]+s/)
  })

  test('auto falls back to docker build when the Dockerfile needs a build, and says why once', async () => {
    const dockerfile = write(
      'Dockerfile.run',
      'ARG BASE_IMAGE\nARG BUILDER_IMAGE\nFROM ${BUILDER_IMAGE} AS builder\nFROM ${BASE_IMAGE}\nRUN echo hi\n',
    )
    await pushFleet('r3', ['e_1776_f-1', 'e_1776_f-2'])
    const r = await run('assemble', [
      '--instances',
      instances('r3', ['e__f-1', 'e__f-2']),
      '--key',
      'r3',
      '--assemble-dockerfile',
      dockerfile,
    ])
    expect(r.code).toBe(0)
    expect(r.stdout.split('\n').filter((l) => l.includes('docker build, forced by'))).toEqual([
      `assemble: ${dockerfile}: docker build, forced by line 5: RUN echo hi — RUN needs a docker build`,
    ])
    expect(r.mutating.filter((c) => c[0] === 'build').length).toBe(2)
    expect(r.summary.registry).toBeUndefined()
  })

  test('--mode registry with a Dockerfile that needs a build is refused with exit 2 before any docker command', async () => {
    const dockerfile = write(
      'Dockerfile.ctx',
      'ARG BASE_IMAGE\nARG BUILDER_IMAGE\nFROM ${BUILDER_IMAGE} AS builder\nFROM ${BASE_IMAGE}\nCOPY agent /opt/agent\n',
    )
    const r = await run('assemble', [
      '--instances',
      instances('r4', ['g__h-1']),
      '--key',
      'r4',
      '--assemble-dockerfile',
      dockerfile,
      '--mode',
      'registry',
    ])
    expect(r.code).toBe(2)
    expect(r.stderr).toContain('--mode registry')
    expect(r.stderr).toContain('from the build context')
    expect(r.mutating).toEqual([])
  })

  test('--dry-run in registry mode prints # registry: lines and writes nothing', async () => {
    const r = await run('assemble', [
      '--instances',
      instances('r5', ['i__j-1', 'i__j-2']),
      '--key',
      'r5',
      '--mode',
      'registry',
      '--dry-run',
    ])
    expect(r.code).toBe(0)
    expect(r.mutating).toEqual([])
    const lines = r.stdout.split('\n').filter((l) => l.startsWith('# registry: '))
    expect(lines.length).toBe(2) // one per instance
    expect(lines[0]).toContain(
      `${fx.registry.address}/fleet/eval-agent:r5-i_1776_j-1 ← ${fx.registry.address}/fleet/eval-base:r5-i_1776_j-1`,
    )
    expect(r.stdout.split('\n').filter((l) => l.startsWith('# registry (per instance): read the base'))).toHaveLength(1)
    expect(r.stdout.split('\n').every((l) => !l.trim() || l.startsWith('#') || l.startsWith('docker '))).toBe(true)
    expect(await client.manifestExists(`${fx.registry.address}/fleet/eval-agent:r5-i_1776_j-1`)).toBe(false)
  })

  test('a base missing from the registry fails its assembly as upstream_missing; the others are built', async () => {
    await pushFleet('r6', ['k_1776_l-1'])
    const r = await run('assemble', [
      '--instances',
      instances('r6', ['k__l-1', 'k__l-2']),
      '--key',
      'r6',
      '--mode',
      'registry',
    ])
    expect(r.code).toBe(1)
    const status = (id: string) => r.manifest.find((m) => m.phase === 'assemble' && m.id === id)
    expect(status('k__l-1')).toMatchObject({ status: 'built' })
    expect(status('k__l-2')).toMatchObject({ status: 'failed', error_class: 'upstream_missing' })
    expect(status('k__l-2').registry).toBeUndefined()
  })
})
