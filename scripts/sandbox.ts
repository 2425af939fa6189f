// A throwaway Docker engine on a small loop-mounted disk, plus a real registry, for tests, the demo,
// benchmarks and operators who want a full CI disk on their desk.
//   bun run scripts/sandbox.ts up|down|env|status [--dir DIR] [--disk SIZE]
import { $ } from 'zx'
import fs from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import { type FlagTable, parseFlags, renderHelp, unexpectedArguments, UsageError } from '../lib/cli/flags.ts'
import { FatalError, runMain } from '../lib/cli/main.ts'
import { sampleDisk } from '../lib/disk/statfs.ts'
import { configureReport, report, seconds, secretValues } from '../lib/cli/report.ts'
import { formatBytes } from '../lib/cli/size.ts'

export const FLAGS = {
  dir: {
    type: 'string',
    default: '.sandbox',
    arg: 'DIR',
    help: 'Directory holding the disk image, sockets, logs and registry storage',
  },
  disk: {
    type: 'size',
    default: '3G',
    arg: 'SIZE',
    help: 'Size of the loop-mounted ext4 disk that holds the Docker data root',
  },
  json: { type: 'boolean', help: 'With env: print the environment as JSON instead of shell exports' },
} as const satisfies FlagTable

type Env = Record<string, string | undefined>
export type Sandbox = {
  dir: string
  registry: string
  seedImage: string
  dataRoot: string
  diskBytes: number
  env: Record<string, string>
}
type State = {
  dir: string
  diskBytes: number
  loop?: string
  dataRoot: string
  socket: string
  client?: string
  dockerdPid?: number
  registryPid?: number
  port?: number
  registry?: string
  seedImage?: string
  upSeconds?: number
}

/** What `up` needs and the Debian package that brings it (apt-get installs the missing ones when root). */
const NEEDS = [
  { pkg: 'docker.io', what: 'dockerd', present: (env: Env) => onPath('dockerd', env).length > 0 },
  { pkg: 'docker-registry', what: 'docker-registry', present: (env: Env) => onPath('docker-registry', env).length > 0 },
  // the seed image is FROM scratch: only a static busybox runs there
  { pkg: 'busybox-static', what: 'a static /bin/busybox', present: () => isStaticBinary('/bin/busybox') },
]
const MARKER = '.imagefleet-sandbox' // `down` removes only directories that carry it
const SEED_REPO = 'imagefleet/busybox:latest'
const SEED_DOCKERFILE = 'FROM scratch\nCOPY busybox /bin/busybox\nRUN ["/bin/busybox","--install","-s","/bin"]\n'

/** Every path the sandbox uses, all under one absolute directory. */
function layout(dir: string) {
  const root = path.resolve(dir)
  const at = (name: string) => path.join(root, name)
  return {
    root,
    marker: at(MARKER),
    state: at('state.json'),
    img: at('disk.img'),
    mnt: at('mnt'),
    dataRoot: at('mnt/docker'),
    exec: at('exec'),
    socket: at('docker.sock'),
    pidfile: at('docker.pid'),
    log: at('dockerd.log'),
    bin: at('bin'),
    config: at('docker-config'),
    registry: at('registry'),
    registryYml: at('registry.yml'),
    registryLog: at('registry.log'),
    seed: at('seed'),
  }
}
type Layout = ReturnType<typeof layout>

// ---- the public API -------------------------------------------------------------------------

/** Brings the sandbox up (or reports it already up); cleans a stale half-up one first. */
export async function sandboxUp(opts: { dir: string; disk: number; baseEnv: Env }): Promise<Sandbox> {
  const l = layout(opts.dir)
  const old = readState(l)
  if (old && await isHealthy(old, opts.baseEnv)) {
    report.ok(`sandbox already up at ${l.root} (disk ${formatBytes(old.diskBytes)}, registry ${old.registry})`)
    if (old.diskBytes !== opts.disk) {
      report.warn(`it keeps its ${formatBytes(old.diskBytes)} disk: run down first for ${formatBytes(opts.disk)}`)
    }
    return toSandbox(old, opts.baseEnv)
  }
  checkPrivileges()
  if (fs.existsSync(l.marker)) {
    report.warn(`stale sandbox at ${l.root}: cleaning it first`)
    await sandboxDown({ dir: l.root })
  }
  if (fs.existsSync(l.root) && fs.readdirSync(l.root).length) {
    throw new FatalError(`${l.root} exists and is not a sandbox: pick an empty or new --dir (down removes it)`)
  }
  await ensurePackages(opts.baseEnv)
  const started = Date.now()
  try {
    const state = await bringUp(l, opts.disk, opts.baseEnv)
    state.upSeconds = (Date.now() - started) / 1000
    writeState(l, state)
    report.ok(
      `sandbox up in ${seconds(Date.now() - started)}: disk ${formatBytes(opts.disk)}, registry ${state.registry}`,
    )
    return toSandbox(state, opts.baseEnv)
  } catch (error) {
    report.fail('sandbox up failed: taking down what was started')
    await sandboxDown({ dir: l.root }).catch((e) => report.warn(`cleanup failed too: ${e.message}`))
    throw error
  }
}

