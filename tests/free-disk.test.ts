// free-disk against a fake runner under a temp --root: thousands of files per target, symlinks pointing
// outside, a target that is a file, a missing one, one whose removal fails. Run as subprocesses, as CI would.
import { afterEach, describe, expect, test } from 'bun:test'
import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { CATALOGUE, planBatch, resolveTarget } from '../lib/disk/free-disk-catalogue.ts'
import { bytesToCome, readFreeDiskStatus } from '../lib/disk/free-disk-status.ts'

const SCRIPT = path.join(import.meta.dir, '..', 'scripts', 'free-disk.ts')
const DENO = path.join(import.meta.dir, '..', 'node_modules', '.bin', 'deno')
const made: string[] = []
afterEach(() => {
  for (const d of made.splice(0)) {
    spawnSync('chmod', ['-R', 'u+w', d])
    fs.rmSync(d, { recursive: true, force: true })
  }
})

/** Files spread over subdirectories, like an SDK. */
function fill(dir: string, files: number, bytes = 512): void {
  const buf = Buffer.alloc(bytes, 7)
  for (let i = 0; i < files; i++) {
    const sub = path.join(dir, `pkg${i % 20}`, `v${i % 7}`)
    fs.mkdirSync(sub, { recursive: true })
    fs.writeFileSync(path.join(sub, `f${i}`), buf)
  }
}

/** A fake hosted runner under root/, and files outside it that must survive everything. */
function fakeRunner(opts: { androidFiles?: number; scale?: number } = {}) {
  const put = (dir: string, files: number) => fill(dir, Math.max(1, Math.round(files * (opts.scale ?? 1)))) // a sliver for unit tests
  const base = fs.mkdtempSync(path.join(os.tmpdir(), 'free-disk-test-'))
  made.push(base)
  const root = path.join(base, 'root')
  const outside = path.join(base, 'outside')
  const at = (p: string) => path.join(root, p)
  put(path.join(outside, 'keep-dir'), 10)
  fs.writeFileSync(path.join(outside, 'keep.txt'), 'keep')
  put(at('usr/local/lib/android/sdk'), opts.androidFiles ?? 3000)
  fs.symlinkSync(path.join(outside, 'keep-dir'), at('usr/local/lib/android/sdk/escape-dir'))
  fs.symlinkSync(path.join(outside, 'keep.txt'), at('usr/local/lib/android/sdk/escape-file'))
  put(at('usr/share/dotnet'), 2000)
  fs.symlinkSync(outside, at('usr/share/dotnet/escape-root'))
  put(at('opt/ghc'), 2000)
  fs.mkdirSync(at('usr/local'), { recursive: true })
  fs.symlinkSync(path.join(outside, 'keep-dir'), at('usr/local/.ghcup')) // the target itself is a link out
  fs.mkdirSync(at('usr/share'), { recursive: true })
  fs.writeFileSync(at('usr/share/swift'), Buffer.alloc(64 * 2 ** 20, 1)) // a target that is a file (64 MiB)
  put(at('usr/local/julia1.10.4'), 1000)
  put(at('opt/hostedtoolcache/CodeQL'), 1000)
  put(at('opt/hostedtoolcache/Python'), 500) // opt-in tool cache: stays by default
  put(at('usr/lib/jvm'), 1000)
  put(at('usr/local/lib/keep-me'), 10) // siblings of targets
  put(at('usr/share/keep-me'), 10)
  fs.mkdirSync(at('tmp'))
  return { base, root, outside, at }
}

const count = (dir: string): number => fs.readdirSync(dir, { recursive: true }).length
const gone = (p: string) => {
  try {
    fs.lstatSync(p)
    return false
  } catch {
    return true
  }
}

function run(args: string[], env: Record<string, string | undefined> = {}, runtime = [process.execPath]) {
  const out = spawnSync(runtime[0], [...runtime.slice(1), SCRIPT, ...args], {
    encoding: 'utf8',
    env: { ...process.env, CI: 'true', GITHUB_ACTIONS: '', GITHUB_STEP_SUMMARY: '', FORCE_COLOR: '0', ...env },
  })
  return { code: out.status, out: out.stdout + out.stderr }
}
const freeAt = (p: string) => {
  const s = fs.statfsSync(p)
  return s.bavail * s.bsize
}

