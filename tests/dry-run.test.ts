// --dry-run's spawn: it prints each command as zx built it, tidied to one space between words, and runs nothing.
import { describe, expect, test } from 'bun:test'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { $ } from 'zx'
import { dryRunSpawn, tidyCommand } from '../lib/cli/dry-run.ts'
import { CONTEXT, instancesFile, registryFixture, ROOT } from './helpers/fixture.ts'
import { fakeDocker, mutatingCalls } from './helpers/fake-docker.ts'

/** Words outside quotes separated by more than one space (what `docker build  --target` showed). */
const doubleSpaceOutsideQuotes = (line: string) =>
  / {2}/.test(line.replace(/\$'(\\.|[^'\\])*'|'[^']*'|"(\\.|[^"\\])*"/g, 'Q'))

describe('tidyCommand', () => {
  test('one space between words: an empty flag list leaves no double space', () => {
    expect(tidyCommand('docker build  --target base -t x  .')).toBe('docker build --target base -t x .')
    expect(tidyCommand('  docker push x  ')).toBe('docker push x')
  })

  test("quoted words keep their spaces byte for byte: zx's $'…' with escapes, '…' and \"…\"", () => {
    expect(tidyCommand("docker build  --build-arg $'X=a  b\\'  c'  .")).toBe(
      "docker build --build-arg $'X=a  b\\'  c' .",
    )
    expect(tidyCommand(`sh -c 'a  b'  "c \\"  d"  e`)).toBe(`sh -c 'a  b' "c \\"  d" e`)
  })

  test('an escaped space stays a word of its own, apart from the next', () => {
    expect(tidyCommand('ls a\\  b')).toBe('ls a\\  b')
  })
})

describe('dryRunSpawn under zx', () => {
  test('prints the command zx built, tidied, and runs nothing: exit 0, no output', async () => {
    const printed: string[] = []
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'dry-run-'))
    const marker = path.join(dir, 'ran')
    const sh = $({ quiet: true, spawn: dryRunSpawn((c) => printed.push(c), $.prefix, $.postfix) })
    const flags: string[] = []
    const r = await sh`touch ${marker} ${flags} --no-such-flag ${'a  b'}`
    expect(printed).toEqual([`touch ${marker} --no-such-flag $'a  b'`])
    expect([r.exitCode, r.stdout, r.stderr]).toEqual([0, '', ''])
    expect(fs.existsSync(marker)).toBe(false)
    fs.rmSync(dir, { recursive: true, force: true })
  })
})

describe('pipeline --dry-run against a real registry and a recording fake docker', () => {
  const fx = registryFixture('dry-run-test')

  test('the plan has no double space where an empty flag list sits, and runs no docker command that changes state', async () => {
    const fake = fakeDocker()
    const instances = await instancesFile(fx, ['a__b-1', 'c__d-2'])
    const r = await $({
      env: { ...process.env, ...fake.env, CI: '', GITHUB_ACTIONS: '' },
      cwd: ROOT,
      quiet: true,
    })`${process.execPath} scripts/pipeline.ts --instances ${instances} --registry ${fx.registry.address}/fleet --upstream ${fx.registry.address}/up/{docker_id}:latest --context ${CONTEXT} --mode docker --dry-run --out ${
      path.join(fx.work, 'out')
    }`
    const commands = r.stdout.split('\n').filter((l) => l.startsWith('docker '))
    expect(commands.filter((l) => l.startsWith('docker build --'))).toHaveLength(5) // builder, 2 bases, 2 assemblies
    expect(commands.filter(doubleSpaceOutsideQuotes)).toEqual([])
    expect(mutatingCalls(fake.calls())).toEqual([])
    fake.cleanup()
  })
})
