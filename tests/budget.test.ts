// The disk budget's decisions (lib/disk/budget.ts), on a disk whose free bytes the test sets: when it admits, when it
// waits, which cleanup it asks for (tiers, cutoff, images) and when it refuses to clean. The bytes a cleanup gives back
// are the test's; what is asked for and when is the budget's. The real engine is in tests/budget.integration.test.ts.
import { describe, expect, test } from 'bun:test'
import { DiskBudget } from '../lib/disk/budget.ts'
import type { CleanRequest, Policy } from '../lib/disk/budget-types.ts'
import { GrowthModel } from '../lib/disk/growth.ts'
import type { Layer } from '../lib/fleet/groups.ts'

const MB = 1e6
const tick = (ms = 5) => new Promise((r) => setTimeout(r, ms))
const layer = (name: string, size: number): Layer => ({ digest: `sha256:${name}`, size })
const OS = layer('os', 30 * MB)
const envA = layer('envA', 200 * MB)
const envB = layer('envB', 200 * MB)
const own = (n: number) => layer(`own${n}`, 20 * MB)

/** A disk the test moves by hand, a clock the test moves, and every cleanup request recorded (it gives back `gives`). */
function setup(o: { free: number; reserve?: number; policy?: Policy; gives?: number; r?: number; k?: number }) {
  const state = {
    free: o.free,
    now: 1_000_000,
    gives: o.gives ?? 0,
    requests: [] as CleanRequest[],
    hold: undefined as undefined | Promise<void>,
  }
  const budget = new DiskBudget({
    policy: o.policy ?? 'adaptive',
    free: () => state.free,
    reserve: o.reserve ?? 0,
    now: () => state.now,
    // a prior with overwhelming weight: these tests are about decisions, not learning
    model: new GrowthModel({ r: o.r ?? 2, k: o.k ?? 0 }, 1e9),
    clean: async (request) => {
      state.requests.push(request)
      await state.hold
      state.free += state.gives
      return { reclaimed: state.gives, ran: request.tiers }
    },
  })
  return { state, budget }
}

