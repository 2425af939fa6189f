// This machine's processes, read from /proc: is a pid alive, what command runs it, its children. No commands run.
import fs from 'node:fs'

/** Alive and not a zombie (in a container nobody may reap what we started). Off Linux: signal 0 answers. */
export function alive(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z/.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'))
  } catch {
    if (fs.existsSync('/proc/self/stat')) return false // Linux: no /proc entry, no process
    try {
      process.kill(pid, 0)
      return true
    } catch (e) {
      return (e as NodeJS.ErrnoException).code === 'EPERM' // alive, but another user's
    }
  }
}

/** The command line of a pid, its arguments separated by NUL; '' when it is gone. */
export function commandOf(pid: number): string {
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8')
  } catch {
    return ''
  }
}

/** Every pid on the machine but this process's own. */
export const pids = (): number[] =>
  fs.readdirSync('/proc').filter((d) => /^\d+$/.test(d)).map(Number).filter((p) => p !== process.pid)

/** The pids whose parent is `pid`. */
export function childrenOf(pid: number): number[] {
  return pids().filter((p) => {
    try {
      return fs.readFileSync(`/proc/${p}/stat`, 'utf8').replace(/^.*\) /, '').split(' ')[1] === String(pid)
    } catch {
      return false
    }
  })
}

/** Waits up to `ms` for every pid of `family` to be gone; true when they are. */
export async function waitGone(family: number[], ms: number): Promise<boolean> {
  const deadline = Date.now() + ms
  while (family.some(alive) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200))
  return !family.some(alive)
}