/** Stops dockerd (and its containerd) and the registry, unmounts, detaches the loop device, removes DIR. */
export async function sandboxDown(opts: { dir: string }): Promise<void> {
  const l = layout(opts.dir)
  if (!fs.existsSync(l.root)) return report.skip(`nothing is up at ${l.root}`)
  if (!fs.existsSync(l.marker)) {
    throw new FatalError(`${l.root} is not a sandbox directory (no ${MARKER}): not touching it`)
  }
  checkPrivileges()
  const state = readState(l)
  await stopProcess(state?.dockerdPid ?? readPidfile(l.pidfile), 'dockerd', 45_000)
  await stopProcess(state?.registryPid, 'docker-registry', 10_000)
  await killLeftovers(l)
  await unmountAll(l)
  await detachLoops(l)
  fs.rmSync(l.root, { recursive: true, force: true })
  report.ok(`sandbox down: ${l.root} removed`)
}

/** The running sandbox at DIR (its processes alive), or undefined. `baseEnv` is what its `env` extends. */
export function sandboxState(dir: string, baseEnv: Env = process.env): Sandbox | undefined {
  const state = readState(layout(dir))
  return state && processesAlive(state) ? toSandbox(state, baseEnv) : undefined
}

// ---- up, step by step -----------------------------------------------------------------------

async function bringUp(l: Layout, disk: number, env: Env): Promise<State> {
  fs.mkdirSync(l.root, { recursive: true })
  fs.writeFileSync(l.marker, 'made by scripts/sandbox.ts; `sandbox.ts down` removes this directory\n')
  const state: State = { dir: l.root, diskBytes: disk, dataRoot: l.dataRoot, socket: l.socket }
  makeClientConfig(l, env)
  state.client = await linkBuildkitClient(l, env)
  state.loop = await mountDisk(l, disk)
  writeState(l, state)
  state.dockerdPid = await startDockerd(l)
  writeState(l, state)
  const sandboxEnv = toSandbox(state, env).env
  await waitForDocker(l, state.dockerdPid, sandboxEnv)
  state.dockerdPid = readPidfile(l.pidfile) ?? state.dockerdPid
  state.port = await freePort()
  state.registryPid = await startRegistry(l, state.port)
  state.registry = `127.0.0.1:${state.port}`
  writeState(l, state)
  await waitForRegistry(l, state.registry)
  state.seedImage = await seedBaseImage(l, `${state.registry}/${SEED_REPO}`, sandboxEnv)
  return state
}

function checkPrivileges(): void {
  if (process.getuid?.() !== 0) {
    throw new FatalError('the sandbox needs root (loop mount, dockerd): run it with sudo or as root')
  }
  if (!fs.existsSync('/dev/loop-control')) {
    throw new FatalError(
      'no loop devices (/dev/loop-control missing): on a container, run it privileged or with --device /dev/loop-control',
    )
  }
}

async function ensurePackages(env: Env): Promise<void> {
  const missing = []
  for (const need of NEEDS) if (!(await need.present(env))) missing.push(need)
  if (!missing.length) return
  const pkgs = missing.map((m) => m.pkg)
  report.info(`installing ${pkgs.join(' ')} (missing: ${missing.map((m) => m.what).join(', ')})`)
  const apt = $({ quiet: true, timeout: '15m', env: { ...env, DEBIAN_FRONTEND: 'noninteractive' } })
  await apt`apt-get update`
  await apt`apt-get install -y ${pkgs}`
  report.ok(`installed ${pkgs.join(' ')}`)
}

