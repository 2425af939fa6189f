#!/usr/bin/env bun
// Records the engine DOCKER_HOST points at into tests/fixtures/engines/NAME/: its answers to what preflight asks and
// the --help of every command the scripts run, each headed by FROM (say which client, which daemon, how started).
//   eval "$(bun run scripts/sandbox.ts env)"
//   bun tests/helpers/record-engine.ts docker-20.10 "the real engine here: /usr/bin/docker 20.10.24 …"
import path from 'node:path'
import { $ } from 'zx'
import { ANSWERS, COMMANDS, ENGINES_DIR, helpFile, writeRecorded } from './engine-fixtures.ts'

const [name, from] = process.argv.slice(2)
if (!name || !from) throw new Error('usage: record-engine.ts NAME "where the answers come from"')
const dir = path.join(ENGINES_DIR, name)
const stamp = `${from}; recorded by tests/helpers/record-engine.ts on ${new Date().toISOString().slice(0, 10)}`

for (const [file, argv] of Object.entries(ANSWERS)) {
  const out = await $({ nothrow: true, quiet: true })`docker ${argv}`
  const body = out.exitCode === 0 ? out.stdout : out.stderr
  writeRecorded(dir, `${file}.txt`, { command: `docker ${argv.join(' ')}`, from: stamp, exit: out.exitCode ?? 1, body })
}
for (const command of COMMANDS) {
  const out = await $({ nothrow: true, quiet: true })`docker ${command.split(' ')} --help`
  const body = out.exitCode === 0 ? out.stdout : out.stderr
  writeRecorded(dir, helpFile(command), {
    command: `docker ${command} --help`,
    from: stamp,
    exit: out.exitCode ?? 1,
    body,
  })
}
console.log(`recorded ${Object.keys(ANSWERS).length} answers and ${COMMANDS.length} --help texts into ${dir}`)
