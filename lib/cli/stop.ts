// Graceful stop. The first SIGINT/SIGTERM stops admitting work and gives the commands in flight
// `graceMs` to finish, then kills their process trees; a second signal kills them at once and flushes.
// Either way the steps that were running record `interrupted` and the run exits 130.
// Every child runs in its own process group: a terminal's Ctrl-C reaches only us, and a kill reaches
// the whole tree (the shell and the docker client; killing the client cancels the build in the daemon).
import type cp from 'node:child_process'

/** What a step needs to know about a stop in progress (lib/step.ts). */
export type StopGuard = {
  readonly stopping: boolean
  /** true once in-flight commands were killed: their failures are `interrupted`, not their own */
  readonly killed: boolean
  /** Registers a running step; `onForce` records it when a second signal leaves no time. Call the result when it ends. */
  enter(onForce: () => void): () => void
}

export type StopOptions = {
  graceMs: number
  /** after a second signal: write what is left to write (summary) and exit */
  onForce: () => never
  say: (text: string) => void
}

export class GracefulStop implements StopGuard {
  stopping = false
  killed = false
  private readonly children = new Set<cp.ChildProcess>()
  private readonly running = new Set<() => void>()
  private graceTimer?: ReturnType<typeof setTimeout>

  constructor(private readonly o: StopOptions) {}

  /** Listens for SIGINT and SIGTERM. */
  install(): this {
    for (const name of ['SIGINT', 'SIGTERM'] as const) process.on(name, () => this.signal(name))
    return this
  }

  /** Wraps a spawn (zx's `$.spawn`) so every child is tracked and leads its own process group. */
  wrapSpawn(spawn: typeof cp.spawn): typeof cp.spawn {
    return ((command: string, args: readonly string[], options: cp.SpawnOptions) => {
      const child = spawn(command, args, { ...options, detached: true })
      this.children.add(child)
      child.once('exit', () => this.children.delete(child))
      return child
    }) as typeof cp.spawn
  }

  enter(onForce: () => void): () => void {
    this.running.add(onForce)
    return () => {
      this.running.delete(onForce)
    }
  }

  signal(name: string): void {
    if (this.stopping) return this.force(name)
    this.stopping = true
    this.o.say(
      `${name}: no new images start; ${this.running.size} in flight get ${
        this.o.graceMs / 1000
      }s to finish (send it again to stop at once)`,
    )
    this.graceTimer = setTimeout(() => {
      if (!this.children.size) return
      this.o.say(`grace of ${this.o.graceMs / 1000}s over: killing ${this.children.size} running commands`)
      this.killAll('SIGTERM')
      setTimeout(() => this.killAll('SIGKILL'), 5000).unref()
    }, this.o.graceMs)
    this.graceTimer.unref()
  }

  private force(name: string): never {
    this.o.say(`${name} again: stopping now`)
    this.killAll('SIGKILL')
    for (const record of this.running) record()
    this.running.clear()
    return this.o.onForce()
  }

  private killAll(signal: NodeJS.Signals): void {
    this.killed = true
    for (const child of this.children) {
      if (!child.pid) continue
      try {
        process.kill(-child.pid, signal)
      } catch {
        try {
          child.kill(signal)
        } catch { /* gone */ }
      }
    }
  }
}
