// bench:free-disk — one synthetic runner tree (6 targets, ≥ 200k files, ≥ 2 GB), deleted three ways:
// sequential `rm -rf` per target (the standard action's way), imagefleet parallel, imagefleet --background.
// Prints seconds on the critical path and until all bytes are back; appends a section to bench/results/free-disk-<date>.md.
import { $ } from 'zx'
import fs from 'node:fs'
import path from 'node:path'
import { type FlagTable, parseFlags, renderHelp } from '../lib/cli/flags.ts'
import { FatalError, runMain } from '../lib/cli/main.ts'
import { freeBytes } from '../lib/disk/statfs.ts'
import { readFreeDiskStatus } from '../lib/disk/free-disk-status.ts'
import { formatBytes } from '../lib/cli/size.ts'
import { machineLine } from './_machine.ts'

const FLAGS = {
  dir: {
    type: 'string',
    default: 'bench/tmp',
    arg: 'DIR',
    help: 'Where the tree is built (must be on the disk you care about)',
  },
  scale: { type: 'int', default: 1, min: 1, help: 'Multiply files and bytes by this' },
  results: { type: 'string', default: 'bench/results', arg: 'DIR', help: 'Where the result file goes' },
} as const satisfies FlagTable

// Shaped like the runner: a few huge SDKs, one of many small files (ghc), a few of large binaries (jvm, swift).
const TREE = [
  { path: 'usr/local/lib/android', files: 60_000, mb: 800 },
  { path: 'opt/ghc', files: 60_000, mb: 300 },
  { path: 'usr/share/dotnet', files: 40_000, mb: 350 },
  { path: 'opt/hostedtoolcache/CodeQL', files: 20_000, mb: 300 },
  { path: 'usr/lib/jvm', files: 10_000, mb: 250 },
  { path: 'usr/share/swift', files: 10_000, mb: 250 },
]
const SCRIPT = path.join(import.meta.dirname ?? '.', '..', 'scripts', 'free-disk.ts')

type Row = { way: string; critical: number; allBack: number; freed: number }

/** 90% of a target's files are 2 KiB; the rest share its remaining bytes. */
export function buildTree(root: string, scale: number): { files: number; bytes: number } {
  let files = 0, bytes = 0
  for (const t of TREE) {
    const n = t.files * scale, small = Math.floor(n * 0.9), big = n - small
    const bigSize = Math.max(4096, Math.floor((t.mb * 1e6 * scale - small * 2048) / big))
    const smallBuf = Buffer.alloc(2048, 1), bigBuf = Buffer.alloc(bigSize, 2)
    for (let i = 0; i < n; i++) {
      const dir = path.join(root, t.path, `pkg${i % 50}`, `v${i % 13}`)
      if (i < 650) fs.mkdirSync(dir, { recursive: true })
      fs.writeFileSync(path.join(dir, `f${i}`), i < small ? smallBuf : bigBuf)
    }
    files += n
    bytes += small * 2048 + big * bigSize
  }
  return { files, bytes }
}

/** Flushes dirty pages and, when allowed, drops the page cache, so each way starts alike. */
async function settle(): Promise<boolean> {
  await $`sync`
  try {
    fs.writeFileSync('/proc/sys/vm/drop_caches', '3')
    return true
  } catch {
    return false
  }
}

async function sequentialRm(root: string): Promise<Row> {
  const before = freeBytes(root), t0 = performance.now()
  for (const t of TREE) await $`rm -rf -- ${path.join(root, t.path)}`
  const s = (performance.now() - t0) / 1000
  return { way: 'sequential rm -rf per target', critical: s, allBack: s, freed: freeBytes(root) - before }
}

