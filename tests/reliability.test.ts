// Reliability and security against a recording fake docker and a real registry server: hostile input
// refused before any docker command, every value one argument, secrets masked everywhere, retries with
// backoff, a hung prune killed at its timeout, a graceful stop on SIGINT, --retry-failed.
// The same faults against the real engine: faults.integration.test.ts.
import { describe, expect, test } from 'bun:test'
import cp from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { $ } from 'zx'
import { CONTEXT, fixtureFlags, instancesFile as writeInstances, registryFixture, ROOT } from './helpers/fixture.ts'
import { type FakeDocker, fakeDocker, mutatingCalls } from './helpers/fake-docker.ts'
import { jsonLines } from './helpers/json-lines.ts'

const fx = registryFixture('reliability-test')

const tmpName = (prefix: string) => path.join(fx.work, `${prefix}-${Math.random().toString(36).slice(2)}`)
const instancesFile = (lines: string[]) => writeInstances(fx, lines)

/** Assemble with docker build (the fake pushes nothing, so the registry has no builder image to assemble from). */
const DOCKER_MODE = ['--mode', 'docker']
/** The usual flags: the fixture's (registry, upstream template, example context, no free-space floor), OUT, docker mode. */
const usual = (out: string) => [...fixtureFlags(fx), '--out', out, ...DOCKER_MODE]

async function pipeline(fake: FakeDocker, args: string[], env: Record<string, string> = {}, out = tmpName('out')) {
  const fullEnv = { ...process.env, ...fake.env, CI: '', GITHUB_ACTIONS: '', ...env }
  const r = await $({
    env: fullEnv,
    nothrow: true,
    quiet: true,
    cwd: ROOT,
  })`${process.execPath} scripts/pipeline.ts ${args}`
  return { code: r.exitCode, stdout: r.stdout, stderr: r.stderr, out, calls: fake.calls() }
}
const run = (fake: FakeDocker, args: string[], env: Record<string, string> = {}) => {
  const out = tmpName('out')
  return pipeline(fake, [...usual(out), ...args], env, out)
}
const manifest = (out: string) => jsonLines(path.join(out, 'manifest.jsonl'))
const allFiles = (dir: string): string[] =>
  fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? allFiles(path.join(dir, e.name)) : [path.join(dir, e.name)]
  )

