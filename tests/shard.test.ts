// --shard I/N: groups stay together unless bigger than a fair share, shards are disjoint and cover the fleet, the
// split ignores the order of the list, shards are balanced, and bad specs are usage errors.
import { describe, expect, test } from 'bun:test'
import { UsageError } from '../lib/cli/flags.ts'
import { environmentOf } from '../lib/fleet/groups.ts'
import { type Instance, parseInstances } from '../lib/fleet/instances.ts'
import { parseShard, planShards, shardInstances } from '../lib/fleet/shard.ts'
import { shuffled, VERIFIED_REPOS, verifiedInstances } from './helpers/swe-bench.ts'

const shardsOf = (all: Instance[], n: number, weight?: (i: Instance) => number) =>
  Array.from({ length: n }, (_, i) => shardInstances(all, { index: i + 1, count: n }, weight))

describe('shards', () => {
  test('the environment of a SWE-bench id is its org__repo', () => {
    expect(environmentOf({ id: 'django__django-11099' })).toBe('django__django')
    expect(environmentOf({ id: 'pytest-dev__pytest-5103' })).toBe('pytest-dev__pytest')
    expect(environmentOf({ id: 'plain-id' })).toBeUndefined()
  })

  for (const n of [1, 2, 3, 4, 7, 8]) {
    test(`${n} shards of SWE-bench Verified are disjoint, cover the fleet, and cut only groups bigger than a fair share`, () => {
      const all = verifiedInstances()
      const shards = shardsOf(all, n)
      const ids = shards.flat().map((i) => i.id)
      expect(new Set(ids).size).toBe(ids.length)
      expect(ids.sort()).toEqual(all.map((i) => i.id).sort())
      for (const [repo, count] of Object.entries(VERIFIED_REPOS)) {
        const holding = shards.filter((s) => s.some((i) => environmentOf(i) === repo)).length
        if (count <= all.length / n) expect(holding).toBe(1)
        else expect(holding).toBe(Math.ceil(count / (all.length / n)))
      }
    })
  }

  test('8 shards of SWE-bench Verified (ids only): no shard above 1.15 × the mean; the cut groups are named', () => {
    const all = verifiedInstances()
    const plan = planShards(all, 8)
    const sizes = plan.shards.map((s) => s.reduce((n, p) => n + p.members.length, 0))
    expect(Math.max(...sizes) / (all.length / 8)).toBeLessThanOrEqual(1.15)
    expect(plan.split).toEqual([
      { key: 'env:django__django', instances: 231, pieces: 4 },
      { key: 'env:sympy__sympy', instances: 75, pieces: 2 },
    ])
  })

  test('the split is the same however the list is ordered', () => {
    const all = verifiedInstances()
    for (const seed of [1, 2, 3]) {
      for (let k = 1; k <= 8; k++) {
        const a = shardInstances(all, { index: k, count: 8 }).map((i) => i.id).sort()
        const b = shardInstances(shuffled(all, seed), { index: k, count: 8 }).map((i) => i.id).sort()
        expect(b).toEqual(a)
      }
    }
  })

  test('shards are balanced by weight: with many small groups no shard is far from the mean', () => {
    const ids = Array.from({ length: 400 }, (_, i) => `org${i % 40}__repo${i % 40}-${i}`)
    const all = parseInstances(ids.join('\n'), 'r/{docker_id}').instances
    const weight = (i: { id: string }) => (Number(i.id.split('-')[1]) % 7) + 1
    const loads = shardsOf(all, 4, weight).map((s) => s.reduce((n, i) => n + weight(i), 0))
    const mean = loads.reduce((a, b) => a + b) / 4
    for (const l of loads) expect(Math.abs(l - mean) / mean).toBeLessThan(0.1)
  })

  test('bad --shard values are usage errors', () => {
    expect(parseShard('2/4')).toEqual({ index: 2, count: 4 })
    for (const bad of ['0/4', '5/4', '1/0', '1', 'a/b', '-1/2', '1/2/3']) {
      expect(() => parseShard(bad)).toThrow(UsageError)
    }
  })
})
