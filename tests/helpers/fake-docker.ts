// A recording fake `docker` for logic tests (planning, flag choice, error handling): it records the
// exact argv of every call and answers like a daemon would. It proves what imagefleet *asks* docker to
// do — not that docker does it; the integration tests prove that against the real engine.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'

export type FakeDockerOptions = {
  /** answer `docker buildx ...` like buildx 0.19 with a docker-container builder named `fleet` */
  buildx?: boolean
  /** calls whose argv (joined by spaces) matches fail with exit 1 and this stderr */
  fail?: { match: string; stderr: string }
  /** calls whose argv matches never return (a hung prune) */
  hang?: string
  /** calls whose argv matches take this long before they answer (a prune that takes a moment) */
  slow?: { match: string; seconds: number }
  /** calls whose argv matches print this on stdout and exit 0 (first match wins): another engine's answers */
  answers?: Array<{ match: string; stdout: string }>
  /** path `docker info` reports as the data root (default: a temp dir) */
  dataRoot?: string
}

/** A call that ran to its end: its argv and when it started and ended (ms since the epoch, the fake's clock). */
export type Span = { argv: string[]; start: number; end: number }

/** `stdin`: what the last `docker login` read from its standard input */
export type FakeDocker = {
  dir: string
  env: Record<string, string>
  calls: () => string[][]
  /** every call that ended (a hung or killed one has no end), in the order they ended */
  spans: () => Span[]
  stdin: () => string
  reset: () => void
  cleanup: () => void
}

const SCRIPT = String.raw`#!/bin/bash
{ printf '%s\0' "$@"; printf '\x1e'; } >> "$FAKE_DOCKER_LOG"
started=$EPOCHREALTIME
trap '{ printf "%s\0" "$started" "$EPOCHREALTIME" "$@"; printf "\x1e"; } >> "$FAKE_DOCKER_LOG.spans"' EXIT
if [ "$1" = login ]; then cat > "$FAKE_DOCKER_LOG.stdin"; fi
all="$*"
if [ -n "$FAKE_DOCKER_HANG" ] && [[ "$all" =~ $FAKE_DOCKER_HANG ]]; then exec sleep 3600; fi # one process, as the docker client is: a kill ends the call
if [ -n "$FAKE_DOCKER_SLOW" ] && [[ "$all" =~ $FAKE_DOCKER_SLOW ]]; then sleep "$FAKE_DOCKER_SLOW_SECONDS"; fi
for match in "$FAKE_DOCKER_ANSWERS"/*.match; do
  [ -f "$match" ] || continue
  if [[ "$all" =~ $(cat "$match") ]]; then cat "$match.out"; exit 0; fi
done
if [ -n "$FAKE_DOCKER_FAIL" ] && [[ "$all" =~ $FAKE_DOCKER_FAIL ]]; then echo "$FAKE_DOCKER_FAIL_STDERR" >&2; exit 1; fi
# preflight's RUN check (an empty image whose RUN execs a missing file): the step starts, exec fails, as runc says
if [[ "$all" =~ imagefleet-run-check ]]; then echo 'runc run failed: unable to start container process: exec: "/imagefleet-run-check": stat /imagefleet-run-check: no such file or directory' >&2; exit 1; fi
case "$1 $2" in
  "version --format") echo '{"Client":{"Version":"28.0.1"},"Server":{"Version":"28.0.1"}}' ;;
  "info --format") echo "\"$FAKE_DOCKER_DATA_ROOT\"" ;;
  "buildx version")
    if [ -n "$FAKE_DOCKER_BUILDX" ]; then echo "github.com/docker/buildx v0.19.3 48d6a39"; else echo "docker: 'buildx' is not a docker command." >&2; exit 1; fi ;;
  "buildx inspect") printf 'Name:          fleet\nDriver:        docker-container\nBuildKit version: v0.18.2\n' ;;
  "buildx prune")
    if [ "$3" = "--help" ]; then echo "  -a, --all  --filter filter  --max-used-space bytes  --min-free-space bytes  --reserved-space bytes"; else echo "Total:	0B"; fi ;;
  "builder prune")
    if [ "$3" = "--help" ]; then echo "  -a, --all  --filter filter  --keep-storage bytes"; else echo "Total reclaimed space: 0B"; fi ;;
  "system df") echo '{"Type":"Build Cache","TotalCount":"3","Size":"1.5GB","Reclaimable":"1.5GB"}' ;;
  "system prune") echo "Total reclaimed space: 0B" ;;
  *) : ;;
esac
exit 0
`

export function fakeDocker(o: FakeDockerOptions = {}): FakeDocker {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fake-docker-'))
  const log = path.join(dir, 'calls.log')
  const dataRoot = o.dataRoot ?? fs.mkdtempSync(path.join(os.tmpdir(), 'fake-data-root-'))
  fs.writeFileSync(path.join(dir, 'docker'), SCRIPT, { mode: 0o755 })
  fs.writeFileSync(log, '')
  const answers = path.join(dir, 'answers')
  fs.mkdirSync(answers)
  for (const [i, a] of (o.answers ?? []).entries()) {
    const name = String(i).padStart(3, '0') // the script tries them in name order: first match wins
    fs.writeFileSync(path.join(answers, `${name}.match`), a.match)
    fs.writeFileSync(path.join(answers, `${name}.match.out`), a.stdout)
  }
  const env: Record<string, string> = {
    PATH: `${dir}:${process.env.PATH}`,
    FAKE_DOCKER_LOG: log,
    FAKE_DOCKER_DATA_ROOT: dataRoot,
    FAKE_DOCKER_ANSWERS: answers,
    ...(o.buildx ? { FAKE_DOCKER_BUILDX: '1' } : {}),
    ...(o.fail ? { FAKE_DOCKER_FAIL: o.fail.match, FAKE_DOCKER_FAIL_STDERR: o.fail.stderr } : {}),
    ...(o.hang ? { FAKE_DOCKER_HANG: o.hang } : {}),
    ...(o.slow ? { FAKE_DOCKER_SLOW: o.slow.match, FAKE_DOCKER_SLOW_SECONDS: String(o.slow.seconds) } : {}),
  }
  const records = (file: string) =>
    fs.existsSync(file)
      ? fs.readFileSync(file, 'utf8').split('\x1e').filter(Boolean).map((rec) => rec.split('\0').slice(0, -1))
      : []
  return {
    dir,
    env,
    calls: () => records(log),
    spans: () =>
      records(`${log}.spans`).map(([start, end, ...argv]) => ({
        argv,
        start: Number(start) * 1000,
        end: Number(end) * 1000,
      })),
    stdin: () => {
      try {
        return fs.readFileSync(`${log}.stdin`, 'utf8')
      } catch {
        return ''
      }
    },
    reset: () => {
      fs.writeFileSync(log, '')
      fs.rmSync(`${log}.spans`, { force: true })
    },
    cleanup: () => {
      fs.rmSync(dir, { recursive: true, force: true })
      if (!o.dataRoot) fs.rmSync(dataRoot, { recursive: true, force: true })
    },
  }
}

/**
 * Calls that change state: anything but reads (version, info, inspect, --help, df) and preflight's RUN check (a build
 * of an empty image that fails at exec: it tags, pushes and keeps nothing).
 */
export function mutatingCalls(calls: string[][]): string[][] {
  return calls.filter((argv) => {
    const s = argv.join(' ')
    return !/^(version|info)\b|^buildx (version|inspect|ls)\b|--help\b|^system df\b|^image inspect\b|^manifest inspect\b|imagefleet-run-check/
      .test(s)
  })
}
