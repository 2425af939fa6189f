// --retry-failed (lib/run/retry.ts): the failed instances are rebuilt under the key of the run that failed them,
// an explicit other --key is refused naming both, and the summary afterwards describes the whole fleet in --out.
// Whole runs against a recording fake docker and a real registry (what docker does with the commands: other tests).
import { describe, expect, test } from 'bun:test'
import fs from 'node:fs'
import path from 'node:path'
import { $ } from 'zx'
import { fixtureFlags, instancesFile, registryFixture, ROOT } from './helpers/fixture.ts'
import { fakeDocker } from './helpers/fake-docker.ts'

const fx = registryFixture('retry-test')
const IDS = ['r__a-1', 'r__a-2', 'r__a-3']

async function pipeline(out: string, args: string[], fail?: { match: string; stderr: string }) {
  const fake = fakeDocker(fail ? { fail } : {})
  const instances = await instancesFile(fx, IDS) // with their upstream images: the plan refuses missing ones
  const env = { ...process.env, ...fake.env, CI: '', GITHUB_ACTIONS: '' }
  const r = await $({
    env,
    nothrow: true,
    quiet: true,
    cwd: ROOT,
  })`${process.execPath} scripts/pipeline.ts ${
    fixtureFlags(fx)
  } --mode docker --concurrency 1 --retries 1 --instances ${instances} --out ${out} ${args}`
  const calls = fake.calls()
  fake.cleanup()
  return { code: r.exitCode, text: r.stdout + r.stderr, calls }
}

const FAIL_2 = { match: 'BASE_IMAGE=\\S*/up/r_1776_a-2:latest', stderr: 'ERROR: failed to solve: exit code: 1' }
/** The key of the builder image the run built (its tag is REPO/eval-builder:KEY). */
const builtKey = (calls: string[][]) =>
  /eval-builder:(\S+)/.exec(calls.flat().find((a) => a.includes('eval-builder:'))!)![1]

describe('--retry-failed', () => {
  test('after the Dockerfiles changed, the failed instance is rebuilt under the old key, and the run says so', async () => {
    const out = path.join(fx.work, 'keep')
    const first = await pipeline(out, [], FAIL_2)
    expect(first.code).toBe(1)
    const oldKey = builtKey(first.calls)
    const retry = await pipeline(out, ['--retry-failed', '--build-arg', 'FIX=1']) // a new build arg: a new default key
    expect(retry.code).toBe(0)
    const tags = retry.calls.filter((c) => c[0] === 'push').map((c) => c[1])
    expect(tags.filter((t) => !t.includes('eval-builder'))).toEqual([
      `${fx.registry.address}/fleet/eval-base:${oldKey}-r_1776_a-2`,
      `${fx.registry.address}/fleet/eval-agent:${oldKey}-r_1776_a-2`,
    ])
    expect(retry.text).toMatch(
      new RegExp(`--retry-failed keeps key ${oldKey}, the key of the run in .*make key (?!${oldKey})`),
    )
  })

  test("an explicit --key other than the failed run's is refused (exit 2), naming both keys, before any build", async () => {
    const out = path.join(fx.work, 'refuse')
    expect((await pipeline(out, ['--key', 'old1'], FAIL_2)).code).toBe(1)
    const r = await pipeline(out, ['--retry-failed', '--key', 'new1'])
    expect(r.code).toBe(2)
    expect(r.text).toContain('--retry-failed --key new1: the run in')
    expect(r.text).toContain('failed under key old1')
    expect(r.calls.filter((c) => c[0] === 'build' || c[0] === 'push')).toEqual([])
  })

  test('the summary after a retry describes every instance in --out, not only the retried one', async () => {
    const out = path.join(fx.work, 'summary')
    expect((await pipeline(out, ['--key', 's1'], FAIL_2)).code).toBe(1)
    expect((await pipeline(out, ['--key', 's1', '--retry-failed'])).code).toBe(0)
    const summary = JSON.parse(fs.readFileSync(path.join(out, 'summary.json'), 'utf8'))
    expect(summary.instances).toBe(3)
    expect(summary.retried).toBe(1)
    expect(summary.counts.base).toEqual({ built: 3, skipped: 0, failed: 0 })
    expect(summary.counts.assemble).toEqual({ built: 3, skipped: 0, failed: 0 })
    const md = fs.readFileSync(path.join(out, 'summary.md'), 'utf8')
    expect(md).toStartWith('## imagefleet: 3 instances (key `s1`) — 7 built, 0 skipped, 0 failed')
    expect(md).toContain('After `--retry-failed` of 1 instance: every instance in this output directory')
  })
})
