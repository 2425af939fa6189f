// A failed step's account (lib/run/step.ts, errors.ts, summary.ts): the line of the command's output that says
// why goes into the manifest's reason, the summary's Failed table and the ::error annotation — for the builder,
// a base and an assembly alike. runStep directly, then whole pipelines against a recording fake docker.
import { describe, expect, test } from 'bun:test'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { $ } from 'zx'
import { Run } from '../lib/run/records.ts'
import { DEFAULT_POLICY, runStep } from '../lib/run/step.ts'
import { CONTEXT, instancesFile, registryFixture, ROOT } from './helpers/fixture.ts'
import { fakeDocker } from './helpers/fake-docker.ts'

const fx = registryFixture('step-test')
const BLANK = 'base name (${BASE_IMAGE}) should not be blank'

describe('runStep', () => {
  const info = { phase: 'base' as const, id: 'a__b-1', dockerId: 'a_1776_b-1', tag: 'r/x:k-a_1776_b-1' }
  const policy = { ...DEFAULT_POLICY, retries: 1 }
  const run = () => new Run(fs.mkdtempSync(path.join(os.tmpdir(), 'step-test-')), undefined)

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
  })`${process.execPath} scripts/pipeline.ts --registry ${fx.registry.address}/fleet --upstream ${fx.registry.address}/up/{docker_id}:latest --context ${CONTEXT} --min-free 0 --mode docker --instances ${instances} --key st --concurrency 1 --retries 1 --out ${out}`
  fake.cleanup()
  const manifest = fs.readFileSync(path.join(out, 'manifest.jsonl'), 'utf8').trim().split('\n').map((l) =>
    JSON.parse(l)
  )
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
