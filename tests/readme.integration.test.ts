// README's shell blocks, run as pasted: every ```sh block, in order, in one bash session (exports carry from block
// to block, as in a terminal), on a fresh copy of the repository (the files a clone has), with the PATH a new user
// has — no node_modules/.bin, so a bare `bun` is not found. The set-up block installs and runs the demo; the fleet
// blocks bring up their own sandbox and take it down. Text that cannot run as pasted stays out of ```sh blocks.
import { afterAll, expect, test } from 'bun:test'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { $ } from 'zx'
import { sandboxDown } from '../scripts/_sandbox-engine.ts'
import { describeIntegration } from './helpers/integration.ts'
import { ROOT } from './helpers/fixture.ts'
import { jsonLines } from './helpers/json-lines.ts'

const README = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8')
const blocks = [...README.matchAll(/^```sh\n([\s\S]*?)^```$/gm)].map((m) => m[1])

/** The environment of a new shell: no docker or imagefleet settings, and a PATH without node_modules/.bin. */
function freshEnv(): Record<string, string> {
  const keep = Object.entries(process.env).filter(([k, v]) =>
    v !== undefined && !/^(DOCKER_|IMAGEFLEET_|BUN_|npm_|NODE_)/.test(k)
  ) as Array<[string, string]>
  const env = Object.fromEntries(keep)
  env.PATH = (process.env.PATH ?? '').split(':').filter((d) => d && !d.includes('node_modules')).join(':')
  return env
}

describeIntegration('README', () => {
  const copy = fs.mkdtempSync(path.join(os.tmpdir(), 'imagefleet-readme-'))
  afterAll(async () => {
    for (const dir of ['.sandbox', '.sandbox-demo']) await sandboxDown({ dir: path.join(copy, dir) }).catch(() => {})
    fs.rmSync(copy, { recursive: true, force: true })
  })

  test('every sh block runs as pasted, in order, on a fresh copy, with bun not on PATH', async () => {
    const files = (await $({ cwd: ROOT, quiet: true })`git ls-files -co --exclude-standard`).stdout.trim().split('\n')
    for (const f of files.filter((f) => fs.existsSync(path.join(ROOT, f)))) {
      fs.mkdirSync(path.dirname(path.join(copy, f)), { recursive: true })
      fs.copyFileSync(path.join(ROOT, f), path.join(copy, f))
    }
    const env = freshEnv()
    expect((await $({ env, nothrow: true, quiet: true })`bash -c ${'command -v bun'}`).exitCode).toBe(1)
    expect(blocks.length).toBeGreaterThanOrEqual(5)
    const script = [
      'set -euo pipefail',
      ...blocks.flatMap((block, i) => [`echo "== README block ${i + 1} of ${blocks.length}"`, block]),
    ].join('\n')
    const r = await $({ cwd: copy, env, nothrow: true, quiet: true, timeout: '25m' })`bash -c ${script}`
    if (r.exitCode !== 0) console.log(`${r.stdout}\n${r.stderr}`.split('\n').slice(-60).join('\n'))
    expect(r.exitCode).toBe(0)
    expect(r.stdout).toContain(`== README block ${blocks.length} of ${blocks.length}`)
    expect(r.stdout).toMatch(/final images: 24\/24 \(0 failed\)/) // the demo
    const fleet = jsonLines(path.join(copy, 'builds/manifest.jsonl'))
    expect(fleet.map((m) => `${m.phase} ${m.id} ${m.status}`).sort()).toEqual([
      'assemble demo__app-1 built',
      'assemble demo__app-2 built',
      'base demo__app-1 built',
      'base demo__app-2 built',
      'builder builder built',
    ])
    expect(fs.existsSync(path.join(copy, '.sandbox'))).toBe(false) // the last block took its sandbox down
  }, 1_800_000)
})
