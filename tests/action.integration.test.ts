// The two GitHub Actions run the way the runner runs them (tests/helpers/action-runner.ts) from a fresh copy of the
// repository as the action's directory — npm ci installs Bun there, nothing on PATH — against the real sandbox engine
// and registry: the root action builds a small fleet, its outputs are what the manifest says, a rerun installs and
// builds nothing; free-disk runs under --root in a temp dir (it refuses host-wide targets there), in the foreground
// and in the background, and its outputs are what it removed and where its status file is.
import { afterAll, beforeAll, expect, test } from 'bun:test'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { $ } from 'zx'
import { type Fleet, generateFleet } from '../examples/synthetic-fleet/generate.ts'
import { type Sandbox, sandboxDown, sandboxUp } from '../scripts/_sandbox-engine.ts'
import { type Action, type ActionRun, loadAction, runAction } from './helpers/action-runner.ts'
import { ROOT } from './helpers/fixture.ts'
import { describeIntegration } from './helpers/integration.ts'
import { jsonLines } from './helpers/json-lines.ts'

const GiB = 2 ** 30

describeIntegration('the GitHub Actions, run as the runner runs them', () => {
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'action-it-'))
  const actionPath = path.join(work, 'imagefleet') // the action's checkout: what `uses:` fetches
  const workspace = path.join(work, 'workspace') // the job's checkout: instances and Dockerfiles
  let sb: Sandbox
  let fleet: Fleet
  let calls = 0

  beforeAll(async () => {
    const files = (await $({ cwd: ROOT, quiet: true })`git ls-files -co --exclude-standard`).stdout.trim().split('\n')
    for (const f of files.filter((f) => fs.existsSync(path.join(ROOT, f)))) {
      fs.mkdirSync(path.dirname(path.join(actionPath, f)), { recursive: true })
      fs.copyFileSync(path.join(ROOT, f), path.join(actionPath, f))
    }
    fs.mkdirSync(path.join(workspace, 'docker'), { recursive: true })
    for (const f of ['Dockerfile', 'Dockerfile.assemble', 'imagefleet-base']) {
      fs.copyFileSync(path.join(ROOT, 'examples/synthetic-fleet/context', f), path.join(workspace, 'docker', f))
    }
    // a disk with room for the fleet: these tests are about the actions' wiring, not disk pressure
    sb = await sandboxUp({ dir: path.join(work, 'sandbox'), disk: 2 * GiB, baseEnv: process.env })
    fleet = await generateFleet({
      registry: sb.registry,
      groups: 2,
      perGroup: 2,
      envSize: 30e6,
      instanceSize: 10e6,
      out: path.join(workspace, 'instances.txt'),
    })
  }, 600_000)
  afterAll(async () => {
    if (sb) await sandboxDown({ dir: sb.dir })
    fs.rmSync(work, { recursive: true, force: true })
  })

  /** The job's environment on a runner: the sandbox's docker, CI=true, and a PATH without node_modules/.bin. */
  const job = () => ({
    ...sb.env,
    PATH: (sb.env.PATH ?? '').split(':').filter((d) => d && !d.includes('node_modules')).join(':'),
    CI: 'true',
    GITHUB_ACTIONS: 'true',
    GITHUB_REPOSITORY: 'MyOrg/Fleet',
  })
  const run = (action: Action, inputs: Record<string, string>, dir = actionPath): Promise<ActionRun> => {
    const files = path.join(work, `runner-${++calls}`)
    fs.mkdirSync(files)
    return runAction(action, { inputs, actionPath: dir, workspace, env: job(), files })
  }
  const manifestCounts = (file: string) => {
    const records = jsonLines(file)
    const count = (status: string) => String(records.filter((r) => r.status === status).length)
    return { records, counts: { built: count('built'), skipped: count('skipped'), failed: count('failed') } }
  }

  test('root action: installs, builds the fleet on the sandbox, outputs what the manifest says', async () => {
    expect((await $({ env: job(), nothrow: true, quiet: true })`bash -c ${'command -v bun'}`).exitCode).toBe(1)
    const inputs = {
      instances: 'instances.txt',
      registry: `${sb.registry}/MyOrg/Fleet`, // capitals, as github.repository has them
      upstream: fleet.upstream,
      context: 'docker',
      'build-arg': `SEED_IMAGE=${sb.seedImage}\n`,
      network: 'none',
      concurrency: '2',
      'min-free': '100MB',
      reserve: '100MB',
      out: 'builds/run1',
      args: '--heartbeat 0',
    }
    const r = await run(loadAction(path.join(actionPath, 'action.yml')), inputs)
    if (r.exitCode !== 0) console.log(r.log.split('\n').slice(-80).join('\n'))
    expect(r.exitCode).toBe(0)
    expect(r.log).toMatch(/added \d+ packages/) // npm ci, in the action's directory
    expect(fs.existsSync(path.join(actionPath, 'node_modules/.bin/bun'))).toBe(true)
    expect(r.outputs.manifest).toBe(path.join(workspace, 'builds/run1/manifest.jsonl'))
    const { records, counts } = manifestCounts(r.outputs.manifest)
    expect({ built: r.outputs.built, skipped: r.outputs.skipped, failed: r.outputs.failed }).toEqual(counts)
    expect(r.outputs.built).toBe(String(1 + 2 * fleet.instances)) // the builder, then a base and a final image each
    expect(r.outputs.failed).toBe('0')
    for (const rec of records) expect(rec.tag).toStartWith(`${sb.registry}/myorg/fleet/`) // lower-cased
    for (const rec of records.filter((x) => x.phase !== 'builder')) {
      expect(rec.build_seconds + rec.push_seconds).toBeLessThanOrEqual(rec.seconds + 0.01)
      expect(rec.bytes_pushed).toBeGreaterThanOrEqual(0)
      expect(rec.budget_wait_seconds).toBeGreaterThanOrEqual(0)
    }
    expect(r.summary).toContain(`## imagefleet: ${fleet.instances} instances`)
    expect(r.summary).toContain('title "Images built per minute')
  })

  test('root action, again: dependencies already there, nothing built, the outputs say skipped', async () => {
    const r = await run(loadAction(path.join(actionPath, 'action.yml')), {
      instances: 'instances.txt',
      registry: `${sb.registry}/MyOrg/Fleet`,
      upstream: fleet.upstream,
      context: 'docker',
      'build-arg': `SEED_IMAGE=${sb.seedImage}`,
      out: 'builds/run2',
      'min-free': '100MB',
    })
    expect(r.exitCode).toBe(0)
    expect(r.log).toContain('dependencies already installed')
    const { counts } = manifestCounts(r.outputs.manifest)
    expect({ built: r.outputs.built, skipped: r.outputs.skipped, failed: r.outputs.failed }).toEqual(counts)
    expect([r.outputs.built, r.outputs.skipped]).toEqual(['0', String(2 * fleet.instances)])
  })

  test('free-disk action under --root: removes what is there but excluded, outputs the bytes it removed', async () => {
    const root = fs.mkdtempSync(path.join(work, 'root-'))
    const put = (dir: string, mb: number) => {
      fs.mkdirSync(path.join(root, dir), { recursive: true })
      fs.writeFileSync(path.join(root, dir, 'blob'), new Uint8Array(mb * 1e6).fill(7))
    }
    put('usr/local/lib/android/sdk', 3)
    put('usr/share/swift/bin', 2)
    put('usr/share/dotnet/sdk', 1)
    const du = await $({ quiet: true })`du -sx --block-size=1 ${path.join(root, 'usr/local/lib/android')} ${
      path.join(root, 'usr/share/swift')
    }`
    const expected = du.stdout.trim().split('\n').reduce((n, l) => n + Number.parseInt(l, 10), 0)
    const action = loadAction(path.join(actionPath, 'free-disk/action.yml'))
    const r = await run(
      action,
      { background: 'false', exclude: 'dotnet', args: `--root ${root}` },
      path.join(actionPath, 'free-disk'),
    )
    if (r.exitCode !== 0) console.log(r.log)
    expect(r.exitCode).toBe(0)
    expect(r.outputs).toMatchObject({ freed: String(expected), pending: '0', status: '' })
    expect(Number(r.outputs.free)).toBeGreaterThan(0)
    expect(fs.existsSync(path.join(root, 'usr/local/lib/android'))).toBe(false)
    expect(fs.existsSync(path.join(root, 'usr/share/swift'))).toBe(false)
    expect(fs.existsSync(path.join(root, 'usr/share/dotnet/sdk/blob'))).toBe(true)
    expect(r.summary).toContain('### free-disk')
  })

  test('free-disk action in the background: returns at once with the status file; the deleter finishes', async () => {
    const root = fs.mkdtempSync(path.join(work, 'root-'))
    fs.mkdirSync(path.join(root, 'usr/local/lib/android/sdk'), { recursive: true })
    fs.writeFileSync(path.join(root, 'usr/local/lib/android/sdk/blob'), new Uint8Array(2e6))
    const status = path.join(work, 'free-disk-status.json')
    const action = loadAction(path.join(actionPath, 'free-disk/action.yml'))
    const r = await run(action, { status, args: `--root ${root}` }, path.join(actionPath, 'free-disk'))
    expect(r.exitCode).toBe(0)
    expect(r.outputs.status).toBe(status)
    expect(r.outputs.freed).toBe('0') // moved aside, not yet deleted
    expect(Number(r.outputs.pending)).toBe(12e9) // the catalogue's typical Android SDK until the deleter measures it
    expect(fs.existsSync(path.join(root, 'usr/local/lib/android'))).toBe(false) // renamed aside at once
    let state = ''
    for (let i = 0; i < 600 && !['complete', 'failed'].includes(state); i++) {
      await new Promise((resolve) => setTimeout(resolve, 100))
      state = fs.existsSync(status) ? JSON.parse(fs.readFileSync(status, 'utf8')).state : ''
    }
    expect(state).toBe('complete')
    expect(fs.readdirSync(path.join(root, 'usr/local/lib')).filter((n) => n.startsWith('.imagefleet-trash'))).toEqual(
      [],
    )
  })
})
