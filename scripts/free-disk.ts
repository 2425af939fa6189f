// free-disk: the first step of a CI run on a hosted runner. Deletes preinstalled toolchains we never use
// (lib/free-disk-catalogue.ts says which and why), in parallel, measured, and stops when there is enough.
// With --background it only renames them aside and returns; a detached copy of this script deletes them.
import { $ } from 'zx'
import pMap from 'p-map'
import fs from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { type FlagTable, parseFlags, renderHelp, UsageError } from '../lib/cli/flags.ts'
import { PreflightError, runMain } from '../lib/cli/main.ts'
import { freeBytes, sampleDisk } from '../lib/disk/statfs.ts'
import { configureReport, report, secretValues } from '../lib/cli/report.ts'
import { formatBytes } from '../lib/cli/size.ts'
import { runtimeCommand } from '../lib/cli/runtime.ts'
import {
  APT_PACKAGES,
  CATALOGUE,
  extraTarget,
  planBatch,
  type Resolved,
  resolveTarget,
  selectTargets,
  type TargetKind,
} from '../lib/disk/free-disk-catalogue.ts'
import { type FreeDiskStatus, readFreeDiskStatus, type TrashItem, writeStatus } from '../lib/disk/free-disk-status.ts'
import { appendSummary, type Outcome, renderText, stepOutputs } from '../lib/disk/free-disk-report.ts'
import { writeOutputs } from '../lib/run/github.ts'
import { inGitHubActions } from '../lib/cli/environment.ts'

export const FLAGS = {
  list: { type: 'boolean', help: 'Print the catalogue with what is present here and its size, then exit' },
  'target-free': {
    type: 'size',
    arg: 'SIZE',
    help: 'Stop once this much is free (do nothing if it already is); best bytes per second first',
  },
  only: { type: 'list', arg: 'NAMES', help: 'Remove only these targets (names from --list, or all)' },
  include: {
    type: 'list',
    arg: 'NAMES',
    help: 'Also remove these opt-in targets: tool-cache, large-packages, docker-images, swap, or all',
  },
  exclude: { type: 'list', arg: 'NAMES', help: 'Keep these targets' },
  extra: { type: 'list', arg: 'PATH', help: 'Also remove this path (absolute, at least two levels deep)' },
  background: {
    type: 'boolean',
    help: 'Rename targets aside and return at once; a detached process deletes them, progress in --status',
  },
  status: {
    type: 'string',
    arg: 'FILE',
    help: 'Status file of the background deleter (default: <root>/tmp/imagefleet-free-disk.json)',
  },
  jobs: { type: 'int', default: 8, min: 1, help: 'Targets removed at once' },
  'dry-run': { type: 'boolean', help: 'Print the exact commands; delete nothing' },
  yes: { type: 'boolean', help: 'Run outside CI (without CI=true this refuses: it deletes system directories)' },
  root: {
    type: 'string',
    default: '/',
    arg: 'PREFIX',
    help:
      'Root every path under this directory (tests, rehearsal); targets that act on the machine itself (apt packages, docker images, swap) are refused there',
  },
  'delete-trash': { type: 'list', arg: 'DIR', help: 'Internal: be the detached deleter of --background' },
} as const satisfies FlagTable

export type FreeDiskOptions = {
  root: string
  targetFree?: number
  jobs: number
  dryRun: boolean
  background: boolean
  statusFile: string
  /** `['sudo', '-n']` when not root on a real runner; empty under --root. */
  sudo: string[]
}
const TRASH = `.imagefleet-trash-`
const onHost = (o: FreeDiskOptions) => o.root === '/'

/** Targets that act on the machine itself, not on files: under --root nothing can stand in for them, so they are refused. */
const HOST_WIDE: Record<Exclude<TargetKind, 'paths'>, string> = {
  apt: "removes this machine's apt packages",
  docker: 'prunes the images of the daemon DOCKER_HOST names',
  swap: "turns swap off in this machine's kernel",
}

