// GitHub Actions outputs of a real pipeline run against a recording fake docker and a real registry:
// groups per phase, one ::error per failed image naming its log, the job summary (counts, failures,
// mermaid chart of free disk, cleanups, slowest images), step outputs; --shard and --merge for a matrix.
import { describe, expect, test } from 'bun:test'
import fs from 'node:fs'
import path from 'node:path'
import { $ } from 'zx'
import { fixtureFlags, instancesFile, registryFixture, ROOT } from './helpers/fixture.ts'
import { fakeDocker } from './helpers/fake-docker.ts'
import { appendStepSummary, diskChart, writeOutputs } from '../lib/run/github.ts'
import { jsonLines } from './helpers/json-lines.ts'

const fx = registryFixture('github-test')

const IDS = ['bad__one-1', 'good__one-2', 'good__one-3', 'other__two-1', 'other__two-2', 'third__three-1']
const FAIL = {
  match: 'BASE_IMAGE=\\S*/up/bad_1776_one-1:latest',
  stderr: 'ERROR: failed to solve: 127.0.0.1/up/bad: not found',
}

async function run(args: string[], name: string) {
  const fake = fakeDocker({ fail: FAIL })
  const files = { summary: path.join(fx.work, `${name}.md`), output: path.join(fx.work, `${name}.out`) }
  const instances = await instancesFile(fx, IDS)
  // IMAGEFLEET_MODE=docker: assemble with docker build + push, which the fake records (registry assembly: assemble.test.ts)
  const env = {
    ...process.env,
    ...fake.env,
    IMAGEFLEET_MODE: 'docker',
    CI: 'true',
    GITHUB_ACTIONS: 'true',
    GITHUB_STEP_SUMMARY: files.summary,
    GITHUB_OUTPUT: files.output,
  }
  const r = await $({
    env,
    nothrow: true,
    quiet: true,
    cwd: ROOT,
  })`${process.execPath} scripts/pipeline.ts ${fixtureFlags(fx)} --instances ${instances} --key gh ${args}`
  fake.cleanup()
  const read = (f: string) => (fs.existsSync(f) ? fs.readFileSync(f, 'utf8') : '')
  return {
    code: r.exitCode,
    stdout: r.stdout,
    stderr: r.stderr,
    summary: read(files.summary),
    outputs: read(files.output),
  }
}