describe('bad input is refused before anything runs', () => {
  test('hostile or broken lines, flags and paths: exit 2, no docker command at all, each bad line named once', async () => {
    const fake = fakeDocker()
    const lines = [
      'ok__fine-1', // 1
      'evil$(reboot)', // 2 command substitution
      'tick`id`', // 3 backticks
      'a;rm -rf /', // 4 ;
      'a|b', // 5 pipe
      '../../etc/passwd', // 6 path
      'has space', // 7
      '{"id": "x", ', // 8 malformed JSON
      '{"id": 5}', // 9 id not a string
      '[1,2]', // 10 not an id
      '{"instance_id": "ok__fine-1"}', // 11 duplicate
      '{"id": "y", "upstream": "reg/x; rm -rf /"}', // 12 upstream with shell
      '{"id": "z", "upstream": "$(curl evil)"}', // 13
      '{"foo": 1}', // 14 no id
      '-rf', // 15 a flag in disguise
      'tab\there', // 16
      'x'.repeat(200), // 17 too long for a tag
      'back\\slash', // 18
      '{"id": "w", "upstream": "UPPER/Case:tag"}', // 19 invalid reference
      '"quoted"', // 20
      '{"id": "ok__two", "upstream": 7}', // 21
      'new\rline', // 22 a carriage return inside a line
    ]
    const refuse = async (args: string[], needles: string[]) => {
      const r = await pipeline(fake, args)
      expect(r.code).toBe(2)
      expect(r.calls).toEqual([]) // not even docker version
      for (const needle of needles) expect(r.stderr).toContain(needle)
      expect(r.stderr).toContain('Nothing was built')
      return r
    }
    const out = tmpName('out')
    const badLines = await refuse([...usual(out), '--instances', await instancesFile(lines)], [
      'line 2:',
      'line 3:',
      'line 4:',
      'line 5:',
      'line 6:',
      'line 7:',
      'line 8: malformed JSON',
      'line 9:',
      'line 10:',
      'line 11: duplicate',
      'line 12:',
      'line 13:',
      'line 14:',
      'line 15:',
      'line 16:',
      'line 17:',
      'line 18:',
      'line 19:',
      'line 20:',
      'line 21:',
      'line 22:',
    ])
    // every bad line named once, the good first line not at all
    const named = [...badLines.stderr.matchAll(/\bline (\d+):/g)].map((m) => Number(m[1]))
    expect(named).toEqual(Array.from({ length: 21 }, (_, i) => i + 2))
    const file = await instancesFile(['ok__fine-1'])
    await refuse([
      ...usual(out),
      '--instances',
      file,
      '--min-free',
      '10XB',
      '--concurrency',
      '0',
      '--bogus',
      '--timeout',
      'forever',
      '--retries',
      'x',
    ], ['--min-free', '--concurrency', 'unknown flag --bogus', '--timeout', '--retries'])
    await refuse([
      '--instances',
      file,
      '--min-free',
      '0',
      '--out',
      out,
      '--context',
      CONTEXT,
      '--upstream',
      'reg/{nope}:x',
      '--registry',
      'UP;rm',
      '--build-arg',
      'NOTKV',
      '--platform',
      'linux/amd64;id',
      '--key',
      '../x',
      '--registry-user',
      'bot',
      '--password-env',
      'NO_SUCH_VAR_HERE',
      '--base-target',
      'nostage',
    ], [
      '{nope}',
      '--registry UP;rm:',
      "--build-arg 'NOTKV'",
      '--platform',
      '--key',
      'NO_SUCH_VAR_HERE',
      "no stage 'nostage'",
    ])
    const notADir = tmpName('file')
    fs.writeFileSync(notADir, '')
    await refuse([...usual(notADir), '--instances', file], ['is not a directory'])
    await refuse([
      '--registry',
      `${fx.registry.address}/fleet`,
      '--instances',
      file,
      '--context',
      '/nonexistent/ctx',
      '--out',
      out,
    ], ['/nonexistent/ctx: not a directory', 'Dockerfile /nonexistent/ctx/Dockerfile: not found'])
    await refuse([...usual(out), '--instances', fx.work], ['instances file']) // unreadable: a directory (root reads any file)
    await refuse([...usual(out), '--instances', await instancesFile(['# only a comment', ''])], [
      'no instances to build',
    ])
    await refuse([...usual(tmpName('empty-out')), '--instances', file, '--retry-failed'], [
      '--retry-failed: no manifest.jsonl',
    ])
    await refuse([...usual(out), '--instances', file, '--shard', '3/2'], ['--shard'])
    fake.cleanup()
  })
})

describe('no injection', () => {
  test('hostile values that pass validation reach docker as one argument each, and nothing runs them', async () => {
    const fake = fakeDocker({ buildx: true })
    const pwned = tmpName('pwned')
    const evil = {
      network: `none; touch ${pwned}`,
      builder: `$(touch ${pwned})`,
      buildArg: `X=\`touch ${pwned}\` && echo "$HOME" | cat`,
      user: `bot'; touch ${pwned}; '`,
    }
    const r = await run(fake, [
      '--instances',
      await instancesFile(['a__b-1']),
      '--key',
      'inj',
      '--network',
      evil.network,
      '--builder',
      evil.builder,
      '--build-arg',
      evil.buildArg,
      '--registry-user',
      evil.user,
      '--password-env',
      'INJ_PASSWORD',
    ], { INJ_PASSWORD: `p$(touch ${pwned})` })
    expect(r.code).toBe(0)
    const m = mutatingCalls(r.calls)
    const login = m.find((c) => c[0] === 'login')!
    expect(login).toEqual(['login', fx.registry.address, '-u', evil.user, '--password-stdin'])
    expect(fake.stdin()).toBe(`p$(touch ${pwned})`)
    const builds = m.filter((c) => c.includes('build'))
    expect(builds.length).toBe(3)
    for (const b of builds) {
      expect(b[b.indexOf('--network') + 1]).toBe(evil.network)
      expect(b[b.indexOf('--build-arg') + 1]).toBe(evil.buildArg)
    }
    for (const b of builds.filter((c) => c[0] === 'buildx')) expect(b[b.indexOf('--builder') + 1]).toBe(evil.builder)
    expect(fs.existsSync(pwned)).toBe(false)
    fake.cleanup()
  })
})