/** An isolated client config (no credentials of the operator leak in), keeping the operator's CLI plugins (buildx). */
function makeClientConfig(l: Layout, env: Env): void {
  fs.mkdirSync(l.config, { recursive: true })
  fs.writeFileSync(path.join(l.config, 'config.json'), '{}\n')
  const plugins = env.HOME && path.join(env.HOME, '.docker', 'cli-plugins')
  if (plugins && fs.existsSync(plugins)) fs.symlinkSync(plugins, path.join(l.config, 'cli-plugins'))
}

/** DIR/bin/docker → a client that builds with BuildKit: one with buildx, else a pre-23 client (BuildKit built in). */
async function linkBuildkitClient(l: Layout, env: Env): Promise<string> {
  const clients = onPath('docker', env).filter((c) => !c.startsWith(l.root))
  const probe = $({ quiet: true, nothrow: true, timeout: '20s', env: { ...env, DOCKER_CONFIG: l.config } })
  let chosen: string | undefined
  for (const c of clients) if (!chosen && (await probe`${c} buildx version`).exitCode === 0) chosen = c
  for (const c of clients) {
    if (!chosen && Number(/version (\d+)\./.exec((await probe`${c} --version`).stdout)?.[1]) < 23) chosen = c
  }
  if (!chosen) {
    throw new FatalError(
      `no docker client that builds with BuildKit among ${
        clients.join(', ') || '(none on PATH)'
      }: install buildx (docker-buildx-plugin) or Debian's docker.io`,
    )
  }
  fs.mkdirSync(l.bin, { recursive: true })
  fs.symlinkSync(chosen, path.join(l.bin, 'docker'))
  report.ok(`docker client: ${chosen}`)
  return chosen
}

/** An ext4 file of exactly `bytes`, no root reserve (-m 0) so docker can use all of it, loop-mounted at DIR/mnt. */
async function mountDisk(l: Layout, bytes: number): Promise<string> {
  fs.mkdirSync(l.mnt, { recursive: true })
  await $`truncate -s ${bytes} ${l.img}`
  await $({ quiet: true })`mkfs.ext4 -q -F -m 0 ${l.img}`
  await $`mount -o loop ${l.img} ${l.mnt}`
  const loop = (await $`findmnt -n -o SOURCE ${l.mnt}`).stdout.trim()
  report.ok(`disk ${formatBytes(bytes)} on ${loop} at ${l.mnt}`)
  return loop
}

async function startDockerd(l: Layout): Promise<number> {
  const out =
    await $`setsid dockerd --data-root ${l.dataRoot} --exec-root ${l.exec} -H ${`unix://${l.socket}`} --pidfile ${l.pidfile} --bridge=none --iptables=false >${l.log} 2>&1 </dev/null & echo $!`
  return Number(out.stdout.trim())
}

async function waitForDocker(l: Layout, pid: number, env: Record<string, string>): Promise<void> {
  const deadline = Date.now() + 90_000
  while (Date.now() < deadline) {
    if (!alive(pid)) throw new FatalError(`dockerd exited:\n${tail(l.log)}`)
    const info = await $({ quiet: true, nothrow: true, timeout: '10s', env })`docker info --format {{.ServerVersion}}`
    if (info.exitCode === 0) return report.ok(`dockerd ${info.stdout.trim()} answers on ${l.socket}`)
    await sleep(500)
  }
  throw new FatalError(`dockerd did not answer within 90s:\n${tail(l.log)}`)
}

/** Distribution 2.x, plain HTTP on 127.0.0.1 (docker treats it as insecure-allowed), deletes enabled, storage on the host disk. */
async function startRegistry(l: Layout, port: number): Promise<number> {
  fs.writeFileSync(
    l.registryYml,
    [
      'version: 0.1',
      'log:',
      '  level: warn',
      '  accesslog:',
      '    disabled: true',
      'storage:',
      '  filesystem:',
      `    rootdirectory: ${l.registry}`,
      '  delete:',
      '    enabled: true',
      'http:',
      `  addr: 127.0.0.1:${port}`,
      '',
    ].join('\n'),
  )
  const out = await $`setsid docker-registry serve ${l.registryYml} >${l.registryLog} 2>&1 </dev/null & echo $!`
  return Number(out.stdout.trim())
}

async function waitForRegistry(l: Layout, registry: string): Promise<void> {
  const deadline = Date.now() + 30_000
  while (Date.now() < deadline) {
    const status = await fetch(`http://${registry}/v2/`).then((r) => r.status, () => 0)
    if (status === 200) return report.ok(`registry answers at ${registry}`)
    await sleep(300)
  }
  throw new FatalError(`registry did not answer at ${registry} within 30s:\n${tail(l.registryLog)}`)
}

