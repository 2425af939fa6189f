// The facts every bench prints with its results, measured in the same run: cores, memory, kernel, runtime, the load
// other work puts on the machine (it skews every number), and — for benches bound by disk — write bandwidth.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { formatBytes } from '../lib/cli/size.ts'

const runtime = () =>
  'Deno' in globalThis
    ? `deno ${(globalThis as unknown as { Deno: { version: { deno: string } } }).Deno.version.deno}`
    : process.versions.bun
    ? `bun ${process.versions.bun}`
    : `node ${process.version}`

/** Sequential write bandwidth of the filesystem holding `dir`: 256 MiB with an fsync, in bytes/s. */
export function writeBandwidth(dir: string): number {
  const file = path.join(dir, `.bandwidth-${process.pid}.tmp`)
  const block = Buffer.alloc(4 * 2 ** 20, 1)
  const t0 = performance.now()
  const fd = fs.openSync(file, 'w')
  for (let i = 0; i < 64; i++) fs.writeSync(fd, block)
  fs.fsyncSync(fd)
  fs.closeSync(fd)
  const seconds = (performance.now() - t0) / 1000
  fs.rmSync(file)
  return (64 * block.length) / seconds
}

/** One line: `Machine: 2 cores (AMD EPYC), 23.5 GiB RAM, kernel …, bun 1.4.5; load 3.1 2.0 1.2[; disk writes 210 MiB/s]`. */
export function machineLine(o: { diskDir?: string } = {}): string {
  const cpus = os.cpus()
  const parts = [
    `${cpus.length} cores (${cpus[0]?.model.trim() ?? 'unknown'})`,
    `${formatBytes(os.totalmem())} RAM`,
    `kernel ${os.release()}`,
    runtime(),
  ]
  const load = `load average ${os.loadavg().map((l) => l.toFixed(1)).join(' ')}`
  const disk = o.diskDir ? `; disk writes ${formatBytes(writeBandwidth(o.diskDir))}/s` : ''
  return `Machine: ${parts.join(', ')}; ${load}${disk}`
}
