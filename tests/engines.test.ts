// Conformance: never send a flag the engine refuses. For every recorded engine (tests/fixtures/engines/<name>/: the
// real one here for 20.10, documentation and source of that exact version for the others), the recording fake docker
// replays its answers while the pipeline runs a full --dry-run (whose printed commands are then run through bash
// against the same fake), one simulated run, and prune.ts through every tier. Every flag of every docker command
// they ran or would run must appear in that engine's --help for that command, and the prunes chosen must be the ones
// this combination accepts. What the engines really do with the commands is the integration tests' (real 20.10 only).
import { describe, expect, test } from 'bun:test'
import fs from 'node:fs'
import path from 'node:path'
import { $ } from 'zx'
import { helpFlags } from '../lib/engine/answers.ts'
import { COMMANDS, engineNames, ENGINES_DIR, helpFile, readRecorded } from './helpers/engine-fixtures.ts'
import { fakeDocker } from './helpers/fake-docker.ts'
import { fixtureFlags, instancesFile, registryFixture, ROOT } from './helpers/fixture.ts'

const fx = registryFixture('engines-test')

/**
 * What each combination must choose, from its sources (README "Engines"): the cap flag of `docker builder prune`,
 * the builder whose cache the local tiers also prune (docker-container only) and its cap flag, the flag that bounds a
 * remote builder's cache (--builder-max-used), and the image store.
 */
const EXPECTED: Record<
  string,
  { daemonCap: string; builder?: string; builderCap?: string; bound?: string; containerd?: true }
> = {
  'docker-20.10': { daemonCap: '--keep-storage' },
  // the 20.10 client answers `docker builder prune` itself (legacy flags) while buildx 0.29 has the new ones
  'docker-20.10-buildx-0.29-container': {
    daemonCap: '--keep-storage',
    builder: 'builder-3c9a7e21-5b44-4f0a-8d2e-6a1f0c9b7e55',
    builderCap: '--reserved-space',
  },
  'docker-24.0-buildx-0.11-docker': { daemonCap: '--keep-storage' },
  'docker-27.5-buildx-0.17-container': {
    daemonCap: '--keep-storage',
    builder: 'builder-8f6d3a52-0d1b-4c6e-9a51-2f0e5b7c1d94',
    builderCap: '--keep-storage',
  },
  'docker-28.5-buildx-0.29-container': {
    daemonCap: '--reserved-space',
    builder: 'builder-3c9a7e21-5b44-4f0a-8d2e-6a1f0c9b7e55',
    builderCap: '--reserved-space',
  },
  'docker-28.5-buildx-0.29-remote': { daemonCap: '--reserved-space', bound: '--max-used-space' },
  // BuildKit 0.16 in the cluster: buildx lists --max-used-space, the builder cannot do it
  'docker-29.7-buildx-0.31-kubernetes': { daemonCap: '--reserved-space', bound: '--reserved-space' },
  'docker-29.7-containerd-buildx-0.31-docker': { daemonCap: '--reserved-space', containerd: true },
}

/** The builder a run names with --builder (remote and kubernetes ones are named; the others are the selected one). */
function builderOf(engine: string): string | undefined {
  const inspect = readRecorded(path.join(ENGINES_DIR, engine), 'buildx-inspect.txt')
  const driver = /^Driver:\s*(\S+)/m.exec(inspect?.body ?? '')?.[1]
  return driver === 'remote' || driver === 'kubernetes' ? /^Name:\s*(\S+)/m.exec(inspect!.body)![1] : undefined
}

/** The catalogue command an argv runs (longest match), e.g. `buildx prune` for `buildx prune -af --builder x`. */
function commandOf(argv: string[]): string | undefined {
  return [...COMMANDS].sort((a, b) => b.split(' ').length - a.split(' ').length)
    .find((c) => c.split(' ').every((w, i) => argv[i] === w))
}

/** The flags of an argv as help lists them: `--x=1` → `--x`, `-af` → `-a`, `-f`. */
function flagsOf(argv: string[]): string[] {
  return argv.filter((a) => a.startsWith('-')).flatMap((a) => {
    if (a.startsWith('--')) return [a.split('=')[0]]
    return [...a.slice(1)].map((c) => `-${c}`)
  })
}

/** Every argv of the engine's run that is not a probe (a --help, or `buildx version` asking whether buildx exists). */
function refusals(engine: string, calls: string[][]): string[] {
  const dir = path.join(ENGINES_DIR, engine)
  const problems: string[] = []
  for (const argv of calls) {
    if (argv.includes('--help') || argv.join(' ') === 'buildx version') continue
    const command = commandOf(argv)
    if (!command) {
      problems.push(`docker ${argv.join(' ')}: not in the catalogue of commands (tests/helpers/engine-fixtures.ts)`)
      continue
    }
    const help = readRecorded(dir, helpFile(command))
    const accepted = help && help.exit === 0 ? helpFlags(help.body, command) : undefined
    if (!accepted) {
      problems.push(`docker ${argv.join(' ')}: ${engine} has no \`docker ${command}\``)
      continue
    }
    for (const flag of flagsOf(argv.slice(command.split(' ').length))) {
      if (!accepted.includes(flag)) problems.push(`docker ${argv.join(' ')}: ${flag} is not in ${engine}'s help`)
    }
  }
  return [...new Set(problems)]
}

