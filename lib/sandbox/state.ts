// A sandbox on disk: where it keeps its files (all under one directory), what its state.json records, and the
// environment a shell or zx needs to use it. No commands run here (scripts/_sandbox-engine.ts starts and stops it).
import fs from 'node:fs'
import path from 'node:path'

export type Env = Record<string, string | undefined>

/** A running sandbox, as tests, benches and the demo use it. `env` is the base environment plus its exports. */
export type Sandbox = {
  dir: string
  registry: string
  seedImage: string
  dataRoot: string
  diskBytes: number
  env: Record<string, string>
}

/** What state.json records, written after each step of `up` so `down` can undo a half-up sandbox. */
export type State = {
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

/** `down` removes only directories that carry this file. */
export const MARKER = '.imagefleet-sandbox'

/** Every path the sandbox uses, all under one absolute directory. */
export function layout(dir: string) {
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
export type Layout = ReturnType<typeof layout>

export function readState(l: Layout): State | undefined {
  try {
    return JSON.parse(fs.readFileSync(l.state, 'utf8'))
  } catch {
    return undefined
  }
}

export const writeState = (l: Layout, state: State) => fs.writeFileSync(l.state, JSON.stringify(state, null, 2) + '\n')

/** The pid dockerd wrote to its pidfile (it can differ from the pid we started: setsid). */
export function readPidfile(file: string): number | undefined {
  try {
    return Number(fs.readFileSync(file, 'utf8').trim()) || undefined
  } catch {
    return undefined
  }
}

/** What a shell or zx needs to use the sandbox. `basePath`: the PATH the sandbox's bin/ goes in front of. */
export function exportsOf(s: State, basePath?: string): Record<string, string> {
  const bin = path.join(s.dir, 'bin')
  return {
    DOCKER_HOST: `unix://${s.socket}`,
    DOCKER_BUILDKIT: '1',
    PATH: basePath ? `${bin}:${basePath}` : bin,
    DOCKER_CONFIG: path.join(s.dir, 'docker-config'),
    // dockerd runs without a bridge network (--bridge=none: no iptables, no clash with the host's or another
    // sandbox's docker0), so a RUN step needs `--network none`; every script reads IMAGEFLEET_<FLAG>
    IMAGEFLEET_NETWORK: 'none',
    IMAGEFLEET_SANDBOX_REGISTRY: s.registry ?? '',
    IMAGEFLEET_SANDBOX_SEED: s.seedImage ?? '',
    IMAGEFLEET_SANDBOX_DATA_ROOT: s.dataRoot,
  }
}

/** The sandbox as callers see it: its facts, and `baseEnv` extended with its exports. */
export function toSandbox(s: State, baseEnv: Env): Sandbox {
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
