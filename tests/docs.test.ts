// README's CLI reference is every script's --help, verbatim: a flag added without `npx bun scripts/docs.ts`
// fails here.
import { describe, expect, test } from 'bun:test'
import fs from 'node:fs'
import path from 'node:path'
import { cliReference, END, scriptNames, START, withReference } from '../scripts/docs.ts'

const README = path.resolve(import.meta.dir, '../README.md')

describe('README CLI reference', () => {
  test('README carries the current --help of every script (run `npx bun scripts/docs.ts` when this fails)', async () => {
    const readme = fs.readFileSync(README, 'utf8')
    const reference = await cliReference()
    for (const script of scriptNames()) expect(reference).toContain(`<code>scripts/${script}</code>`)
    expect(withReference(readme, reference)).toBe(readme)
  })

  test('only the text between the markers is replaced', () => {
    const text = `intro\n<!-- cli-reference:start -->\nold\n${END}\noutro\n`
    expect(withReference(text, `${START}\nnew\n${END}`)).toBe(`intro\n${START}\nnew\n${END}\noutro\n`)
    expect(() => withReference('no markers', 'x')).toThrow('no CLI reference markers')
  })
})
