// The status file of a background free-disk: what was moved aside, how big it is, and what is deleted yet.
// Written by free-disk (estimates) and its detached deleter (measured sizes, progress); read by anyone
// budgeting disk, e.g. the pipeline, which counts the bytes still to come.
import fs from 'node:fs'
import path from 'node:path'
import { alive } from '../host/processes.ts'

export type TrashItem = {
  target: string
  /** Where it sits now: `<parent>/.imagefleet-trash-<pid>/<name>`. */
  path: string
  bytes: number
  /** False while `bytes` is the catalogue's typical size rather than measured with du. */
  measured: boolean
  done: boolean
  seconds?: number
  error?: string
}
export type FreeDiskStatus = {
  version: 1
  /** The deleter's pid, once started. */
  pid?: number
  state: 'starting' | 'deleting' | 'complete' | 'failed'
  startedAt: string
  updatedAt: string
  finishedAt?: string
  trashDirs: string[]
  items: TrashItem[]
}

/** Writes atomically (temp file + rename), so a reader never sees half a file. */
export function writeStatus(file: string, status: FreeDiskStatus): void {
  fs.mkdirSync(path.dirname(file), { recursive: true })
  const tmp = `${file}.${process.pid}.tmp`
  fs.writeFileSync(tmp, JSON.stringify({ ...status, updatedAt: new Date().toISOString() }, null, 2) + '\n')
  fs.renameSync(tmp, file)
}

/** The status, or undefined when there is no (readable) file. A deleter that died mid-way reads as 'failed'. */
export function readFreeDiskStatus(file: string): FreeDiskStatus | undefined {
  let status: FreeDiskStatus
  try {
    status = JSON.parse(fs.readFileSync(file, 'utf8'))
  } catch {
    return undefined
  }
  if (status.state === 'deleting' && status.pid && !alive(status.pid)) return { ...status, state: 'failed' }
  const neverStarted = status.state === 'starting' && Date.now() - Date.parse(status.startedAt) > 60_000
  return neverStarted ? { ...status, state: 'failed' } : status
}

/** Bytes still to come back to the disk: items not deleted yet, while a deleter is starting or running. */
export function pendingBytes(status: FreeDiskStatus | undefined): number {
  if (!status || status.state === 'complete' || status.state === 'failed') return 0
  return status.items.filter((i) => !i.done).reduce((sum, i) => sum + i.bytes, 0)
}

/** For a disk budget: bytes a background free-disk (status file `file`) has yet to give back; 0 if none. */
export const bytesToCome = (file: string) => pendingBytes(readFreeDiskStatus(file))

/** For a disk budget: bytes the background deleter has given back so far (measured items it deleted); 0 if none. */
export function bytesGivenBack(file: string): number {
  const status = readFreeDiskStatus(file)
  return status ? status.items.filter((i) => i.done && i.measured).reduce((sum, i) => sum + i.bytes, 0) : 0
}
