// The disk budget's decisions on a simulated disk: admission, waiting, cleaning only when it can help.
import { describe, expect, test } from 'bun:test'
import { DiskBudget } from '../lib/budget.ts'

const MB = 1e6
const tick = () => new Promise((r) => setTimeout(r, 5))

function disk(free: number) {
  const d = { free, cleans: [] as number[], reclaimable: 0 }
  return {
    d,
    budget: (prior: number, reserve = 100 * MB) => new DiskBudget({
      free: () => d.free, reserve, prior,
      clean: async (target) => { d.cleans.push(target); const got = d.reclaimable; d.free += got; d.reclaimable = 0; return got },
    }),
  }
}

describe('disk budget', () => {
  test('admits up to what the disk can take, then waits for an image to finish', async () => {
    const { d, budget } = disk(1000 * MB)
    const b = budget(300 * MB)
    const t1 = await b.admit('a')
    const t2 = await b.admit('b')
    const t3 = await b.admit('c') // 100 + 3 × 300 = 1000 ≤ 1000
    let fourth = false
    const p4 = b.admit('d').then((t) => { fourth = true; return t })
    await tick()
    expect(fourth).toBe(false)
    expect(d.cleans).toEqual([]) // nothing finished yet: a cleanup could free nothing of this run's
    d.free -= 900 * MB // the three images grew the disk
    t1.done()
    d.free += 300 * MB // rmi + layers of the first image released
    await tick()
    // learned: (1000 − 400 + 0) / (1 + 2 × 0.5) = 300 MB per image; need 100 + 3 × 300 = 1000 > 400: cleans
    expect(d.cleans.length).toBe(1)
    t2.done(); t3.done()
    d.free += 600 * MB
    await p4.then((t) => t.done())
    expect(fourth).toBe(true)
    expect(b.peakInFlight).toBe(3)
  })

  test('cleans in the background and admits as soon as enough is reclaimed', async () => {
    const { d, budget } = disk(1000 * MB)
    const b = budget(400 * MB)
    const a = await b.admit('a')
    const c = await b.admit('b')
    d.free = 200 * MB
    a.done() // one image done: cleaning may now help
    d.reclaimable = 1200 * MB
    // learned (1000 − 200) / 1.5 ≈ 533 MB per image: need 100 + 2 × 533 ≈ 1167 MB; the cleanup brings 1400
    const t = await b.admit('c')
    expect(d.cleans.length).toBe(1)
    expect(d.free).toBe(1400 * MB)
    t.done(); c.done()
  })

  test('with nothing in flight and nothing to clean, admits anyway rather than hang', async () => {
    const { d, budget } = disk(50 * MB)
    const b = budget(400 * MB)
    const t = await b.admit('only')
    expect(d.cleans.length).toBe(1) // one try on the stale cache first
    t.done()
  })

  test('learns per-image growth from the images done', async () => {
    const { d, budget } = disk(2000 * MB)
    const b = budget(1000 * MB)
    expect(b.estimate()).toBe(1000 * MB)
    for (let i = 0; i < 4; i++) { const t = await b.admit(String(i)); d.free -= 50 * MB; t.done() }
    expect(b.estimate()).toBe(50 * MB)
  })
})
