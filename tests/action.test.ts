// The two GitHub Actions (action.yml, free-disk/action.yml) against their scripts' flag tables: every input is
// documented, mirrors a flag (its help and default in the description) and reaches the script as that flag; every
// output names a step and is what the script writes. The steps run as the runner runs them (tests/helpers/
// action-runner.ts) with a recording `bun` in the action's node_modules — a fake for the wiring only; that the
// actions install, build and free disk for real is tests/action.integration.test.ts.
import { afterAll, describe, expect, test } from 'bun:test'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { $ } from 'zx'
import type { FlagTable } from '../lib/cli/flags.ts'
import { stepOutputs } from '../lib/disk/free-disk-report.ts'
import { writeOutputs } from '../lib/run/github.ts'
import { publishToGitHub, summarizeFacts } from '../lib/run/summary.ts'
import { FLAGS as FREE_DISK_FLAGS } from '../scripts/free-disk.ts'
import { FLAGS as PIPELINE_FLAGS } from '../scripts/pipeline.ts'
import { type Action, loadAction, runAction } from './helpers/action-runner.ts'
import { ROOT } from './helpers/fixture.ts'

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'action-test-'))
afterAll(() => fs.rmSync(work, { recursive: true, force: true }))

const ACTIONS = {
  root: { file: 'action.yml', script: 'scripts/pipeline.ts', flags: PIPELINE_FLAGS as FlagTable },
  'free-disk': { file: 'free-disk/action.yml', script: 'scripts/free-disk.ts', flags: FREE_DISK_FLAGS as FlagTable },
}
/** Inputs that are not one flag each: what each becomes is asserted by name below. */
const SPECIAL = {
  root: ['registry', 'build-arg', 'password', 'merge', 'args'],
  'free-disk': ['background', 'include', 'exclude', 'args'],
}
/** Inputs that mirror no flag of the script. */
const NOT_FLAGS = ['password', 'args']

/**
 * A package directory like the action's: both action.yml files, package-lock.json, and a node_modules whose `bun`
 * records its arguments (and the password variable) — stamped as installed, so the install step skips npm ci.
 */
async function fakePackage(): Promise<{ dir: string; argv: () => string[]; password: () => string }> {
  const dir = fs.mkdtempSync(path.join(work, 'package-'))
  for (const f of ['action.yml', 'free-disk/action.yml', 'package-lock.json']) {
    fs.mkdirSync(path.dirname(path.join(dir, f)), { recursive: true })
    fs.copyFileSync(path.join(ROOT, f), path.join(dir, f))
  }
  fs.mkdirSync(path.join(dir, 'node_modules/.bin'), { recursive: true })
  const record = path.join(dir, 'argv')
  fs.writeFileSync(
    path.join(dir, 'node_modules/.bin/bun'),
    `#!/bin/bash\nprintf '%s\\0' "$@" > ${record}\nprintf '%s' "\${INPUT_PASSWORD-}" > ${record}.password\n`,
    { mode: 0o755 },
  )
  const stamp = (await $({ cwd: dir, quiet: true })`sha256sum package-lock.json`).stdout.trim()
  fs.writeFileSync(path.join(dir, 'node_modules/.imagefleet-lock'), stamp + '\n')
  return {
    dir,
    argv: () => fs.readFileSync(record, 'utf8').split('\0').slice(0, -1),
    password: () => fs.readFileSync(`${record}.password`, 'utf8'),
  }
}

async function run(which: keyof typeof ACTIONS, inputs: Record<string, string>, env: Record<string, string> = {}) {
  const pkg = await fakePackage()
  const actionPath = which === 'root' ? pkg.dir : path.join(pkg.dir, 'free-disk')
  const workspace = fs.mkdtempSync(path.join(work, 'workspace-'))
  fs.mkdirSync(path.join(workspace, 'shards/shard-1'), { recursive: true })
  fs.mkdirSync(path.join(workspace, 'shards/shard-2'), { recursive: true })
  const files = fs.mkdtempSync(path.join(work, 'files-'))
  const job = { PATH: process.env.PATH!, HOME: process.env.HOME ?? '/root', CI: 'true', GITHUB_ACTIONS: 'true' }
  const r = await runAction(loadAction(path.join(pkg.dir, ACTIONS[which].file)), {
    inputs,
    actionPath,
    workspace,
    files,
    env: { ...job, GITHUB_REPOSITORY: 'MyOrg/Fleet', ...env },
  })
  if (r.exitCode !== 0) console.log(r.log)
  expect(r.exitCode).toBe(0)
  expect(r.log).toContain('dependencies already installed')
  const [script, ...args] = pkg.argv()
  expect(script).toBe(path.join(pkg.dir, ACTIONS[which].script))
  return { args, password: pkg.password() }
}

/** `--flag value` pairs (and bare `--flag`s) of an argument list, in order. */
const after = (args: string[], flag: string) => args.flatMap((a, i) => (a === flag ? [args[i + 1]] : []))

