// What the logic tests that run scripts share: the repository root, the synthetic build context, and a
// real registry server with a temp work directory for one test file (started in beforeAll, removed in afterAll).
import { afterAll, beforeAll } from 'bun:test'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { type RegistryServer, startRegistry } from './registry-server.ts'

export const ROOT = path.resolve(import.meta.dir, '../..')
export const CONTEXT = path.join(ROOT, 'examples/synthetic-fleet/context')

export type Fixture = { registry: RegistryServer; work: string }

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
