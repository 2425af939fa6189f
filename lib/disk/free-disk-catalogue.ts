// What free-disk may delete on a GitHub-hosted Ubuntu 22.04/24.04 runner, and how to pick from it.
// Sizes are typical for those images (runner-images reports and public free-disk-space logs, rounded);
// seconds are rough sequential `rm -rf` timings there. Both only order the work and estimate bytes
// still to come: `--list` measures what is really present on this machine.
import fs from 'node:fs'
import path from 'node:path'
import { UsageError } from '../cli/flags.ts'

export type TargetKind = 'paths' | 'apt' | 'docker' | 'swap'
export type Target = {
  name: string
  title: string
  kind: TargetKind
  /** Absolute paths as on the runner; a last component ending in `*` matches by prefix. */
  paths: string[]
  typicalBytes: number
  typicalSeconds: number
  /** Not removed unless named with --include or --only. */
  optIn?: boolean
}

const GB = 1e9
const target = (
  name: string,
  title: string,
  paths: string[],
  gb: number,
  seconds: number,
  extra: Partial<Target> = {},
): Target => ({ name, title, kind: 'paths', paths, typicalBytes: gb * GB, typicalSeconds: seconds, ...extra })

export const CATALOGUE: Target[] = [
  // The largest single item on the image; nobody builds Android apps in a docker-image pipeline.
  target('android', 'Android SDK', ['/usr/local/lib/android'], 12, 60),
  // Several SDKs side by side; our scripts run on Bun/Deno, not .NET.
  target('dotnet', '.NET', ['/usr/share/dotnet'], 2.5, 25),
  // GHC installs and ghcup's store: many small files, slow per byte.
  target('haskell', 'Haskell (ghc, ghcup)', ['/opt/ghc', '/usr/local/.ghcup'], 6, 45),
  // Only used by github/codeql-action, which downloads its own bundle when missing.
  target('codeql', 'CodeQL bundle', ['/opt/hostedtoolcache/CodeQL'], 5, 20),
  // Swift toolchain: few, large binaries, fast to delete.
  target('swift', 'Swift', ['/usr/share/swift'], 1.7, 5),
  target('powershell', 'PowerShell', ['/usr/local/share/powershell'], 0.2, 3),
  // Headless browser for test suites; image builds never start it.
  target('chromium', 'Chromium', ['/usr/local/share/chromium'], 0.5, 3),
  // The directory carries its version (julia-1.10.x), hence the prefix match.
  target('julia', 'Julia', ['/usr/local/julia*'], 0.8, 5),
  target('miniconda', 'Miniconda', ['/usr/share/miniconda'], 0.7, 10),
  // JDKs 8/11/17/21; docker builds that need Java bring their own in the image.
  target('jvm', 'Java JDKs', ['/usr/lib/jvm'], 1.3, 6),
  // Cloud CLIs: our registry pushes go through docker login, not az/gcloud.
  target('azure-cli', 'Azure CLI', ['/opt/az'], 0.7, 10),
  target('google-cloud-sdk', 'Google Cloud SDK', ['/usr/lib/google-cloud-sdk'], 1, 12),
  // Boost headers (22.04 images); only C++ projects compiled on the host want them.
  target('boost', 'Boost', ['/usr/local/share/boost'], 1.8, 15),
  // Opt-in: setup-node/python/go put what is on PATH here, possibly the very runtime running us.
  target('tool-cache', 'Hosted tool cache (Python, Node, Go, …)', ['/opt/hostedtoolcache/*'], 6, 40, { optIn: true }),
  // Opt-in: one apt-get call removes packages matching APT_PACKAGES (slow: dpkg, but big).
  target('large-packages', 'Large apt packages', [], 5, 90, { kind: 'apt', optIn: true }),
  // Opt-in: preloaded images may be bases a build expects to find locally.
  target('docker-images', 'Docker images', [], 3, 20, { kind: 'docker', optIn: true }),
  // Opt-in: /mnt/swapfile lives on /mnt, so it frees /mnt (the temp disk), not /.
  target('swap', 'Swap file', ['/mnt/swapfile'], 4.3, 2, { kind: 'swap', optIn: true }),
]