describe('every input reaches the script', () => {
  test('root action: each input becomes its flag; registry lower-cased, one --build-arg a line, merge globbed', async () => {
    const action = loadAction(path.join(ROOT, 'action.yml'))
    const inputs: Record<string, string> = {}
    for (const name of Object.keys(action.inputs)) inputs[name] = `value-of-${name}`
    Object.assign(inputs, {
      registry: '127.0.0.1:5000/MyOrg/Fleet',
      'build-arg': 'SEED_IMAGE=busybox\nNOTE=two words\n',
      password: 's3cret token',
      merge: 'shards/shard-*',
      args: '--force\n--platform linux/amd64',
    })
    const { args, password } = await run('root', inputs)
    for (const name of Object.keys(action.inputs).filter((n) => !SPECIAL.root.includes(n))) {
      expect({ name, values: after(args, `--${name}`) }).toEqual({ name, values: [inputs[name]] })
    }
    expect(after(args, '--registry')).toEqual(['127.0.0.1:5000/myorg/fleet'])
    expect(after(args, '--build-arg')).toEqual(['SEED_IMAGE=busybox', 'NOTE=two words'])
    expect(after(args, '--password-env')).toEqual(['INPUT_PASSWORD'])
    expect(password).toBe('s3cret token')
    expect(args.join(' ')).not.toContain('s3cret')
    expect(args.slice(args.indexOf('--merge'), args.indexOf('--merge') + 3)).toEqual([
      '--merge',
      'shards/shard-1',
      'shards/shard-2',
    ])
    expect(args.slice(-3)).toEqual(['--force', '--platform', 'linux/amd64'])
  })

  test('root action: empty inputs leave their flags out; the registry falls back to IMAGEFLEET_REGISTRY, then the repository', async () => {
    expect((await run('root', {})).args).toEqual(['--registry', 'ghcr.io/myorg/fleet'])
    const fromEnv = await run('root', { instances: 'i.jsonl' }, { IMAGEFLEET_REGISTRY: 'ghcr.io/MyOrg/Images' })
    expect(fromEnv.args).toEqual(['--instances', 'i.jsonl', '--registry', 'ghcr.io/myorg/images'])
  })

  test('free-disk action: background by default, lists split on spaces and commas, extra args last', async () => {
    const inputs: Record<string, string> = {
      'target-free': '60GB',
      include: 'tool-cache, swap',
      exclude: 'dotnet jvm',
      status: '/tmp/free-disk.json',
      args: '--root /tmp/rehearsal --jobs 2',
    }
    const { args } = await run('free-disk', inputs)
    const action = loadAction(path.join(ROOT, 'free-disk/action.yml'))
    for (const name of Object.keys(action.inputs).filter((n) => !SPECIAL['free-disk'].includes(n))) {
      expect({ name, values: after(args, `--${name}`) }).toEqual({ name, values: [inputs[name]] })
    }
    expect(args).toEqual([
      '--background',
      '--target-free',
      '60GB',
      '--include',
      'tool-cache',
      '--include',
      'swap',
      '--exclude',
      'dotnet',
      '--exclude',
      'jvm',
      '--status',
      '/tmp/free-disk.json',
      '--root',
      '/tmp/rehearsal',
      '--jobs',
      '2',
    ])
    expect((await run('free-disk', { background: 'false' })).args).toEqual([])
  })
})

describe('inputs and outputs are documented and in step with the scripts', () => {
  for (const [which, a] of Object.entries(ACTIONS) as Array<[keyof typeof ACTIONS, (typeof ACTIONS)['root']]>) {
    const action: Action = loadAction(path.join(ROOT, a.file))

    test(`${a.file}: every input is described, names a flag of ${a.script}, with its help and default`, () => {
      for (const [name, input] of Object.entries(action.inputs)) {
        const description = (input.description ?? '').replace(/\s+/g, ' ')
        expect({ name, described: description.length > 20 }).toEqual({ name, described: true })
        if (NOT_FLAGS.includes(name)) continue
        const flag = a.flags[name]
        expect({ name, isFlag: flag !== undefined }).toEqual({ name, isFlag: true })
        expect(description).toStartWith(`\`--${name}\`: `)
        expect(description).toContain(flag.help)
        const dflt = 'default' in flag && flag.default !== undefined && flag.default !== false
        if (dflt) expect(description).toContain(`(default: ${flag.default})`)
      }
    })

    test(`${a.file}: every input is read by a step, every output is a step's output`, () => {
      const steps = action.runs.steps
      for (const name of Object.keys(action.inputs)) {
        expect({ name, read: steps.some((s) => JSON.stringify(s.env ?? {}).includes(`inputs.${name} }}`)) }).toEqual({
          name,
          read: true,
        })
      }
      for (const [name, output] of Object.entries(action.outputs)) {
        expect(output.description?.length).toBeGreaterThan(10)
        const m = /^\$\{\{ steps\.([\w-]+)\.outputs\.([\w-]+) \}\}$/.exec(output.value)
        expect({ name, step: m?.[1], output: m?.[2] }).toEqual({ name, step: steps.at(-1)!.id, output: name })
      }
    })

    test(`${a.file}: its outputs are exactly what ${a.script} writes to GITHUB_OUTPUT`, () => {
      const file = path.join(work, `${which}-outputs`)
      fs.writeFileSync(file, '')
      if (which === 'root') {
        const s = summarizeFacts({
          records: [],
          cleanups: [],
          startedAt: new Date().toISOString(),
          wallSeconds: 0,
          peakUsed: 0,
          minFree: null,
          instances: 0,
        })
        publishToGitHub(s, { github: false, outputFile: file }, { manifest: '/m', markdown: '' })
      } else writeOutputs(file, stepOutputs([], { freeBefore: 0, freeAfter: 0, seconds: 0, pending: 0 }))
      const written = fs.readFileSync(file, 'utf8').trim().split('\n').map((l) => l.split('=')[0])
      expect(written.sort()).toEqual(Object.keys(action.outputs).sort())
    })
  }
})
