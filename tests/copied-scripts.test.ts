// README's promise to people who copy a script into another repository: `lib/`, package.json, the script and the
// siblings its row in "How the code is laid out" names are enough. Each row is copied into an empty directory (with
// this checkout's node_modules linked) and the script started there with --help, which loads every module it
// imports. A script another script runs (`${runtimeCommand()} scripts/X.ts`) must be in the row too.
import { afterAll, describe, expect, test } from 'bun:test'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { $ } from 'zx'

const ROOT = path.resolve(import.meta.dir, '..')
const README = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8')

/** The rows of README's table under "To use a script in another repository": scripts → what they need. */
function rows(): Array<{ scripts: string[]; needs: string[]; folders: string[] }> {
  const table = README.slice(README.indexOf('To use a script in another repository'))
    .split('\n').filter((l) => l.startsWith('| `'))
  const ticked = (cell: string) => [...cell.matchAll(/`([^`]+)`/g)].map((m) => m[1])
  return table.map((line) => {
    const [, scripts, needs] = line.split('|')
    return {
      scripts: ticked(scripts),
      needs: [...new Set(ticked(needs).filter((n) => n.endsWith('.ts')))],
      folders: ticked(needs).filter((n) => n.endsWith('/')),
    }
  })
}

const table = rows()
/** A row's siblings with the siblings of every sibling that has a row of its own ("and what it needs"). */
function closure(needs: string[]): string[] {
  const all = new Set<string>()
  const visit = (name: string) => {
    if (all.has(name)) return
    all.add(name)
    for (const n of table.find((r) => r.scripts.includes(name))?.needs ?? []) visit(n)
  }
  needs.forEach(visit)
  return [...all]
}

const made: string[] = []
afterAll(() => made.forEach((d) => fs.rmSync(d, { recursive: true, force: true })))

/** An empty repository holding lib/, package.json, the script, `siblings` and `folders`. */
function copyOf(script: string, siblings: string[], folders: string[]): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'copied-'))
  made.push(dir)
  fs.cpSync(path.join(ROOT, 'lib'), path.join(dir, 'lib'), { recursive: true })
  fs.copyFileSync(path.join(ROOT, 'package.json'), path.join(dir, 'package.json'))
  fs.symlinkSync(path.join(ROOT, 'node_modules'), path.join(dir, 'node_modules'))
  fs.mkdirSync(path.join(dir, 'scripts'))
  for (const f of [script, ...siblings]) fs.copyFileSync(path.join(ROOT, 'scripts', f), path.join(dir, 'scripts', f))
  for (const f of folders) fs.cpSync(path.join(ROOT, f), path.join(dir, f), { recursive: true })
  return dir
}

const help = (dir: string, script: string) =>
  $({ cwd: dir, nothrow: true, quiet: true })`${process.execPath} ${`scripts/${script}`} --help`

describe('a script copied with the siblings README names runs in another repository', () => {
  test('the table names every task script once', () => {
    const named = table.flatMap((r) => r.scripts).sort()
    const tasks = fs.readdirSync(path.join(ROOT, 'scripts')).filter((f) => f.endsWith('.ts') && !f.startsWith('_'))
    expect(named).toEqual(tasks.sort())
  })

  for (const row of table) {
    for (const script of row.scripts) {
      test(`${script}: --help runs from a copy with ${row.needs.length ? row.needs.join(', ') : 'no sibling'}`, async () => {
        const r = await help(copyOf(script, closure(row.needs), row.folders), script)
        expect(r.stderr).toBe('')
        expect(r.exitCode).toBe(0)
        expect(r.stdout).toContain('Usage:')
      })

      test(`${script}: every script it starts is in its row`, () => {
        const source = fs.readFileSync(path.join(ROOT, 'scripts', script), 'utf8')
        const started = [...source.matchAll(/runtimeCommand\(\)\} scripts\/([\w-]+\.ts)/g)].map((m) => m[1])
        expect(started.filter((s) => s !== script && !closure(row.needs).includes(s))).toEqual([])
      })

      // the check above can fail: without the first sibling it names, the copy does not start
      if (row.needs.length) {
        test(`${script}: without ${row.needs[0]} the copy does not start`, async () => {
          const siblings = closure(row.needs).filter((s) => s !== row.needs[0])
          const r = await help(copyOf(script, siblings, row.folders), script)
          expect(r.exitCode).not.toBe(0)
          expect(r.stderr).toContain(row.needs[0])
        })
      }
    }
  }
})