describe('secrets', () => {
  const password = 's3cr3t-Pa55word'
  const token = 'tok-abc-123456'

  test('login reads the password on stdin; it and *TOKEN* values are masked in output, logs, manifest and summary', async () => {
    // the registry "echoes" the token back in an error, as some do
    const fake = fakeDocker({
      fail: { match: 'push \\S*eval-agent', stderr: `denied: token ${token} rejected for ${password}` },
    })
    const r = await run(fake, [
      '--instances',
      await instancesFile(['a__b-2']),
      '--key',
      'sec',
      '--registry-user',
      'bot',
      '--password-env',
      'REG_PASS',
      '--retries',
      '1',
    ], { REG_PASS: password, API_TOKEN: token })
    expect(r.code).toBe(1)
    expect(r.calls.find((c) => c[0] === 'login')).toEqual([
      'login',
      fx.registry.address,
      '-u',
      'bot',
      '--password-stdin',
    ])
    expect(fake.stdin()).toBe(password)
    for (const c of r.calls) expect(c.join(' ')).not.toContain(password)
    const texts: Record<string, string> = {
      stdout: r.stdout,
      stderr: r.stderr,
      ...Object.fromEntries(allFiles(r.out).map((f) => [path.relative(r.out, f), fs.readFileSync(f, 'utf8')])),
    }
    expect(Object.keys(texts)).toEqual(
      expect.arrayContaining([
        'manifest.jsonl',
        'summary.json',
        'summary.md',
        'preflight.json',
        'logs/assemble/a_1776_b-2.log',
      ]),
    )
    for (const [name, text] of Object.entries(texts)) {
      expect({ name, leaked: text.includes(password) || text.includes(token) }).toEqual({ name, leaked: false })
    }
    expect(texts['logs/assemble/a_1776_b-2.log']).toContain('denied: token *** rejected for ***')
    expect(manifest(r.out).find((m) => m.phase === 'assemble')).toMatchObject({ status: 'failed', error_class: 'auth' })
    fake.cleanup()
  })

  test('in GitHub Actions each secret is registered with ::add-mask:: before anything else is printed', async () => {
    const fake = fakeDocker()
    const r = await run(fake, [
      '--instances',
      await instancesFile(['a__b-3']),
      '--key',
      'gha',
      '--registry-user',
      'bot',
      '--password-env',
      'REG_PASS',
    ], { REG_PASS: password, API_TOKEN: token, GITHUB_ACTIONS: 'true' })
    expect(r.code).toBe(0)
    const lines = r.stdout.split('\n')
    expect(lines.slice(0, 2).sort()).toEqual([`::add-mask::${password}`, `::add-mask::${token}`].sort())
    expect(lines.slice(2).join('\n')).not.toContain(password)
    fake.cleanup()
  })
})

