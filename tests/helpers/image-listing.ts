// What two images are compared on: every path of a container's filesystem (`docker export` tar) with its type,
// numeric owner, mode (special bits included), size, content hash and link target; mtimes left out (they differ by
// design). Used by the equivalence tests against the sandbox engine.
import { createHash } from 'node:crypto'
import { readTar } from '../../lib/image/tar.ts'

/** The config fields `docker image inspect` shows that must be the same both ways. */
export const CONFIG_FIELDS = ['Env', 'Entrypoint', 'Cmd', 'User', 'WorkingDir', 'Labels', 'ExposedPorts'] as const

/** path → "type mode uid:gid size sha256 → link" for every member of an export (or any plain) tar. */
export function listing(tar: Uint8Array): Map<string, string> {
  const entries = readTar(tar, () => true)
  const hashes = new Map<string, string>()
  const hash = (b?: Uint8Array) => createHash('sha256').update(b ?? new Uint8Array()).digest('hex').slice(0, 16)
  for (const e of entries) if (e.type === 'file') hashes.set(e.path, `${e.size} ${hash(e.data)}`)
  const out = new Map<string, string>()
  for (const e of entries) {
    const content = e.type === 'file' ? hashes.get(e.path) : e.type === 'hardlink' ? hashes.get(e.linkname ?? '') : ''
    const link = e.type === 'symlink' ? ` → ${e.linkname}` : e.type === 'hardlink' ? ` ⇒ ${e.linkname}` : ''
    out.set(e.path, `${e.type} ${e.mode.toString(8).padStart(4, '0')} ${e.uid}:${e.gid} ${content ?? ''}${link}`.trim())
  }
  return out
}

/** The paths whose description differs, each as "path: docker build X | registry Y". */
export function differences(docker: Map<string, string>, registry: Map<string, string>): string[] {
  const paths = [...new Set([...docker.keys(), ...registry.keys()])].sort()
  return paths.filter((p) => docker.get(p) !== registry.get(p))
    .map((p) => `${p}: docker build ${docker.get(p) ?? '(absent)'} | registry ${registry.get(p) ?? '(absent)'}`)
}
