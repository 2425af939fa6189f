import { describe, expect, test } from 'bun:test'
import { createHash } from 'node:crypto'
import zlib from 'node:zlib'
import { extractCopies } from '../lib/image/copy.ts'
import { decompressLayer, type LayerFile, readTar, treeFromLayers, writeLayer, writeTar } from '../lib/image/layer.ts'

const bytes = (s: string) => new TextEncoder().encode(s)
const text = (b?: Uint8Array) => new TextDecoder().decode(b)
const file = (path: string, content: string, mode = 0o644, uid = 0, gid = 0): LayerFile => ({
  path,
  type: 'file',
  mode,
  uid,
  gid,
  data: bytes(content),
})
const dir = (path: string, mode = 0o755, uid = 0, gid = 0): LayerFile => ({ path, type: 'dir', mode, uid, gid })
const link = (path: string, linkname: string): LayerFile => ({
  path,
  type: 'symlink',
  mode: 0o777,
  uid: 0,
  gid: 0,
  linkname,
})
/** A layer blob as docker would store it (gzip of a tar). */
const layer = (files: LayerFile[]) => writeLayer(files).gzip
const listing = (gzip: Uint8Array) => [...readTar(decompressLayer(gzip), () => true)]

describe('writeLayer', () => {
  const files = [
    file('opt/agent/bin/run', '#!/bin/sh\necho hi\n', 0o755, 1000, 1000),
    file('opt/agent/README', 'x'),
    link('opt/agent/latest', 'bin/run'),
  ]

  test('same files give the same bytes every time, whatever the input order', () => {
    const a = writeLayer(files)
    const b = writeLayer([...files].reverse())
    expect(Buffer.from(a.gzip).equals(Buffer.from(b.gzip))).toBe(true)
    expect(a.digest).toBe(b.digest)
    expect(a.diffId).toBe(`sha256:${createHash('sha256').update(a.tar).digest('hex')}`)
    expect(a.size).toBe(a.gzip.length)
    console.log(`layer digest ${a.digest} diffId ${a.diffId}`)
  })

  test('sorts members, adds parent directories, fixes mtime, keeps modes and owners', () => {
    const entries = listing(writeLayer(files).gzip)
    expect(entries.map((e) => e.path)).toEqual([
      'opt',
      'opt/agent',
      'opt/agent/README',
      'opt/agent/bin',
      'opt/agent/bin/run',
      'opt/agent/latest',
    ])
    expect(entries.every((e) => e.mtime === 0)).toBe(true)
    const run = entries.find((e) => e.path === 'opt/agent/bin/run')!
    expect([run.mode, run.uid, run.gid, text(run.data)]).toEqual([0o755, 1000, 1000, '#!/bin/sh\necho hi\n'])
    expect(entries.find((e) => e.path === 'opt')).toMatchObject({ type: 'dir', mode: 0o755, uid: 0 })
    expect(entries.find((e) => e.path === 'opt/agent/latest')).toMatchObject({ type: 'symlink', linkname: 'bin/run' })
  })

  test('gzip header carries no mtime or file name and gunzips with zlib', () => {
    const { gzip, tar } = writeLayer(files)
    expect([...gzip.subarray(0, 10)]).toEqual([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff])
    expect(Buffer.from(zlib.gunzipSync(gzip)).equals(Buffer.from(tar))).toBe(true)
  })

  test('long names and link targets round-trip through PAX records', () => {
    const long = `deep/${'d'.repeat(120)}/${'f'.repeat(150)}.txt`
    const entries = listing(layer([file(long, 'long'), link('l', `/${long}`)]))
    expect(entries.find((e) => e.path === long)?.data).toEqual(bytes('long'))
    expect(entries.find((e) => e.path === 'l')?.linkname).toBe(`/${long}`)
  })
})