/** The base every synthetic image builds on: busybox FROM scratch, pushed, then removed so the disk starts clean. */
async function seedBaseImage(l: Layout, image: string, env: Record<string, string>): Promise<string> {
  fs.mkdirSync(l.seed, { recursive: true })
  fs.copyFileSync('/bin/busybox', path.join(l.seed, 'busybox'))
  fs.writeFileSync(path.join(l.seed, 'Dockerfile'), SEED_DOCKERFILE)
  const docker = $({ quiet: true, env, timeout: '5m' })
  await docker`docker build --network=none -t ${image} ${l.seed}`
  await docker`docker push ${image}`
  await docker`docker rmi ${image}`
  await docker`docker builder prune -af`
  fs.rmSync(l.seed, { recursive: true, force: true })
  report.ok(`seeded ${image}`)
  return image
}

// ---- down, step by step ---------------------------------------------------------------------

/** SIGTERM, wait, SIGKILL; children (dockerd's containerd) are waited for too. Only kills a pid running `name`. */
async function stopProcess(pid: number | undefined, name: string, graceMs: number): Promise<void> {
  if (!pid || !alive(pid) || !commandOf(pid).includes(name)) return
  const family = [pid, ...childrenOf(pid)]
  process.kill(pid, 'SIGTERM')
  if (!(await waitGone(family, graceMs))) {
    report.warn(`${name} (pid ${pid}) did not stop in ${graceMs / 1000}s: killing it`)
    for (const p of family) if (alive(p)) process.kill(p, 'SIGKILL')
    await waitGone(family, 5_000)
  }
  report.ok(`stopped ${name} (pid ${pid})`)
}

/** Engine processes still pointing into DIR (containerd, shims) after dockerd stopped. */
async function killLeftovers(l: Layout): Promise<void> {
  const left = pids().filter((p) =>
    /^(dockerd|containerd|containerd-shim|runc|docker-registry)/.test(path.basename(commandOf(p).split('\0')[0])) &&
    commandOf(p).includes(l.root)
  )
  for (const p of left) {
    report.warn(`killing leftover ${path.basename(commandOf(p).split('\0')[0])} (pid ${p})`)
    process.kill(p, 'SIGKILL')
  }
  await waitGone(left, 5_000)
}

/** Every mount under DIR, deepest first; a few tries each, then a lazy unmount as a last resort. */
async function unmountAll(l: Layout): Promise<void> {
  for (const mountpoint of mountsUnder(l.root)) {
    for (let attempt = 1; attempt <= 5 && mountsUnder(l.root).includes(mountpoint); attempt++) {
      if ((await $({ quiet: true, nothrow: true, timeout: '30s' })`umount ${mountpoint}`).exitCode !== 0) {
        await sleep(1000)
      }
    }
    if (mountsUnder(l.root).includes(mountpoint)) {
      report.warn(`${mountpoint} is busy: lazy unmount`)
      await $({ quiet: true, timeout: '30s' })`umount -l ${mountpoint}`
    }
  }
  if (mountsUnder(l.root).length) {
    throw new FatalError(`still mounted under ${l.root}: ${mountsUnder(l.root).join(', ')}`)
  }
}

async function detachLoops(l: Layout): Promise<void> {
  if (!fs.existsSync(l.img)) return
  const attached = (await $({ quiet: true, nothrow: true })`losetup -j ${l.img}`).stdout
  for (const device of attached.split('\n').map((line) => line.split(':')[0]).filter(Boolean)) {
    await $({ quiet: true, nothrow: true })`losetup -d ${device}`
  }
}

// ---- state and small helpers ----------------------------------------------------------------

function readState(l: Layout): State | undefined {
  try {
    return JSON.parse(fs.readFileSync(l.state, 'utf8'))
  } catch {
    return undefined
  }
}
const writeState = (l: Layout, state: State) => fs.writeFileSync(l.state, JSON.stringify(state, null, 2) + '\n')
const readPidfile = (file: string) => {
  try {
    return Number(fs.readFileSync(file, 'utf8').trim()) || undefined
  } catch {
    return undefined
  }
}

const processesAlive = (s: State) =>
  !!s.dockerdPid && alive(s.dockerdPid) && !!s.registryPid && alive(s.registryPid) && !!s.seedImage

