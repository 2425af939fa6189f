// Executables on this machine's PATH. No commands run.
import fs from 'node:fs'
import path from 'node:path'

/** Every executable named `name` on PATH, resolved and de-duplicated (/bin and /usr/bin are often one). */
export function onPath(name: string, env: Record<string, string | undefined>): string[] {
  const found = (env.PATH ?? '').split(':').filter(Boolean).map((d) => path.join(d, name)).filter((f) => {
    try {
      fs.accessSync(f, fs.constants.X_OK)
      return true
    } catch {
      return false
    }
  })
  const seen = new Set<string>()
  return found.filter((f) => {
    const real = fs.realpathSync(f)
    return !seen.has(real) && !!seen.add(real)
  })
}
