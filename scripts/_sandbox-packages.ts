// Private helper of scripts/sandbox.ts (not a task): the Debian packages the sandbox needs, installed with
// apt-get when they are missing (as root).
import fs from 'node:fs'
import { $ } from 'zx'
import { report } from '../lib/cli/report.ts'
import { onPath } from '../lib/host/executables.ts'
import type { Env } from '../lib/sandbox/state.ts'

/** What `up` needs and the Debian package that brings it. */
const NEEDS = [
  { pkg: 'docker.io', what: 'dockerd', present: (env: Env) => onPath('dockerd', env).length > 0 },
  { pkg: 'docker-registry', what: 'docker-registry', present: (env: Env) => onPath('docker-registry', env).length > 0 },
  // the seed image is FROM scratch: only a static busybox runs there
  { pkg: 'busybox-static', what: 'a static /bin/busybox', present: () => isStaticBinary('/bin/busybox') },
]

/** Installs the missing packages (apt-get update + install); does nothing when all are there. */
export async function ensurePackages(env: Env): Promise<void> {
  const missing = []
  for (const need of NEEDS) if (!(await need.present(env))) missing.push(need)
  if (!missing.length) return
  const pkgs = missing.map((m) => m.pkg)
  report.info(`installing ${pkgs.join(' ')} (missing: ${missing.map((m) => m.what).join(', ')})`)
  const apt = $({ quiet: true, timeout: '15m', env: { ...env, DEBIAN_FRONTEND: 'noninteractive' } })
  await apt`apt-get update`
  await apt`apt-get install -y ${pkgs}`
  report.ok(`installed ${pkgs.join(' ')}`)
}

async function isStaticBinary(file: string): Promise<boolean> {
  if (!fs.existsSync(file)) return false
  const ldd = await $({ quiet: true, nothrow: true })`ldd ${file}`
  return /not a dynamic executable|statically linked/.test(ldd.stdout + ldd.stderr)
}
