// The progress line: done/total per phase, in flight, failures, ETA, free disk, and the longest step
// with its age and log size; a heartbeat prints it off a TTY.
import { afterAll, describe, expect, test } from 'bun:test'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { clock, Progress } from '../lib/run/progress.ts'
import { configureReport } from '../lib/cli/report.ts'
import { type ManifestRecord, Run } from '../lib/run/records.ts'

const out = fs.mkdtempSync(path.join(os.tmpdir(), 'progress-test-'))
afterAll(() => fs.rmSync(out, { recursive: true, force: true }))

const rec = (
  phase: ManifestRecord['phase'],
  id: string,
  status: ManifestRecord['status'] = 'built',
): ManifestRecord => ({
  phase,
  id,
  tag: 't',
  status,
  reason: '',
  attempts: status === 'skipped' ? 0 : 1,
  started_at: '',
  finished_at: '',
  seconds: 1,
  log: '',
})

describe('progress', () => {
  test('the line counts each phase, in flight, failures, ETA and free disk, and names the longest step', () => {
    let now = Date.now()
    const run = new Run(out, out)
    const p = new Progress(run, { instances: 10, tty: false, heartbeatMs: 0, now: () => now })
    p.start()
    run.record(rec('builder', 'builder'))
    for (const id of ['a__x-1', 'a__x-2']) {
      run.sample(`start base ${id}`)
      run.record(rec('base', id))
      run.sample(`done base ${id}`)
    }
    run.sample('start assemble a__x-1')
    run.record(rec('assemble', 'a__x-1'))
    run.sample('done assemble a__x-1')
    run.sample('start base b__y-1')
    run.record(rec('base', 'b__y-1', 'failed'))
    run.sample('failed base b__y-1')
    run.sample('start base c__z-9')
    fs.mkdirSync(path.join(out, 'logs/base'), { recursive: true })
    fs.writeFileSync(path.join(out, 'logs/base/c_1776_z-9.log'), 'x'.repeat(2048))
    now += 95_000
    const line = p.line()
    p.stop()
    expect(line).toMatch(
      /^1m3\ds · base 3\/10 · assemble 1\/10 · 1 in flight · 1 failed · ETA \S+ · [\d.]+ \S+ free · longest: base c__z-9 1m35s, log 2\.0 KiB$/,
    )
    expect(line).not.toContain('builder') // done: no longer shown
  })

  test('off a TTY a heartbeat line is printed every --heartbeat', async () => {
    const run = new Run(out, out)
    const lines: string[] = []
    const write = process.stdout.write.bind(process.stdout)
    configureReport({ quiet: false })
    process.stdout.write = ((chunk: string) => {
      lines.push(String(chunk))
      return true
    }) as typeof process.stdout.write
    const p = new Progress(run, { instances: 3, tty: false, heartbeatMs: 50 }).start()
    await new Promise((r) => setTimeout(r, 180))
    p.stop()
    process.stdout.write = write
    const beats = lines.filter((l) => l.includes('heartbeat'))
    expect(beats.length).toBeGreaterThanOrEqual(2)
    expect(beats[0]).toContain('starting · 0 in flight · 0 failed · ETA ?')
  })

  test('durations read as a person says them', () => {
    expect(clock(4_000)).toBe('4s')
    expect(clock(754_000)).toBe('12m34s')
    expect(clock(4_000_000)).toBe('1h06m')
  })
})