/** Under --root, splits off the host-wide targets: each is refused by name, with why, and never planned. */
export function confineToRoot(targets: Resolved[], o: FreeDiskOptions): { allowed: Resolved[]; refused: Outcome[] } {
  if (onHost(o)) return { allowed: targets, refused: [] }
  const refused = targets.filter((r) => r.target.kind !== 'paths').map((r): Outcome => {
    const why = HOST_WIDE[r.target.kind as Exclude<TargetKind, 'paths'>]
    report.skip(`${r.target.name}: refused under --root ${o.root}: it ${why}, which no --root can confine`)
    return {
      target: r.target.name,
      what: r.target.kind,
      bytesFrom: 'statfs',
      seconds: 0,
      status: 'skipped',
      note: 'refused under --root',
    }
  })
  return { allowed: targets.filter((r) => r.target.kind === 'paths'), refused }
}

/** Free space of the filesystem holding the root, as `df` reports it. */
export function showDisk(root: string, when: string): number {
  const d = sampleDisk(root)
  report.info(`${when}: ${formatBytes(d.free)} free of ${formatBytes(d.total)} on ${root}`)
  return d.free
}

/** Refuses outside CI unless told --yes: this deletes system directories. */
export function assertAllowed(o: { inCI: boolean; yes: boolean; dryRun: boolean }): void {
  if (o.inCI || o.yes || o.dryRun) return
  throw new PreflightError([
    'not in CI (CI is not "true") and free-disk deletes system directories: pass --yes to run here anyway, or --dry-run to see what it would do',
  ])
}

/** Bytes the paths take on disk (du -sx: no symlinks followed, no other filesystems). */
export async function duBytes(paths: string[], sudo: string[]): Promise<number> {
  if (!paths.length) return 0
  const du = await $({ nothrow: true, quiet: true })`${sudo} du -sx --block-size=1 -- ${paths}`
  return du.stdout.split('\n').reduce((sum, line) => sum + (Number.parseInt(line, 10) || 0), 0)
}

/** `--list`: every catalogue target with whether it is here and its size on this machine. */
export async function listTargets(resolved: Resolved[], o: FreeDiskOptions): Promise<void> {
  const sizes = await pMap(resolved, (r) => duBytes(r.present.map((p) => p.path), o.sudo), { concurrency: o.jobs })
  report.info(
    `${'target'.padEnd(18)} ${'kind'.padEnd(7)}  ${'typical'.padStart(9)}  ${
      'here'.padStart(9)
    }  what (paths under ${o.root})`,
  )
  resolved.forEach((r, i) => {
    const here = r.present.length
      ? formatBytes(sizes[i])
      : r.target.kind === 'paths' || r.target.kind === 'swap'
      ? 'absent'
      : 'n/a'
    const kind = r.target.optIn ? 'opt-in ' : 'default'
    const where = r.target.kind === 'apt'
      ? 'apt packages'
      : r.target.kind === 'docker'
      ? 'docker image prune -af'
      : r.target.paths.join(' ')
    report.info(
      `${r.target.name.padEnd(18)} ${kind}  ${formatBytes(r.target.typicalBytes).padStart(9)}  ${
        here.padStart(9)
      }  ${r.target.title}: ${where}`,
    )
  })
}

/** Prints the commands a dry run would execute. */
const show = (...cmds: { cmd: string }[]) => cmds.forEach((c) => report.dim(`  $ ${c.cmd.trim()}`))

/** Deletes a target's paths in place with one `rm -rf` (symlinks are removed as links, never followed). */
export async function removePaths(r: Resolved, o: FreeDiskOptions): Promise<Outcome> {
  const t0 = performance.now()
  const paths = r.present.map((p) => p.path)
  const bytes = await duBytes(paths, o.sudo)
  const rm = $({ halt: true, nothrow: true, quiet: true })`${o.sudo} rm -rf --one-file-system -- ${paths}`
  const base = { target: r.target.name, what: paths.join(' '), bytes, bytesFrom: 'du' as const }
  if (o.dryRun) {
    show(rm)
    return { ...base, status: 'would remove', seconds: 0 }
  }
  const out = await rm.run()
  const left = paths.filter((p) => fs.existsSync(p) || isLink(p))
  const seconds = (performance.now() - t0) / 1000
  if (out.exitCode === 0 && !left.length) return { ...base, status: 'removed', seconds }
  return {
    ...base,
    bytes: bytes - (await duBytes(left, o.sudo)),
    status: 'failed',
    seconds,
    note: out.stderr.trim().split('\n')[0] || `left ${left.join(' ')}`,
  }
}

