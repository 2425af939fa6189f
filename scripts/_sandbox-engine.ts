// Private helper of scripts/sandbox.ts (not a task): starts and stops a sandbox — a dockerd whose data root is a
// loop-mounted ext4 disk, a registry on 127.0.0.1 and a seeded busybox image — and tells whether one is up.
// Tests, benches and the demo import sandboxUp/sandboxDown/sandboxState from here.
import { $ } from 'zx'
import fs from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import { FatalError } from '../lib/cli/main.ts'
import { report, seconds } from '../lib/cli/report.ts'
import { formatBytes } from '../lib/cli/size.ts'
import { onPath } from '../lib/host/executables.ts'
import { mountsUnder } from '../lib/host/mounts.ts'
import { alive, childrenOf, commandOf, pids, waitGone } from '../lib/host/processes.ts'
import {
  type Env,
  type Layout,
  layout,
  MARKER,
  readPidfile,
  readState,
  type Sandbox,
  type State,
  toSandbox,
  writeState,
} from '../lib/sandbox/state.ts'
import { ensurePackages } from './_sandbox-packages.ts'
import { startRegistry, tailOf, waitForRegistry } from './_sandbox-registry.ts'

export type { Sandbox } from '../lib/sandbox/state.ts'

const SEED_REPO = 'imagefleet/busybox:latest'
const SEED_DOCKERFILE = 'FROM scratch\nCOPY busybox /bin/busybox\nRUN ["/bin/busybox","--install","-s","/bin"]\n'

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

export async function startDockerd(l: Layout): Promise<number> {
  const out =
    await $`setsid dockerd --data-root ${l.dataRoot} --exec-root ${l.exec} -H ${`unix://${l.socket}`} --pidfile ${l.pidfile} --bridge=none --iptables=false >${l.log} 2>&1 </dev/null & echo $!`
  return Number(out.stdout.trim())
}

export async function waitForDocker(l: Layout, pid: number, env: Record<string, string>): Promise<void> {
  const deadline = Date.now() + 90_000
  while (Date.now() < deadline) {
    if (!alive(pid)) throw new FatalError(`dockerd exited:\n${tailOf(l.log)}`)
    const version = await serverVersion(env)
    if (version) return report.ok(`dockerd ${version} answers on ${l.socket}`)
    await sleep(500)
  }
  throw new FatalError(`dockerd did not answer within 90s:\n${tailOf(l.log)}`)
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

// ---- small helpers --------------------------------------------------------------------------

/** The daemon's version when it answers within 10 s, else undefined. */
async function serverVersion(env: Record<string, string | undefined>): Promise<string | undefined> {
  const info = await $({ quiet: true, nothrow: true, timeout: '10s', env })`docker info --format {{.ServerVersion}}`
  return info.exitCode === 0 ? info.stdout.trim() : undefined
}

const processesAlive = (s: State) =>
  !!s.dockerdPid && alive(s.dockerdPid) && !!s.registryPid && alive(s.registryPid) && !!s.seedImage

async function isHealthy(s: State, env: Env): Promise<boolean> {
  if (!processesAlive(s) || !mountsUnder(s.dir).includes(path.join(s.dir, 'mnt'))) return false
  const version = await serverVersion(toSandbox(s, env).env)
  const registry = await fetch(`http://${s.registry}/v2/`).then((r) => r.status, () => 0)
  return version !== undefined && registry === 200
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

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
