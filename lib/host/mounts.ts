// This machine's mounts, read from /proc/self/mounts. No commands run.
import fs from 'node:fs'

/** Every mount point under `dir` (not `dir` itself), deepest first, so they can be unmounted in order. */
export function mountsUnder(dir: string): string[] {
  const unescape = (s: string) => s.replace(/\\(\d{3})/g, (_, o) => String.fromCharCode(parseInt(o, 8)))
  return fs.readFileSync('/proc/self/mounts', 'utf8').split('\n').map((line) => unescape(line.split(' ')[1] ?? ''))
    .filter((m) => m.startsWith(dir + '/')).sort((a, b) => b.length - a.length)
}
