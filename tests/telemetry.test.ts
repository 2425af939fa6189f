// Per-image telemetry (lib/run/telemetry.ts, records.ts, throughput.ts, the summary): what a step's time went to, the
// bytes its push sent (sized from a real registry), the disk it grew, the budget wait, throughput and the slowest
// part. The step test's `docker` is a recording fake printing what docker 20.10 prints off a terminal (logic only);
// tests/pipeline.integration.test.ts checks the same fields on the real engine.
import { describe, expect, test } from 'bun:test'
import fs from 'node:fs'
import path from 'node:path'
import { $ } from 'zx'
import { DiskBudget } from '../lib/disk/budget.ts'
import { GrowthModel } from '../lib/disk/growth.ts'
import { RegistryClient } from '../lib/registry/client.ts'
import { type ManifestRecord, Run } from '../lib/run/records.ts'
import { DEFAULT_POLICY, runStep } from '../lib/run/step.ts'
import { summarizeFacts, summaryMarkdown } from '../lib/run/summary.ts'
import { diskGrowth, kindOf, pushedLayerBytes, slowestPart } from '../lib/run/telemetry.ts'
import { throughput } from '../lib/run/throughput.ts'
import { registryFixture } from './helpers/fixture.ts'
import { pushTestImage } from './helpers/registry-server.ts'

const fx = registryFixture('telemetry-test')
const file = (p: string, text: string) => ({
  path: p,
  type: 'file' as const,
  mode: 0o644,
  uid: 0,
  gid: 0,
  data: new TextEncoder().encode(text),
})
const shortId = (digest: string) => digest.slice('sha256:'.length, 'sha256:'.length + 12)

/** A `docker` that sleeps per subcommand and, for push, prints docker 20.10's non-TTY lines for the given layers. */
function fakeDocker(dir: string, push: { mounted: string; pushed: string }): Record<string, string> {
  fs.mkdirSync(dir, { recursive: true })
  fs.writeFileSync(
    path.join(dir, 'docker'),
    `#!/bin/bash
case "$1" in
  build) sleep 0.3 ;;
  push) sleep 0.2
    echo "The push refers to repository [x]"
    echo "${push.mounted}: Preparing"; echo "${push.pushed}: Preparing"
    echo "${push.mounted}: Mounted from imagefleet/busybox"; echo "${push.pushed}: Pushed"
    echo "k: digest: sha256:0000 size: 1154" ;;
  rmi) sleep 0.4 ;;
esac
`,
    { mode: 0o755 },
  )
  return { ...process.env, PATH: `${dir}:${process.env.PATH}` } as Record<string, string>
}

