// The mirror step in the run's account: images mirrored, blobs copied vs mounted vs already there, bytes streamed
// and the rate, from the manifest records the step wrote (phase `mirror`, scripts/mirror.ts).
import { formatBytes } from '../cli/size.ts'
import type { ManifestRecord } from './records.ts'

export type MirrorTotals = {
  /** upstream images copied in this run (records with a tally) */
  images: number
  /** upstream images the mirror already had */
  present: number
  failed: number
  blobs: { copied: number; mounted: number; present: number }
  manifests: number
  bytesCopied: number
  manifestGets: number
  /** from the first copy's start to the last one's end */
  seconds: number
}

export function mirrorTotals(records: ManifestRecord[]): { mirror?: MirrorTotals } {
  const mine = records.filter((r) => r.phase === 'mirror')
  if (!mine.length) return {}
  const copied = mine.filter((r) => r.mirror)
  const sum = (k: 'copied' | 'mounted' | 'present' | 'manifests' | 'bytes_copied' | 'manifest_gets') =>
    copied.reduce((n, r) => n + r.mirror![k], 0)
  const starts = copied.map((r) => Date.parse(r.started_at))
  const ends = copied.map((r) => Date.parse(r.finished_at))
  return {
    mirror: {
      images: copied.length,
      present: mine.filter((r) => r.status === 'skipped').length,
      failed: mine.filter((r) => r.status === 'failed').length,
      blobs: { copied: sum('copied'), mounted: sum('mounted'), present: sum('present') },
      manifests: sum('manifests'),
      bytesCopied: sum('bytes_copied'),
      manifestGets: sum('manifest_gets'),
      seconds: copied.length ? (Math.max(...ends) - Math.min(...starts)) / 1000 : 0,
    },
  }
}

/** `Mirrored: 20 images (4 already there, 0 failed), blobs 40 copied / 0 mounted / 2 there, 1.2 GB at 85.3 MB/s` */
export function mirrorLine(m: MirrorTotals): string {
  const rate = m.seconds > 0 ? ` at ${(m.bytesCopied / 1e6 / m.seconds).toFixed(1)} MB/s` : ''
  return `Mirrored: ${m.images} images (${m.present} already there, ${m.failed} failed), blobs ${m.blobs.copied} ` +
    `copied / ${m.blobs.mounted} mounted / ${m.blobs.present} already there, ${
      formatBytes(m.bytesCopied)
    } streamed${rate}; ${m.manifestGets} manifest GETs on the upstream`
}