/** --background: renames each path into `<parent>/.imagefleet-trash-<pid>/` (same filesystem: instant). */
export async function moveAside(r: Resolved, o: FreeDiskOptions, items: TrashItem[]): Promise<Outcome> {
  const t0 = performance.now()
  const moved: TrashItem[] = []
  const mountPoint = r.present.some((p) => fs.lstatSync(p.path).dev !== fs.statSync(path.dirname(p.path)).dev)
  if (mountPoint) return removePaths(r, o) // another filesystem: a rename would fail (or mv would copy)
  for (const { path: p } of r.present) {
    const trash = path.join(path.dirname(p), `${TRASH}${process.pid}`)
    const mkdir = $({ halt: true, quiet: true })`${o.sudo} mkdir -p -- ${trash}`
    const mv = $({ halt: true, quiet: true })`${o.sudo} mv -T -- ${p} ${path.join(trash, path.basename(p))}`
    if (o.dryRun) show(mkdir, mv)
    else {
      await mkdir.run()
      await mv.run()
    }
    moved.push({
      target: r.target.name,
      path: path.join(trash, path.basename(p)),
      bytes: r.target.typicalBytes / r.present.length,
      measured: false,
      done: false,
    })
  }
  items.push(...moved)
  return {
    target: r.target.name,
    what: r.present.map((p) => p.path).join(' '),
    bytes: r.target.typicalBytes,
    bytesFrom: 'estimate',
    status: o.dryRun ? 'would remove' : 'moved aside',
    seconds: (performance.now() - t0) / 1000,
  }
}

/** Opt-in: one `apt-get remove` of the installed packages matching APT_PACKAGES, man-db's trigger off. */
export async function removeAptPackages(o: FreeDiskOptions): Promise<Outcome> {
  const t0 = performance.now()
  const installed = (await $({ quiet: true })`dpkg-query -W -f ${'${Package}\n'}`).stdout.split('\n')
  const packages = installed.filter((name) => APT_PACKAGES.some((re) => re.test(name)))
  if (!packages.length) {
    return {
      target: 'large-packages',
      what: 'apt',
      bytesFrom: 'statfs',
      seconds: 0,
      status: 'skipped',
      note: 'none installed',
    }
  }
  const before = freeBytes('/')
  // man-db rebuilds its index after every removal unless this flag file is gone (man-db.postinst checks it)
  const noManDb = $({ halt: true, quiet: true })`${o.sudo} rm -f -- /var/lib/man-db/auto-update`
  const apt = $({
    halt: true,
    nothrow: true,
    quiet: true,
    timeout: '15m',
  })`${o.sudo} env DEBIAN_FRONTEND=noninteractive apt-get remove -y -qq --purge --autoremove ${packages}`
  const base = { target: 'large-packages', what: `${packages.length} packages`, bytesFrom: 'statfs' as const }
  if (o.dryRun) {
    show(noManDb, apt)
    return { ...base, status: 'would remove', seconds: 0 }
  }
  await noManDb.run()
  const out = await apt.run()
  const result = { ...base, bytes: freeBytes('/') - before, seconds: (performance.now() - t0) / 1000 }
  return out.exitCode === 0
    ? { ...result, status: 'removed' }
    : { ...result, status: 'failed', note: out.stderr.trim().split('\n').pop() }
}

