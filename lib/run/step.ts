// One image's work in one phase, with its bookkeeping: a log file that captures every command,
// retries with backoff for transient failures, an emergency cleanup and a free retry when the disk
// fills, one manifest record, and one ✓/✗ line. The docker commands stay in the scripts (`work`).
import fs from 'node:fs'
import { $, type LogEntry, within } from 'zx'
import { CommandError, explain, toCommandError, TRANSIENT } from './errors.ts'
import { formatBytes } from '../cli/size.ts'
import { report, seconds } from '../cli/report.ts'
import { logTo, now, type Phase, type Run } from './records.ts'
import type { StopGuard } from '../cli/stop.ts'
import { CommandClock, diskGrowth } from './telemetry.ts'

export type StepPolicy = {
  /** attempts for transient failures (network, timeout) */
  retries: number
  /** first backoff; doubles each retry */
  backoffMs: number
  /**
   * After `no space left on device`: the run's one emergency cleanup (lib/disk/budget.ts), shared by every step that
   * hits a full disk. `retry`: whether a free retry can help; `detail`: how much the step needed against what was
   * free, for the record when it cannot. Undefined: no recovery.
   */
  emergency?: (info: StepInfo) => Promise<{ reclaimed: number; retry: boolean; detail?: string }>
  /** how many times a full disk may be retried for free */
  noSpaceRetries: number
  /** the run's graceful stop: no retries once stopping; failures after its kill are `interrupted` */
  stop?: StopGuard
  /** Bytes of the layers a `docker push` of `tag` reported Pushed (short ids), read from the registry (telemetry.ts) */
  pushedBytes?: (tag: string, layers: string[]) => Promise<number>
}

export const DEFAULT_POLICY: StepPolicy = { retries: 3, backoffMs: 2000, noSpaceRetries: 2 }

/** `from`: the image the step builds FROM (for the no_space message) */
export type StepInfo = { phase: Phase; id: string; dockerId: string; tag: string; from?: string }
export type StepResult = { ok: boolean; error?: CommandError; seconds: number }

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** How a step is named in lines and titles: `base django__django-11099`; the builder is just `builder`. */
export const stepName = (info: { phase: Phase; id: string }) =>
  info.phase === info.id ? info.phase : `${info.phase} ${info.id}`

/** A failed step's manifest reason: the line of its output that says why (else its class, explained), then detail. */
export const reasonOf = (error: CommandError, detail?: string) =>
  `${error.line ?? explain(error.errorClass)}${detail ? `: ${detail}` : ''}`

/** Runs `work` (which runs the docker commands) under the step's log, retries and manifest record. */
export async function runStep(
  run: Run,
  info: StepInfo,
  policy: StepPolicy,
  work: () => Promise<void>,
): Promise<StepResult> {
  const log = run.logFile(info.phase, info.dockerId)
  const started = Date.now()
  const startedAt = now()
  let attempts = 0
  let noSpace = 0
  let detail: string | undefined
  let error: CommandError | undefined
  const clock = new CommandClock()
  fs.appendFileSync(log, `# ${startedAt} ${info.phase} ${info.id} → ${info.tag}\n`)
  const before = { free: run.sample(`start ${info.phase} ${info.id}`), reclaimed: run.reclaimed }
  const leave = policy.stop?.enter(() =>
    recordInterrupted(run, info, startedAt, started, log, 'stopped at once by a second signal')
  )
  while (true) {
    attempts++
    error = await attempt(log, info, work, clock)
    if (!error) break
    if (policy.stop?.killed) {
      error = interrupted(error)
      break
    }
    if (policy.stop?.stopping) break
    if (error.errorClass === 'no_space' && policy.emergency && noSpace < policy.noSpaceRetries) {
      noSpace++
      attempts-- // a full disk is ours to fix, not the image's fault: the retry is free
      const cleaned = await policy.emergency(info)
      detail = cleaned.detail
      if (!cleaned.retry) break
      report.warn(
        `${stepName(info)}: no space left on device; emergency cleanup reclaimed ${
          formatBytes(cleaned.reclaimed)
        }, retrying`,
      )
      continue
    }
    if (TRANSIENT.has(error.errorClass) && attempts < policy.retries) {
      const wait = policy.backoffMs * 2 ** (attempts - 1)
      fs.appendFileSync(log, `# attempt ${attempts} failed (${error.errorClass}); retrying in ${wait / 1000}s\n`)
      await sleep(wait)
      if (policy.stop?.stopping) {
        error = interrupted(error)
        break
      }
      continue
    }
    break
  }
  leave?.()
  if (error?.errorClass !== 'no_space') detail = undefined
  const secs = (Date.now() - started) / 1000
  const after = { free: run.sample(`${error ? 'failed' : 'done'} ${info.phase} ${info.id}`), reclaimed: run.reclaimed }
  const growth = diskGrowth(before, after)
  const pushed = error || run.dry ? undefined : await pushedBytes(policy, info, clock, log)
  run.record({
    phase: info.phase,
    id: info.id,
    tag: info.tag,
    status: error ? 'failed' : 'built',
    reason: error ? reasonOf(error, detail) : attempts > 1 ? `built after ${attempts} attempts` : 'built',
    attempts,
    started_at: startedAt,
    finished_at: now(),
    seconds: Number(secs.toFixed(2)),
    log,
    ...(error ? { error_class: error.errorClass } : {}),
    ...clock.fields(),
    ...(growth === undefined ? {} : { disk_growth: growth }),
    ...(pushed === undefined ? {} : { bytes_pushed: pushed }),
  })
  if (error) {
    report.fail(
      `${stepName(info)} (${error.errorClass}, ${seconds(secs * 1000)}) → ${log}\n${
        indent([detail, error.tail].filter(Boolean).join('\n'))
      }`,
    )
  } else report.ok(`${stepName(info)} ${seconds(secs * 1000)}`)
  return { ok: !error, error, seconds: secs }
}

