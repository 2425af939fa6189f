// What a group is (lib/fleet/groups.ts): the shared big upstream layers when the registry told them, else the
// SWE-bench row's repo + version, else the id's repository; one upstream image is always one group.
import { describe, expect, test } from 'bun:test'
import { groupInstances, type Layer, MIN_SHARED_LAYER } from '../lib/fleet/groups.ts'
import { type Instance, parseInstances } from '../lib/fleet/instances.ts'
import { shuffled } from './helpers/swe-bench.ts'

const MB = 1e6
const layer = (name: string, size: number): Layer => ({ digest: `sha256:${name.padEnd(64, '0')}`, size })
const OS = layer('05', 30 * MB)
const env = (v: string) => layer(`e${v}`, 400 * MB)
const own = (id: string) => layer(`f${id.replace(/\D/g, '')}`, 20 * MB)
const parse = (lines: string[]) => parseInstances(lines.join('\n'), 'r/sweb.eval.{docker_id}:latest').instances

describe('groups', () => {
  test('from the registry: one group per shared environment layer; the OS layer every image has merges nothing', () => {
    const all = parse(['django__django-1', 'django__django-2', 'django__django-3', 'django__django-4'])
    const envOf: Record<string, string> = {
      'django__django-1': '30',
      'django__django-2': '32',
      'django__django-3': '30',
      'django__django-4': '32',
    }
    const groups = groupInstances(all, (i) => [OS, env(envOf[i.id]), own(i.id)])
    expect(groups.map((g) => g.members.map((i) => i.id))).toEqual([['django__django-1', 'django__django-3'], [
      'django__django-2',
      'django__django-4',
    ]])
    expect(groups.map((g) => g.sharedBytes)).toEqual([430 * MB, 430 * MB])
  })

  test('shared layers smaller than MIN_SHARED_LAYER do not split a group', () => {
    const all = parse(['a__a-1', 'a__a-2', 'a__a-3'])
    const tiny = layer('77', MIN_SHARED_LAYER - 1)
    const groups = groupInstances(all, (i) => [OS, env('1'), ...(i.id === 'a__a-3' ? [] : [tiny]), own(i.id)])
    expect(groups.length).toBe(1)
  })

  test("without layers: a row's repo + version, else the id's repository, else the upstream image", () => {
    const all = parse([
      '{"instance_id": "django__django-1", "repo": "django/django", "version": "3.0"}',
      '{"instance_id": "django__django-2", "repo": "django/django", "version": "3.1"}',
      '{"instance_id": "django__django-3", "repo": "django/django", "version": "3.0"}',
      'sympy__sympy-1',
      'sympy__sympy-2',
      'plain-1',
    ])
    const keys = groupInstances(all).map((g) => [g.key, g.members.map((i) => i.id)])
    expect(keys).toEqual([
      ['env:django/django@3.0', ['django__django-1', 'django__django-3']],
      ['env:django/django@3.1', ['django__django-2']],
      ['env:sympy__sympy', ['sympy__sympy-1', 'sympy__sympy-2']],
      ['upstream:r/sweb.eval.plain-1:latest', ['plain-1']],
    ])
  })

  test('instances with one upstream image are one group even across repositories', () => {
    const all = parse([
      '{"id": "a__x-1", "upstream": "r/shared:1"}',
      '{"id": "b__y-1", "upstream": "r/shared:1"}',
      '{"id": "b__y-2", "upstream": "r/other:1"}',
      '{"id": "c__z-1", "upstream": "r/c:1"}',
    ])
    expect(groupInstances(all).map((g) => g.members.map((i) => i.id).sort())).toContainEqual([
      'a__x-1',
      'b__y-1',
      'b__y-2',
    ])
  })

  test('the order of groups depends only on the set; members keep the order of the list', () => {
    const ids = Array.from({ length: 40 }, (_, k) => `repo${k % 5}__r-${100 + k}`)
    const all = parse(ids)
    const layersOf = (i: Instance) => [OS, env(String(Number(i.id.slice(4, 5)) % 3)), own(i.id)]
    const a = groupInstances(all, layersOf)
    const b = groupInstances(shuffled(all, 7), layersOf)
    expect(b.map((g) => g.key)).toEqual(a.map((g) => g.key))
    const order = new Map(shuffled(all, 7).map((inst, k) => [inst.id, k]))
    for (const g of b) {
      expect(g.members.map((i) => order.get(i.id)!)).toEqual(
        [...g.members.map((i) => order.get(i.id)!)].sort((x, y) => x - y),
      )
    }
  })
})
