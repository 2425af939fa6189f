// The one top-level handler: turns errors into a clear message and an exit code.
//   0 all built or skipped · 1 something failed · 2 bad usage or input · 3 preflight failed · 130 interrupted
import { UsageError } from './flags.ts'
import { report } from './report.ts'

export class PreflightError extends Error {
  constructor(readonly problems: string[]) {
    super(`preflight failed:\n${problems.map((p) => `  - ${p}`).join('\n')}`)
  }
}
export class InterruptedError extends Error {}
/** A required condition the operator must fix; the message says how. */
export class FatalError extends Error {}

export const EXIT = { ok: 0, failed: 1, usage: 2, preflight: 3, interrupted: 130 } as const

export function exitCodeFor(error: unknown): number {
  if (error instanceof UsageError) return EXIT.usage
  if (error instanceof PreflightError) return EXIT.preflight
  if (error instanceof InterruptedError) return EXIT.interrupted
  return EXIT.failed
}

/** Runs a script's main; its resolved number is the exit code. */
export async function runMain(main: () => Promise<number | void>): Promise<never> {
  let code: number
  try {
    code = (await main()) ?? 0
  } catch (error) {
    code = exitCodeFor(error)
    const message = error instanceof Error ? error.message : String(error)
    report.endPhase()
    if (error instanceof UsageError) {
      report.error(
        error.problems.length > 1 || error.problems[0] !== message
          ? `bad input:\n${error.problems.map((p) => `  - ${p}`).join('\n')}`
          : message,
      )
      process.stderr.write('Nothing was built. Run with --help for usage.\n')
    } else {report.error(
        code === EXIT.failed && !(error instanceof FatalError) && error instanceof Error && error.stack
          ? error.stack
          : message,
      )}
  }
  report.endPhase()
  process.exit(code)
}
