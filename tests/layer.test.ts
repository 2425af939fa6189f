// lib/image/tar.ts and layer.ts: reproducible layers (the same bytes under every runtime), PAX where ustar cannot
// say it, a streaming reader that can stop early, and layers merged with whiteouts, opaque dirs and hard links.
import { describe, expect, test } from 'bun:test'
import { createHash } from 'node:crypto'
import path from 'node:path'
import zlib from 'node:zlib'
import { $ } from 'zx'
import {
  decompressLayer,
  type LayerFile,
  readTar,
  TarReader,
  treeFromLayers,
  writeLayer,
  writeTar,
} from '../lib/image/layer.ts'
import type { TarEntry } from '../lib/image/tar.ts'
import { dir, file, symlink as link } from './helpers/layer-files.ts'

const ROOT = path.resolve(import.meta.dir, '..')
const bytes = (s: string) => new TextEncoder().encode(s)
const text = (b?: Uint8Array) => new TextDecoder().decode(b)
/** A layer blob as docker would store it (gzip of a tar). */
const layer = (files: LayerFile[]) => writeLayer(files).gzip
const listing = (gzip: Uint8Array) => readTar(decompressLayer(gzip), () => true)

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
    expect(a.diffId).toBe(`sha256:${createHash('sha256').update(a.tar).digest('hex')}`)
    expect(a.size).toBe(a.gzip.length)
  })

  test('sorts members, adds root-owned parents only when asked to, fixes mtime, keeps modes and owners', () => {
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
    const exact = listing(writeLayer(files, { addParents: false }).gzip).map((e) => e.path)
    expect(exact).toEqual(['opt/agent/README', 'opt/agent/bin/run', 'opt/agent/latest'])
  })

  test('gzip header carries no mtime or file name and gunzips with zlib', () => {
    const { gzip, tar } = writeLayer(files)
    expect([...gzip.subarray(0, 10)]).toEqual([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff])
    expect(Buffer.from(zlib.gunzipSync(gzip)).equals(Buffer.from(tar))).toBe(true)
  })

  test('the same layer built under Bun and under Deno has the same compressed bytes (one compressor, fixed settings)', async () => {
    const run = async (cmd: string[]) =>
      JSON.parse((await $({ cwd: ROOT, quiet: true })`npx ${cmd} tests/helpers/layer-digest.ts`).stdout)
    const [bun, deno] = [await run(['bun']), await run(['deno', 'run', '-A'])]
    console.log(`bun ${bun.digest}\ndeno ${deno.digest}`)
    expect(deno).toEqual(bun)
    // pako 3.0.3 level 9 over this tar; it changes only with the tar writer or the compressor (package.json pins it)
    expect(bun.digest).toBe('sha256:5b4e651670157669e2a66e3f873195c884785102212089373fa0e5281533cf12')
  })

  test('long names and link targets round-trip through PAX records', () => {
    const long = `deep/${'d'.repeat(120)}/${'f'.repeat(150)}.txt`
    const entries = listing(layer([file(long, 'long'), link('l', `/${long}`)]))
    expect(entries.find((e) => e.path === long)?.data).toEqual(bytes('long'))
    expect(entries.find((e) => e.path === 'l')?.linkname).toBe(`/${long}`)
  })

  test('a uid or gid too large for the octal field goes in a PAX record and reads back as itself', () => {
    const [e] = listing(
      writeLayer([file('home/app/x', 'x', 0o600, 1000680000, 2 ** 31 + 5)], { addParents: false }).gzip,
    )
    expect([e.uid, e.gid]).toEqual([1000680000, 2 ** 31 + 5])
    const tar = writeTar([{ path: 'x', type: 'file', mode: 0o644, uid: 1000680000, gid: 7, size: 0, mtime: 0 }])
    expect(text(tar.subarray(0, 100)).startsWith('PaxHeaders/x')).toBe(true)
    expect(text(tar.subarray(512, 512 + 30))).toContain('uid=1000680000')
  })
})

describe('TarReader (streaming)', () => {
  const members = [
    file('a/one', 'x'.repeat(700)),
    file(`b/${'long-name-'.repeat(15)}`, 'two'),
    file('c/big-id', 'three', 0o640, 1000680000, 1000680000),
    link('d/link', '/a/one'),
  ]
  const tar = writeLayer(members, { addParents: false }).tar

  test('chunks of any size give the same members as the whole archive, bodies only where asked', () => {
    const whole = readTar(tar, (p) => p === 'c/big-id')
    for (const size of [1, 7, 511, 512, 513, 4096]) {
      const got: TarEntry[] = []
      const reader = new TarReader((e) => void got.push(e), (p) => p === 'c/big-id')
      for (let at = 0; at < tar.length; at += size) reader.push(tar.subarray(at, at + size))
      expect(got).toEqual(whole)
    }
    expect(whole.map((e) => [e.path, e.uid, e.data && text(e.data)])).toEqual([
      ['a/one', 0, undefined],
      [`b/${'long-name-'.repeat(15)}`, 0, undefined],
      ['c/big-id', 1000680000, 'three'],
      ['d/link', 0, undefined],
    ])
  })

  test('returning true from onEntry stops the reader: later members are never parsed', () => {
    const seen: string[] = []
    const reader = new TarReader((e) => (seen.push(e.path), e.path === 'a/one'))
    expect(reader.push(tar)).toBe(false)
    expect(seen).toEqual(['a/one'])
  })

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
    const [entry] = readTar(joined, () => true)
    expect(entry.path).toBe(name)
    expect(entry.uid).toBe(2)
    expect(text(entry.data)).toBe('ok')
  })
})

describe('reading layers into a tree', () => {
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
  })

  test('a hard link is the same node as its target (one inode); symlinked directories are followed', () => {
    const tar = writeTar([
      { path: 'real/bin/tool', type: 'file', mode: 0o755, uid: 0, gid: 0, size: 4, mtime: 0, data: bytes('tool') },
      {
        path: 'real/bin/alias',
        type: 'hardlink',
        mode: 0o750,
        uid: 3,
        gid: 4,
        size: 0,
        mtime: 0,
        linkname: 'real/bin/tool',
      },
      { path: 'opt', type: 'symlink', mode: 0o777, uid: 0, gid: 0, size: 0, mtime: 0, linkname: '/real' },
    ])
    const tree = treeFromLayers([zlib.gzipSync(tar)])
    const alias = tree.lookup('opt/bin/alias')!
    expect(alias.path).toBe('real/bin/alias')
    expect(alias.node).toBe(tree.lookup('real/bin/tool')!.node)
    expect(alias.node).toMatchObject({ type: 'file', mode: 0o750, uid: 3, gid: 4 }) // the link's header re-owns the inode
  })
})
