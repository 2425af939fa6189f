// Disk sampling: free and used bytes of the filesystem holding a path (statfs, as `df` does).
// Works the same under Node, Bun and Deno.
import fs from 'node:fs'

export type DiskSample = { free: number; used: number; total: number }

/** Free bytes for an unprivileged writer (bavail), used and total bytes of the filesystem holding `path`. */
export function sampleDisk(path: string): DiskSample {
  const s = fs.statfsSync(path)
  const total = s.blocks * s.bsize
  const free = s.bavail * s.bsize
  return { free, used: total - s.bfree * s.bsize, total }
}

export const freeBytes = (path: string) => sampleDisk(path).free