describe('a step records where its time and bytes went', () => {
  test('build and push seconds by command, other commands in neither; bytes of the layers docker said it pushed', async () => {
    const tag = `${fx.registry.address}/fleet/eval-base:k-a_1776_b-1`
    const client = new RegistryClient()
    const image = await pushTestImage(client, tag, {
      layers: [[file('env/python', 'env')], [file('instance/id', 'a__b-1'.repeat(1000))]],
    })
    const diffIds = (image.config.rootfs as { diff_ids: string[] }).diff_ids
    const env = fakeDocker(path.join(fx.work, 'bin'), { mounted: shortId(diffIds[0]), pushed: shortId(diffIds[1]) })
    const run = new Run(path.join(fx.work, 'out'), fx.work)
    const result = await runStep(run, { phase: 'base', id: 'a__b-1', dockerId: 'a_1776_b-1', tag }, {
      ...DEFAULT_POLICY,
      pushedBytes: (t, layers) => pushedLayerBytes(client, t, layers),
    }, async () => {
      const docker = $({ env, quiet: true })
      await docker`docker build -t ${tag} .`
      await docker`docker push ${tag}`
      await docker`docker rmi ${tag}`
    })
    expect(result.ok).toBe(true)
    const rec = run.records[0]
    expect(rec.build_seconds).toBeGreaterThanOrEqual(0.3)
    expect(rec.push_seconds).toBeGreaterThanOrEqual(0.2)
    // the rmi's 0.4 s is in the step's seconds but in neither part
    expect(rec.seconds - rec.build_seconds! - rec.push_seconds!).toBeGreaterThanOrEqual(0.4)
    expect(rec.bytes_pushed).toBe(image.layers[1].size) // the pushed layer, not the mounted one
    expect(typeof rec.disk_growth).toBe('number') // the data root is visible: growth is measured
    expect(fs.readFileSync(path.join(fx.work, 'out', 'manifest.jsonl'), 'utf8')).toContain('"bytes_pushed":')
  })

  test('the containerd image store names pushed layers by their compressed digest: sized the same', async () => {
    const tag = `${fx.registry.address}/fleet/eval-agent:k-c_1776_d-1`
    const client = new RegistryClient()
    const image = await pushTestImage(client, tag, { layers: [[file('a', 'a')], [file('b', 'b'.repeat(5000))]] })
    expect(await pushedLayerBytes(client, tag, [shortId(image.layers[1].digest)])).toBe(image.layers[1].size)
    expect(await pushedLayerBytes(client, tag, [])).toBe(0)
  })

  test('commands are told apart by what they are: buildx build --push is a build, a login is neither', () => {
    expect(kindOf('docker buildx build --push --provenance=false -t x .')).toBe('build')
    expect(kindOf('docker build --network none -t x .')).toBe('build')
    expect(kindOf('docker push 127.0.0.1:5000/x:1')).toBe('push')
    expect(kindOf('docker login ghcr.io -u me --password-stdin')).toBeUndefined()
    expect(kindOf('docker builder prune -af')).toBeUndefined()
  })

  test('disk growth is the free bytes lost plus what cleanups gave back meanwhile', () => {
    expect(diskGrowth({ free: 1000, reclaimed: 0 }, { free: 700, reclaimed: 0 })).toBe(300)
    expect(diskGrowth({ free: 1000, reclaimed: 50 }, { free: 900, reclaimed: 250 })).toBe(300)
    expect(diskGrowth({ free: Infinity, reclaimed: 0 }, { free: Infinity, reclaimed: 0 })).toBeUndefined()
  })
})

const rec = (o: Partial<ManifestRecord> & Pick<ManifestRecord, 'phase' | 'id'>): ManifestRecord => ({
  tag: `r/${o.phase}:${o.id}`,
  status: 'built',
  reason: 'built',
  attempts: 1,
  started_at: '2026-01-01T00:00:00.000Z',
  finished_at: '2026-01-01T00:00:01.000Z',
  seconds: 1,
  log: `logs/${o.phase}/${o.id}.log`,
  ...o,
})

describe('the run adds what the step cannot see', () => {
  test("a tag's registry check goes on its next record only; registry assembly splits read from write", () => {
    const run = new Run('/tmp/unused', undefined, true)
    run.checked('r/base:a', 0.25)
    run.record(rec({ phase: 'base', id: 'a' }))
    run.record(rec({ phase: 'base', id: 'a', status: 'failed' }))
    const tally = { bytes_uploaded: 4096, mounted: 3, copied: 0, present: 0, base_read_seconds: 1.5 }
    run.record(rec({ phase: 'assemble', id: 'a', seconds: 4, registry: tally }))
    expect(run.records[0].check_seconds).toBe(0.25)
    expect(run.records[1].check_seconds).toBeUndefined()
    expect(run.records[2]).toMatchObject({ build_seconds: 1.5, push_seconds: 2.5, bytes_pushed: 4096 })
  })

  test("an instance's budget wait is told once: the admission on its first record, a readmission on the step it hit", () => {
    const run = new Run('/tmp/unused', undefined, true)
    const ticket = { waitSeconds: 3 }
    run.admitted('a', ticket)
    run.record(rec({ phase: 'base', id: 'a' }))
    run.record(rec({ phase: 'assemble', id: 'a' }))
    ticket.waitSeconds = 5 // readmitted after a full disk, and waited 2 s more
    run.record(rec({ phase: 'assemble', id: 'a' }))
    run.record(rec({ phase: 'builder', id: 'builder' }))
    expect(run.records.map((r) => r.budget_wait_seconds)).toEqual([3, 0, 2, undefined])
  })

  test("the disk budget's ticket says how long the image waited for room (0 when admitted at once)", async () => {
    const clock = { now: 1_000_000, free: 500 }
    const budget = new DiskBudget({
      policy: 'adaptive',
      free: () => clock.free,
      reserve: 0,
      now: () => clock.now,
      model: new GrowthModel({ r: 1, k: 0 }, 1e9),
      clean: () => Promise.resolve({ reclaimed: 0, ran: [] }),
    })
    const first = await budget.admit('a', [{ digest: 'sha256:a', size: 400 }])
    let second: Awaited<ReturnType<typeof budget.admit>> | undefined
    const waiting = budget.admit('b', [{ digest: 'sha256:b', size: 400 }]).then((t) => (second = t))
    await new Promise((r) => setTimeout(r, 20))
    expect(second).toBeUndefined() // 500 free cannot hold a's 400 and b's 400
    clock.now += 7_000
    first.based()
    await first.done([])
    await waiting
    expect(first.waitSeconds).toBe(0)
    expect(second!.waitSeconds).toBe(7)
  })
})

