// The recorded engines (tests/fixtures/engines/<name>/): what each answered to the commands preflight asks, and the
// --help of every docker command the scripts run. Each file is headed by the command it answers and where the
// answer was taken from, then `# ---`, then the answer as docker printed it (tests/fixtures/engines/README.md).
import fs from 'node:fs'
import path from 'node:path'

export const ENGINES_DIR = path.resolve(import.meta.dir, '../fixtures/engines')

/** What preflight asks (file name → the command); the recording fake docker replays these. */
export const ANSWERS = {
  version: ['version', '--format', '{{json .}}'],
  info: ['info', '--format', '{{json .}}'],
  'buildx-version': ['buildx', 'version'],
  'buildx-inspect': ['buildx', 'inspect'],
  'buildx-du': ['buildx', 'du'],
} as const

/**
 * Every docker command a script runs (scripts/*.ts `$` literals, sandbox.ts aside): its --help is recorded as
 * help/<words joined by ->.txt. The conformance test fails on a command missing here.
 */
export const COMMANDS = [
  'version',
  'info',
  'login',
  'build',
  'push',
  'rmi',
  'system prune',
  'system df',
  'builder prune',
  'image prune',
  'buildx version',
  'buildx inspect',
  'buildx build',
  'buildx prune',
  'buildx du',
] as const

export type Recorded = { command: string; from: string; exit: number; body: string }

export function helpFile(command: string): string {
  return `help/${command.split(' ').join('-')}.txt`
}

/** Writes one recorded answer with its header. */
export function writeRecorded(dir: string, file: string, r: Recorded): void {
  fs.mkdirSync(path.dirname(path.join(dir, file)), { recursive: true })
  const header = [`# ${r.command}`, `# from: ${r.from}`, `# exit: ${r.exit}`, '# ---'].join('\n')
  fs.writeFileSync(path.join(dir, file), `${header}\n${r.body.replace(/\n*$/, '\n')}`)
}

/** Reads one recorded answer; undefined when the engine has no such file. */
export function readRecorded(dir: string, file: string): Recorded | undefined {
  const p = path.join(dir, file)
  if (!fs.existsSync(p)) return undefined
  const text = fs.readFileSync(p, 'utf8')
  const [head, ...rest] = text.split(/^# ---\n/m)
  const field = (name: string) => new RegExp(`^# ${name}: (.*)$`, 'm').exec(head)?.[1] ?? ''
  return {
    command: head.split('\n')[0].replace(/^# /, ''),
    from: field('from'),
    exit: Number(field('exit')),
    body: rest.join('# ---\n'),
  }
}

/** The recorded engines, by directory name. */
export function engineNames(): string[] {
  return fs.readdirSync(ENGINES_DIR, { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => d.name).sort()
}
