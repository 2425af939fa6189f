// Faults injected under a running pipeline on the real sandbox (dockerd on a loop disk + a registry):
// registry down 15 s and for good, dockerd killed and restarted, SIGINT, a hung prune, a disk too small
// for one image, hostile input. Every run ends with nothing lost: a rerun finishes N/N, rebuilding nothing
// that was done. One sandbox, a 4-image fleet of a few MB each; each test has its own --key (own tags).
import { afterAll, beforeAll, expect, test } from 'bun:test'
import cp from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { $ } from 'zx'
import { type Fleet, generateFleet } from '../examples/synthetic-fleet/generate.ts'
import { sampleDisk } from '../lib/disk/statfs.ts'
import { type Sandbox, sandboxDown, sandboxUp } from '../scripts/_sandbox-engine.ts'
import { killService, restartService } from './helpers/sandbox-faults.ts'
import { describeIntegration } from './helpers/integration.ts'

const ROOT = path.resolve(import.meta.dir, '..')
const MiB = 2 ** 20
const DOCKER_MODE = ['--mode', 'docker']
// A docker that records every argv, hangs on what WRAP_HANG matches, holds what WRAP_GATE matches while the file
// WRAP_GATE_FILE exists (a fault goes in at a known moment), and otherwise is the sandbox's docker.
const WRAPPER = String.raw`#!/bin/bash
{ printf '%s\0' "$@"; printf '\x1e'; } >> "$WRAP_LOG"
if [ -n "$WRAP_HANG" ] && [[ "$*" =~ $WRAP_HANG ]]; then sleep 3600; fi
if [ -n "$WRAP_GATE" ] && [[ "$*" =~ $WRAP_GATE ]]; then while [ -e "$WRAP_GATE_FILE" ]; do sleep 0.1; done; fi
exec "$WRAP_REAL" "$@"
`

type Record = { phase: string; id: string; status: string; error_class?: string; reason: string }
type Result = { code: number | null; stdout: string; stderr: string; secs: number }
type StartOptions = { hang?: string; file?: string; gate?: { match: string; file: string } }