/** Opt-in: every image not used by a container. */
export async function removeDockerImages(o: FreeDiskOptions): Promise<Outcome> {
  const t0 = performance.now()
  const before = freeBytes('/')
  const prune = $({ halt: true, nothrow: true, quiet: true, timeout: '10m' })`docker image prune -af`
  const base = { target: 'docker-images', what: 'docker image prune -af', bytesFrom: 'statfs' as const }
  if (o.dryRun) {
    show(prune)
    return { ...base, status: 'would remove', seconds: 0 }
  }
  const out = await prune.run()
  const result = { ...base, bytes: freeBytes('/') - before, seconds: (performance.now() - t0) / 1000 }
  return out.exitCode === 0
    ? { ...result, status: 'removed' }
    : { ...result, status: 'failed', note: out.stderr.trim().split('\n').pop() }
}

/** Opt-in: the swap file (it sits on /mnt, so this frees /mnt). */
export async function removeSwap(r: Resolved, o: FreeDiskOptions): Promise<Outcome> {
  const t0 = performance.now()
  const file = r.present[0].path
  const before = freeBytes(path.dirname(file))
  const swapoff = $({ halt: true, nothrow: true, quiet: true })`${o.sudo} swapoff -- ${file}`
  const rm = $({ halt: true, nothrow: true, quiet: true })`${o.sudo} rm -f -- ${file}`
  const base = { target: 'swap', what: file, bytesFrom: 'statfs' as const }
  if (o.dryRun) {
    show(swapoff, rm)
    return { ...base, status: 'would remove', seconds: 0 }
  }
  await swapoff.run()
  const out = await rm.run()
  const result = { ...base, bytes: freeBytes(path.dirname(file)) - before, seconds: (performance.now() - t0) / 1000 }
  return out.exitCode === 0
    ? { ...result, status: 'removed' }
    : { ...result, status: 'failed', note: out.stderr.trim() }
}

/** One target, whichever kind; refused paths make it fail, host-wide kinds are skipped under --root. */
export async function removeTarget(r: Resolved, o: FreeDiskOptions, items: TrashItem[]): Promise<Outcome> {
  const { kind, name } = r.target
  if (r.refused.length) {
    return {
      target: name,
      what: r.refused.join(' '),
      bytesFrom: 'du',
      seconds: 0,
      status: 'failed',
      note: 'refused: outside the root',
    }
  }
  if (kind !== 'paths' && !onHost(o)) {
    throw new Error(`${name} acts on the host: confineToRoot must have refused it under --root`)
  }
  if (kind === 'apt') return removeAptPackages(o)
  if (kind === 'docker') return removeDockerImages(o)
  if (kind === 'swap') return removeSwap(r, o)
  return o.background ? moveAside(r, o, items) : removePaths(r, o)
}

/** Removes targets in batches, best bytes per second first, until --target-free is met or nothing is left. */
export async function freeUntilEnough(candidates: Resolved[], o: FreeDiskOptions, items: TrashItem[]) {
  const outcomes: Outcome[] = []
  let left = candidates
  let credit = 0 // planned (dry run) or moved aside: coming, but not yet visible to statfs
  while (left.length) {
    const deficit = o.targetFree === undefined ? undefined : o.targetFree - freeBytes(o.root) - credit
    if (deficit !== undefined && deficit <= 0) break
    const batch = planBatch(left, deficit)
    left = left.filter((r) => !batch.includes(r))
    report.info(
      `plan: ${batch.map((r) => r.target.name).join(', ')}${deficit ? ` (to cover ${formatBytes(deficit)})` : ''}`,
    )
    const done = await pMap(batch, async (r) => logged(await removeTarget(r, o, items)), { concurrency: o.jobs })
    outcomes.push(...done)
    credit += done.filter((d) => d.bytesFrom === 'estimate' || o.dryRun).reduce((sum, d) => sum + (d.bytes ?? 0), 0)
  }
  return { outcomes, credit }
}

function logged(d: Outcome): Outcome {
  const line = `${d.target}: ${d.status}${d.bytes === undefined ? '' : ` ${formatBytes(d.bytes)}`} in ${
    d.seconds.toFixed(1)
  }s${d.note ? ` (${d.note})` : ''}`
  if (d.status === 'failed') report.fail(line)
  else if (d.status === 'skipped') report.skip(line)
  else report.ok(line)
  return d
}