describe('transient failures, timeouts and reruns', () => {
  test('a refused connection is retried with backoff --retries times, then recorded as network; --retry-failed reruns only that instance', async () => {
    const fake = fakeDocker({
      fail: {
        match: 'push \\S*eval-agent:\\S*bad',
        stderr: 'Get "http://127.0.0.1:1/v2/": dial tcp 127.0.0.1:1: connect: connection refused',
      },
    })
    const out = tmpName('out')
    const file = await instancesFile(['good__one-1', 'bad__one-2'])
    const r = await pipeline(fake, [
      ...usual(out),
      '--instances',
      file,
      '--key',
      'rt',
      '--retries',
      '3',
      '--backoff',
      '200ms',
    ])
    expect(r.code).toBe(1)
    expect(mutatingCalls(r.calls).filter((c) => c[0] === 'push' && c[1].includes('eval-agent') && c[1].includes('bad')))
      .toHaveLength(3)
    expect(manifest(out).find((m) => m.phase === 'assemble' && m.id === 'bad__one-2')).toMatchObject({
      status: 'failed',
      error_class: 'network',
      attempts: 3,
    })
    const log = fs.readFileSync(path.join(out, 'logs/assemble/bad_1776_one-2.log'), 'utf8')
    expect(log).toContain('# attempt 1 failed (network); retrying in 0.2s')
    expect(log).toContain('# attempt 2 failed (network); retrying in 0.4s') // the backoff doubles

    const fixed = fakeDocker()
    const again = await pipeline(fixed, [...usual(out), '--instances', file, '--key', 'rt', '--retry-failed'])
    expect(again.code).toBe(0)
    const builds = mutatingCalls(again.calls).filter((c) =>
      c[0] === 'build' && c.some((a) => a.includes('BASE_IMAGE='))
    )
    expect(builds.length).toBe(2) // base + assembly of bad__one-2 only
    for (const b of builds) expect(b.join(' ')).toContain('bad_1776_one-2')
    const records = manifest(out)
    expect(records.filter((m) => m.id === 'good__one-1')).toHaveLength(2) // the first run's, kept
    expect(records.filter((m) => m.id === 'bad__one-2').at(-1)).toMatchObject({ phase: 'assemble', status: 'built' })
    fake.cleanup()
    fixed.cleanup()
  })

  test('a hung prune is killed at --prune-timeout and the run goes on', async () => {
    const fake = fakeDocker({ hang: '^system prune' })
    const r = await run(fake, [
      '--instances',
      await instancesFile(['a__b-4', 'c__d-5']),
      '--key',
      'hang',
      '--cleanup',
      'per-image',
      '--prune-timeout',
      '1s',
      '--concurrency',
      '1',
    ])
    expect(r.code).toBe(0)
    expect(r.stderr).toContain('docker system prune -f timed out after 1.0s and was killed; the run goes on')
    const cleanups = JSON.parse(fs.readFileSync(path.join(r.out, 'summary.json'), 'utf8')).cleanups.total
    expect(cleanups.filter((c: { timedOut?: boolean }) => c.timedOut).map((c: { command: string }) => c.command))
      .toEqual(['docker system prune -f', 'docker system prune -f'])
    expect(mutatingCalls(r.calls).filter((c) => c[0] === 'system' && c[1] === 'prune')).toHaveLength(2)
    expect(manifest(r.out).filter((m) => m.phase === 'assemble').map((m) => m.status)).toEqual(['built', 'built'])
    expect(await leftovers(fake)).toEqual([])
    fake.cleanup()
  })
})

/** Processes still running the fake (its `sleep 3600`) after a few seconds: a kill that missed part of a process tree. */
async function leftovers(fake: FakeDocker): Promise<number[]> {
  for (let i = 0; i < 30 && running(fake).length; i++) await Bun.sleep(100)
  return running(fake)
}
function running(fake: FakeDocker): number[] {
  return fs.readdirSync('/proc').filter((d) => /^\d+$/.test(d)).map(Number).filter((pid) => {
    try {
      return fs.readFileSync(`/proc/${pid}/environ`, 'utf8').includes(`FAKE_DOCKER_LOG=${fake.env.FAKE_DOCKER_LOG}`)
    } catch {
      return false
    }
  })
}

