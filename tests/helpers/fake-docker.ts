// A recording fake `docker` for logic tests (planning, flag choice, error handling): it records the exact argv of
// every call (and when it started and ended) and replays a recorded engine's answers (tests/fixtures/engines/). It
// proves what imagefleet *asks* docker to do — not that docker does it; the integration tests prove that.
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { ENGINES_DIR } from './engine-fixtures.ts'

export type FakeDockerOptions = {
  /** a recorded engine (tests/fixtures/engines/<name>) whose answers to replay; default: docker-20.10, the real one */
  engine?: string
  /** shorthand for engine docker-28.5-buildx-0.29-container: buildx 0.29 with a docker-container builder */
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
  /** what every prune says it reclaimed, e.g. `1.5GB` (default: 0B) */
  pruneReports?: string
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

// Replays the recorded engine in $FAKE_DOCKER_ENGINE: each answer file is a header, `# ---`, then what docker
// printed (stdout when `# exit: 0`, else stderr). The data root `docker info` reports is swapped for a local dir.
// Commands that change state answer as a daemon with nothing to remove would; buildx commands fail as recorded
// when the engine has no buildx.
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
E="$FAKE_DOCKER_ENGINE"
code() { sed -n 's/^# exit: //p' "$1" | head -1; }
replay() {
  local f="$E/$1"
  [ -f "$f" ] || { echo "fake docker: $E has no recorded answer $1" >&2; exit 1; }
  local c; c=$(code "$f")
  if [ "$c" = 0 ]; then
    sed '1,/^# ---$/d' "$f" | sed 's|"DockerRootDir":"[^"]*"|"DockerRootDir":"'"$FAKE_DOCKER_DATA_ROOT"'"|'
  else sed '1,/^# ---$/d' "$f" >&2; fi
  exit "$c"
}
for a in "$@"; do
  if [ "$a" = --help ]; then
    key=""; for b in "$@"; do case "$b" in -*) break ;; *) key="$key-$b" ;; esac; done
    key=$(echo "$key" | cut -c2-)
    [ -f "$E/help/$key.txt" ] && replay "help/$key.txt"
    echo "docker: '$key' is not a docker command." >&2; exit 1
  fi
done
case "$1 $2" in
  "version "*) replay version.txt ;;
  "info "*) replay info.txt ;;
  "buildx version") replay buildx-version.txt ;;
  "buildx inspect") replay buildx-inspect.txt ;;
  "buildx du") replay buildx-du.txt ;;
esac
if [ "$1" = buildx ] && [ "$(code "$E/buildx-version.txt")" != 0 ]; then replay buildx-version.txt; fi
case "$1 $2" in
  "buildx prune") printf 'Total:\t%s\n' "$FAKE_DOCKER_PRUNE_TOTAL" ;;
  "builder prune") echo "Total reclaimed space: $FAKE_DOCKER_PRUNE_TOTAL" ;;
  "system df") echo '{"Type":"Build Cache","TotalCount":"3","Size":"1.5GB","Reclaimable":"1.5GB"}' ;;
  "system prune") echo "Total reclaimed space: $FAKE_DOCKER_PRUNE_TOTAL" ;;
  *) : ;;
esac
exit 0
`

/** Every fake's directories, removed when the test process exits (a test that forgets cleanup() leaves nothing). */
const made: string[] = []
process.on('exit', () => made.forEach((d) => fs.rmSync(d, { recursive: true, force: true })))

export function fakeDocker(o: FakeDockerOptions = {}): FakeDocker {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'fake-docker-'))
  made.push(dir)
  const log = path.join(dir, 'calls.log')
  const dataRoot = o.dataRoot ?? fs.mkdtempSync(path.join(os.tmpdir(), 'fake-data-root-'))
  if (!o.dataRoot) made.push(dataRoot)
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
    FAKE_DOCKER_PRUNE_TOTAL: o.pruneReports ?? '0B',
    FAKE_DOCKER_ENGINE: path.join(
      ENGINES_DIR,
      o.engine ?? (o.buildx ? 'docker-28.5-buildx-0.29-container' : 'docker-20.10'),
    ),
    FAKE_DOCKER_ANSWERS: answers,
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
