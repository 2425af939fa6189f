// --merge (lib/run/merge.ts): the OUT dirs of a matrix's shards become one manifest and one summary. Counts come from
// where each image ended (a shard rerun after a failure counts as built), the run-wide figures are the shards'
// extremes, every record is kept, and a dir that is not a finished shard is named.
import { afterAll, describe, expect, test } from 'bun:test'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { mergeShards, writeMerged } from '../lib/run/merge.ts'
import { summarizeFacts } from '../lib/run/summary.ts'
import type { CleanupRecord, ManifestRecord } from '../lib/run/records.ts'
import { UsageError } from '../lib/cli/flags.ts'

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'merge-test-'))
afterAll(() => fs.rmSync(work, { recursive: true, force: true }))

const rec = (phase: ManifestRecord['phase'], id: string, status: ManifestRecord['status'], extra = {}) =>
  ({
    phase,
    id,
    tag: `r/${phase}:k-${id}`,
    status,
    reason: status,
    attempts: 1,
    started_at: '2026-11-26T10:00:00.000Z',
    finished_at: '2026-11-26T10:00:10.000Z',
    seconds: 10,
    log: `logs/${phase}/${id}.log`,
    ...extra,
  }) satisfies ManifestRecord
const prune: CleanupRecord = {
  command: 'docker builder prune -af',
  tier: 'full',
  reclaimed: 3e9,
  seconds: 4,
  exitCode: 0,
  freeBefore: 1e9,
  freeAfter: 4e9,
  at: '2026-11-26T10:05:00.000Z',
}

/** A shard's OUT dir as the pipeline leaves it: manifest.jsonl, disk.jsonl and its own summary.json. */
function shard(name: string, o: {
  records: ManifestRecord[]
  instances: number
  startedAt: string
  wallSeconds: number
  peakUsed: number
  minFree: number
  cleanups?: CleanupRecord[]
}): string {
  const dir = path.join(work, name)
  fs.mkdirSync(dir, { recursive: true })
  fs.writeFileSync(path.join(dir, 'manifest.jsonl'), o.records.map((r) => JSON.stringify(r) + '\n').join(''))
  fs.writeFileSync(path.join(dir, 'disk.jsonl'), JSON.stringify({ t: 1, free: o.minFree, used: 0, event: 'x' }) + '\n')
  const summary = summarizeFacts({ ...o, cleanups: o.cleanups ?? [], key: 'k' })
  fs.writeFileSync(path.join(dir, 'summary.json'), JSON.stringify(summary))
  return dir
}

const one = shard('shard-1', {
  records: [
    rec('builder', 'builder', 'built'),
    rec('base', 'a__x-1', 'built'),
    rec('assemble', 'a__x-1', 'failed', { error_class: 'network' }),
    rec('assemble', 'a__x-1', 'built', { attempts: 2 }), // the shard was rerun: this is where a__x-1 ended
  ],
  instances: 1,
  startedAt: '2026-11-26T10:00:00.000Z',
  wallSeconds: 300,
  peakUsed: 9e9,
  minFree: 2e9,
  cleanups: [prune],
})
const two = shard('shard-2', {
  records: [
    rec('builder', 'builder', 'built'),
    rec('base', 'b__y-1', 'built'),
    rec('assemble', 'b__y-1', 'built'),
    rec('base', 'c__z-1', 'failed', { error_class: 'build_error', reason: 'exit code: 2' }),
    rec('assemble', 'c__z-1', 'failed', { error_class: 'build_error', reason: 'base image failed', attempts: 0 }),
  ],
  instances: 2,
  startedAt: '2026-11-26T09:59:00.000Z',
  wallSeconds: 420,
  peakUsed: 7e9,
  minFree: 1e9,
})

describe('--merge', () => {
  test('counts where each image ended in its shard: a failure a rerun fixed is not counted', () => {
    const { summary } = mergeShards([one, two])
    expect(summary.counts).toEqual({
      mirror: { built: 0, skipped: 0, failed: 0 },
      builder: { built: 2, skipped: 0, failed: 0 },
      base: { built: 2, skipped: 0, failed: 1 },
      assemble: { built: 2, skipped: 0, failed: 1 },
    })
    expect(summary.failed.map((f) => `${f.phase} ${f.id} ${f.error_class}`)).toEqual([
      'base c__z-1 build_error',
      'assemble c__z-1 build_error',
    ])
  })

  test("the run-wide figures are the shards': instances summed, the longest wall, the highest peak, the lowest free", () => {
    const { summary } = mergeShards([one, two])
    expect(summary).toMatchObject({
      instances: 3,
      key: 'k',
      startedAt: '2026-11-26T09:59:00.000Z',
      wallSeconds: 420,
      peakUsed: 9e9,
      minFree: 1e9,
      reclaimed: 3e9,
    })
    expect(summary.cleanups.total).toEqual([prune])
  })

  test("every shard's records go into the merged manifest; one chart line per shard", () => {
    const merged = path.join(work, 'merged')
    const m = mergeShards([one, two])
    expect(m.series.map((s) => s.name)).toEqual(['shard-1', 'shard-2'])
    expect(writeMerged(m, merged)).toBe(1) // a shard failed
    const lines = fs.readFileSync(path.join(merged, 'manifest.jsonl'), 'utf8').trim().split('\n')
    expect(lines.map((l) => JSON.parse(l).id)).toEqual([
      'builder',
      'a__x-1',
      'a__x-1',
      'a__x-1',
      'builder',
      'b__y-1',
      'b__y-1',
      'c__z-1',
      'c__z-1',
    ])
    expect(JSON.parse(fs.readFileSync(path.join(merged, 'summary.json'), 'utf8')).counts).toEqual(m.summary.counts)
    expect(fs.readFileSync(path.join(merged, 'summary.md'), 'utf8')).toStartWith(
      '## imagefleet (2 shards merged): 3 instances (key `k`) — 6 built, 0 skipped, 2 failed',
    )
  })

  test('a dir that is not a finished shard is a usage error naming it; so is no dir at all', () => {
    const empty = path.join(work, 'not-a-shard')
    fs.mkdirSync(empty)
    expect(() => mergeShards([one, empty])).toThrow(
      `--merge ${empty}: no summary.json (not the OUT dir of a finished shard)`,
    )
    expect(() => mergeShards([one, empty])).toThrow(UsageError)
    expect(() => mergeShards([])).toThrow(UsageError)
  })
})
