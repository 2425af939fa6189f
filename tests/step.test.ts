// A failed step's account (lib/run/step.ts, errors.ts, summary.ts): the line of the command's output that says
// why goes into the manifest's reason, the summary's Failed table and the ::error annotation — for the builder,
// a base and an assembly alike. runStep directly, then whole pipelines against a recording fake docker.
import { describe, expect, test } from 'bun:test'
import fs from 'node:fs'
import path from 'node:path'
import { $ } from 'zx'
import { Run } from '../lib/run/records.ts'
import { DEFAULT_POLICY, runStep, type StepPolicy } from '../lib/run/step.ts'
import type { StopGuard } from '../lib/cli/stop.ts'
import { fixtureFlags, instancesFile, registryFixture, ROOT } from './helpers/fixture.ts'
import { fakeDocker } from './helpers/fake-docker.ts'
import { jsonLines } from './helpers/json-lines.ts'

const fx = registryFixture('step-test')
const BLANK = 'base name (${BASE_IMAGE}) should not be blank'

describe('runStep', () => {
  const info = { phase: 'base' as const, id: 'a__b-1', dockerId: 'a_1776_b-1', tag: 'r/x:k-a_1776_b-1' }
  const policy = { ...DEFAULT_POLICY, retries: 1 }
  const run = () => new Run(fs.mkdtempSync(path.join(fx.work, 'run-')), undefined) // fx.work goes in afterAll

  test("a failed command's reason is the line that says why, not its class", async () => {
    const r = run()
    const stderr =
      `#1 DONE 0.0s\nfailed to solve with frontend dockerfile.v0: failed to create LLB definition: ${BLANK}\n`
    await runStep(r, info, policy, () => Promise.reject({ stderr, stdout: '', exitCode: 1 }))
    expect(r.records[0]).toMatchObject({ status: 'failed', error_class: 'build_error', reason: BLANK })
  })

  test('a command that said nothing gets its class explained', async () => {
    const r = run()
    await runStep(r, info, policy, () => Promise.reject({ stderr: '', stdout: '', exitCode: 1 }))
    expect(r.records[0].reason).toBe('the build failed')
  })
})

/** A `work` that fails with these outputs in turn (a zx error's fields), then passes; counts its calls. */
function failing(...stderrs: string[]) {
  const work = Object.assign(async () => {
    const stderr = stderrs[work.calls++]
    if (stderr !== undefined) throw { stderr, stdout: '', exitCode: 1 }
  }, { calls: 0 })
  return work
}
const REFUSED = 'Get "http://127.0.0.1:1/v2/": dial tcp 127.0.0.1:1: connect: connection refused'
const NO_SPACE = 'write /var/lib/docker/tmp/GetImageBlob1403946256: no space left on device'
const RATE = 'toomanyrequests: You have reached your pull rate limit.'
const RUN_FAILED = 'executor failed running [/bin/sh -c make]: exit code: 2'
/** A stop in progress as the step sees it (lib/cli/stop.ts GracefulStop), set by hand. */
const stopGuard = () => {
  const guard = {
    stopping: false,
    killed: false,
    forced: undefined as undefined | (() => void),
    enter(onForce: () => void) {
      guard.forced = onForce
      return () => {}
    },
  }
  return guard satisfies StopGuard
}

