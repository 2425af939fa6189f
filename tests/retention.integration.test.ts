// Registry retention on the sandbox: its real registry (distribution, deletes enabled) holds a fleet of 3 keys × 20
// instances (bases of two keys as attested indexes, as buildx pushes with provenance); `prune --registry --keep-keys 1
// --yes` deletes the older keys; the sandbox's real dockerd then pulls and runs every kept image (finals and the
// attested bases, whose children retention must have left), and cannot pull a deleted one.
import { afterAll, beforeAll, expect, test } from 'bun:test'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { $ } from 'zx'
import { RegistryClient } from '../lib/registry/client.ts'
import { describeIntegration } from './helpers/integration.ts'
import { type KeyedFleet, pushKeyedFleet } from './helpers/fleet-images.ts'
import { type Sandbox, sandboxDown, sandboxUp } from '../scripts/_sandbox-engine.ts'

const ROOT = path.resolve(import.meta.dir, '..')
const MiB = 2 ** 20

describeIntegration('registry retention on the real registry and engine', () => {
  let sb: Sandbox
  let work: string
  let fleet: KeyedFleet
  let pruned: { exitCode: number | null; stdout: string; stderr: string }
  const prefix = () => `${sb.registry}/fleet`

  beforeAll(async () => {
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'retention-it-'))
    sb = await sandboxUp({ dir: path.join(work, 'sandbox'), disk: 1024 * MiB, baseEnv: process.env })
    fleet = await pushKeyedFleet(new RegistryClient(), prefix(), {
      keys: [
        { key: 'k1', created: '2026-09-01T10:00:00Z', attested: true },
        { key: 'k2', created: '2026-10-01T10:00:00Z', attested: false },
        { key: 'k3', created: '2026-11-01T10:00:00Z', attested: true },
      ],
      instances: 20,
      groups: 4,
    })
    pruned = await $({
      cwd: ROOT,
      env: sb.env,
      nothrow: true,
      quiet: true,
    })`${process.execPath} scripts/prune.ts --registry ${prefix()} --keep-keys 1 --yes`
  })
  afterAll(async () => {
    if (sb) await sandboxDown({ dir: sb.dir })
    fs.rmSync(work, { recursive: true, force: true })
  })

  const run = (image: string) =>
    $({ env: sb.env, quiet: true, nothrow: true })`docker run --rm --network none ${image} cat /instance/id`

  test('every image of the kept key still pulls and runs: finals and attested bases', async () => {
    expect(pruned.exitCode).toBe(0)
    expect(pruned.stdout).toMatch(/deleted \d+ manifests \(\d+ tags\); 0 failed/)
    for (const id of fleet.dockerIds) {
      for (const repo of ['eval-agent', 'eval-base']) {
        const image = `${prefix()}/${repo}:k3-${id}`
        const r = await run(image)
        expect([r.exitCode, r.stdout.trim()]).toEqual([0, id])
        await $({ env: sb.env, quiet: true })`docker rmi ${image}`
      }
    }
  })

  test('a deleted image no longer pulls (manifest unknown)', async () => {
    for (
      const image of [
        `${prefix()}/eval-agent:k1-${fleet.dockerIds[0]}`,
        `${prefix()}/eval-base:k2-${fleet.dockerIds[1]}`,
      ]
    ) {
      const r = await $({ env: sb.env, quiet: true, nothrow: true })`docker pull ${image}`
      expect(r.exitCode).not.toBe(0)
      expect(r.stderr).toMatch(/manifest unknown|not found/)
    }
  })
})