/** Records what was moved aside, then starts the detached deleter (this script with --delete-trash). */
export async function startDeleter(items: TrashItem[], o: FreeDiskOptions): Promise<void> {
  const trashDirs = [...new Set(items.map((i) => path.dirname(i.path)))]
  const script = fileURLToPath(import.meta.url)
  const log = o.dryRun ? 'ignore' : fs.openSync(`${o.statusFile}.log`, 'a')
  const deleter = $({
    halt: true,
    nothrow: true,
    detached: true,
    stdio: ['ignore', log, log],
  })`${runtimeCommand()} ${script} ${
    trashDirs.flatMap((d) => ['--delete-trash', d])
  } --status ${o.statusFile} --jobs ${o.jobs} --root ${o.root}`
  if (o.dryRun) return show(deleter)
  const now = new Date().toISOString()
  writeStatus(o.statusFile, { version: 1, state: 'starting', startedAt: now, updatedAt: now, trashDirs, items })
  deleter.run()
  deleter.child?.unref() // the step ends now; the deleter lives on in its own process group
  report.info(`deleting in the background (pid ${deleter.pid}); progress: ${o.statusFile}`)
}

/** --delete-trash: the detached deleter. Measures and deletes the moved items in parallel, recording progress. */
export async function deleteTrash(
  dirs: string[],
  o: Pick<FreeDiskOptions, 'statusFile' | 'jobs' | 'sudo'>,
): Promise<number> {
  const bad = dirs.filter((d) => !path.basename(d).startsWith(TRASH))
  if (bad.length) throw new UsageError(`--delete-trash only deletes ${TRASH}* directories, not ${bad.join(', ')}`)
  const prior = readFreeDiskStatus(o.statusFile)
  const paths = dirs.flatMap((d) => (fs.existsSync(d) ? fs.readdirSync(d).map((n) => path.join(d, n)) : []))
  const items = paths.map((p) =>
    prior?.items.find((i) => i.path === p) ??
      { target: path.basename(p), path: p, bytes: 0, measured: false, done: false }
  )
  const status: FreeDiskStatus = {
    version: 1,
    pid: process.pid,
    state: 'deleting',
    startedAt: prior?.startedAt ?? new Date().toISOString(),
    updatedAt: '',
    trashDirs: dirs,
    items,
  }
  writeStatus(o.statusFile, status)
  // measure everything first (in parallel, seconds): until then the sizes are the catalogue's typical ones, which can be far
  // off (a runner image without Android has 10 MiB where 12 GB is typical) and a disk budget reading the status would wait
  // for bytes that never come. du also warms the cache rm needs anyway.
  await pMap(items, async (i) => {
    Object.assign(i, { bytes: await duBytes([i.path], o.sudo), measured: true })
    writeStatus(o.statusFile, status)
  }, { concurrency: o.jobs })
  await pMap(items, async (i) => {
    const t0 = performance.now()
    const out = await $({ nothrow: true, quiet: true })`${o.sudo} rm -rf --one-file-system -- ${i.path}`
    Object.assign(i, {
      done: out.exitCode === 0,
      seconds: (performance.now() - t0) / 1000,
      ...(out.exitCode ? { error: out.stderr.trim() } : {}),
    })
    writeStatus(o.statusFile, status)
  }, { concurrency: o.jobs })
  await $({ nothrow: true, quiet: true })`${o.sudo} rmdir -- ${dirs}`
  const failed = items.some((i) => !i.done)
  writeStatus(o.statusFile, { ...status, state: failed ? 'failed' : 'complete', finishedAt: new Date().toISOString() })
  return failed ? 1 : 0
}

const isLink = (p: string) => {
  try {
    return fs.lstatSync(p).isSymbolicLink()
  } catch {
    return false
  }
}