describe('free-disk', () => {
  test('removes the default targets and nothing else, and reports a table to the step summary', () => {
    const r = fakeRunner()
    const summary = path.join(r.base, 'summary.md')
    const { code, out } = run(['--root', r.root], { GITHUB_ACTIONS: 'true', GITHUB_STEP_SUMMARY: summary })
    expect(out).toContain('0 failed')
    expect(code).toBe(0)
    for (
      const p of [
        'usr/local/lib/android',
        'usr/share/dotnet',
        'opt/ghc',
        'usr/local/.ghcup',
        'usr/share/swift',
        'usr/local/julia1.10.4',
        'opt/hostedtoolcache/CodeQL',
        'usr/lib/jvm',
      ]
    ) expect(gone(r.at(p))).toBe(true)
    expect(count(r.at('opt/hostedtoolcache/Python'))).toBeGreaterThan(500)
    expect(count(r.at('usr/local/lib/keep-me'))).toBeGreaterThan(10)
    expect(count(r.at('usr/share/keep-me'))).toBeGreaterThan(10)
    expect(out).toContain('powershell: not present')
    expect(fs.readFileSync(summary, 'utf8')).toMatch(/\| android \| removed \| [\d.]+ MiB \|/)
  })

  test('a target whose removal fails is ✗ with the reason rm gave; the others are removed; exit 1', () => {
    const r = fakeRunner()
    const bin = path.join(r.base, 'failing-rm')
    fs.mkdirSync(bin)
    // an rm that cannot remove the JDKs, as a non-root runner without sudo meets a read-only tree (whoever runs the test)
    const realRm = spawnSync('bash', ['-c', 'command -v rm'], { encoding: 'utf8' }).stdout.trim()
    fs.writeFileSync(
      path.join(bin, 'rm'),
      `#!/bin/bash\nfor a in "$@"; do case "$a" in */usr/lib/jvm) echo "rm: cannot remove '$a/pkg0': Permission denied" >&2; exit 1;; esac; done\nexec ${realRm} "$@"\n`,
      { mode: 0o755 },
    )
    const { code, out } = run(['--root', r.root], { PATH: `${bin}:${process.env.PATH}` })
    expect(code).toBe(1)
    expect(out).toMatch(
      new RegExp(`✗ jvm: failed .*\\(rm: cannot remove '${r.at('usr/lib/jvm')}/pkg0': Permission denied\\)`),
    )
    expect(out).toContain('1 failed')
    expect(count(r.at('usr/lib/jvm'))).toBeGreaterThan(1000)
    for (const p of ['usr/local/lib/android', 'usr/share/dotnet', 'opt/ghc']) expect(gone(r.at(p))).toBe(true)
  })

  test('never follows a symlink out of a target: links go, what they point to stays', () => {
    const r = fakeRunner()
    run(['--root', r.root])
    expect(gone(r.at('usr/local/.ghcup'))).toBe(true)
    expect(count(path.join(r.outside, 'keep-dir'))).toBeGreaterThan(10)
    expect(fs.readFileSync(path.join(r.outside, 'keep.txt'), 'utf8')).toBe('keep')
  })

  test('a dry run prints the exact commands and deletes nothing', () => {
    const r = fakeRunner()
    const before = count(r.root)
    const { code, out } = run(['--root', r.root, '--dry-run', '--background'], { CI: '' })
    expect(code).toBe(0)
    expect(out).toContain(`$ mv -T -- ${r.at('usr/local/lib/android')} ${r.at('usr/local/lib')}/.imagefleet-trash-`)
    expect(out).toContain('--delete-trash')
    expect(run(['--root', r.root, '--dry-run']).out).toContain(
      `$ rm -rf --one-file-system -- ${r.at('usr/local/lib/android')}`,
    )
    expect(count(r.root)).toBe(before)
  })

  test('does nothing when the disk already has --target-free', () => {
    const r = fakeRunner()
    const before = count(r.root)
    const { code, out } = run(['--root', r.root, '--target-free', '1MB'])
    expect(code).toBe(0)
    expect(out).toContain('nothing to do')
    expect(count(r.root)).toBe(before)
  })

  test('with --target-free removes the best bytes-per-second target first and stops when enough', () => {
    const r = fakeRunner()
    // 40 MiB short: swift (the 64 MiB file, the best rate present) covers it even if the shared disk moves by ±24 MiB meanwhile
    const want = freeAt(r.root) + 40 * 2 ** 20
    const { code, out } = run(['--root', r.root, '--target-free', String(want)])
    expect(out).toContain('plan: swift (to cover')
    expect(code).toBe(0)
    expect(gone(r.at('usr/share/swift'))).toBe(true)
    expect(count(r.at('usr/local/lib/android'))).toBeGreaterThan(3000)
    expect(count(r.at('usr/share/dotnet'))).toBeGreaterThan(2000)
  })

  test('plans by bytes per second until typical sizes cover the deficit', () => {
    const r = fakeRunner({ scale: 0.001 })
    const present = CATALOGUE.filter((t) => !t.optIn).map((t) => resolveTarget(t, r.root)).filter((x) =>
      x.present.length
    )
    expect(planBatch(present, 1).map((x) => x.target.name)).toEqual(['swift'])
    expect(planBatch(present, 6e9).map((x) => x.target.name)).toEqual(['swift', 'codeql'])
    expect(planBatch(present).length).toBe(present.length)
  })

  test('--background returns before deletion ends; the status file ends complete', async () => {
    const r = fakeRunner({ androidFiles: 40000 })
    const status = path.join(r.base, 'status.json')
    const { code, out } = run(['--root', r.root, '--background', '--status', status])
    expect(code).toBe(0)
    expect(out).toContain('android: moved aside')
    expect(gone(r.at('usr/local/lib/android'))).toBe(true)
    const early = readFreeDiskStatus(status)!
    expect(early.state).not.toBe('complete')
    expect(bytesToCome(status)).toBeGreaterThan(0)
    expect(fs.readdirSync(r.at('usr/local/lib')).some((n) => n.startsWith('.imagefleet-trash-'))).toBe(true)
    let last = early
    for (let i = 0; i < 600 && last.state !== 'complete' && last.state !== 'failed'; i++) {
      await Bun.sleep(100)
      last = readFreeDiskStatus(status)!
    }
    expect(last.state).toBe('complete')
    expect(last.items.every((i) => i.done && i.measured)).toBe(true)
    expect(last.items.find((i) => i.target === 'android')!.bytes).toBeGreaterThan(40000 * 512)
    expect(bytesToCome(status)).toBe(0)
    expect(fs.readdirSync(r.at('usr/local/lib')).filter((n) => n.startsWith('.imagefleet-trash-'))).toEqual([])
    expect(count(path.join(r.outside, 'keep-dir'))).toBeGreaterThan(10)
  })

  test('refuses outside CI without --yes, and runs with it', () => {
    const r = fakeRunner()
    const before = count(r.root)
    const refused = run(['--root', r.root], { CI: '' })
    expect(refused.code).toBe(3)
    expect(refused.out).toContain('pass --yes')
    expect(count(r.root)).toBe(before)
    expect(run(['--root', r.root, '--yes', '--only', 'swift'], { CI: '' }).code).toBe(0)
    expect(gone(r.at('usr/share/swift'))).toBe(true)
  })

  test('a bad --target-free or an unsafe --extra is bad usage (exit 2)', () => {
    const r = fakeRunner()
    const bad = run(['--root', r.root, '--target-free', 'lots'])
    expect(bad.code).toBe(2)
    expect(bad.out).toContain("'lots' is not a size")
    expect(run(['--root', r.root, '--extra', '/usr']).code).toBe(2)
    expect(run(['--root', r.root, '--only', 'androd']).code).toBe(2)
  })

  test('refuses an --extra path whose parent resolves outside the root', () => {
    const r = fakeRunner()
    fs.symlinkSync(r.outside, r.at('escape'))
    const { code, out } = run(['--root', r.root, '--only', 'swift', '--extra', '/escape/keep-dir'])
    expect(code).toBe(1)
    expect(out).toContain('refused')
    expect(count(path.join(r.outside, 'keep-dir'))).toBeGreaterThan(10)
  })

  test('--list shows every target with presence and measured size', () => {
    const r = fakeRunner()
    const { code, out } = run(['--list', '--root', r.root], { CI: '' })
    expect(code).toBe(0)
    expect(out).toMatch(/^target +kind +typical +here +what/m)
    expect(out).toMatch(/android +default +[\d.]+ GiB +[\d.]+ MiB +Android SDK: \/usr\/local\/lib\/android$/m)
    expect(out).toMatch(/powershell +default .* +absent +PowerShell: \/usr\/local\/share\/powershell$/m)
    expect(out).toMatch(/tool-cache +opt-in/)
  })
})