describe('disk budget', () => {
  test('an image costs its cold layers: a layer an image in flight pulls is paid once, a resident one not at all', async () => {
    const { state, budget } = setup({ free: 10_000 * MB })
    expect(budget.need([OS, envA, own(1)])).toBe(2 * 250 * MB)
    const t1 = await budget.admit('1', [OS, envA, own(1)])
    expect(budget.need([OS, envA, own(2)])).toBeCloseTo(2 * 250 * MB + 2 * 20 * MB, -3) // image 1 still needs its 500
    t1.based()
    state.now += 1000
    await t1.done([])
    expect(budget.need([OS, envA, own(2)])).toBeCloseTo(2 * 20 * MB, -3) // OS and envA are on disk now
    expect(budget.need([OS, envB, own(3)])).toBeCloseTo(2 * 220 * MB, -3)
  })

  test('admits what fits, then waits for images in flight — no cleanup while they hold the space', async () => {
    const { state, budget } = setup({ free: 1000 * MB, reserve: 100 * MB, gives: 100 * MB })
    const a = await budget.admit('a', [envA, own(1)]) // 440
    const b = await budget.admit('b', [envA, own(2)]) // 40: envA is pulled by a
    let third = false
    const c = budget.admit('c', [envB, own(3)]).then((t) => (third = true, t)) // 100 + 440 + 40 + 440 > 1000
    await tick()
    expect(third).toBe(false)
    expect(state.requests).toEqual([])
    a.based()
    b.based()
    state.now += 5_000
    state.free = 520 * MB // what a and b wrote
    await a.done(['base-a'])
    await b.done(['base-b'])
    await tick()
    // once a is done its own layer (b still holds envA) is what c lacks: one stale prune, after a's image is removed
    expect(state.requests.length).toBe(1)
    expect(state.requests[0].tiers).toEqual(['stale'])
    expect(state.requests[0].images).toEqual(['base-a'])
    await (await c).done([])
    expect(third).toBe(true)
  })

  test('a stale prune keeps what waiting images still need: its cutoff falls before their layers were last used', async () => {
    const { state, budget } = setup({ free: 900 * MB, gives: 100 * MB })
    budget.expect([[envA, own(1)], [envA, own(2)], [envB, own(3)], [envA, own(4)]])
    const one = await budget.admit('1', [envA, own(1)])
    one.based()
    state.now += 10_000
    const two = await budget.admit('2', [envA, own(2)])
    two.based()
    state.now += 10_000
    await one.done(['b1'])
    await two.done(['b2']) // envA stays needed by image 4; own1 and own2 are done with
    state.now += 10_000
    state.free = 420 * MB
    const three = budget.admit('3', [envB, own(3)]) // needs 440: 20 short
    await tick()
    expect(state.requests.length).toBe(1)
    const cutoff = state.now - state.requests[0].staleSeconds * 1000
    const envALastAdmitted = 1_000_000 + 10_000
    expect(cutoff).toBeLessThan(envALastAdmitted) // envA survives the prune
    state.free += 100 * MB
    await (await three).done([])
  })

  test('a waiting image whose layers a running cleanup does not touch is admitted while it runs', async () => {
    const { state, budget } = setup({ free: 600 * MB })
    let release!: () => void
    state.hold = new Promise((r) => (release = r))
    budget.expect([[envA, own(1)], [envB, own(2)], [envB, own(3)]])
    const one = await budget.admit('1', [envA, own(1)])
    one.based()
    state.now += 5_000
    await one.done(['b1'])
    state.now += 5_000
    state.free = 200 * MB
    const two = budget.admit('2', [envB, own(2)]) // needs 440: the prune of envA + own1 starts
    await tick()
    expect(state.requests.length).toBe(1)
    state.free = 800 * MB // the prune is still running, but the disk has room again (another image's files went)
    let admitted = false
    void two.then(() => (admitted = true))
    await tick(1200) // the budget looks at the disk again every second while images wait
    expect(admitted).toBe(true)
    release()
    await (await two).done([])
  })

  test('with nothing in flight and nothing it knows to evict: every tier once, then admits over budget', async () => {
    const { state, budget } = setup({ free: 50 * MB })
    const t = await budget.admit('only', [envA])
    expect(state.requests.map((r) => r.tiers)).toEqual([['stale', 'cache-cap', 'system', 'full']])
    expect(budget.stats.overBudget).toBe(1)
    await t.done([])
  })

  test('builds that hit a full disk share one emergency cleanup; a retry is refused when the image can never fit', async () => {
    const { state, budget } = setup({ free: 300 * MB, gives: 100 * MB })
    let release!: () => void
    state.hold = new Promise((r) => (release = r))
    const a = await budget.admit('a', [own(1)])
    const b = await budget.admit('b', [own(2)])
    const both = Promise.all([budget.emergency('a full', [own(1)]), budget.emergency('b full', [own(2)])])
    await tick()
    release()
    const [ea, eb] = await both
    expect(state.requests.length).toBe(1)
    expect(state.requests[0].tiers).toEqual(['stale', 'full'])
    expect([ea.fits, eb.fits]).toEqual([true, true])
    const huge = await budget.emergency('huge', [layer('huge', 10_000 * MB)])
    expect(huge.fits).toBe(false)
    expect(huge.need).toBe(20_000 * MB)
    await a.done([])
    await b.done([])
  })

  test("per-image runs the field's cleanup after every image with its tags; none never cleans and never retries", async () => {
    const per = setup({ free: 10_000 * MB, policy: 'per-image' })
    const t = await per.budget.admit('x', [own(1)])
    await t.done(['base-x', 'final-x'])
    expect(per.state.requests.map((r) => [r.images, r.tiers])).toEqual([[['base-x', 'final-x'], ['system', 'full']]])
    const none = setup({ free: 1 * MB, policy: 'none' })
    const u = await none.budget.admit('y', [envA])
    expect((await none.budget.emergency('full', [envA])).fits).toBe(false)
    await u.done(['base-y'])
    await none.budget.settle()
    expect(none.state.requests).toEqual([])
  })

  test('the adaptive policy removes the local images it kept at the end of the run', async () => {
    const { state, budget } = setup({ free: 10_000 * MB })
    const t = await budget.admit('x', [own(1)])
    await t.done(['base-x'])
    expect(state.requests).toEqual([])
    await budget.settle()
    expect(state.requests.map((r) => [r.images, r.tiers])).toEqual([[['base-x'], []]])
  })

  test('the re-pull factor counts a layer pulled again after a cleanup evicted it', async () => {
    const { state, budget } = setup({ free: 10_000 * MB })
    budget.expect([[envA, own(1)], [envA, own(2)]])
    const one = await budget.admit('1', [envA, own(1)])
    one.based()
    state.now += 10_000
    await one.done([])
    expect(await budget.emergency('test')).toMatchObject({ fits: true }) // evicts everything not in use, envA too
    const two = await budget.admit('2', [envA, own(2)])
    await two.done([])
    expect(budget.stats.pulledBytes).toBe(440 * MB)
    expect(budget.repullFactor()).toBeCloseTo(440 / 240, 5)
  })
})

describe('growth model', () => {
  test('learns disk bytes per pulled byte and per image from the run', () => {
    const model = new GrowthModel({ r: 2, k: 8 * MB }, 3)
    let l = 0
    let n = 0
    for (const pulled of [400, 20, 20, 20, 400, 20, 20, 400, 20, 20]) {
      l += pulled * MB
      n++
      model.observe({ layerBytes: l, images: n, consumed: 3.5 * l + 30 * MB * n })
    }
    expect(model.r).toBeGreaterThan(3.1)
    expect(model.r).toBeLessThan(3.9)
    expect(model.k).toBeGreaterThan(10 * MB)
    expect(model.k).toBeLessThan(60 * MB)
  })

  test('one image cannot swing it: the prior holds until the run says otherwise', () => {
    const model = new GrowthModel({ r: 2, k: 8 * MB }, 3)
    model.observe({ layerBytes: 100 * MB, images: 1, consumed: 1000 * MB })
    expect(model.r).toBeLessThan(5)
    expect(model.r).toBeGreaterThan(2)
  })
})