async function main(argv: string[]): Promise<number> {
  const env = process.env
  const { flags } = parseFlags(FLAGS, argv, env) // refuses stray arguments
  const { 'delete-trash': _internal, ...publicFlags } = FLAGS
  if (flags.help) {
    process.stdout.write(
      renderHelp(
        'npx bun scripts/free-disk.ts [flags]',
        'Free disk on a hosted CI runner by deleting preinstalled toolchains we never use.',
        publicFlags,
      ),
    )
    return 0
  }
  configureReport({ github: inGitHubActions(env), secrets: secretValues(env) })
  const root = path.resolve(flags.root)
  const o: FreeDiskOptions = {
    root,
    targetFree: flags.targetFree,
    jobs: flags.jobs,
    dryRun: flags.dryRun,
    background: flags.background,
    statusFile: path.resolve(flags.status ?? path.join(root, 'tmp', 'imagefleet-free-disk.json')),
    sudo: root === '/' && process.getuid?.() !== 0 ? ['sudo', '-n'] : [],
  }
  if (flags.deleteTrash.length) return deleteTrash(flags.deleteTrash, o)
  const extras = flags.extra.map(extraTarget)
  if (flags.list) return listTargets([...CATALOGUE, ...extras].map((t) => resolveTarget(t, root)), o).then(() => 0)
  const targets = [...selectTargets(flags), ...extras].map((t) => resolveTarget(t, root))
  assertAllowed({ inCI: env.CI === 'true', yes: flags.yes, dryRun: o.dryRun })

  report.phase('free-disk')
  const t0 = performance.now()
  const freeBefore = showDisk(root, 'before')
  if (o.targetFree !== undefined && freeBefore >= o.targetFree) {
    report.ok(`already ${formatBytes(freeBefore)} free (wanted ${formatBytes(o.targetFree)}): nothing to do`)
    if (env.GITHUB_OUTPUT) {
      writeOutputs(env.GITHUB_OUTPUT, stepOutputs([], { freeBefore, freeAfter: freeBefore, seconds: 0, pending: 0 }))
    }
    return 0
  }
  const { allowed, refused } = confineToRoot(targets, o)
  const candidates = allowed.filter((r) =>
    r.present.length || r.refused.length || r.target.kind === 'apt' || r.target.kind === 'docker'
  )
  allowed.filter((r) => !candidates.includes(r)).forEach((r) => report.skip(`${r.target.name}: not present`))
  const items: TrashItem[] = []
  const freed = await freeUntilEnough(candidates, o, items)
  const { credit } = freed
  const outcomes = [...freed.outcomes, ...refused]
  if (items.length) await startDeleter(items, o)
  const freeAfter = showDisk(root, 'after')
  const totals = { freeBefore, freeAfter, seconds: (performance.now() - t0) / 1000, pending: o.background ? credit : 0 }
  report.endPhase()
  report.info('\n' + renderText(outcomes, totals))
  if (inGitHubActions(env) && env.GITHUB_STEP_SUMMARY) appendSummary(env.GITHUB_STEP_SUMMARY, outcomes, totals)
  const deleting = items.length && !o.dryRun ? o.statusFile : undefined
  if (env.GITHUB_OUTPUT) writeOutputs(env.GITHUB_OUTPUT, stepOutputs(outcomes, totals, deleting))
  const failed = outcomes.filter((d) => d.status === 'failed').length
  const short = o.targetFree !== undefined && !o.dryRun && freeAfter + totals.pending < o.targetFree
  if (short) {
    report.error(
      `still ${formatBytes(o.targetFree! - freeAfter - totals.pending)} short of --target-free ${
        formatBytes(o.targetFree!)
      } with every selected target gone`,
    )
  }
  if (freeAfter < freeBefore && !o.background && !o.dryRun) {
    report.warn(
      `free space shrank by ${
        formatBytes(freeBefore - freeAfter)
      } while deleting: something else is writing to this disk`,
    )
  }
  report.info(`${outcomes.length - failed} ok, ${failed} failed`)
  return failed || short ? 1 : 0
}

if (import.meta.main) runMain(() => main(process.argv.slice(2)))