/** Installed package names matching any of these go in the one `apt-get remove` call. */
export const APT_PACKAGES: RegExp[] = [
  /^aspnetcore-/,
  /^dotnet-/, // .NET runtimes and SDKs installed as packages
  /^llvm-\d/,
  /^clang-\d/, // several LLVM toolchains side by side
  /^php\d/,
  /^mysql-server/,
  /^mongodb-/,
  /^postgresql-\d/, // databases and PHP for service tests
  /^google-chrome-stable$/,
  /^microsoft-edge-stable$/,
  /^firefox$/, // browsers
  /^azure-cli$/,
  /^google-cloud-(sdk|cli)$/,
  /^powershell$/,
  /^mono-(devel|complete)$/,
]

/** The selected catalogue targets: --only replaces the default set, --include adds opt-in ones, --exclude drops. */
export function selectTargets(
  o: { only: string[]; include: string[]; exclude: string[] },
  catalogue = CATALOGUE,
): Target[] {
  const known = new Set(catalogue.map((t) => t.name))
  const unknown = [...o.only, ...o.include, ...o.exclude].filter((n) => n !== 'all' && !known.has(n))
  if (unknown.length) throw new UsageError(`unknown target(s) ${unknown.join(', ')}; known: ${[...known].join(', ')}`)
  const wanted = (t: Target) =>
    o.only.length
      ? o.only.includes(t.name) || o.only.includes('all')
      : !t.optIn || o.include.includes(t.name) || o.include.includes('all')
  return catalogue.filter((t) => wanted(t) && !o.exclude.includes(t.name))
}

/** An `--extra PATH`: explicitly given, so deleted, but refused if it is a top-level directory or has `..`. */
export function extraTarget(p: string): Target {
  const parts = p.split('/').filter(Boolean)
  if (!path.isAbsolute(p) || parts.includes('..') || parts.length < 2) {
    throw new UsageError(`--extra ${p}: give an absolute path at least two levels deep, without '..'`)
  }
  return target(`extra:${p}`, `extra ${p}`, [path.resolve(p)], 0, 1)
}

export type Present = { path: string; type: 'dir' | 'file' | 'symlink' }
export type Resolved = { target: Target; present: Present[]; refused: string[] }

/**
 * Where a target's paths are under `root`, what exists there (lstat: a symlink is a link, never its target),
 * and what is refused because its parent directory resolves outside the root.
 */
export function resolveTarget(t: Target, root: string): Resolved {
  const realRoot = fs.realpathSync(root)
  const present: Present[] = []
  const refused: string[] = []
  for (const p of t.paths.flatMap((p) => expand(path.join(root, p)))) {
    const parent = realpathOrNull(path.dirname(p))
    if (parent === null) continue
    if (parent !== realRoot && !parent.startsWith(realRoot.replace(/\/$/, '') + '/')) {
      refused.push(`${p} (parent resolves to ${parent})`)
      continue
    }
    const st = lstatOrNull(p)
    if (st) present.push({ path: p, type: st.isSymbolicLink() ? 'symlink' : st.isDirectory() ? 'dir' : 'file' })
  }
  return { target: t, present, refused }
}

function expand(p: string): string[] {
  const base = path.basename(p)
  if (!base.endsWith('*')) return [p]
  const prefix = base.slice(0, -1)
  const dir = path.dirname(p)
  const names = fs.existsSync(dir) ? fs.readdirSync(dir) : []
  return names.filter((n) => n.startsWith(prefix) && !n.startsWith('.imagefleet-trash-')).sort().map((n) =>
    path.join(dir, n)
  )
}

const lstatOrNull = (p: string) => {
  try {
    return fs.lstatSync(p)
  } catch {
    return null
  }
}
const realpathOrNull = (p: string) => {
  try {
    return fs.realpathSync(p)
  } catch {
    return null
  }
}

/** Bytes per second, typically: the order in which --target-free takes targets. */
export const rate = (t: Target) => t.typicalBytes / Math.max(t.typicalSeconds, 0.1)

/**
 * The next targets to remove to cover `deficit` bytes: best bytes per second first, until their typical
 * sizes add up. No deficit given means all of them. Targets of unknown size (extras) come last.
 */
export function planBatch<T extends { target: Target }>(candidates: T[], deficit?: number): T[] {
  const ordered = [...candidates].sort((a, b) => rate(b.target) - rate(a.target))
  if (deficit === undefined) return ordered
  const batch: T[] = []
  let expected = 0
  for (const c of ordered) {
    if (expected >= deficit) break
    batch.push(c)
    expected += c.target.typicalBytes
  }
  return batch
}
