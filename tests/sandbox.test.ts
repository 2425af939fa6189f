import { afterAll, beforeAll, expect, test } from 'bun:test'
import { $ } from 'zx'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { sampleDisk } from '../lib/disk/statfs.ts'
import { type Sandbox, sandboxDown, sandboxState, sandboxUp } from '../scripts/_sandbox-engine.ts'
import { describeIntegration } from './helpers/integration.ts'
import { alive } from '../lib/host/processes.ts'
import { layout, readState } from '../lib/sandbox/state.ts'
import { jsonLines } from './helpers/json-lines.ts'
import { writeRunStepsFleet } from './helpers/run-steps-fleet.ts'

const GiB = 2 ** 30
const repoRoot = path.resolve(import.meta.dir, '..')
const mountsUnder = (dir: string) =>
  fs.readFileSync('/proc/self/mounts', 'utf8').split('\n').filter((l) => l.split(' ')[1]?.startsWith(dir))

describeIntegration('sandbox', () => {
  let tmp: string, dir: string, sandbox: Sandbox

  beforeAll(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'imagefleet-sandbox-test-'))
    dir = path.join(tmp, 'sb')
    const t = Date.now()
    sandbox = await sandboxUp({ dir, disk: GiB, baseEnv: process.env })
    console.log(`sandbox up took ${((Date.now() - t) / 1000).toFixed(1)}s`)
  })
  afterAll(async () => {
    if (!tmp) return
    await sandboxDown({ dir })
    fs.rmSync(tmp, { recursive: true, force: true })
  })

  test('up starts a daemon that answers docker info through the sandbox env', async () => {
    const info = await $({ quiet: true, env: sandbox.env })`docker info --format {{.DockerRootDir}}`
    expect(info.stdout.trim()).toBe(sandbox.dataRoot)
    expect(sandbox.env.DOCKER_HOST).toBe(`unix://${dir}/docker.sock`)
    expect(sandbox.env.DOCKER_BUILDKIT).toBe('1')
    expect(sandbox.env.PATH.startsWith(`${dir}/bin:`)).toBe(true)
  })

  test('the data root sits on a loop-mounted disk of the requested size', () => {
    const disk = sampleDisk(sandbox.dataRoot)
    expect(disk.total).toBeGreaterThan(0.9 * GiB)
    expect(disk.total).toBeLessThanOrEqual(GiB)
    expect(sandbox.diskBytes).toBe(GiB)
    expect(mountsUnder(`${dir}/mnt`).some((l) => l.startsWith('/dev/loop'))).toBe(true)
  })

  test('the registry answers GET /v2/ with 200', async () => {
    expect(sandbox.registry).toMatch(/^127\.0\.0\.1:\d+$/)
    expect((await fetch(`http://${sandbox.registry}/v2/`)).status).toBe(200)
  })

  test('the seed image pulls from the registry and runs busybox without a network', async () => {
    expect(sandbox.seedImage).toBe(`${sandbox.registry}/imagefleet/busybox:latest`)
    const run = await $({
      quiet: true,
      env: sandbox.env,
    })`docker run --rm --network none ${sandbox.seedImage} /bin/sh -c ${'echo hi'}`
    expect(run.stdout.trim()).toBe('hi')
    await $({ quiet: true, env: sandbox.env })`docker rmi ${sandbox.seedImage}`
  })

  test('up again reports already up and returns the same sandbox: the same dockerd and registry, nothing restarted', async () => {
    const before = readState(layout(dir))!
    const again = await sandboxUp({ dir, disk: GiB, baseEnv: process.env })
    expect(again.registry).toBe(sandbox.registry)
    const after = readState(layout(dir))!
    expect([after.dockerdPid, after.registryPid, after.dataRoot]).toEqual([
      before.dockerdPid,
      before.registryPid,
      sandbox.dataRoot,
    ])
    expect(alive(before.dockerdPid!) && alive(before.registryPid!)).toBe(true)
  })

  test('the command line prints the env under Bun and the status under Deno', async () => {
    const bun = await $({ quiet: true, cwd: repoRoot })`${process.execPath} scripts/sandbox.ts env --json --dir ${dir}`
    expect(JSON.parse(bun.stdout).IMAGEFLEET_SANDBOX_REGISTRY).toBe(sandbox.registry)
    const deno = await $({
      quiet: true,
      cwd: repoRoot,
    })`node_modules/.bin/deno run -A scripts/sandbox.ts status --dir ${dir}`
    expect(deno.stdout).toContain(`registry: ${sandbox.registry}`)
  })

  test("preflight's RUN check on the real engine: ✓ with the sandbox's exports, ✗ without IMAGEFLEET_NETWORK, naming the fix", async () => {
    const preflight = (env: Record<string, string>) =>
      $({
        env,
        cwd: repoRoot,
        quiet: true,
        nothrow: true,
      })`${process.execPath} scripts/preflight.ts --min-free 0 --out ${path.join(tmp, 'preflight')}`
    const ok = await preflight(sandbox.env)
    expect(ok.exitCode).toBe(0)
    expect(ok.stdout).toContain('✓ RUN steps: a RUN step starts (network none)')
    const { IMAGEFLEET_NETWORK: _, ...withoutNetwork } = sandbox.env
    const bad = await preflight(withoutNetwork)
    expect(bad.exitCode).toBe(3)
    expect(bad.stdout).toContain('✗ RUN steps: a RUN step cannot start (network default)')
    expect(bad.stdout).toContain('network bridge not found')
    expect(bad.stdout).toContain('pass --network none')
  })

  test('Dockerfiles with RUN steps build through the pipeline with nothing but the sandbox exports (no --network)', async () => {
    const { context, instances } = writeRunStepsFleet(path.join(tmp, 'run-steps'), {
      seedImage: sandbox.seedImage,
      ids: ['a__run-1', 'a__run-2'],
      baseDefault: 'scratch',
    })
    const out = path.join(tmp, 'run-steps-out')
    const r = await $({
      env: sandbox.env,
      cwd: repoRoot,
      quiet: true,
      nothrow: true,
    })`${process.execPath} scripts/pipeline.ts --instances ${instances} --registry ${sandbox.registry}/runsteps --context ${context} --min-free 0 --key rs --out ${out}`
    expect(r.exitCode).toBe(0)
    const records = jsonLines(path.join(out, 'manifest.jsonl'))
    expect(records.map((m) => `${m.phase} ${m.id} ${m.status}`).sort()).toEqual([
      'assemble a__run-1 built',
      'assemble a__run-2 built',
      'base a__run-1 built',
      'base a__run-2 built',
      'builder builder built',
    ])
    const image = `${sandbox.registry}/runsteps/eval-agent:rs-a_1776_run-2`
    const cat = await $({
      quiet: true,
      env: sandbox.env,
    })`docker run --rm --network none ${image} cat /etc/base /opt/agent/VERSION`
    expect(cat.stdout).toBe('base\nagent\n')
    await $({ quiet: true, env: sandbox.env })`docker rmi ${image}`
  })

  test('down stops every process, unmounts, detaches the loop device and removes the directory', async () => {
    const state = JSON.parse(fs.readFileSync(path.join(dir, 'state.json'), 'utf8'))
    const t = Date.now()
    await sandboxDown({ dir })
    console.log(`sandbox down took ${((Date.now() - t) / 1000).toFixed(1)}s`)
    expect(fs.existsSync(dir)).toBe(false)
    expect(mountsUnder(dir)).toEqual([])
    expect(alive(state.dockerdPid)).toBe(false)
    expect(alive(state.registryPid)).toBe(false)
    expect((await $({ quiet: true })`losetup -a`).stdout).not.toContain(dir)
    expect(sandboxState(dir)).toBeUndefined()
    await sandboxDown({ dir }) // a second down is a no-op
  })
})
