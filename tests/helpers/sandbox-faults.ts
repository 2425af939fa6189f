// Fault injection for the fault tests: crash the sandbox's registry or dockerd under a running pipeline, then
// bring it back as it was (same port and storage, same data root).
import fs from 'node:fs'
import path from 'node:path'
import { FatalError } from '../../lib/cli/main.ts'
import { alive, childrenOf, waitGone } from '../../lib/host/processes.ts'
import { type Env, layout, readPidfile, readState, toSandbox, writeState } from '../../lib/sandbox/state.ts'
import { startDockerd, waitForDocker } from '../../scripts/_sandbox-engine.ts'
import { startRegistry, waitForRegistry } from '../../scripts/_sandbox-registry.ts'

/** Kills the registry or dockerd (SIGKILL: a crash, not a shutdown); `restartService` brings it back as it was. */
export async function killService(dir: string, service: 'registry' | 'dockerd'): Promise<void> {
  const l = layout(dir)
  const state = readState(l)
  const pid = service === 'registry' ? state?.registryPid : (readPidfile(l.pidfile) ?? state?.dockerdPid)
  if (!pid || !alive(pid)) throw new FatalError(`${service} is not running in ${l.root}`)
  const family = [pid, ...childrenOf(pid)] // dockerd's containerd dies with it (moby starts it with Pdeathsig)
  process.kill(pid, 'SIGKILL')
  await waitGone(family, 10_000)
  // A crash leaves the pidfiles of dockerd and its containerd behind, and their zombies may linger (PID 1 in a
  // container need not reap them): a new dockerd would take them for running ("pid file found", or a containerd it
  // waits for in vain). They go with the processes, as after a reboot.
  if (service === 'dockerd') {
    for (const file of [l.pidfile, path.join(l.exec, 'containerd', 'containerd.pid')]) fs.rmSync(file, { force: true })
  }
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
