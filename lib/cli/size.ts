// Sizes as people write them, and bytes as people read them.
// `500MB` `20GB` are decimal (SI), `20GiB` binary, `30g` docker's binary shorthand, bare numbers are bytes.

const UNITS: Record<string, number> = {
  b: 1,
  // decimal, as disk vendors and `df -H` count
  kb: 1e3,
  mb: 1e6,
  gb: 1e9,
  tb: 1e12,
  // binary, as `df -h` and docker count
  kib: 2 ** 10,
  mib: 2 ** 20,
  gib: 2 ** 30,
  tib: 2 ** 40,
  // docker's shorthand (`--memory 30g`, `--reserved-space 10g`): binary
  k: 2 ** 10,
  m: 2 ** 20,
  g: 2 ** 30,
  t: 2 ** 40,
}

export class SizeError extends Error {}

/** Parses `500MB`, `20GiB`, `30g`, `1.5 GB`, `1048576` into bytes; throws SizeError with the accepted forms. */
export function parseSize(text: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(String(text))
  const unit = m ? (m[2] || 'b').toLowerCase() : ''
  if (!m || !(unit in UNITS)) {
    throw new SizeError(
      `'${text}' is not a size: write bytes (1048576) or a number with a unit: 500MB, 20GB, 20GiB, 30g`,
    )
  }
  return Math.round(Number(m[1]) * UNITS[unit])
}

/** 1536 -> "1.5 KiB"; negative sizes keep their sign (a cleanup that grew the disk must say so). */
export function formatBytes(bytes: number): string {
  const sign = bytes < 0 ? '-' : ''
  let n = Math.abs(bytes)
  for (const unit of ['B', 'KiB', 'MiB', 'GiB', 'TiB']) {
    if (n < 1024 || unit === 'TiB') return unit === 'B' ? `${sign}${n} B` : `${sign}${n.toFixed(1)} ${unit}`
    n /= 1024
  }
  return `${sign}${n} B`
}

/** A docker-style size argument for prune flags: whole MiB, e.g. `2048mb` (buildx and the legacy builder both accept it). */
export function dockerSize(bytes: number): string {
  return `${Math.max(0, Math.floor(bytes / 2 ** 20))}mb`
}
