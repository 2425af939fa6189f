// The Dockerfile contract on the real engine: `ARG BASE_IMAGE` without a default (what BuildKit refuses for the
// builder target with `base name (${BASE_IMAGE}) should not be blank`) builds the whole fleet.
import { afterAll, beforeAll, expect, test } from 'bun:test'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { $ } from 'zx'
import { type Sandbox, sandboxDown, sandboxUp } from '../scripts/_sandbox-engine.ts'
import { describeIntegration } from './helpers/integration.ts'
import { ROOT } from './helpers/fixture.ts'
import { jsonLines } from './helpers/json-lines.ts'
import { writeRunStepsFleet } from './helpers/run-steps-fleet.ts'

describeIntegration('the Dockerfile contract', () => {
  let tmp: string, sb: Sandbox
  beforeAll(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'contract-test-'))
    sb = await sandboxUp({ dir: path.join(tmp, 'sb'), disk: 2 ** 30, baseEnv: process.env })
  })
  afterAll(async () => {
    if (!tmp) return
    await sandboxDown({ dir: path.join(tmp, 'sb') })
    fs.rmSync(tmp, { recursive: true, force: true })
  })

  test('ARG BASE_IMAGE without a default: the builder build gets BASE_IMAGE=scratch and every image builds', async () => {
    const { context, instances } = writeRunStepsFleet(path.join(tmp, 'ctx'), {
      seedImage: sb.seedImage,
      ids: ['c__t-1', 'c__t-2'],
    })
    const out = path.join(tmp, 'out')
    const r = await $({
      env: sb.env,
      cwd: ROOT,
      quiet: true,
      nothrow: true,
    })`${process.execPath} scripts/pipeline.ts --instances ${instances} --registry ${sb.registry}/contract --context ${context} --min-free 0 --out ${out}`
    expect(r.exitCode).toBe(0)
    const records = jsonLines(path.join(out, 'manifest.jsonl'))
    expect(records.filter((m) => m.status === 'built')).toHaveLength(5) // builder, 2 bases, 2 assemblies
    expect(fs.readFileSync(path.join(out, 'logs/builder/builder.log'), 'utf8')).toContain(
      '--build-arg BASE_IMAGE=scratch --target builder',
    )
  })
})
