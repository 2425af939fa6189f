// Graceful stop (lib/cli/stop.ts) with real child processes: the first signal stops admitting work and kills the
// commands in flight only when the grace is over, a second one kills them at once, records the running steps and
// exits; a kill reaches a command's whole process tree. Signals are delivered by calling `signal` (what `install`
// wires to SIGINT and SIGTERM), so the test process itself is never signalled.
import { describe, expect, test } from 'bun:test'
import cp from 'node:child_process'
import { GracefulStop } from '../lib/cli/stop.ts'
import { alive, waitGone } from '../lib/host/processes.ts'

class Exited extends Error {}

function setup(graceMs: number) {
  const said: string[] = []
  const stop = new GracefulStop({
    graceMs,
    onForce: () => {
      throw new Exited() // stands in for process.exit after the summary is written
    },
    say: (text) => said.push(text),
  })
  /** A command as zx starts it through the wrapped spawn: a shell whose child sleeps; its pid and how it ended. */
  const command = async () => {
    const child = stop.wrapSpawn(cp.spawn)('sh', ['-c', 'sleep 600 & echo $!; wait'], {
      stdio: ['ignore', 'pipe', 'ignore'],
    })
    const ended = new Promise<NodeJS.Signals | null>((resolve) =>
      child.once('exit', (_code, signal) => resolve(signal))
    )
    const grandchild = await new Promise<number>((resolve) => child.stdout!.once('data', (d) => resolve(Number(d))))
    return { shell: child.pid!, grandchild, ended }
  }
  return { stop, said, command }
}

describe('graceful stop', () => {
  test('the first signal stops admitting at once and kills the commands in flight, whole trees, only after the grace', async () => {
    const { stop, said, command } = setup(1000)
    const running = await command()
    stop.enter(() => {})
    stop.signal('SIGINT')
    expect(stop.stopping).toBe(true)
    expect(said).toEqual(['SIGINT: no new images start; 1 in flight get 1s to finish (send it again to stop at once)'])
    await Bun.sleep(200) // a timer due before the grace's: the command still runs
    expect([stop.killed, alive(running.shell)]).toEqual([false, true])
    expect(await running.ended).toBe('SIGTERM')
    expect(stop.killed).toBe(true)
    expect(said[1]).toBe('grace of 1s over: killing 1 running commands')
    expect(await waitGone([running.grandchild], 5000)).toBe(true) // the process group, not only the shell
  })

  test('a second signal kills at once, records every running step as interrupted, and exits', async () => {
    const { stop, said, command } = setup(10 * 60_000)
    const running = await command()
    const recorded: string[] = []
    stop.enter(() => recorded.push('base a__b-1'))
    const ended = stop.enter(() => recorded.push('base a__b-2'))
    ended() // this step finished before the signals: nothing to record for it
    stop.signal('SIGTERM')
    expect(() => stop.signal('SIGTERM')).toThrow(Exited)
    expect(recorded).toEqual(['base a__b-1'])
    expect(said[1]).toBe('SIGTERM again: stopping now')
    expect(await running.ended).toBe('SIGKILL')
    expect(await waitGone([running.grandchild], 5000)).toBe(true)
  })

  test('with nothing running when the grace ends, nothing is killed: later failures stay their own', async () => {
    const { stop, said } = setup(10)
    stop.signal('SIGINT')
    await Bun.sleep(100)
    expect([stop.stopping, stop.killed]).toEqual([true, false])
    expect(said).toHaveLength(1)
  })
})
