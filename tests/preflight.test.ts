// scripts/preflight.ts against a recording fake docker: what it asks the engine, and what it concludes. The fake
// answers the RUN check the way runc and BuildKit do; sandbox.test.ts runs the same check on the real engine.
import { describe, expect, test } from 'bun:test'
import fs from 'node:fs'
import path from 'node:path'
import { $ } from 'zx'
import { CONTEXT, registryFixture, ROOT } from './helpers/fixture.ts'
import { fakeDocker } from './helpers/fake-docker.ts'

const fx = registryFixture('preflight-test')

async function preflight(args: string[], fake = fakeDocker()) {
  const env = { ...process.env, ...fake.env, CI: '', GITHUB_ACTIONS: '' }
  const out = path.join(fx.work, `out-${Math.random().toString(36).slice(2)}`)
  const r = await $({
    env,
    nothrow: true,
    quiet: true,
    cwd: ROOT,
  })`${process.execPath} scripts/preflight.ts --min-free 0 --out ${out} ${args}`
  const calls = fake.calls()
  fake.cleanup()
  return { code: r.exitCode, text: r.stdout + r.stderr, calls }
}

describe('the RUN check', () => {
  test('builds an empty image whose RUN stops at exec, with the --network the builds use; passes when exec was reached', async () => {
    const r = await preflight(['--network', 'none'])
    expect(r.code).toBe(0)
    expect(r.text).toContain('✓ RUN steps: a RUN step starts (network none)')
    const probe = r.calls.find((c) => c[0] === 'build')!
    expect(probe.slice(0, 4)).toEqual(['build', '--progress=plain', '--network', 'none'])
    expect(path.basename(probe[4])).toStartWith('imagefleet-run-check-')
  })

  test('IMAGEFLEET_NETWORK (what the sandbox exports) is the network the check builds with', async () => {
    const fake = fakeDocker()
    fake.env.IMAGEFLEET_NETWORK = 'none'
    const r = await preflight([], fake)
    expect(r.calls.find((c) => c[0] === 'build')!.slice(2, 4)).toEqual(['--network', 'none'])
  })

  test('a daemon without the network fails preflight (exit 3), naming --network none as the fix', async () => {
    const fake = fakeDocker({
      fail: {
        match: 'imagefleet-run-check',
        stderr: 'executor failed running [/imagefleet-run-check]: network bridge not found',
      },
    })
    const r = await preflight([], fake)
    expect(r.code).toBe(3)
    expect(r.text).toContain(
      '✗ RUN steps: a RUN step cannot start (network default): executor failed running [/imagefleet-run-check]: network bridge not found',
    )
    expect(r.text).toContain('pass --network none')
  })

  test('with --builder NAME the check builds on that builder', async () => {
    const r = await preflight(['--builder', 'fleet'], fakeDocker({ buildx: true }))
    expect(r.calls.find((c) => c.includes('build') && c[0] === 'buildx')!.slice(0, 5)).toEqual([
      'buildx',
      'build',
      '--builder',
      'fleet',
      '--progress=plain',
    ])
  })
})

test("prune's preflight skips the RUN check: it builds nothing", async () => {
  const fake = fakeDocker()
  const env = { ...process.env, ...fake.env, CI: '', GITHUB_ACTIONS: '' }
  const r = await $({
    env,
    nothrow: true,
    quiet: true,
    cwd: ROOT,
  })`${process.execPath} scripts/prune.ts --tier stale --dry-run`
  expect(r.exitCode).toBe(0)
  expect(fake.calls().some((c) => c.join(' ').includes('imagefleet-run-check'))).toBe(false)
  expect(fake.calls().some((c) => c.join(' ') === 'version --format {{json .}}')).toBe(true) // its preflight ran
  fake.cleanup()
})

test('assemble --mode registry skips the RUN check too: it builds nothing and writes nothing on the data root', async () => {
  const fake = fakeDocker()
  const env = { ...process.env, ...fake.env, CI: '', GITHUB_ACTIONS: '' }
  const instances = path.join(fx.work, 'one.txt')
  fs.writeFileSync(instances, 'a__b-1\n')
  const run = (mode: string) =>
    $({
      env,
      nothrow: true,
      quiet: true,
      cwd: ROOT,
    })`${process.execPath} scripts/assemble.ts --mode ${mode} --dry-run --instances ${instances} --registry ${fx.registry.address}/fleet --context ${CONTEXT} --min-free 0 --out ${
      path.join(fx.work, `assemble-${mode}`)
    }`
  const probes = () => fake.calls().filter((c) => c.join(' ').includes('imagefleet-run-check')).length
  await run('registry')
  expect(probes()).toBe(0)
  await run('docker')
  expect(probes()).toBe(1)
  fake.cleanup()
})

describe('--registry', () => {
  test('capitals or a URL scheme are refused with exit 2 before any docker command, one line per problem', async () => {
    const r = await preflight(['--registry', 'https://ghcr.io/MyOrg/Fleet'])
    expect(r.code).toBe(2)
    expect(r.calls).toEqual([])
    const lines = r.text.split('\n').filter((l) => l.includes('--registry https://ghcr.io/MyOrg/Fleet:'))
    expect(lines).toHaveLength(2)
    expect(lines[0]).toContain("'https://' is a URL scheme")
    expect(lines[1]).toContain("repository names are lower-case: 'MyOrg/Fleet' → use --registry ghcr.io/myorg/fleet")
  })
})
