// Builds one fixed layer and prints its diff_id and digest: tests/layer.test.ts runs this under Bun and under Deno
// and compares (the agent layer's compressed bytes must not depend on the runtime).
//   npx bun tests/helpers/layer-digest.ts   |   npx deno run -A tests/helpers/layer-digest.ts
import { writeLayer } from '../../lib/image/layer.ts'

/** Incompressible and compressible bytes, a large uid, a long name, a hard link: what an agent layer holds. */
export function fixedLayer() {
  let x = 7
  const noise = new Uint8Array(2_000_000)
  for (let i = 0; i < noise.length; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0
    noise[i] = x >>> 24
  }
  const text = new TextEncoder().encode('def agent():\n    return "ok"\n'.repeat(20_000))
  return writeLayer([
    { path: 'agent-server', type: 'dir', mode: 0o755, uid: 1000680000, gid: 1000680000 },
    { path: 'agent-server/bin/tool', type: 'file', mode: 0o755, uid: 1000680000, gid: 0, data: noise },
    {
      path: 'agent-server/bin/tool-alias',
      type: 'hardlink',
      mode: 0o755,
      uid: 1000680000,
      gid: 0,
      linkname: 'agent-server/bin/tool',
    },
    { path: `agent-server/lib/${'deep/'.repeat(30)}agent.py`, type: 'file', mode: 0o644, uid: 0, gid: 0, data: text },
    { path: 'agent-server/current', type: 'symlink', mode: 0o777, uid: 0, gid: 0, linkname: 'bin/tool' },
  ], { addParents: false })
}

if (import.meta.main) {
  const layer = fixedLayer()
  console.log(JSON.stringify({ diffId: layer.diffId, digest: layer.digest, size: layer.size }))
}
