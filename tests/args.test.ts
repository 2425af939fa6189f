import { describe, expect, test } from 'bun:test'
import { type FlagTable, parseDuration, parseFlags, renderHelp, UsageError } from '../lib/cli/flags.ts'
import { dockerSize, formatBytes, parseSize } from '../lib/cli/size.ts'
import { $ } from 'zx'
import { scriptNames } from '../scripts/docs.ts'
import { fakeDocker } from './helpers/fake-docker.ts'
import { ROOT } from './helpers/fixture.ts'

const T = {
  'min-free': { type: 'size', default: '1GB', help: 'min free' },
  concurrency: { type: 'int', default: 4, min: 1, help: 'how many' },
  'build-arg': { type: 'list', help: 'args' },
  force: { type: 'boolean', help: 'force' },
  cleanup: { type: 'string', default: 'adaptive', choices: ['adaptive', 'none'], help: 'policy' },
  timeout: { type: 'duration', default: '10m', help: 'timeout' },
} as const satisfies FlagTable

describe('sizes', () => {
  test('take the forms people write', () => {
    expect(parseSize('500MB')).toBe(500e6)
    expect(parseSize('20GB')).toBe(20e9)
    expect(parseSize('20GiB')).toBe(20 * 2 ** 30)
    expect(parseSize('30g')).toBe(30 * 2 ** 30)
    expect(parseSize('1.5 GB')).toBe(1.5e9)
    expect(parseSize('1048576')).toBe(1048576)
    expect(parseSize('2.631GB')).toBe(2631e6) // docker system df's human strings
  })
  test('refuse what is not a size, saying which forms work', () => {
    for (const bad of ['10XB', '', 'GB', '-1GB', '1e9', '5 G B']) {
      expect(() => parseSize(bad)).toThrow(/not a size.*500MB/)
    }
  })
  test('print signed and unrounded into lies', () => {
    expect(formatBytes(-1536)).toBe('-1.5 KiB')
    expect(formatBytes(0)).toBe('0 B')
    expect(formatBytes(3 * 2 ** 30)).toBe('3.0 GiB')
    expect(dockerSize(3 * 2 ** 30)).toBe('3072mb')
  })
})

describe('flags', () => {
  test('defaults, conversion and repeated lists', () => {
    const { flags, positionals } = parseFlags(T, ['--build-arg', 'A=1', '--build-arg=B=2', '--force', 'extra'], {}, {
      positionals: true,
    })
    expect(flags).toMatchObject({
      minFree: 1e9,
      concurrency: 4,
      buildArg: ['A=1', 'B=2'],
      force: true,
      cleanup: 'adaptive',
      timeout: 600_000,
    })
    expect(positionals).toEqual(['extra'])
  })
  test('IMAGEFLEET_<FLAG> environment variables apply, and the flag wins', () => {
    const env = { IMAGEFLEET_MIN_FREE: '2GiB', IMAGEFLEET_CONCURRENCY: '8', IMAGEFLEET_FORCE: 'true' }
    expect(parseFlags(T, [], env).flags).toMatchObject({ minFree: 2 * 2 ** 30, concurrency: 8, force: true })
    expect(parseFlags(T, ['--concurrency', '2'], env).flags.concurrency).toBe(2)
  })
  test('collects every bad flag into one usage error', () => {
    try {
      parseFlags(T, [
        '--min-free',
        '10XB',
        '--concurrency',
        '0',
        '--bogus',
        '--cleanup',
        'sometimes',
        '--timeout',
        'soon',
      ])
      throw new Error('no error')
    } catch (e) {
      expect(e).toBeInstanceOf(UsageError)
      const problems = (e as UsageError).problems.join('\n')
      for (const n of ['--min-free', '--concurrency', '--bogus', '--cleanup', '--timeout']) {
        expect(problems).toContain(n)
      }
    }
  })
  test('a stray argument is refused unless the command takes arguments', () => {
    expect(() => parseFlags(T, ['--force', 'extra'])).toThrow(
      "unexpected argument 'extra': this command takes flags only (a value with spaces needs quotes; see --help)",
    )
  })
  test('a bad value in the environment is refused like a bad flag', () => {
    expect(() => parseFlags(T, [], { IMAGEFLEET_MIN_FREE: 'lots' })).toThrow(UsageError)
  })
  test('durations', () => {
    expect([
      parseDuration('90s'),
      parseDuration('10m'),
      parseDuration('2h'),
      parseDuration('500ms'),
      parseDuration('30'),
    ]).toEqual([90_000, 600_000, 7_200_000, 500, 30_000])
    expect(parseDuration('10 minutes')).toBeUndefined()
  })
  test('help lists every flag with its default and the environment form', () => {
    const help = renderHelp('x [flags]', 'does x', T)
    for (const name of Object.keys(T)) expect(help).toContain(`--${name}`)
    expect(help).toContain('(default: 1GB)')
    expect(help).toContain('IMAGEFLEET_')
  })
})

describe('every script', () => {
  // the README's broken `\   # comment` continuation ran pipeline.ts with a stray '  # …' argument, silently
  test('refuses a stray argument with exit 2 and runs no docker command (pipeline: outside --merge)', async () => {
    const fake = fakeDocker()
    const env = { ...process.env, ...fake.env, CI: '', GITHUB_ACTIONS: '' }
    for (const script of scriptNames()) {
      const args = script === 'sandbox.ts' ? ['status', 'stray'] : ['stray']
      const r = await $({
        env,
        cwd: ROOT,
        nothrow: true,
        quiet: true,
      })`${process.execPath} ${`scripts/${script}`} ${args}`
      expect([script, r.exitCode]).toEqual([script, 2])
      expect(r.stderr).toContain("'stray'")
    }
    expect(fake.calls()).toEqual([])
    fake.cleanup()
  })
})