describe('throughput and the slowest part in the summary', () => {
  const at = (s: number) => new Date(Date.parse('2026-01-01T00:00:00.000Z') + s * 1000).toISOString()
  const done = (id: string, s: number, status: ManifestRecord['status'] = 'built') =>
    rec({ phase: 'base', id, finished_at: at(s), status })

  test('images built per minute in the narrowest readable windows; earlier runs and failures left out', () => {
    const records = [done('a', 1), done('b', 2), done('c', 4), done('d', 50), done('e', 99.5), done('old', -10)]
    records.push(done('f', 3, 'failed'), done('g', 3, 'skipped'))
    const t = throughput(records, at(0), 100)!
    expect(t.windowSeconds).toBe(5) // 100 s in 20 windows
    expect(t.perMinute).toHaveLength(20)
    expect(t.perMinute[0]).toBe(36) // 3 images in 5 s
    expect(t.perMinute[10]).toBe(12)
    expect(t.perMinute[19]).toBe(12)
    expect(t.perMinute.reduce((a, b) => a + b) * 5 / 60).toBeCloseTo(5) // every image of this run counted once
    expect(throughput(records, at(0), 3 * 3600)!.windowSeconds).toBe(600)
  })

  test('the last window is a rate over the part of it the run lasted', () => {
    const t = throughput([done('a', 97)], at(0), 98)!
    expect(t.windowSeconds).toBe(5)
    expect(t.perMinute.at(-1)).toBe(20) // one image in the 3 s from 95 s to 98 s
  })

  test('the slowest part of an image: build, push, check or the rest of its step', () => {
    expect(slowestPart({ seconds: 10, build_seconds: 2, push_seconds: 7 })).toEqual({ part: 'push', seconds: 7 })
    expect(slowestPart({ seconds: 10, build_seconds: 2, push_seconds: 1 })).toEqual({ part: 'other', seconds: 7 })
    expect(slowestPart({ seconds: 0.1, build_seconds: 0.05, check_seconds: 3 })).toEqual({ part: 'check', seconds: 3 })
    expect(slowestPart({ seconds: 10, check_seconds: 1 })).toBeUndefined() // nothing of the step split
  })

  test('the markdown puts throughput next to free disk and names the slowest part of the slowest images', () => {
    const records = [
      rec({ phase: 'base', id: 'slow', seconds: 30, build_seconds: 5, push_seconds: 24, finished_at: at(40) }),
      rec({ phase: 'base', id: 'fast', seconds: 3, build_seconds: 2, push_seconds: 1, finished_at: at(20) }),
    ]
    const s = summarizeFacts({
      records,
      cleanups: [],
      startedAt: at(0),
      wallSeconds: 45,
      peakUsed: 0,
      minFree: null,
      instances: 2,
    })
    expect(s.time).toEqual({ build: 7, push: 25, check: 0 })
    expect(s.slowest[0]).toMatchObject({ id: 'slow', slowest: { part: 'push', seconds: 24 } })
    const md = summaryMarkdown(s, {
      series: [{ name: 'free', events: [{ t: 0, free: 5e9, used: 0, event: 'x' }] }],
      marks: [],
    })
    const free = md.indexOf('title "Free disk')
    const perMinute = md.indexOf('title "Images built per minute')
    expect(md).toContain('### Free disk and throughput')
    expect(free).toBeGreaterThan(0)
    expect(perMinute).toBeGreaterThan(free)
    expect(md.slice(free, perMinute)).not.toContain('###') // the two charts sit in one section
    expect(md).toContain('| base `slow` | 30.0 | push 24.0s |')
  })
})