async function isHealthy(s: State, env: Env): Promise<boolean> {
  if (!processesAlive(s) || !mountsUnder(s.dir).includes(path.join(s.dir, 'mnt'))) return false
  const info = await $({
    quiet: true,
    nothrow: true,
    timeout: '10s',
    env: toSandbox(s, env).env,
  })`docker info --format {{.ServerVersion}}`
  const registry = await fetch(`http://${s.registry}/v2/`).then((r) => r.status, () => 0)
  return info.exitCode === 0 && registry === 200
}

/** What a shell or zx needs to use the sandbox. */
function exportsOf(s: State, basePath?: string): Record<string, string> {
  const bin = path.join(s.dir, 'bin')
  return {
    DOCKER_HOST: `unix://${s.socket}`,
    DOCKER_BUILDKIT: '1',
    PATH: basePath ? `${bin}:${basePath}` : bin,
    DOCKER_CONFIG: path.join(s.dir, 'docker-config'),
    IMAGEFLEET_SANDBOX_REGISTRY: s.registry ?? '',
    IMAGEFLEET_SANDBOX_SEED: s.seedImage ?? '',
    IMAGEFLEET_SANDBOX_DATA_ROOT: s.dataRoot,
  }
}

function toSandbox(s: State, baseEnv: Env): Sandbox {
  const base = Object.fromEntries(Object.entries(baseEnv).filter((e): e is [string, string] => e[1] !== undefined))
  return {
    dir: s.dir,
    registry: s.registry ?? '',
    seedImage: s.seedImage ?? '',
    dataRoot: s.dataRoot,
    diskBytes: s.diskBytes,
    env: { ...base, ...exportsOf(s, baseEnv.PATH) },
  }
}

/** Every executable named `name` on PATH, resolved and de-duplicated (/bin and /usr/bin are often one). */
function onPath(name: string, env: Env): string[] {
  const found = (env.PATH ?? '').split(':').filter(Boolean).map((d) => path.join(d, name))
    .filter((f) => {
      try {
        fs.accessSync(f, fs.constants.X_OK)
        return true
      } catch {
        return false
      }
    })
  const seen = new Set<string>()
  return found.filter((f) => {
    const real = fs.realpathSync(f)
    return !seen.has(real) && !!seen.add(real)
  })
}

async function isStaticBinary(file: string): Promise<boolean> {
  if (!fs.existsSync(file)) return false
  const ldd = await $({ quiet: true, nothrow: true })`ldd ${file}`
  return /not a dynamic executable|statically linked/.test(ldd.stdout + ldd.stderr)
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer().once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo
      server.close(() => resolve(port))
    })
  })
}

/** Alive and not a zombie (in a container nobody may reap what we started). */
function alive(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z/.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'))
  } catch {
    return false
  }
}
const commandOf = (pid: number) => {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8')
  } catch {
    return ''
  }
}
const pids = () => fs.readdirSync('/proc').filter((d) => /^\d+$/.test(d)).map(Number).filter((p) => p !== process.pid)
const childrenOf = (pid: number) =>
  pids().filter((p) => {
    try {
      return fs.readFileSync(`/proc/${p}/stat`, 'utf8').replace(/^.*\) /, '').split(' ')[1] === String(pid)
    } catch {
      return false
    }
  })

async function waitGone(family: number[], ms: number): Promise<boolean> {
  const deadline = Date.now() + ms
  while (family.some(alive) && Date.now() < deadline) await sleep(200)
  return !family.some(alive)
}

function mountsUnder(dir: string): string[] {
  const unescape = (s: string) => s.replace(/\\(\d{3})/g, (_, o) => String.fromCharCode(parseInt(o, 8)))
  return fs.readFileSync('/proc/self/mounts', 'utf8').split('\n').map((line) => unescape(line.split(' ')[1] ?? ''))
    .filter((m) => m.startsWith(dir + '/')).sort((a, b) => b.length - a.length)
}

