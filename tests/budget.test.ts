// The disk budget's decisions on a simulated disk: admission, waiting, cleaning only when it can help.
import { describe, expect, test } from 'bun:test'
import { DiskBudget } from '../lib/disk/budget.ts'

const MB = 1e6
const tick = () => new Promise((r) => setTimeout(r, 5))

function disk(free: number) {
  const d = { free, cleans: [] as number[], reclaimable: 0 }
  return {
    d,
    budget: (prior: number, reserve = 100 * MB) =>
      new DiskBudget({
        free: () => d.free,
        reserve,
        prior,
        clean: async (target) => {
          d.cleans.push(target)
          const got = d.reclaimable
          d.free += got
          d.reclaimable = 0
          return got
        },
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
    const p4 = b.admit('d').then((t) => {
      fourth = true
      return t
    })
    await tick()
    expect(fourth).toBe(false)
    expect(d.cleans).toEqual([]) // nothing finished yet: a cleanup could free nothing of this run's
    d.free -= 900 * MB // the three images grew the disk
    t1.done()
    d.free += 300 * MB // rmi + layers of the first image released
    await tick()
    // learned ratio: the disk lost 600 MB for 300 MB predicted done → 2; need 100 + 2 × (600 + 300) > 400: cleans
    expect(d.cleans.length).toBe(1)
    t2.done()
    t3.done()
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
    d.reclaimable = 1700 * MB
    // learned ratio (1000 − 200) / 400 = 2: need 100 + 2 × (400 + 400) = 1700 MB; the cleanup brings 1900
    const t = await b.admit('c')
    expect(d.cleans.length).toBe(1)
    expect(d.free).toBe(1900 * MB)
    t.done()
    c.done()
  })

  test('with nothing in flight and nothing to clean, admits anyway rather than hang', async () => {
    const { d, budget } = disk(50 * MB)
    const b = budget(400 * MB)
    const t = await b.admit('only')
    expect(d.cleans.length).toBe(1) // one try on the stale cache first
    t.done()
  })

  test('an image costs its cold layers twice (blob + unpacked); layers of finished images are warm', async () => {
    const { d } = disk(10_000 * MB)
    const b = new DiskBudget({
      free: () => d.free,
      reserve: 0,
      prior: 999 * MB,
      overhead: 10 * MB,
      clean: async () => 0,
    })
    const env = { digest: 'sha256:env', size: 300 * MB }
    const mine = (n: number) => ({ digest: `sha256:i${n}`, size: 40 * MB })
    expect(b.cost()).toBe(999 * MB)
    expect(b.cost([env, mine(1)])).toBe(2 * 340 * MB + 10 * MB)
    const t = await b.admit('1', [env, mine(1)])
    expect(b.cost([env, mine(2)])).toBe(2 * 40 * MB + 10 * MB) // env is being pulled by image 1: the daemon pulls it once
    d.free -= 690 * MB
    t.done()
    expect(b.cost([env, mine(2)])).toBe(2 * 40 * MB + 10 * MB)
    expect(b.ratio()).toBe(1) // the disk lost what was predicted
  })

  test('an image past its base build needs only what is left of its cost', async () => {
    const { budget } = disk(1000 * MB)
    const b = budget(400 * MB)
    const t = await b.admit('a')
    expect(b.need()).toBe(100 * MB + 800 * MB)
    t.progress(0.75)
    expect(b.need()).toBe(100 * MB + 500 * MB)
    t.done()
  })

  test('no image is admitted while a cleanup runs: it may evict the layers the image counts as warm', async () => {
    const d = { free: 1000 * MB }
    let release!: () => void
    const b = new DiskBudget({
      free: () => d.free,
      reserve: 0,
      prior: 100 * MB,
      overhead: 0,
      clean: () => new Promise((r) => (release = () => r(0))),
    })
    const env = { digest: 'sha256:env', size: 200 * MB }
    const first = await b.admit('1', [env])
    first.done() // env is warm now
    const cleaning = b.emergency('test')
    let admitted = false
    const next = b.admit('2', [env]).then((t) => {
      admitted = true
      return t
    })
    await tick()
    expect(admitted).toBe(false)
    release()
    await cleaning
    const t = await next
    expect(b.need()).toBe(400 * MB + 100 * MB) // image 2 paid for env in full: the cleanup may have evicted it
    expect(b.cost([env])).toBe(0) // and a third image needing env rides on image 2's pull
    t.done()
  })

  test('after a full disk an image steps out and waits to be admitted again', async () => {
    const d = { free: 500 * MB }
    const b = new DiskBudget({ free: () => d.free, reserve: 0, prior: 200 * MB, clean: async () => 0 })
    const a = await b.admit('a')
    const c = await b.admit('c')
    d.free = 300 * MB // the failed build's partial layers were cleaned away; c still needs its 200
    let back = false
    const again = a.readmit().then(() => {
      back = true
    })
    await tick()
    expect(b.inFlight).toBe(1)
    expect(back).toBe(false) // 200 (c, still growing) + 200 (a) > 300: a waits for c
    c.done()
    await again
    expect(back).toBe(true)
    a.done()
  })

  test('bytes a background free-disk still has to give back are waited for, not pruned for', async () => {
    const d = { free: 100 * MB, pending: 500 * MB, cleans: 0 }
    const b = new DiskBudget({
      free: () => d.free,
      pending: () => d.pending,
      reserve: 0,
      prior: 300 * MB,
      clean: async () => (d.cleans++, 0),
    })
    const t = b.admit('a')
    setTimeout(() => {
      d.free = 600 * MB
      d.pending = 0
    }, 50)
    ;(await t).done()
    expect(d.cleans).toBe(0)
    expect(b.waits).toBeGreaterThan(0)
  })
})