describe('graceful stop', () => {
  /** Starts the pipeline directly (no shell between us and it), waits until `hung` builds hang, then signals it. */
  async function interrupt(
    fake: FakeDocker,
    args: string[],
    signals: Array<{ after: number; signal: NodeJS.Signals }>,
    hung: number,
  ) {
    const out = tmpName('out')
    const child = cp.spawn(process.execPath, ['scripts/pipeline.ts', ...usual(out), ...args], {
      cwd: ROOT,
      env: { ...process.env, ...fake.env, CI: '', GITHUB_ACTIONS: '' },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let stdout = '', stderr = ''
    child.stdout.on('data', (d) => {
      stdout += d
    })
    child.stderr.on('data', (d) => {
      stderr += d
    })
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)))
    while (fake.calls().filter((c) => c.some((a) => a.includes('/up/'))).length < hung) await Bun.sleep(50)
    for (const s of signals) {
      await Bun.sleep(s.after)
      child.kill(s.signal)
    }
    const code = await exited
    return { code, out, stdout, stderr }
  }

  test('SIGINT: no new work, in-flight builds killed after --grace, every instance recorded, summary written, exit 130', async () => {
    const fake = fakeDocker({ hang: 'BASE_IMAGE=\\S*/up/' })
    const r = await interrupt(
      fake,
      [
        '--instances',
        await instancesFile(['a__s-1', 'a__s-2', 'a__s-3', 'a__s-4']),
        '--key',
        'int',
        '--concurrency',
        '2',
        '--grace',
        '1s',
      ],
      [{ after: 0, signal: 'SIGINT' }],
      2,
    )
    expect(r.code).toBe(130)
    expect(r.stderr).toContain('SIGINT: no new images start')
    expect(r.stderr).toContain('grace of 1s over: killing 2 running commands')
    const records = manifest(r.out)
    expect(records.find((m) => m.phase === 'builder')).toMatchObject({ status: 'built' })
    for (const phase of ['base', 'assemble']) {
      expect(records.filter((m) => m.phase === phase).map((m) => [m.id, m.status, m.error_class]).sort()).toEqual(
        ['a__s-1', 'a__s-2', 'a__s-3', 'a__s-4'].map((id) => [id, 'failed', 'interrupted']),
      )
    }
    expect(records.filter((m) => m.phase === 'base' && m.attempts === 1)).toHaveLength(2) // the two in flight; two never started
    expect(JSON.parse(fs.readFileSync(path.join(r.out, 'summary.json'), 'utf8')).counts.base.failed).toBe(4)
    expect(mutatingCalls(fake.calls()).filter((c) => c.some((a) => a.includes('/up/')))).toHaveLength(2) // nothing new admitted
    expect(await leftovers(fake)).toEqual([])
    fake.cleanup()
  })

  test('a second signal stops at once, still writing the manifest and summary', async () => {
    const fake = fakeDocker({ hang: 'BASE_IMAGE=\\S*/up/' })
    const r = await interrupt(
      fake,
      [
        '--instances',
        await instancesFile(['b__s-1', 'b__s-2']),
        '--key',
        'int2',
        '--concurrency',
        '2',
        '--grace',
        '10m',
      ],
      [{ after: 0, signal: 'SIGTERM' }, { after: 300, signal: 'SIGTERM' }],
      2,
    )
    expect(r.code).toBe(130)
    expect(r.stderr).toContain('SIGTERM again: stopping now')
    const base = manifest(r.out).filter((m) => m.phase === 'base')
    expect(base.map((m) => [m.id, m.error_class, m.reason]).sort()).toEqual([
      ['b__s-1', 'interrupted', 'stopped at once by a second signal'],
      ['b__s-2', 'interrupted', 'stopped at once by a second signal'],
    ])
    expect(fs.existsSync(path.join(r.out, 'summary.json'))).toBe(true)
    expect(await leftovers(fake)).toEqual([])
    fake.cleanup()
  })
})