describe('reading layers', () => {
  test('reads GNU long names (././@LongLink) and base-256 numbers', () => {
    const name = `gnu/${'n'.repeat(130)}`
    const tar = writeTar([{
      path: name.slice(0, 99),
      type: 'file',
      mode: 0o600,
      uid: 0,
      gid: 0,
      size: 2,
      mtime: 0,
      data: bytes('ok'),
    }])
    const longLink = writeTar([{
      path: '././@LongLink',
      type: 'file',
      mode: 0,
      uid: 0,
      gid: 0,
      size: 0,
      mtime: 0,
      data: bytes(name + '\0'),
    }])
    longLink[156] = 'L'.charCodeAt(0)
    const joined = new Uint8Array([...longLink.subarray(0, 1024), ...tar])
    joined[1024 + 108] = 0x80
    joined.fill(0, 1024 + 109, 1024 + 115)
    joined[1024 + 115] = 0x02 // uid 2 in base-256 (checksum not verified)
    const [entry] = [...readTar(joined, () => true)]
    expect(entry.path).toBe(name)
    expect(entry.uid).toBe(2)
    expect(text(entry.data)).toBe('ok')
  })

  test('whiteouts hide lower files and opaque directories hide lower contents', () => {
    const lower = layer([
      file('app/keep', '1'),
      file('app/gone', '2'),
      file('data/old', '3'),
      dir('data/sub'),
      file('data/sub/x', '4'),
    ])
    const upper = layer([file('app/.wh.gone', ''), file('data/.wh..wh..opq', ''), file('data/new', '5')])
    const tree = treeFromLayers([lower, upper])
    expect(tree.lookup('app/keep')).toBeDefined()
    expect(tree.lookup('app/gone')).toBeUndefined()
    expect(tree.lookup('data/old')).toBeUndefined()
    expect(tree.lookup('data/sub/x')).toBeUndefined()
    expect(tree.lookup('data/new')).toBeDefined()
    const files = extractCopies([lower, upper], [{ sources: ['/data', '/app'], dest: '/copied/' }])
    expect(files.map((f) => f.path).sort()).toEqual(['copied', 'copied/keep', 'copied/new'])
  })

  test('hard links become regular files with the target bytes; symlinked directories are followed in sources', () => {
    const tar = writeTar([
      { path: 'real/bin/tool', type: 'file', mode: 0o755, uid: 0, gid: 0, size: 4, mtime: 0, data: bytes('tool') },
      {
        path: 'real/bin/alias',
        type: 'hardlink',
        mode: 0o755,
        uid: 0,
        gid: 0,
        size: 0,
        mtime: 0,
        linkname: 'real/bin/tool',
      },
      { path: 'opt', type: 'symlink', mode: 0o777, uid: 0, gid: 0, size: 0, mtime: 0, linkname: '/real' },
    ])
    const blob = zlib.gzipSync(tar)
    const files = extractCopies([blob], [{ sources: ['/opt/bin/alias'], dest: '/usr/local/bin/' }])
    expect(files).toEqual([{
      path: 'usr/local/bin/alias',
      type: 'file',
      mode: 0o755,
      uid: 0,
      gid: 0,
      linkname: undefined,
      data: bytes('tool'),
    }])
  })
})

describe('COPY semantics', () => {
  const builder = [
    layer([
      dir('src/agent', 0o750, 10, 20),
      file('src/agent/bin', 'B', 0o755, 10, 20),
      file('src/agent/lib/a.py', 'A', 0o644, 10, 20),
      file('src/one.txt', '1'),
      file('src/two.txt', '2'),
    ]),
  ]

  test('a directory source copies its contents into the destination, keeping owners unless --chown', () => {
    const plain = extractCopies(builder, [{ sources: ['/src/agent'], dest: '/opt/agent' }])
    expect(plain.map((f) => [f.path, f.mode.toString(8), f.uid, f.gid])).toEqual([
      ['opt/agent', '750', 10, 20],
      ['opt/agent/bin', '755', 10, 20],
      ['opt/agent/lib', '755', 0, 0],
      ['opt/agent/lib/a.py', '644', 10, 20],
    ])
    const owned = extractCopies(builder, [{
      sources: ['/src/agent'],
      dest: '/opt/agent',
      chown: { uid: 1, gid: 2 },
      chmod: 0o700,
    }])
    expect(owned.every((f) => f.uid === 1 && f.gid === 2 && f.mode === 0o700)).toBe(true)
  })

  test('file sources: a path without / is the file, a trailing / is a directory, globs match', () => {
    expect(extractCopies(builder, [{ sources: ['/src/one.txt'], dest: '/etc/renamed' }]).map((f) => f.path)).toEqual([
      'etc/renamed',
    ])
    expect(extractCopies(builder, [{ sources: ['/src/one.txt'], dest: '/etc/' }]).map((f) => f.path)).toEqual([
      'etc/one.txt',
    ])
    expect(extractCopies(builder, [{ sources: ['/src/*.txt'], dest: '/t/' }]).map((f) => f.path)).toEqual([
      't/one.txt',
      't/two.txt',
    ])
  })

  test('a missing source is a clear error', () => {
    expect(() => extractCopies(builder, [{ sources: ['/nope'], dest: '/x' }])).toThrow('COPY source /nope not found')
  })
})