/** Commands on PATH that log their argv: the file tools run for real, the host-wide ones (apt, docker, swap, sudo) only log. */
function spyBin(base: string) {
  const dir = path.join(base, 'spy-bin')
  const log = path.join(base, 'spy.log')
  fs.mkdirSync(dir)
  fs.writeFileSync(log, '')
  const record = `{ printf '%s\\0' "$(basename "$0")" "$@"; printf '\\036'; } >> ${log}`
  for (const tool of ['rm', 'mv', 'mkdir', 'rmdir', 'du']) {
    const real = spawnSync('bash', ['-c', `command -v ${tool}`], { encoding: 'utf8' }).stdout.trim()
    fs.writeFileSync(path.join(dir, tool), `#!/bin/bash\n${record}\nexec ${real} "$@"\n`, { mode: 0o755 })
  }
  for (const tool of ['docker', 'apt-get', 'dpkg-query', 'swapoff', 'sudo', 'env']) {
    fs.writeFileSync(path.join(dir, tool), `#!/bin/bash\n${record}\nexit 0\n`, { mode: 0o755 })
  }
  const calls = () => fs.readFileSync(log, 'utf8').split('\x1e').filter(Boolean).map((c) => c.split('\0').slice(0, -1))
  return { env: { PATH: `${dir}:${process.env.PATH}` }, calls }
}