const tail = (file: string) => {
  try {
    return fs.readFileSync(file, 'utf8').split('\n').slice(-25).join('\n')
  } catch {
    return `(no ${file})`
  }
}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
const shellQuote = (v: string) => /^[\w@%+=:,./-]*$/.test(v) ? v : `'${v.replace(/'/g, `'\\''`)}'`

// ---- faults: the fault tests stop and restart the services under a running pipeline ------------

/** Kills the registry or dockerd (SIGKILL: a crash, not a shutdown); `restartService` brings it back as it was. */
export async function killService(dir: string, service: 'registry' | 'dockerd'): Promise<void> {
  const l = layout(dir)
  const state = readState(l)
  const pid = service === 'registry' ? state?.registryPid : (readPidfile(l.pidfile) ?? state?.dockerdPid)
  if (!pid || !alive(pid)) throw new FatalError(`${service} is not running in ${l.root}`)
  process.kill(pid, 'SIGKILL')
  await waitGone([pid], 10_000)
}

/** Starts the registry (same port, same storage) or dockerd (same data root) again and waits until it answers. */
export async function restartService(
  dir: string,
  service: 'registry' | 'dockerd',
  baseEnv: Env = process.env,
): Promise<void> {
  const l = layout(dir)
  const state = readState(l)
  if (!state?.port || !state.registry) throw new FatalError(`no sandbox state in ${l.root}`)
  if (service === 'registry') {
    state.registryPid = await startRegistry(l, state.port)
    await waitForRegistry(l, state.registry)
  } else {
    state.dockerdPid = await startDockerd(l)
    await waitForDocker(l, state.dockerdPid, toSandbox(state, baseEnv).env)
    state.dockerdPid = readPidfile(l.pidfile) ?? state.dockerdPid
  }
  writeState(l, state)
}

// ---- the command line -----------------------------------------------------------------------

/** Shell exports (PATH extends "$PATH" at eval time) or, with --json, the same values fully expanded. */
function printEnv(dir: string, basePath: string | undefined, json: boolean): void {
  const state = readState(layout(dir))!
  if (json) return void process.stdout.write(JSON.stringify(exportsOf(state, basePath), null, 2) + '\n')
  const lines = Object.entries(exportsOf(state)).map(([k, v]) =>
    `export ${k}=${shellQuote(v)}${k === 'PATH' ? ':"$PATH"' : ''}`
  )
  process.stdout.write(lines.join('\n') + '\n')
}

function printStatus(s: Sandbox): void {
  const disk = sampleDisk(s.dataRoot)
  report.info(`sandbox:  up at ${s.dir}`)
  report.info(
    `disk:     ${formatBytes(disk.total)} total, ${formatBytes(disk.used)} used, ${
      formatBytes(disk.free)
    } free (${s.dataRoot})`,
  )
  report.info(`registry: ${s.registry}   seed: ${s.seedImage}`)
}

const USAGE = 'sandbox.ts up|down|env|status [--dir DIR] [--disk SIZE] [--json]'
const SUMMARY = [
  'A throwaway dockerd whose data root is a loop-mounted ext4 disk of --disk, a registry on 127.0.0.1 and a seeded busybox image.',
  '  up      start it (idempotent: "already up" when it is), then print the exports',
  '  down    stop everything, unmount, remove DIR (idempotent)',
  '  env     print the exports: eval "$(bun run scripts/sandbox.ts env)"',
  '  status  disk and registry; exit 1 when down',
  'Needs root and loop devices; installs docker.io docker-registry busybox-static with apt-get when missing.',
].join('\n')

async function main(argv: string[]): Promise<number> {
  const { flags, positionals } = parseFlags(FLAGS, argv, process.env, { positionals: true })
  if ((flags as { help?: boolean }).help) {
    process.stdout.write(renderHelp(USAGE, SUMMARY, FLAGS))
    return 0
  }
  const [command, ...extra] = positionals
  if (!['up', 'down', 'env', 'status'].includes(command)) {
    throw new UsageError(`expected one of up, down, env, status; got '${positionals.join(' ')}'`)
  }
  if (extra.length) throw new UsageError(unexpectedArguments(extra, `sandbox.ts ${command} takes flags only`))
  configureReport({ github: process.env.GITHUB_ACTIONS === 'true', secrets: secretValues(process.env) })
  if (command === 'up') {
    printEnv((await sandboxUp({ dir: flags.dir, disk: flags.disk, baseEnv: process.env })).dir, process.env.PATH, false)
  }
  if (command === 'down') await sandboxDown({ dir: flags.dir })
  if (command === 'up' || command === 'down') return 0
  const running = sandboxState(flags.dir, process.env)
  if (!running) {
    if (command === 'status') {
      report.info(`sandbox:  down (${path.resolve(flags.dir)})`)
      return 1
    }
    throw new FatalError(`no sandbox is up at ${path.resolve(flags.dir)}: run 'sandbox.ts up' first`)
  }
  if (command === 'env') printEnv(running.dir, process.env.PATH, flags.json)
  else printStatus(running)
  return 0
}

if (import.meta.main) runMain(() => main(process.argv.slice(2)))
