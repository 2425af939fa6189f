// The one line that says why a docker command failed, out of its whole output: what goes into a failed image's
// manifest `reason`, the summary and the ::error annotation. BuildKit ends a failed build with framing (separators,
// the step header, a Dockerfile excerpt) around the error; a failed RUN's own last output line says more than its
// exit code, so it is kept next to it.

/** Lines that frame an error but never are it, each with why. */
const NOISE: RegExp[] = [
  /^-{3,}$/, // BuildKit's separators around the failed step and the Dockerfile excerpt
  /^> \[.*\]( .*)?:?$/, // the failed step's header: ` > [builder 2/2] RUN …:`
  /^Dockerfile(\.\S+)?:\d+$/, // the excerpt's file:line
  /^\d+ \|/, // excerpt lines: `   2 | >>> RUN false`
  /^#\d+ (sha256:|DONE|CACHED|\[)/, // progress bookkeeping (digests, DONE 0.1s, step titles)
  /^#\d+ \d+(\.\d+)? /, // a step's own output (kept apart: see runOutput)
  /^(WARNING|DEPRECATED|View build details|Use 'docker scan'|What's next)/i, // advice printed around errors
]

/** Wrappers BuildKit puts in front of the cause; the cause reads better alone. */
const WRAPPERS =
  /^(?:#\d+ )?(?:ERROR:\s*)?(?:failed to build: |failed to solve with frontend dockerfile\.v0: |failed to solve: |failed to create LLB definition: )*/i

const MAX = 300

/** The last meaningful error line of a command's output (stderr first), or undefined when there is none. */
export function lastErrorLine(stderr: string, stdout = ''): string | undefined {
  for (const text of [stderr, stdout]) {
    const lines = text.split('\n').map((l) => l.trim())
    const last = lines.filter((l) => l && !NOISE.some((n) => n.test(l))).pop()
    if (!last) continue
    const line = last.replace(WRAPPERS, '')
    const output = /exit code: \d+/.test(line) ? runOutput(lines) : undefined
    return clip(output ? `${line} (last output: ${output})` : line)
  }
}

/** For a failed RUN: its last output line (`#6 0.32 this upstream is broken`, the step that reported ERROR). */
function runOutput(lines: string[]): string | undefined {
  const step = lines.filter((l) => /^#\d+ ERROR:/.test(l)).pop()?.split(' ')[0]
  if (!step) return undefined
  const own = lines.filter((l) => l.startsWith(`${step} `) && /^#\d+ \d+(\.\d+)? \S/.test(l))
  return own.at(-1)?.replace(/^#\d+ \d+(\.\d+)? /, '')
}

const clip = (text: string) => (text.length > MAX ? `${text.slice(0, MAX - 1)}…` : text)
