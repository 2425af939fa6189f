// What the logic tests that run scripts share: the repository root, the synthetic build context, and a
// real registry server with a temp work directory for one test file (started in beforeAll, removed in afterAll).
import { afterAll, beforeAll } from 'bun:test'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { pushTestImage, type RegistryServer, startRegistry } from './registry-server.ts'
import { parseInstances } from '../../lib/fleet/instances.ts'
import { RegistryClient } from '../../lib/registry/client.ts'
import { file as fileEntry } from './layer-files.ts'

export const ROOT = path.resolve(import.meta.dir, '../..')
export const CONTEXT = path.join(ROOT, 'examples/synthetic-fleet/context')

export type Fixture = { registry: RegistryServer; work: string }

/** The tests' --upstream: where instancesFile pushes each instance's upstream image. */
export const upstreamTemplate = (fx: Fixture) => `${fx.registry.address}/up/{docker_id}:latest`

/** The flags a script run against the fixture shares: its registry, that upstream, the example context, no floor. */
export const fixtureFlags = (fx: Fixture) => [
  '--registry',
  `${fx.registry.address}/fleet`,
  '--upstream',
  upstreamTemplate(fx),
  '--context',
  CONTEXT,
  '--min-free',
  '0',
]

/** Registers beforeAll/afterAll for the calling file; the fields are set once beforeAll has run. */
export function registryFixture(prefix: string): Fixture {
  const fx = {} as Fixture
  beforeAll(async () => {
    fx.registry = await startRegistry()
    fx.work = fs.mkdtempSync(path.join(os.tmpdir(), `${prefix}-`))
  })
  afterAll(async () => {
    await fx.registry?.stop()
    if (fx.work) fs.rmSync(fx.work, { recursive: true, force: true })
  })
  return fx
}

/**
 * Writes an instances file in the fixture's work dir and pushes a small upstream image for each instance the file
 * names validly (a shared "environment" layer and one of its own) where the tests' --upstream points:
 * `REGISTRY/up/{docker_id}:latest`. The pipeline's plan reads every upstream manifest and refuses missing ones,
 * so a logic test with a fake docker still needs them in the real registry.
 */
export async function instancesFile(fx: Fixture, lines: string[]): Promise<string> {
  const file = path.join(fx.work, `instances-${Math.random().toString(36).slice(2)}.txt`)
  fs.writeFileSync(file, lines.join('\n') + '\n')
  const { instances } = parseInstances(lines.join('\n'), upstreamTemplate(fx))
  const client = new RegistryClient()
  const env = [fileEntry('env/python', 'env')]
  for (const inst of instances.filter((i) => i.upstream.startsWith(`${fx.registry.address}/up/`))) {
    const own = [fileEntry('instance/id', inst.id)]
    await pushTestImage(client, inst.upstream, { layers: [env, own] })
  }
  return file
}