async function imagefleet(root: string, background: boolean): Promise<Row> {
  const status = path.join(root, 'tmp', 'status.json')
  const before = freeBytes(root), t0 = performance.now()
  await $({
    env: { ...process.env, CI: 'true', GITHUB_ACTIONS: '' },
    quiet: true,
  })`${process.execPath} ${SCRIPT} --root ${root} --status ${status} ${background ? ['--background'] : []}`
  const critical = (performance.now() - t0) / 1000
  while (background && !['complete', 'failed'].includes(readFreeDiskStatus(status)?.state ?? '')) {
    await new Promise((r) => setTimeout(r, 50))
  }
  if (background && readFreeDiskStatus(status)?.state !== 'complete') {
    throw new FatalError('background deleter failed: see status.json.log')
  }
  const allBack = (performance.now() - t0) / 1000
  return {
    way: `imagefleet ${background ? '--background' : 'parallel'}`,
    critical,
    allBack,
    freed: freeBytes(root) - before,
  }
}

/** The type of the filesystem the tree is built on (ext4, xfs, overlayfs…): deletion speed depends on it. */
async function filesystemOf(dir: string): Promise<string> {
  return (await $`stat -f -c %T ${dir}`).stdout.trim()
}

function table(rows: Row[]): string {
  const base = rows[0].critical
  return [
    '| way | critical path (s) | until all bytes back (s) | Δ free (statfs, shared disk) | speed-up vs sequential (critical) |',
    '|---|--:|--:|--:|--:|',
    ...rows.map((r) =>
      `| ${r.way} | ${r.critical.toFixed(2)} | ${r.allBack.toFixed(2)} | ${formatBytes(r.freed)} | ${
        (base / r.critical).toFixed(1)
      }× |`
    ),
  ].join('\n')
}

async function main(argv: string[]): Promise<number> {
  const { flags } = parseFlags(FLAGS, argv, process.env)
  if (flags.help) {
    process.stdout.write(
      renderHelp('bench/free-disk.ts [flags]', 'Benchmark free-disk against sequential rm -rf.', FLAGS),
    )
    return 0
  }
  fs.mkdirSync(flags.dir, { recursive: true })
  const need = 2.2e9 * flags.scale * 2 + 5e9
  console.log(`df before:\n${(await $`df -h ${flags.dir}`).stdout}`)
  if (freeBytes(flags.dir) < need) {
    throw new FatalError(`need ${formatBytes(need)} free in ${flags.dir} (tree twice + 5 GB headroom)`)
  }
  const started = machineLine({ diskDir: flags.dir })
  const work = fs.mkdtempSync(path.join(path.resolve(flags.dir), 'free-disk-'))
  const rows: Row[] = []
  let shape = { files: 0, bytes: 0 }, dropped = false
  try {
    for (const way of [sequentialRm, (r: string) => imagefleet(r, false), (r: string) => imagefleet(r, true)]) {
      const root = path.join(work, `root-${rows.length}`)
      const t0 = performance.now()
      shape = buildTree(root, flags.scale)
      fs.mkdirSync(path.join(root, 'tmp'), { recursive: true })
      dropped = await settle()
      console.log(
        `built ${shape.files} files, ${formatBytes(shape.bytes)} in ${
          ((performance.now() - t0) / 1000).toFixed(1)
        }s; deleting…`,
      )
      rows.push(await way(root))
      console.log(
        `  ${rows.at(-1)!.way}: ${rows.at(-1)!.critical.toFixed(2)}s critical, ${
          rows.at(-1)!.allBack.toFixed(2)
        }s until all bytes back`,
      )
    }
  } finally {
    fs.rmSync(work, { recursive: true, force: true })
  }
  const [date, time] = new Date().toISOString().slice(0, 16).split('T')
  const md = [
    `## free-disk benchmark ${date} ${time} UTC`,
    '',
    started,
    `After: ${machineLine()}`,
    `Tree: ${TREE.length} targets, ${shape.files} files, ${formatBytes(shape.bytes)} written on ${await filesystemOf(
      flags.dir,
    )}; page cache ${dropped ? 'dropped' : 'NOT dropped (no permission)'} before each way.`,
    '',
    table(rows),
    '',
  ].join('\n')
  console.log('\n' + md)
  fs.mkdirSync(flags.results, { recursive: true })
  fs.appendFileSync(path.join(flags.results, `free-disk-${date}.md`), md + '\n') // one section per run
  return 0
}

if (import.meta.main) runMain(() => main(process.argv.slice(2)))