describe('runStep: retries, the emergency after a full disk, and a stop', () => {
  const info = { phase: 'base' as const, id: 'r__s-1', dockerId: 'r_1776_s-1', tag: 'r/x:k-r_1776_s-1' }
  const fast: StepPolicy = { retries: 3, backoffMs: 10, noSpaceRetries: 2 }
  const run = () => new Run(fs.mkdtempSync(path.join(fx.work, 'retry-')), undefined)
  const logOf = (r: Run) => fs.readFileSync(r.records[0].log, 'utf8')

  test('a transient failure is retried with a backoff that doubles; the record counts every attempt', async () => {
    const r = run()
    const work = failing(REFUSED, REFUSED)
    await runStep(r, info, fast, work)
    expect(work.calls).toBe(3)
    expect(r.records[0]).toMatchObject({ status: 'built', attempts: 3, reason: 'built after 3 attempts' })
    expect(logOf(r)).toContain('# attempt 1 failed (network); retrying in 0.01s\n')
    expect(logOf(r)).toContain('# attempt 2 failed (network); retrying in 0.02s\n')
  })

  test('a transient failure that persists fails with its class after --retries attempts', async () => {
    const r = run()
    const work = failing(RATE, RATE, RATE, RATE)
    await runStep(r, info, fast, work)
    expect(work.calls).toBe(3)
    expect(r.records[0]).toMatchObject({ status: 'failed', error_class: 'rate_limited', attempts: 3 })
  })

  test('a build error is not retried', async () => {
    const r = run()
    const work = failing(RUN_FAILED)
    await runStep(r, info, fast, work)
    expect(work.calls).toBe(1)
    expect(r.records[0]).toMatchObject({ status: 'failed', error_class: 'build_error', attempts: 1 })
  })

  test('a full disk: the emergency cleanup runs, and the retry after it is free', async () => {
    const r = run()
    const asked: string[] = []
    const work = failing(NO_SPACE, REFUSED)
    await runStep(r, info, {
      ...fast,
      emergency: (i) => (asked.push(i.id), Promise.resolve({ reclaimed: 2e9, retry: true })),
    }, work)
    expect(asked).toEqual([info.id])
    expect(work.calls).toBe(3)
    // the full disk cost no attempt: only the refused connection did
    expect(r.records[0]).toMatchObject({ status: 'built', attempts: 2 })
  })

  test('a full disk the emergency cannot help: failed no_space, without a retry, saying what it needed', async () => {
    const r = run()
    const work = failing(NO_SPACE)
    const detail = 'needed about 2.0 GiB, had 300.0 MiB free after cleaning'
    await runStep(r, info, { ...fast, emergency: () => Promise.resolve({ reclaimed: 0, retry: false, detail }) }, work)
    expect(work.calls).toBe(1)
    expect(r.records[0]).toMatchObject({ status: 'failed', error_class: 'no_space', reason: `${NO_SPACE}: ${detail}` })
  })

  test('free retries after a full disk stop at noSpaceRetries', async () => {
    const r = run()
    const work = failing(NO_SPACE, NO_SPACE, NO_SPACE, NO_SPACE)
    let emergencies = 0
    await runStep(r, info, {
      ...fast,
      emergency: () => (emergencies++, Promise.resolve({ reclaimed: 1e6, retry: true })),
    }, work)
    expect([work.calls, emergencies]).toEqual([3, 2])
    expect(r.records[0]).toMatchObject({ status: 'failed', error_class: 'no_space', attempts: 1 })
  })

  test('once the run is stopping, a failed step is not retried', async () => {
    const r = run()
    const stop = stopGuard()
    const work = failing(REFUSED, REFUSED)
    await runStep(r, info, { ...fast, stop }, async () => {
      stop.stopping = true // the first signal arrives while the command runs
      await work()
    })
    expect(work.calls).toBe(1)
    expect(r.records[0]).toMatchObject({ status: 'failed', error_class: 'network', attempts: 1 })
  })

  test('a stop during the backoff: the retry never starts and the step is interrupted', async () => {
    const r = run()
    const stop = stopGuard()
    const work = failing(REFUSED, REFUSED)
    await runStep(r, info, { ...fast, backoffMs: 50, stop }, async () => {
      if (work.calls === 0) setTimeout(() => (stop.stopping = true), 0) // fires before the 50 ms backoff ends
      await work()
    })
    expect(work.calls).toBe(1)
    expect(r.records[0]).toMatchObject({ status: 'failed', error_class: 'interrupted', attempts: 1 })
  })

  test('a command the stop killed after its grace is interrupted, the kill named as its reason', async () => {
    const r = run()
    const stop = stopGuard()
    await runStep(r, info, { ...fast, stop }, async () => {
      stop.killed = true
      throw {
        stderr: 'Cannot connect to the Docker daemon at unix:///x.sock',
        stdout: '',
        exitCode: null,
        signal: 'SIGTERM',
      }
    })
    expect(r.records[0]).toMatchObject({ status: 'failed', error_class: 'interrupted', reason: 'killed by SIGTERM' })
  })

  test('a second signal records the running step as interrupted at once, before its command returns', async () => {
    const r = run()
    const stop = stopGuard()
    let finish!: () => void
    const step = runStep(r, info, { ...fast, stop }, () => new Promise<void>((resolve) => (finish = resolve)))
    stop.forced!() // what GracefulStop's second signal does for every running step before it exits
    expect(r.records[0]).toMatchObject({
      status: 'failed',
      error_class: 'interrupted',
      reason: 'stopped at once by a second signal',
    })
    finish()
    await step
  })
})

