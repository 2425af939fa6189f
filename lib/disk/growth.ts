// How much disk an image really costs, learned from the run: consumed ≈ r × cold layer bytes + k × images.
//   r  disk bytes per compressed byte pulled: the blob kept in the content store plus its unpacked copy — 2 for
//      incompressible data, 3–4 for gzip'd real layers (a 1.4 GB SWE-bench image unpacks to several GB);
//   k  what an image writes besides its pulled layers: its own layers (COPY/RUN of the base stage, a docker-mode
//      agent layer), image metadata, BuildKit state.
// Fitted by least squares over the run's observations (cumulative, one per finished image), pulled toward a prior
// by a few images' worth of weight so the first images cannot swing it. No fixed overhead, no floor under r:
// the run says what they are. Both are clamped to physical bounds (an image cannot free disk by being built).

export type GrowthPrior = { r: number; k: number }
export type Observation = { layerBytes: number; images: number; consumed: number }

/** Incompressible layers: blob + unpacked copy; a small per-image overhead until the run says otherwise. */
export const DEFAULT_PRIOR: GrowthPrior = { r: 2, k: 8 * 2 ** 20 }
const R_BOUNDS = [1, 8] as const
const K_BOUNDS = [0, 4 * 2 ** 30] as const

const clamp = (x: number, [lo, hi]: readonly [number, number]) => Math.min(hi, Math.max(lo, x))

export class GrowthModel {
  private readonly observations: Observation[] = []
  r: number
  k: number

  /** `weight`: how many images' worth of evidence the prior counts for. */
  constructor(readonly prior: GrowthPrior = DEFAULT_PRIOR, private readonly weight = 3) {
    this.r = prior.r
    this.k = prior.k
  }

  /** Predicted disk growth of an image that pulls `layerBytes` of cold (compressed) layers. */
  predict(layerBytes: number): number {
    return this.r * layerBytes + this.k
  }

  /** A new cumulative observation: cold bytes and images so far, and the disk they consumed (net of cleanups). */
  observe(o: Observation): void {
    if (o.images <= 0) return
    this.observations.push(o)
    this.fit()
  }

  /**
   * Least squares on consumed = r·L + k·N over the increments between observations (one per finished image: the
   * first image of a group pulls its environment, the next ones only their own layers — that spread tells r from
   * k, which running totals cannot), each parameter pulled toward its prior (ridge): two pseudo-observations of
   * `weight` images each, one of an average image's layer bytes with no overhead, one of an image with no layers.
   */
  private fit(): void {
    const last = this.observations[this.observations.length - 1]
    const meanL = last.layerBytes / last.images
    const steps = this.observations.map((o, i) => {
      const prev = i ? this.observations[i - 1] : { layerBytes: 0, images: 0, consumed: 0 }
      return { l: o.layerBytes - prev.layerBytes, n: o.images - prev.images, c: o.consumed - prev.consumed, w: 1 }
    })
    const rows = [
      ...steps,
      { l: meanL, n: 0, c: this.prior.r * meanL, w: this.weight },
      { l: 0, n: 1, c: this.prior.k, w: this.weight },
    ]
    // weighted normal equations
    let sll = 0, sln = 0, snn = 0, slc = 0, snc = 0
    for (const { l, n, c, w } of rows) {
      sll += w * l * l
      sln += w * l * n
      snn += w * n * n
      slc += w * l * c
      snc += w * n * c
    }
    const det = sll * snn - sln * sln
    if (Math.abs(det) < 1e-9 * sll * snn || sll === 0) {
      // no spread between layer bytes and images (every image alike): keep k, fit r alone
      this.r = clamp((slc - this.k * sln) / (sll || 1), R_BOUNDS)
      return
    }
    this.r = clamp((slc * snn - snc * sln) / det, R_BOUNDS)
    this.k = clamp((snc - this.r * sln) / snn, K_BOUNDS)
  }
}