async function runScript(env: Record<string, string>, script: string, args: string[]) {
  return await $({
    env: { ...process.env, ...env, CI: '', GITHUB_ACTIONS: '', NO_COLOR: '1' },
    nothrow: true,
    quiet: true,
    cwd: ROOT,
  })`${process.execPath} scripts/${script} ${args}`
}

/** Runs `docker …` lines (a dry run's plan) through bash against the fake: their argv as a shell would pass them. */
async function replay(env: Record<string, string>, lines: string[]) {
  for (const line of lines) await $({ env: { ...process.env, ...env }, quiet: true, nothrow: true })`bash -c ${line}`
}

describe('every recorded engine accepts every flag the scripts send it', () => {
  for (const [i, engine] of engineNames().entries()) {
    test(`${engine}: pipeline --dry-run, a simulated run and every prune tier send only flags its help lists`, async () => {
      const expected = EXPECTED[engine]
      expect(expected).toBeDefined() // a new recorded engine needs its expectations here
      const fake = fakeDocker({ engine })
      const builder = builderOf(engine)
      const named = builder ? ['--builder', builder, '--builder-max-used', '1GiB'] : []
      const out = path.join(fx.work, engine)
      const common = [...fixtureFlags(fx), ...named]
      const instances = await instancesFile(fx, ['a__b-1', 'a__b-2', 'c__d-3'])

      const dry = await runScript(fake.env, 'pipeline.ts', [
        ...common,
        '--instances',
        instances,
        '--key',
        `dry${i}`,
        '--dry-run',
        '--out',
        `${out}-dry`,
      ])
      if (dry.exitCode !== 0) console.log(dry.stdout, dry.stderr)
      expect(dry.exitCode).toBe(0)
      const plan = dry.stdout.split('\n').filter((l) => l.startsWith('docker '))
      expect(plan.some((l) => /^docker (buildx )?build /.test(l))).toBe(true)
      await replay(fake.env, plan)

      const sim = await runScript({ ...fake.env, FLEET_TOKEN: 'not-a-secret' }, 'pipeline.ts', [
        ...common,
        '--instances',
        instances,
        '--key',
        `sim${i}`,
        '--mode',
        'docker',
        '--cleanup',
        'per-image',
        '--cache-cap',
        '100MB',
        '--registry-user',
        'ci',
        '--password-env',
        'FLEET_TOKEN',
        '--out',
        out,
      ])
      expect(sim.exitCode).toBe(0)
      const beforeTiers = fake.calls().length
      const tiers = await runScript(fake.env, 'prune.ts', ['--until-free', '1000TB', '--stale-after', '5m'])
      expect(tiers.stderr).toContain('not reached') // every tier ran

      const calls = fake.calls()
      expect(refusals(engine, calls)).toEqual([])
      const ran = new Set(calls.map(commandOf))
      for (const c of ['login', 'push', 'rmi', 'system prune', 'system df', 'builder prune']) expect(ran).toContain(c)

      // the prunes chosen are the ones this combination accepts
      const prunes = calls.filter((c) => c.includes('prune') && !c.includes('--help')).map((c) => c.join(' '))
      const pre = JSON.parse(fs.readFileSync(path.join(out, 'preflight.json'), 'utf8'))
      expect(pre.pruneFlags.keep).toBe(expected.daemonCap)
      expect(prunes).toContain(`builder prune -af ${expected.daemonCap} 0mb`)
      const local = prunes.filter((p) => p.startsWith('buildx prune') && !/-space|--keep-storage/.test(p))
      if (expected.builder) {
        expect(local).toContain(`buildx prune -af --builder ${expected.builder}`)
        expect(
          prunes.some((p) => p.startsWith(`buildx prune -af --builder ${expected.builder} ${expected.builderCap}`)),
        )
          .toBe(true)
      } else expect(local).toEqual([]) // no builder prune frees this disk: none is run
      if (expected.bound) {
        expect(prunes).toContain(`buildx prune -af --builder ${builder} ${expected.bound} 1024mb`)
        expect(pre.engine.prunes.bound).toBe(`docker buildx prune --builder ${builder} ${expected.bound}`)
      }
      expect(pre.engine.imageStore).toBe(expected.containerd ? 'containerd' : 'graphdriver')
      const tierPrunes = calls.slice(beforeTiers).filter((c) => c.includes('prune') && !c.includes('--help'))
      const order = tierPrunes.map((c) => c.join(' ')).filter((p) =>
        p.startsWith('system') || / (--reserved-space|--keep-storage) 0mb$/.test(p)
      )
      // the containerd image store runs the system prune before the capped one (scripts/prune.ts TIER_ORDER)
      expect(order[0].startsWith('system')).toBe(Boolean(expected.containerd))
      fake.cleanup()
    })
  }
})
