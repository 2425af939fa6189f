// What preflight (scripts/preflight.ts) learns about the engine from its answers: client and daemon versions, buildx
// and the BuildKit behind it, and which cache-cap prune flag this client accepts. A recording fake docker gives the
// answers of other engines (for this logic only; the sandbox tests ask a real one): docker 20.10's were captured on
// the sandbox, buildx's --help lists the flags docs.docker.com gives for `docker buildx prune` (buildx ≥ 0.18).
import { describe, expect, test } from 'bun:test'
import { $, within } from 'zx'
import { preflight } from '../scripts/preflight.ts'
import { versionAtLeast } from '../lib/engine/facts.ts'
import { fakeDocker, type FakeDockerOptions } from './helpers/fake-docker.ts'

const DOCKER_20_10 = {
  version:
    '{"Client":{"Version":"20.10.24+dfsg1","ApiVersion":"1.41","Os":"linux","Arch":"amd64"},"Server":{"Version":"20.10.24+dfsg1","ApiVersion":"1.41"}}',
  builderPruneHelp: `
Usage:  docker builder prune

Remove build cache

Options:
  -a, --all                  Remove all unused build cache, not just
                             dangling ones
      --filter filter        Provide filter values (e.g. 'until=24h')
  -f, --force                Do not prompt for confirmation
      --keep-storage bytes   Amount of disk space to keep for cache
`,
}
const BUILDX_PRUNE_HELP = `
Usage:  docker buildx prune

Remove build cache

Options:
  -a, --all                    Include internal/frontend images
      --builder string         Override the configured builder instance
      --filter filter          Provide filter values
  -f, --force                  Do not prompt for confirmation
      --max-used-space bytes   Maximum amount of disk space allowed to keep for cache
      --min-free-space bytes   Target amount of free disk space after pruning
      --reserved-space bytes   Amount of disk space always allowed to keep for cache
      --verbose                Provide a more verbose output
`
const buildxInspect = (buildkit: string) =>
  `Name:          ci\nDriver:        docker-container\nLast Activity: 2026-11-26 10:00:00 +0000 UTC\n\nNodes:\nName:             ci0\nEndpoint:         unix:///var/run/docker.sock\nStatus:           running\nBuildKit version: ${buildkit}\nPlatforms:        linux/amd64\n`

/** preflight against a fake docker with these answers (no RUN check, no registry). */
async function facts(o: FakeDockerOptions) {
  const fake = fakeDocker(o)
  try {
    return await within(async () => {
      $.env = { ...process.env, ...fake.env }
      return await preflight({ minFree: 0 })
    })
  } finally {
    fake.cleanup()
  }
}

describe('engine facts from its answers', () => {
  test('docker 20.10 without buildx: both versions, and --keep-storage from `docker builder prune --help`', async () => {
    const r = await facts({
      answers: [
        { match: '^version --format', stdout: DOCKER_20_10.version },
        { match: '^builder prune --help', stdout: DOCKER_20_10.builderPruneHelp },
      ],
    })
    expect([r.client, r.server, r.buildx]).toEqual(['20.10.24+dfsg1', '20.10.24+dfsg1', undefined])
    expect(r.pruneFlags).toEqual({ keep: '--keep-storage', maxUsed: false, minFree: false })
  })

  test('buildx on BuildKit 0.18: its version and builder, --reserved-space, and the two flags BuildKit ≥ 0.17 has', async () => {
    const r = await facts({
      buildx: true,
      answers: [
        { match: '^buildx version', stdout: 'github.com/docker/buildx v0.19.3 48d6a39\n' },
        { match: '^buildx inspect', stdout: buildxInspect('v0.18.2') },
        { match: '^buildx prune --help', stdout: BUILDX_PRUNE_HELP },
      ],
    })
    expect(r.buildx).toEqual({ version: 'v0.19.3', builder: 'ci', driver: 'docker-container', buildkit: '0.18.2' })
    expect(r.pruneFlags).toEqual({ keep: '--reserved-space', maxUsed: true, minFree: true })
    expect(r.checks.find((c) => c.name === 'prune flags')?.detail).toBe(
      'cache cap flag: --reserved-space, --max-used-space, --min-free-space',
    )
  })

  test('the same buildx on BuildKit 0.16: --reserved-space, but not the flags its BuildKit does not have', async () => {
    const r = await facts({
      buildx: true,
      answers: [
        { match: '^buildx inspect', stdout: buildxInspect('v0.16.0') },
        { match: '^buildx prune --help', stdout: BUILDX_PRUNE_HELP },
      ],
    })
    expect(r.pruneFlags).toEqual({ keep: '--reserved-space', maxUsed: false, minFree: false })
  })

  test('a prune whose --help lists no cache-cap flag: none (full prunes only)', async () => {
    const r = await facts({
      answers: [{
        match: '^builder prune --help',
        stdout: 'Usage:  docker builder prune\n\n  -a, --all\n  -f, --force\n',
      }],
    })
    expect(r.pruneFlags).toEqual({ keep: undefined, maxUsed: false, minFree: false })
    expect(r.checks.find((c) => c.name === 'prune flags')?.detail).toBe('cache cap flag: none (full prunes only)')
  })
})

describe('versionAtLeast', () => {
  test('compares numerically part by part; missing parts are 0; a pre-release suffix is ignored', () => {
    expect(versionAtLeast('0.18.2', '0.17')).toBe(true)
    expect(versionAtLeast('0.17', '0.17')).toBe(true)
    expect(versionAtLeast('0.17.0-rc1', '0.17')).toBe(true)
    expect(versionAtLeast('0.16.4', '0.17')).toBe(false)
    expect(versionAtLeast('0.9.0', '0.17')).toBe(false) // not text order
    expect(versionAtLeast('1.0', '0.17')).toBe(true)
  })
})