describeIntegration('faults on the real sandbox', () => {
  let tmp: string, sb: Sandbox, fleet: Fleet, instances: string, wrapDir: string
  const injected: string[] = []

  beforeAll(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'imagefleet-faults-'))
    sb = await sandboxUp({ dir: path.join(tmp, 'sb'), disk: 1024 * MiB, baseEnv: process.env })
    instances = path.join(tmp, 'fleet', 'instances.txt')
    fleet = await generateFleet({
      registry: sb.registry,
      groups: 2,
      perGroup: 2,
      envSize: 3e6,
      instanceSize: 2e6,
      out: instances,
    })
    wrapDir = path.join(tmp, 'wrap')
    fs.mkdirSync(wrapDir)
    fs.writeFileSync(path.join(wrapDir, 'docker'), WRAPPER, { mode: 0o755 })
  })
  afterAll(async () => {
    if (!tmp) return
    await sandboxDown({ dir: path.join(tmp, 'sb') })
    fs.rmSync(tmp, { recursive: true, force: true })
    console.log(`faults injected: ${injected.length} (${injected.join('; ')})`)
  })

  const outOf = (key: string) => path.join(tmp, `out-${key}`)
  const wrapLog = (key: string) => path.join(tmp, `calls-${key}.log`)

  /** Starts the pipeline (no shell in between, so a signal reaches it); `until` resolves when the fault may be injected. */
  function start(key: string, args: string[], o: StartOptions = {}) {
    fs.writeFileSync(wrapLog(key), '', { flag: 'a' })
    const env = {
      ...sb.env,
      PATH: `${wrapDir}:${sb.env.PATH}`,
      WRAP_LOG: wrapLog(key),
      WRAP_REAL: path.join(sb.dir, 'bin', 'docker'),
      WRAP_HANG: o.hang ?? '',
      WRAP_GATE: o.gate?.match ?? '',
      WRAP_GATE_FILE: o.gate?.file ?? '',
      CI: '',
      GITHUB_ACTIONS: '',
    }
    const argv = [
      'scripts/pipeline.ts',
      '--instances',
      o.file ?? instances,
      '--upstream',
      fleet.upstream,
      '--registry',
      `${sb.registry}/fleet`,
      '--context',
      'examples/synthetic-fleet/context',
      '--build-arg',
      `SEED_IMAGE=${sb.seedImage}`,
      '--network',
      'none',
      '--min-free',
      '20MB',
      '--reserve',
      '0',
      '--expect-growth',
      '10MB',
      '--key',
      key,
      '--out',
      outOf(key),
      ...DOCKER_MODE,
      ...args,
    ]
    const t0 = Date.now()
    const child = cp.spawn(process.execPath, argv, { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = '', stderr = ''
    child.stdout.on('data', (d) => {
      stdout += d
    })
    child.stderr.on('data', (d) => {
      stderr += d
    })
    const done = new Promise<Result>((resolve) =>
      child.once('exit', (code) => resolve({ code, stdout, stderr, secs: (Date.now() - t0) / 1000 }))
    )
    return { child, done }
  }
  const runToEnd = async (key: string, args: string[], o: StartOptions = {}) => {
    const r = await start(key, args, o).done
    if (r.code !== 0) console.log(`${key}: exit ${r.code}\n${r.stdout.slice(-3000)}\n${r.stderr.slice(-2000)}`)
    return r
  }
  const records = (key: string): Record[] => {
    const file = path.join(outOf(key), 'manifest.jsonl')
    return fs.existsSync(file)
      ? fs.readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l))
      : []
  }
  const built = (recs: Record[]) => new Set(recs.filter((r) => r.status === 'built').map((r) => `${r.phase}:${r.id}`))
  const calls = (key: string) =>
    fs.readFileSync(wrapLog(key), 'utf8').split('\x1e').filter(Boolean).map((c) => c.split('\0').slice(0, -1))
  async function until(what: () => boolean, ms = 120_000) {
    const deadline = Date.now() + ms
    while (!what()) {
      if (Date.now() > deadline) throw new Error('timed out waiting for the moment to inject the fault')
      await Bun.sleep(100)
    }
  }
  /** Every final image of the fleet is in the registry. */
  async function finals(key: string): Promise<number> {
    let n = 0
    for (const id of fleet.ids) {
      const tag = `${key}-${id.toLowerCase().replace(/__/g, '_1776_')}`
      const head = await fetch(`http://${sb.registry}/v2/fleet/eval-agent/manifests/${tag}`, {
        method: 'HEAD',
        headers: {
          Accept: 'application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json',
        },
      })
      if (head.status === 200) n++
    }
    return n
  }

  test('1. registry down for 15 s in the middle of pushes: all N images end built', async () => {
    const run = start('f1', ['--retries', '6', '--backoff', '1s', '--concurrency', '2'])
    await until(() => calls('f1').some((c) => c[0] === 'push' && c[1].includes('eval-base')))
    await killService(sb.dir, 'registry')
    injected.push('registry down 15 s')
    await Bun.sleep(15_000)
    await restartService(sb.dir, 'registry', process.env)
    const r = await run.done
    expect(r.code).toBe(0)
    expect(await finals('f1')).toBe(fleet.ids.length)
    console.log(`1: ${r.secs.toFixed(1)}s, ${records('f1').filter((x) => x.status === 'built').length} built`)
  })

  test('2. registry down for good: failures are class network, exit 1; registry back, rerun → N/N, nothing rebuilt', async () => {
    const run = start('f2', ['--retries', '2', '--backoff', '500ms', '--concurrency', '1'])
    await until(() => records('f2').some((x) => x.phase === 'assemble' && x.status === 'built'))
    await killService(sb.dir, 'registry')
    injected.push('registry down for good')
    const r = await run.done
    await restartService(sb.dir, 'registry', process.env)
    expect(r.code).toBe(1)
    const first = records('f2')
    const failed = first.filter((x) => x.status === 'failed')
    expect(failed.length).toBeGreaterThan(0)
    for (const f of failed) expect(f.error_class).toBe('network')
    const rerun = await runToEnd('f2', [])
    expect(rerun.code).toBe(0)
    expect(await finals('f2')).toBe(fleet.ids.length)
    const again = built(records('f2').slice(first.length))
    for (const k of built(first)) expect(again.has(k)).toBe(false)
    console.log(`2: ${failed.length} failed (network), rerun built ${again.size} in ${rerun.secs.toFixed(1)}s`)
  })

  test('3. dockerd killed under a push, back a moment later: the push fails as network, is retried, and the run ends N/N', async () => {
    const gate = { match: '^push \\S*eval-base', file: path.join(tmp, 'gate-f3') }
    fs.writeFileSync(gate.file, '')
    const run = start('f3', ['--retries', '5', '--backoff', '2s', '--concurrency', '1'], { gate })
    const basePush = (c: string[]) => c[0] === 'push' && c[1].includes('/eval-base:')
    await until(() => calls('f3').some(basePush)) // held at the gate
    await killService(sb.dir, 'dockerd')
    injected.push('dockerd killed')
    fs.rmSync(gate.file) // the held push now meets no daemon
    const dockerId = calls('f3').find(basePush)![1].split(':f3-')[1]
    const log = path.join(outOf('f3'), 'logs', 'base', `${dockerId}.log`)
    await until(() =>
      fs.existsSync(log) && fs.readFileSync(log, 'utf8').includes('Cannot connect to the Docker daemon')
    )
    await restartService(sb.dir, 'dockerd', process.env)
    const r = await run.done
    expect(r.code).toBe(0)
    expect(fs.readFileSync(log, 'utf8')).toContain('# attempt 1 failed (network); retrying in 2s')
    const id = fleet.ids.find((i) => i.toLowerCase().replace(/__/g, '_1776_') === dockerId)
    expect(records('f3').filter((x) => x.phase === 'base' && x.id === id)).toEqual([
      expect.objectContaining({ status: 'built', reason: expect.stringMatching(/^built after [2-5] attempts$/) }),
    ])
    expect(records('f3').filter((x) => x.status !== 'built')).toEqual([])
    expect(await finals('f3')).toBe(fleet.ids.length)
  })

  test('4. SIGINT mid-run: exit 130, manifest complete and valid; rerun → N/N building only what was missing', async () => {
    const run = start('f4', ['--concurrency', '2', '--grace', '3s'])
    await until(() => records('f4').some((x) => x.phase === 'base' && x.status === 'built'))
    run.child.kill('SIGINT')
    injected.push('SIGINT')
    const r = await run.done
    expect(r.code as number).toBe(130)
    const text = fs.readFileSync(path.join(outOf('f4'), 'manifest.jsonl'), 'utf8')
    for (const line of text.split('\n').filter(Boolean)) expect(() => JSON.parse(line)).not.toThrow()
    const first = records('f4')
    expect(new Set(first.filter((x) => x.phase === 'assemble').map((x) => x.id))).toEqual(new Set(fleet.ids))
    expect(fs.existsSync(path.join(outOf('f4'), 'summary.json'))).toBe(true)
    const rerun = await runToEnd('f4', [])
    expect(rerun.code).toBe(0)
    expect(await finals('f4')).toBe(fleet.ids.length)
    const again = built(records('f4').slice(first.length))
    for (const k of built(first)) expect(again.has(k)).toBe(false)
    console.log(
      `4: stopped ${r.secs.toFixed(1)}s after start with ${built(first).size} built; rerun built ${again.size}`,
    )
  })

  test('5. a prune that hangs is killed at its timeout and the run goes on', async () => {
    const r = await runToEnd('f5', ['--cleanup', 'per-image', '--prune-timeout', '2s', '--concurrency', '2'], {
      hang: '^system prune',
    })
    injected.push('hung prune')
    expect(r.code).toBe(0)
    expect(r.stderr).toContain('docker system prune -f timed out after 2.0s and was killed')
    expect(await finals('f5')).toBe(fleet.ids.length)
  })

  test('6. a disk too small for one image: that image fails no_space saying how much it needed; the others are built', async () => {
    const big = `${sb.registry}/big/up:latest`
    const ctx = path.join(tmp, 'big')
    fs.mkdirSync(ctx)
    fs.writeFileSync(path.join(ctx, 'Dockerfile'), `FROM ${sb.seedImage}\nRUN head -c 100000000 /dev/urandom > /blob\n`)
    const docker = $({ quiet: true, env: sb.env })
    await docker`docker build --network none -t ${big} ${ctx}`
    await docker`docker push ${big}`
    await docker`docker rmi ${big}`
    await docker`docker builder prune -af`
    const file = path.join(tmp, 'with-big.txt')
    const ids = fs.readFileSync(instances, 'utf8').split('\n').filter((l) => l && !l.startsWith('#'))
    fs.writeFileSync(
      file,
      [ids[0], JSON.stringify({ id: 'big__one-1', upstream: big }), ...ids.slice(1)].join('\n') + '\n',
    )
    const filler = path.join(sb.dataRoot, '..', 'filler')
    const leave = 80 * MiB
    await $`fallocate -l ${sampleDisk(sb.dataRoot).free - leave} ${filler}`
    injected.push('disk too small for one image')
    try {
      const r = await runToEnd('f6', ['--concurrency', '1'], { file })
      expect(r.code).toBe(1)
      const recs = records('f6')
      const bigBase = recs.find((x) => x.phase === 'base' && x.id === 'big__one-1')!
      expect(bigBase).toMatchObject({ status: 'failed', error_class: 'no_space' })
      expect(bigBase.reason).toMatch(/needed about \d+(\.\d+)? MiB .*had \d+(\.\d+)? [MK]iB free/)
      console.log(`6: ${bigBase.reason}`)
      expect(recs.filter((x) => x.phase === 'assemble' && x.status === 'built').map((x) => x.id).sort()).toEqual(
        [...fleet.ids].sort(),
      )
      expect(await finals('f6')).toBe(fleet.ids.length)
    } finally {
      fs.rmSync(filler, { force: true })
    }
  })

  test('7. hostile input on the real engine: exit 2, no docker command at all, each problem named', async () => {
    const lines = [
      'ok__one-1',
      'a$(id)',
      'b`id`',
      'c;ls',
      'd|e',
      '../up',
      'sp ace',
      '{"id": ',
      '{"id": 1}',
      'ok__one-1',
      '{"id":"u","upstream":"x;y"}',
      '-rf',
      'q"q',
      "s'q",
      'a&b',
      'a>b',
      'a<b',
      'x'.repeat(130),
      '{"nope": 1}',
      '{"id":"v","upstream":"Bad/Ref"}',
      'tab\tid',
    ]
    const file = path.join(tmp, 'hostile.txt')
    fs.writeFileSync(file, lines.join('\n') + '\n')
    const r = await runToEnd('f7', [], { file })
    injected.push('hostile input')
    expect(r.code).toBe(2)
    expect(calls('f7')).toEqual([])
    for (let n = 2; n <= lines.length; n++) expect(r.stderr).toContain(`line ${n}:`)
  })
})
