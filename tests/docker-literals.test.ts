// The design card's rule, checked on the source: a docker command is a zx template literal in the script that runs
// it, found once there by grep, and lib/ runs none. Reads every .ts file under scripts/ and lib/ and collects the
// tagged template literals whose text starts with `docker ` (`$`…``, `$({…})`…``, a tag such as `docker`…`` or
// `read()`…``). Strings that only name a command (comments, messages, the cleanup line preflight prints) are not
// tagged templates and are not counted.
import { describe, expect, test } from 'bun:test'
import fs from 'node:fs'
import path from 'node:path'

const ROOT = path.resolve(import.meta.dir, '..')

/** Every tagged template literal in `source` whose text starts with `docker `, as written (up to its closing backtick). */
function dockerLiterals(source: string): string[] {
  const found: string[] = []
  // a backtick right after an identifier character or `)` is a tagged template; the text runs to the backtick that
  // closes it (a `${…}` may hold nested backticks: skip over balanced braces)
  const opener = /[\w$)]`docker /g
  for (let m = opener.exec(source); m; m = opener.exec(source)) {
    let i = m.index + 2
    let depth = 0
    for (; i < source.length; i++) {
      const c = source[i]
      if (depth === 0 && c === '`') break
      if (c === '$' && source[i + 1] === '{') {
        depth++
        i++
      } else if (c === '{' && depth > 0) depth++
      else if (c === '}' && depth > 0) depth--
    }
    found.push(source.slice(m.index + 2, i).replace(/\s+/g, ' '))
    opener.lastIndex = i + 1
  }
  return found
}

const tsFiles = (dir: string): string[] =>
  fs.readdirSync(path.join(ROOT, dir), { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('.ts'))
    .map((f) => path.join(dir, f))

describe('every docker command is a literal in the script that runs it', () => {
  test('the collector finds tagged literals and skips strings that only name a command', () => {
    const sample = [
      '// `docker rmi` in a comment',
      "const a = await $`docker push ${tag}`.timeout('1m')",
      'const b = await $({ quiet: true })`docker info --format ${`{{json .}}`}`',
      'const c = await read()`docker buildx du --builder ${builder}`',
      'const shown = `docker buildx prune --builder ${name}`',
    ].join('\n')
    expect(dockerLiterals(sample)).toEqual([
      'docker push ${tag}',
      'docker info --format ${`{{json .}}`}',
      'docker buildx du --builder ${builder}',
    ])
  })

  test('lib/ runs no docker command', () => {
    const inLib = tsFiles('lib').flatMap((f) =>
      dockerLiterals(fs.readFileSync(path.join(ROOT, f), 'utf8')).map((l) => `${f}: ${l}`)
    )
    expect(inLib).toEqual([])
  })

  test('each docker command appears once in the script that runs it (grep finds one place)', () => {
    const scripts = tsFiles('scripts')
    const all = scripts.flatMap((f) => dockerLiterals(fs.readFileSync(path.join(ROOT, f), 'utf8')))
    // the pipeline's own commands are there at all (a collector that finds nothing would pass the next check)
    for (const command of ['docker builder prune -af', 'docker buildx build --push', 'docker rmi', 'docker push']) {
      expect(all.some((l) => l.startsWith(command))).toBe(true)
    }
    const repeated = scripts.flatMap((f) => {
      const literals = dockerLiterals(fs.readFileSync(path.join(ROOT, f), 'utf8'))
      return literals.filter((l, i) => literals.indexOf(l) !== i).map((l) => `${f}: ${l}`)
    })
    expect(repeated).toEqual([])
  })
})
