// Bun and Deno run every script the same: each --help, and a full --dry-run plan of a small fleet
// (against a recording fake docker and a real registry), print byte-identical output under both.
import { afterAll, beforeAll, describe, expect, test } from 'bun:test'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { $ } from 'zx'
import { type FakeDocker, fakeDocker } from './helpers/fake-docker.ts'
import { type RegistryServer, startRegistry } from './helpers/registry-server.ts'

const ROOT = path.resolve(import.meta.dir, '..')
export const SCRIPTS = fs.readdirSync(path.join(ROOT, 'scripts')).filter((f) => f.endsWith('.ts') && !f.startsWith('_'))
  .sort()
const RUNTIMES = { bun: [process.execPath], deno: [path.join(ROOT, 'node_modules/.bin/deno'), 'run', '-A'] }
let registry: RegistryServer
let fake: FakeDocker
let work: string

beforeAll(async () => {
  registry = await startRegistry()
  fake = fakeDocker({ buildx: true })
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'runtimes-test-'))
})
afterAll(async () => {
  await registry.stop()
  fake.cleanup()
  fs.rmSync(work, { recursive: true, force: true })
})

async function both(args: string[]) {
  const env = {
    ...process.env,
    ...fake.env,
    IMAGEFLEET_MODE: 'docker',
    CI: '',
    GITHUB_ACTIONS: '',
    NO_COLOR: '1',
    FORCE_COLOR: '0',
  }
  const [bun, deno] = await Promise.all(
    Object.values(RUNTIMES).map((rt) => $({ env, nothrow: true, quiet: true, cwd: ROOT })`${rt} ${args}`),
  )
  return { bun, deno }
}

describe('Bun and Deno print the same', () => {
  for (const script of SCRIPTS) {
    test(`${script} --help`, async () => {
      const { bun, deno } = await both([`scripts/${script}`, '--help'])
      expect(bun.exitCode).toBe(0)
      expect(bun.stdout).toContain('Usage: ')
      expect(deno.stdout).toBe(bun.stdout)
      expect(deno.exitCode).toBe(0)
    })
  }

  test('a full --dry-run plan of the pipeline', async () => {
    const instances = path.join(work, 'instances.txt')
    fs.writeFileSync(
      instances,
      ['django__django-1', 'django__django-2', 'sympy__sympy-3', '{"id": "x__y-4", "upstream": "reg.example/x:1"}']
        .join('\n') + '\n',
    )
    const { bun, deno } = await both([
      'scripts/pipeline.ts',
      '--instances',
      instances,
      '--registry',
      `${registry.address}/fleet`,
      '--context',
      'examples/synthetic-fleet/context',
      '--builder',
      'fleet',
      '--build-arg',
      'A=1 2',
      '--platform',
      'linux/amd64',
      '--network',
      'none',
      '--min-free',
      '0',
      '--out',
      path.join(work, 'out'),
      '--key',
      'k',
      '--dry-run',
    ])
    expect(bun.exitCode).toBe(0)
    expect(bun.stderr).toBe('')
    const commands = bun.stdout.split('\n').filter((l) => l.startsWith('docker '))
    expect(commands.filter((l) => l.startsWith('docker buildx build --push --provenance=false --builder fleet ')))
      .toHaveLength(5) // builder + 4 bases
    expect(commands.filter((l) => l.startsWith('docker build '))).toHaveLength(4) // the assemblies
    expect(deno.stdout).toBe(bun.stdout)
    expect(deno.stderr).toBe(bun.stderr)
  })
})
