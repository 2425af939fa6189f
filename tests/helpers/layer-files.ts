// Layer entries for tests, written the way lib/image/layer.ts takes them: root-owned with the usual modes unless a
// test says otherwise.
import type { LayerFile } from '../../lib/image/layer.ts'

export const file = (path: string, content: string | Uint8Array, mode = 0o644, uid = 0, gid = 0): LayerFile => ({
  path,
  type: 'file',
  mode,
  uid,
  gid,
  data: typeof content === 'string' ? new TextEncoder().encode(content) : content,
})

export const dir = (path: string, mode = 0o755, uid = 0, gid = 0): LayerFile => ({ path, type: 'dir', mode, uid, gid })

export const symlink = (path: string, linkname: string): LayerFile => ({
  path,
  type: 'symlink',
  mode: 0o777,
  uid: 0,
  gid: 0,
  linkname,
})

export const hardlink = (path: string, linkname: string, mode = 0o644): LayerFile => ({
  path,
  type: 'hardlink',
  mode,
  uid: 0,
  gid: 0,
  linkname,
})
