// The synthetic fleet on the real engine: images made straight in the registry (uncompressed OCI layers, no
// daemon) pull and run on dockerd 20.10, and its BuildKit builds the synthetic context's stages FROM them.
import { afterAll, beforeAll, expect, test } from 'bun:test'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { $ } from 'zx'
import { describeIntegration } from './helpers/integration.ts'
import { CONTEXT } from './helpers/fixture.ts'
import { type Sandbox, sandboxDown, sandboxUp } from '../scripts/_sandbox-engine.ts'
import { type Fleet, generateFleet } from '../examples/synthetic-fleet/generate.ts'

describeIntegration('the synthetic fleet on the sandbox engine', () => {
  let sb: Sandbox, fleet: Fleet, work: string
  const image = (i: number) => fleet.upstream.replace('{docker_id}', fleet.ids[i].replace('__', '_1776_'))

  beforeAll(async () => {
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'synthetic-fleet-it-'))
    sb = await sandboxUp({ dir: path.join(work, 'sandbox'), disk: 2 ** 30, baseEnv: process.env })
    fleet = await generateFleet({
      registry: sb.registry,
      groups: 2,
      perGroup: 1,
      envSize: 5e6,
      instanceSize: 2e6,
      out: path.join(work, 'instances.txt'),
    })
  })
  afterAll(async () => {
    if (sb) await sandboxDown({ dir: sb.dir })
    if (work) fs.rmSync(work, { recursive: true, force: true })
  })

  test('an instance image pulls and runs busybox applets (sh, cat, head) over its own and its environment files', async () => {
    const run = await $({
      quiet: true,
      env: sb.env,
    })`docker run --rm --network none ${
      image(0)
    } sh -c ${'cat /instance/id /env/group; head -c 3 /instance/data/0000 | wc -c'}`
    expect(run.stdout.split('\n').map((l) => l.trim())).toEqual([fleet.ids[0], '0', '3', ''])
  })

  test("BuildKit builds the context's base stage FROM an instance image and its builder stage FROM the fleet's seed", async () => {
    const sh = $({ quiet: true, env: sb.env })
    const base = `${sb.registry}/test/base:1`
    await sh`docker build --network none --build-arg BASE_IMAGE=${image(1)} --target base -t ${base} ${CONTEXT}`
    await sh`docker push ${base}`
    expect((await sh`docker run --rm --network none ${base} cat /etc/imagefleet-base /instance/id`).stdout).toBe(
      `imagefleet synthetic base layer\n${fleet.ids[1]}\n`,
    )
    const builder = `${sb.registry}/test/builder:1`
    await sh`docker build --network none --build-arg SEED_IMAGE=${fleet.seed} --target builder -t ${builder} ${CONTEXT}`
    expect((await sh`docker run --rm --network none ${builder} cat /opt/agent/VERSION`).stdout).toBe(
      'synthetic-agent 1.0\n',
    )
  })
})