describe('GitHub Actions outputs', () => {
  test('groups per phase, an ::error per failed image naming its log, job summary and step outputs', async () => {
    const out = path.join(fx.work, 'full')
    const r = await run(['--out', out, '--concurrency', '1'], 'full')
    expect(r.code).toBe(1)
    const groups = r.stdout.split('\n').filter((l) => l.startsWith('::group::')).map((l) => l.split(' ')[0])
    expect(groups).toEqual(['::group::preflight', '::group::plan', '::group::builder', '::group::instances:'])
    expect(r.stdout.split('\n').filter((l) => l === '::endgroup::').length).toBe(4)
    const errors = r.stdout.split('\n').filter((l) => l.startsWith('::error'))
    expect(errors[0]).toContain('title=imagefleet%3A base bad__one-1 failed::')
    expect(errors[0]).toContain(`log: ${out}/logs/base/bad_1776_one-1.log`)
    expect(errors).toHaveLength(2) // the failed base, and one line for the assembly it blocked
    expect(r.stdout).toContain('\x1b[') // colour forced in Actions logs (not a TTY)
    expect(r.outputs).toBe(`built=11\nskipped=0\nfailed=2\nmanifest=${out}/manifest.jsonl\n`)
    for (
      const needle of [
        '| base | 5 | 0 | 1 |',
        '| assemble | 5 | 0 | 1 |',
        '### Failed',
        'bad_1776_one-1.log',
        '```mermaid',
        'xychart-beta',
        '### Cleanups',
        '`docker rmi …`',
        '### Slowest 10 images',
      ]
    ) {
      expect(r.summary).toContain(needle)
    }
    expect(fs.readFileSync(path.join(out, 'summary.md'), 'utf8').trim()).toBe(r.summary.trim())
  })

  test('--shard splits the fleet for a matrix and --merge puts the shards back into one summary', async () => {
    const shards = await Promise.all(
      [1, 2].map((k) => run(['--out', path.join(fx.work, `shard-${k}`), '--shard', `${k}/2`], `shard-${k}`)),
    )
    const ids = (k: number) =>
      jsonLines(path.join(fx.work, `shard-${k}`, 'manifest.jsonl')).filter((m) => m.phase === 'assemble').map((m) =>
        m.id
      )
    expect([...ids(1), ...ids(2)].sort()).toEqual([...IDS].sort())
    expect(ids(1).filter((id) => ids(2).includes(id))).toEqual([])
    for (const s of shards) expect(s.stdout).toMatch(/shard [12]\/2: \d of 6 instances/)
    const merged = path.join(fx.work, 'merged')
    const m = await run(
      ['--merge', path.join(fx.work, 'shard-1'), path.join(fx.work, 'shard-2'), '--out', merged],
      'merged',
    )
    expect(m.code).toBe(1) // a shard failed
    expect(m.summary).toStartWith(
      '## imagefleet (2 shards merged): 6 instances (key `gh`) — 12 built, 0 skipped, 2 failed',
    )
    expect(m.summary).toContain('| assemble | 5 | 0 | 1 |')
    expect(m.summary.match(/^ {2}line \[/gm)).toHaveLength(2) // one free-disk line per shard
    expect(m.outputs).toContain(`manifest=${merged}/manifest.jsonl`)
    expect(fs.readFileSync(path.join(merged, 'manifest.jsonl'), 'utf8').trim().split('\n').length).toBe(14) // each shard's builder record + 6 bases + 6 assemblies
  })

  test('a bad --shard or a --merge of non-shard dirs is a usage error (exit 2) before any docker command', async () => {
    for (const bad of ['0/2', '3/2', 'x']) {
      const r = await run(['--out', path.join(fx.work, 'bad'), '--shard', bad], 'bad')
      expect(r.code).toBe(2)
      expect(r.stdout + r.stderr).toContain('--shard wants I/N')
    }
    const r = await run(['--merge', fx.work, '--out', path.join(fx.work, 'bad-merge')], 'bad-merge')
    expect(r.code).toBe(2)
    expect(r.stdout + r.stderr).toContain('no summary.json')
  })
})

describe('GitHub files', () => {
  test('step outputs use the heredoc form for multi-line values', () => {
    const file = path.join(fx.work, 'outputs')
    writeOutputs(file, { a: 1, b: 'x\ny' })
    expect(fs.readFileSync(file, 'utf8')).toBe('a=1\nb<<IMAGEFLEET_EOF\nx\ny\nIMAGEFLEET_EOF\n')
  })

  test("the job summary is cut to GitHub's 1 MiB limit", () => {
    const file = path.join(fx.work, 'big.md')
    appendStepSummary(file, 'x'.repeat(2 * 1024 * 1024))
    expect(fs.statSync(file).size).toBeLessThanOrEqual(1024 * 1024)
  })

  test('the disk chart marks cleanups as bars where they ran, one line per series', () => {
    const events = Array.from({ length: 100 }, (_, i) => ({ t: i, free: 5e9 - i * 1e7, used: 0, event: 'x' }))
    const chart = diskChart([{ name: 'a', events }, { name: 'b', events }], [{ t: 50, reclaimed: 2e9 }], 10)!
    expect(chart).toContain('line [4.91, 4.81,') // the lowest free space in each column
    expect(chart.match(/^ {2}line/gm)).toHaveLength(2)
    expect(chart).toContain('bar [0, 0, 0, 0, 0, 2, 0, 0, 0, 0]')
  })
})