async function pipeline(fail: { match: string; stderr: string }, name: string) {
  const fake = fakeDocker({ fail })
  const out = path.join(fx.work, name)
  const summaryFile = path.join(fx.work, `${name}.md`)
  const instances = await instancesFile(fx, ['a__b-1', 'a__b-2'])
  const env = { ...process.env, ...fake.env, CI: 'true', GITHUB_ACTIONS: 'true', GITHUB_STEP_SUMMARY: summaryFile }
  const r = await $({
    env,
    nothrow: true,
    quiet: true,
    cwd: ROOT,
  })`${process.execPath} scripts/pipeline.ts ${
    fixtureFlags(fx)
  } --mode docker --instances ${instances} --key st --concurrency 1 --retries 1 --out ${out}`
  fake.cleanup()
  const manifest = jsonLines(path.join(out, 'manifest.jsonl'))
  return {
    code: r.exitCode,
    stdout: r.stdout,
    manifest,
    summaryMd: fs.readFileSync(path.join(out, 'summary.md'), 'utf8'),
    annotations: r.stdout.split('\n').filter((l) => l.startsWith('::error')),
  }
}

describe('the reason of every failed step reaches the manifest, the summary and the annotation', () => {
  test('the builder: its reason, titled "builder" (not "builder builder")', async () => {
    const r = await pipeline({ match: '--target builder', stderr: `ERROR: failed to solve: ${BLANK}` }, 'builder')
    expect(r.code).toBe(1)
    expect(r.manifest.find((m) => m.phase === 'builder')).toMatchObject({ status: 'failed', reason: BLANK })
    expect(r.summaryMd).toContain(`| builder | build_error | ${BLANK} |`)
    expect(r.annotations.find((a) => a.includes('title=imagefleet%3A builder failed'))).toStartWith(
      `::error title=imagefleet%3A builder failed::${BLANK} — log: `,
    )
    expect(r.stdout).not.toContain('builder builder')
  })

  test('a base', async () => {
    const stderr = 'ERROR: failed to solve: process "/bin/sh -c make" did not complete successfully: exit code: 2'
    const r = await pipeline({ match: 'BASE_IMAGE=\\S*/up/a_1776_b-2:latest', stderr }, 'base')
    const reason = 'process "/bin/sh -c make" did not complete successfully: exit code: 2'
    expect(r.manifest.find((m) => m.phase === 'base' && m.id === 'a__b-2')).toMatchObject({ reason })
    expect(r.summaryMd).toContain(`| base \`a__b-2\` | build_error | ${reason} |`)
    expect(r.annotations[0]).toStartWith(`::error title=imagefleet%3A base a__b-2 failed::${reason} — log: `)
  })

  test('an assembly', async () => {
    const stderr = 'ERROR: failed to solve: failed to compute cache key: "/opt/agent" not found'
    const r = await pipeline({ match: 'BUILDER_IMAGE=.*-t \\S*eval-agent:st-a_1776_b-1', stderr }, 'assemble')
    const reason = 'failed to compute cache key: "/opt/agent" not found'
    expect(r.manifest.find((m) => m.phase === 'assemble' && m.id === 'a__b-1')).toMatchObject({ reason })
    expect(r.summaryMd).toContain(`| assemble \`a__b-1\` |`)
    expect(r.summaryMd).toContain(`| ${reason} |`)
    expect(r.annotations[0]).toStartWith(`::error title=imagefleet%3A assemble a__b-1 failed::${reason} — log: `)
  })
})
