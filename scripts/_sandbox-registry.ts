// Private helper of scripts/sandbox.ts (not a task): the sandbox's registry — distribution 2.x (Debian's
// docker-registry) on 127.0.0.1, storage under the sandbox directory — started and waited for.
import fs from 'node:fs'
import { $ } from 'zx'
import { FatalError } from '../lib/cli/main.ts'
import { report } from '../lib/cli/report.ts'
import type { Layout } from '../lib/sandbox/state.ts'

/** Distribution 2.x, plain HTTP on 127.0.0.1 (docker treats it as insecure-allowed), deletes enabled, storage on the host disk. */
export async function startRegistry(l: Layout, port: number): Promise<number> {
  fs.writeFileSync(
    l.registryYml,
    [
      'version: 0.1',
      'log:',
      '  level: warn',
      '  accesslog:',
      '    disabled: true',
      'storage:',
      '  filesystem:',
      `    rootdirectory: ${l.registry}`,
      '  delete:',
      '    enabled: true',
      'http:',
      `  addr: 127.0.0.1:${port}`,
      '',
    ].join('\n'),
  )
  const out = await $`setsid docker-registry serve ${l.registryYml} >${l.registryLog} 2>&1 </dev/null & echo $!`
  return Number(out.stdout.trim())
}

export async function waitForRegistry(l: Layout, registry: string): Promise<void> {
  const deadline = Date.now() + 30_000
  while (Date.now() < deadline) {
    const status = await fetch(`http://${registry}/v2/`).then((r) => r.status, () => 0)
    if (status === 200) return report.ok(`registry answers at ${registry}`)
    await new Promise((r) => setTimeout(r, 300))
  }
  throw new FatalError(`registry did not answer at ${registry} within 30s:\n${tailOf(l.registryLog)}`)
}

/** The last lines of a log, for an error message. */
export function tailOf(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8').split('\n').slice(-25).join('\n')
  } catch {
    return `(no ${file})`
  }
}