describe('free-disk --root confines every target (a rehearsal never touches the machine)', () => {
  const hostWide = CATALOGUE.filter((t) => t.kind !== 'paths')
  const pathTargets = CATALOGUE.filter((t) => t.kind === 'paths')

  /** Every catalogue path present under the root, so each entry is exercised. */
  function fullRunner() {
    const r = fakeRunner({ scale: 0.01 })
    for (const t of CATALOGUE) {
      for (const p of t.paths) {
        const at = r.at(p.endsWith('*') ? `${p.slice(0, -1)}1.0` : p)
        if (!fs.existsSync(at) && !isLinkAt(at)) fill(at, 3)
      }
    }
    return r
  }
  const isLinkAt = (p: string) => {
    try {
      return fs.lstatSync(p).isSymbolicLink()
    } catch {
      return false
    }
  }
  const outsideRoot = (root: string, argv: string[]) =>
    argv.filter((a) => a.startsWith('/') && a !== root && !a.startsWith(`${root}/`))

  for (const mode of ['--dry-run', '--yes'] as const) {
    test(`--include all ${mode}: host-wide targets are refused by name, every command stays under the root`, () => {
      const r = fullRunner()
      const spy = spyBin(r.base)
      const { code, out } = run(['--root', r.root, '--include', 'all', mode], { ...spy.env, CI: '' })
      expect(code).toBe(0)
      for (const t of hostWide) expect(out).toContain(`${t.name}: refused under --root`)
      const calls = spy.calls()
      expect(calls.filter((c) => ['docker', 'apt-get', 'dpkg-query', 'swapoff', 'sudo', 'env'].includes(c[0]))).toEqual(
        [],
      )
      expect(calls.flatMap((c) => outsideRoot(r.root, c.slice(1)))).toEqual([])
      const planned = out.split('\n').filter((l) => l.trim().startsWith('$ ')).map((l) => l.trim().slice(2).split(' '))
      expect(planned.filter((argv) => ['docker', 'apt-get', 'swapoff', 'env', 'sudo'].includes(argv[0]))).toEqual([])
      expect(planned.flatMap((argv) => outsideRoot(r.root, argv))).toEqual([])
      for (const t of pathTargets) {
        for (const p of t.paths) {
          const at = r.at(p.endsWith('*') ? `${p.slice(0, -1)}1.0` : p)
          if (mode === '--dry-run') expect(out).toContain(at)
          else expect(gone(at)).toBe(true)
        }
      }
      if (mode === '--dry-run') expect(calls.filter((c) => c[0] === 'rm' || c[0] === 'mv')).toEqual([])
      expect(count(path.join(r.outside, 'keep-dir'))).toBeGreaterThan(0)
      expect(fs.existsSync(r.at('mnt/swapfile'))).toBe(true) // swap is host state: refused, its file kept
    })
  }
})

describe('free-disk runs under Deno too', () => {
  test('prints help, plans a dry run, and deletes in the background', async () => {
    const deno = [DENO, 'run', '-A']
    expect(run(['--help'], {}, deno).out).toContain('--target-free SIZE')
    const r = fakeRunner()
    expect(run(['--root', r.root, '--dry-run'], {}, deno).out).toContain(
      `rm -rf --one-file-system -- ${r.at('usr/share/dotnet')}`,
    )
    const status = path.join(r.base, 'status.json')
    expect(run(['--root', r.root, '--background', '--status', status], {}, deno).code).toBe(0)
    for (let i = 0; i < 600 && readFreeDiskStatus(status)?.state !== 'complete'; i++) await Bun.sleep(100)
    expect(readFreeDiskStatus(status)?.state).toBe('complete')
    expect(gone(r.at('usr/share/dotnet'))).toBe(true)
  })
})
