// --shard I/N: environments stay together, shards are disjoint and cover the fleet, the split ignores
// the order of the list, shards are balanced, and bad specs are usage errors.
import { describe, expect, test } from 'bun:test'
import { UsageError } from '../lib/cli/flags.ts'
import { parseInstances } from '../lib/fleet/instances.ts'
import { environmentOf, groupInstances, parseShard, shardInstances } from '../lib/fleet/shard.ts'

const REPOS = [
  'django__django',
  'sympy__sympy',
  'astropy__astropy',
  'pytest-dev__pytest',
  'psf__requests',
  'pallets__flask',
  'sphinx-doc__sphinx',
  'matplotlib__matplotlib',
]
/** A SWE-bench-shaped list: uneven repository sizes, as in the real dataset. */
function fleet(n = 500) {
  const ids = Array.from({ length: n }, (_, i) => `${REPOS[(i * i + 3 * i) % REPOS.length]}-${10000 + i}`)
  return parseInstances(ids.join('\n'), 'reg.example/up/sweb.eval.x86_64.{docker_id}:latest').instances
}
const shuffle = <T>(xs: T[], seed: number) => {
  const out = [...xs]
  let s = seed
  for (let i = out.length - 1; i > 0; i--) {
    s = (s * 1103515245 + 12345) % 2 ** 31
    const j = s % (i + 1)
    ;[out[i], out[j]] = [out[j], out[i]]
  }
  return out
}

describe('shards', () => {
  test('the environment of a SWE-bench id is its org__repo', () => {
    expect(environmentOf({ id: 'django__django-11099' })).toBe('django__django')
    expect(environmentOf({ id: 'pytest-dev__pytest-5103' })).toBe('pytest-dev__pytest')
    expect(environmentOf({ id: 'plain-id' })).toBeUndefined()
  })

  for (const n of [1, 2, 3, 4, 7]) {
    test(`${n} shards are disjoint, cover the fleet and keep each environment in one shard`, () => {
      const all = fleet()
      const shards = Array.from({ length: n }, (_, i) => shardInstances(all, { index: i + 1, count: n }))
      const ids = shards.flat().map((i) => i.id)
      expect(new Set(ids).size).toBe(ids.length)
      expect(ids.sort()).toEqual(all.map((i) => i.id).sort())
      for (const repo of REPOS) {
        expect(shards.filter((s) => s.some((i) => environmentOf(i) === repo)).length).toBeLessThanOrEqual(1)
      }
    })
  }

  test('the split is the same however the list is ordered', () => {
    const all = fleet()
    for (const seed of [1, 2, 3]) {
      for (let k = 1; k <= 3; k++) {
        const a = shardInstances(all, { index: k, count: 3 }).map((i) => i.id).sort()
        const b = shardInstances(shuffle(all, seed), { index: k, count: 3 }).map((i) => i.id).sort()
        expect(b).toEqual(a)
      }
    }
  })

  test('instances sharing an upstream image stay together even across repositories', () => {
    const text = [
      '{"id": "a__x-1", "upstream": "r/shared:1"}',
      '{"id": "b__y-1", "upstream": "r/shared:1"}',
      '{"id": "b__y-2", "upstream": "r/other:1"}',
      '{"id": "c__z-1", "upstream": "r/c:1"}',
    ].join('\n')
    const all = parseInstances(text, 'r/{docker_id}').instances
    const groups = groupInstances(all)
    expect(groups.map((g) => g.members.map((i) => i.id).sort())).toContainEqual(['a__x-1', 'b__y-1', 'b__y-2'])
  })

  test('shards are balanced by weight: with many small groups no shard is far from the mean', () => {
    const ids = Array.from({ length: 400 }, (_, i) => `org${i % 40}__repo${i % 40}-${i}`)
    const all = parseInstances(ids.join('\n'), 'r/{docker_id}').instances
    const weight = (i: { id: string }) => (Number(i.id.split('-')[1]) % 7) + 1
    const loads = [1, 2, 3, 4].map((k) =>
      shardInstances(all, { index: k, count: 4 }, weight).reduce((s, i) => s + weight(i), 0)
    )
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