async function attempt(
  log: string,
  info: StepInfo,
  work: () => Promise<void>,
  clock: CommandClock,
): Promise<CommandError | undefined> {
  const toFile = logTo(log)
  try {
    await within(async () => {
      $.log = ((entry: LogEntry) => (toFile(entry), clock.see(entry))) as typeof $.log
      await work()
    })
  } catch (e) {
    return toCommandError(stepName(info), e)
  }
}

/** The bytes the step's `docker push`es uploaded, when it ran any; a registry that cannot tell is noted in the log. */
async function pushedBytes(
  policy: StepPolicy,
  info: StepInfo,
  clock: CommandClock,
  log: string,
): Promise<number | undefined> {
  if (!clock.ran.has('push') || !policy.pushedBytes) return undefined
  try {
    return await policy.pushedBytes(info.tag, [...clock.pushedLayers])
  } catch (e) {
    fs.appendFileSync(log, `# bytes pushed unknown: reading ${info.tag} back failed (${(e as Error).message})\n`)
  }
}

/** Records an image the registry already has. */
export function recordSkip(run: Run, info: StepInfo, reason: string): void {
  run.record({
    phase: info.phase,
    id: info.id,
    tag: info.tag,
    status: 'skipped',
    reason,
    attempts: 0,
    started_at: now(),
    finished_at: now(),
    seconds: 0,
    log: '',
  })
  report.skip(`${stepName(info)}: ${reason}`)
}

/** Records an image that was never tried because something it needs failed. */
export function recordBlocked(
  run: Run,
  info: StepInfo,
  reason: string,
  cls: CommandError['errorClass'] = 'build_error',
): void {
  run.record({
    phase: info.phase,
    id: info.id,
    tag: info.tag,
    status: 'failed',
    reason,
    attempts: 0,
    started_at: now(),
    finished_at: now(),
    seconds: 0,
    log: '',
    error_class: cls,
  })
  report.fail(`${stepName(info)}: ${reason}`)
}

/** A step the run's stop killed (or kept from retrying): its own error stays in the tail. */
const interrupted = (e: CommandError) => new CommandError(e.what, 'interrupted', e.tail, e.exitCode, e.line)

function recordInterrupted(
  run: Run,
  info: StepInfo,
  startedAt: string,
  started: number,
  log: string,
  reason: string,
): void {
  run.record({
    phase: info.phase,
    id: info.id,
    tag: info.tag,
    status: 'failed',
    reason,
    attempts: 1,
    started_at: startedAt,
    finished_at: now(),
    seconds: Number(((Date.now() - started) / 1000).toFixed(2)),
    log,
    error_class: 'interrupted',
  })
}

const indent = (text: string) => text.split('\n').map((l) => `    ${l}`).join('\n')
