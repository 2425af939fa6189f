// pipeline --mirror on the real engine (the sandbox's dockerd) with two real registries: the upstream images live
// in one (`docker-registry` started here, standing for Docker Hub), the fleet in the sandbox's. The same fleet is
// built twice — FROM the upstream, and with --mirror FROM the mirror — and every final image must hold the same
// files (md5 of every file, read in a running container). The mirrored run's base pushes mount the upstream
// layers from the mirror instead of uploading them (docker push says "Mounted from"; bench/mirror.ts measures the
// bytes).
import { afterAll, beforeAll, expect, test } from 'bun:test'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { $ } from 'zx'
import { describeIntegration } from './helpers/integration.ts'
import { type RegistryServer, startRegistry } from './helpers/registry-server.ts'
import { type Sandbox, sandboxDown, sandboxUp } from '../scripts/_sandbox-engine.ts'
import { type Fleet, generateFleet } from '../examples/synthetic-fleet/generate.ts'
import type { ManifestRecord } from '../lib/run/records.ts'
import { jsonLines } from './helpers/json-lines.ts'

const ROOT = path.resolve(import.meta.dir, '..')
const MiB = 2 ** 20
/** Every file and link of the image with its md5, from a running container (the mounts docker adds, and /etc/mtab → /proc/mounts, left out). */
const LIST_FILES = "find / -xdev \\( -type f -o -type l \\) ! -path '/proc/*' ! -path '/sys/*' ! -path '/dev/*' " +
  '! -path /etc/hosts ! -path /etc/hostname ! -path /etc/resolv.conf ! -path /etc/mtab -exec md5sum {} + | sort -k2'

describeIntegration('pipeline --mirror on the real engine', () => {
  let sb: Sandbox
  let upstream: RegistryServer
  let fleet: Fleet
  let work: string
  const runs: Record<string, { code: number; records: ManifestRecord[]; stdout: string }> = {}

  beforeAll(async () => {
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'mirror-it-'))
    sb = await sandboxUp({ dir: path.join(work, 'sandbox'), disk: 2048 * MiB, baseEnv: process.env })
    upstream = await startRegistry()
    fleet = await generateFleet({
      registry: upstream.address,
      groups: 2,
      perGroup: 2,
      envSize: 24e6,
      instanceSize: 4e6,
      out: path.join(work, 'instances.txt'),
    })
    // the mirrored run first: dockerd then knows the upstream layers only from the mirror it pulled them from
    for (const [name, extra] of [['mirrored', ['--mirror']], ['direct', []]] as const) {
      const out = path.join(work, name)
      const r = await $({
        env: sb.env,
        cwd: ROOT,
        nothrow: true,
        quiet: true,
      })`${process.execPath} scripts/pipeline.ts --instances ${
        path.join(work, 'instances.txt')
      } --upstream ${fleet.upstream} --registry ${sb.registry}/${name} --builder-repo ${sb.registry}/shared/eval-builder --key eq1 --context examples/synthetic-fleet/context --build-arg SEED_IMAGE=${sb.seedImage} --network none --concurrency 2 --min-free 100MB --out ${out} ${extra}`
      if (r.exitCode !== 0) console.log(r.stdout, r.stderr)
      const records = jsonLines(path.join(out, 'manifest.jsonl'))
      runs[name] = { code: r.exitCode ?? -1, records, stdout: r.stdout }
    }
  })
  afterAll(async () => {
    await upstream?.stop()
    if (sb) await sandboxDown({ dir: sb.dir })
    fs.rmSync(work, { recursive: true, force: true })
  })

  test('both runs build every instance; the mirrored one copied each upstream once, streamed across registries', () => {
    expect([runs.direct.code, runs.mirrored.code]).toEqual([0, 0])
    const mirrored = runs.mirrored.records.filter((r) => r.phase === 'mirror')
    expect(mirrored.map((r) => r.status)).toEqual(fleet.ids.map(() => 'built'))
    // each group's environment layer streamed once, then mounted into the other instance's mirror repository
    const copied = mirrored.reduce((n, r) => n + r.mirror!.copied, 0)
    const mounted = mirrored.reduce((n, r) => n + r.mirror!.mounted, 0)
    expect(mounted).toBeGreaterThanOrEqual(fleet.groups)
    expect(copied).toBeGreaterThan(0)
  })

  test('the bases built FROM the mirror push by mounting the upstream layers from it (docker push: Mounted from)', () => {
    const bases = runs.mirrored.records.filter((x) => x.phase === 'base' && x.status === 'built')
    expect(bases.length).toBe(fleet.ids.length)
    for (const r of bases) expect(fs.readFileSync(r.log, 'utf8')).toMatch(/Mounted from mirrored\/mirror\//)
  })

  test('every final image built from the mirror holds the same files as the one built from the upstream', async () => {
    const finals = (name: string) =>
      runs[name].records.filter((r) => r.phase === 'assemble' && r.status === 'built').map((r) => [r.id, r.tag])
    const direct = Object.fromEntries(finals('direct'))
    expect(finals('mirrored').length).toBe(fleet.ids.length)
    for (const [id, tag] of finals('mirrored')) {
      const files = async (image: string) =>
        (await $({ env: sb.env, quiet: true })`docker run --rm --network none ${image} sh -c ${LIST_FILES}`).stdout
      const [a, b] = [await files(direct[id]), await files(tag)]
      // busybox and its links, the environment, the instance, the base's own file, the agent (the paths
      // examples/synthetic-fleet/README.md names)
      expect(a.split('\n').length).toBeGreaterThan(250)
      for (
        const f of ['/env/group', '/env/data/0000', '/instance/id', '/etc/imagefleet-base', '/opt/agent/artifact.bin']
      ) {
        expect(a).toContain(`  ${f}\n`)
      }
      expect(b).toBe(a)
      await $({ env: sb.env, quiet: true, nothrow: true })`docker rmi ${direct[id]} ${tag}`
    }
  })
})
