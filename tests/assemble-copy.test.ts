// lib/image/copy.ts: COPY and WORKDIR done on a base image's answers the way BuildKit does them. Each rule here was
// first observed on the sandbox engine (dockerd 20.10, BuildKit v0.8) and is proven against it, image by image, in
// assemble-corpus.integration.test.ts; this file pins the logic. The base is made in memory from tar layers (the
// same code that reads a registry base keeps the same facts; assemble-base.test.ts reads a real registry).
import { describe, expect, test } from 'bun:test'
import { BaseFiles, layerFacts } from '../lib/image/base-files.ts'
import { copyRules } from '../lib/image/buildkit-rules.ts'
import { type FileOp, layerFiles, runFileOps, type SourceTree, Unsupported } from '../lib/image/copy.ts'
import { CopyFailure, DestFs, NeedBase } from '../lib/image/dest-fs.ts'
import { type LayerFile, readLayerData, readTar, treeFromLayers, writeLayer } from '../lib/image/layer.ts'
import { UnknownOwner } from '../lib/image/users.ts'
import { dir as d, file as f, hardlink, symlink as sym } from './helpers/layer-files.ts'

/** The builder: an agent tree with modes, owners, symlinks and a hard link, and loose files for globs. */
const BUILDER = [[
  d('agent-server'),
  d('agent-server/bin'),
  f('agent-server/bin/hard', 'hello', 0o750),
  hardlink('agent-server/bin/tool', 'agent-server/bin/hard', 0o750),
  sym('agent-server/bin/link', 'tool'),
  d('agent-server/lib', 0o700),
  d('agent-server/lib/sub', 0o755, 33, 44),
  f('agent-server/lib/sub/f', 'x'),
  f('agent-server/suid', 's', 0o4755),
  d('data'),
  f('data/a.txt', 'one', 0o644, 1234, 5678),
  f('data/b.txt', 'two'),
  f('data/c.bin', 'three'),
  sym('data/abs-link', '/data/a.txt'),
]]
/** The base: users, a sticky /tmp, a private home, an existing /srv (711, 7:8), a symlink to it, no /opt. */
const BASE = [
  [
    d('etc'),
    d('tmp', 0o1777),
    d('usr'),
    d('usr/share'),
    d('srv', 0o711, 7, 8),
    d('srv/x', 0o755, 7, 8),
    sym('lnk', '/srv'),
    d('home'),
  ],
  [
    f(
      'etc/passwd',
      'root:x:0:0:root:/root:/bin/sh\nagent:x:1000:1000::/home/agent:/bin/sh\nbig:x:1000680000:1000680000::/:/bin/sh\n',
    ),
    f('etc/group', 'root:x:0:\nagent:x:1000:\nteam:x:2000:agent\n'),
    d('home/agent', 0o700, 1000, 1000),
  ],
]

function source(layers: LayerFile[][]): SourceTree {
  const blobs = layers.map((l) => writeLayer(l, { addParents: false }).gzip)
  return {
    digest: 'sha256:builder',
    tree: treeFromLayers(blobs),
    data: (k) => readLayerData(blobs, new Set([k])).get(k),
  }
}
const baseOf = (layers: LayerFile[][], allRead = true) =>
  new BaseFiles(
    layers.map((l) => layerFacts(readTar(writeLayer(l, { addParents: false }).tar, () => true))).reverse(),
    allRead,
  )

/** Runs the ops on BASE with BuildKit `version`'s rules; the layer as "path type mode uid:gid [→ link]" lines. */
function run(ops: FileOp[], version: string | null = '0.8', base = BASE): string[] {
  const fs = new DestFs(baseOf(base))
  runFileOps(fs, ops, new Map([['builder', source(BUILDER)]]), copyRules(version ?? undefined))
  return layerFiles(fs).map((x) =>
    `${x.path} ${x.type} ${x.mode.toString(8)} ${x.uid}:${x.gid}${x.linkname ? ` → ${x.linkname}` : ''}`
  )
}
const copy = (sources: string[], dest: string, more: Partial<Extract<FileOp, { kind: 'copy' }>> = {}): FileOp => ({
  kind: 'copy',
  source: 'builder',
  sources,
  dest,
  ...more,
})

describe('where COPY puts files, and with which owner and mode', () => {
  test('parents a COPY --chown creates are owned by the --chown owner; the copied tree keeps modes, hard links and symlinks', () => {
    expect(run([copy(['/agent-server'], '/opt/tool/agent', { chown: '10001:10002' })])).toEqual([
      'opt dir 755 10001:10002',
      'opt/tool dir 755 10001:10002',
      'opt/tool/agent dir 755 10001:10002',
      'opt/tool/agent/bin dir 755 10001:10002',
      'opt/tool/agent/bin/hard file 750 10001:10002',
      'opt/tool/agent/bin/link symlink 777 10001:10002 → tool',
      'opt/tool/agent/bin/tool hardlink 750 10001:10002 → opt/tool/agent/bin/hard',
      'opt/tool/agent/lib dir 700 10001:10002',
      'opt/tool/agent/lib/sub dir 755 10001:10002',
      'opt/tool/agent/lib/sub/f file 644 10001:10002',
      'opt/tool/agent/suid file 4755 10001:10002',
    ])
  })

  test("parents the base has are listed with the base's owner and mode: /tmp stays 1777, a home stays 0700 and its user's", () => {
    expect(run([copy(['/agent-server/bin/hard'], '/tmp/agent/')])).toEqual([
      'tmp dir 1777 0:0',
      'tmp/agent dir 755 0:0',
      'tmp/agent/hard file 750 0:0',
    ])
    expect(run([copy(['/data/b.txt'], '/home/agent/.local/', { chown: 'agent:agent' })])).toEqual([
      'home dir 755 0:0',
      'home/agent dir 700 1000:1000',
      'home/agent/.local dir 755 1000:1000',
      'home/agent/.local/b.txt file 644 1000:1000',
    ])
  })

  test("a directory copied to a new path: that path is made 0755 (--chown's or root's), not with the source directory's mode", () => {
    expect(run([copy(['/agent-server/lib'], '/newlib')])).toEqual([
      'newlib dir 755 0:0',
      'newlib/sub dir 755 33:44',
      'newlib/sub/f file 644 0:0',
    ])
  })

  test("a directory copied onto an existing one leaves that directory's metadata alone; what lands inside takes the source's", () => {
    expect(run([copy(['/agent-server/lib'], '/srv', { chown: '1000:1000', chmod: 0o600 })])).toEqual([
      'srv dir 711 7:8',
      'srv/sub dir 600 1000:1000',
      'srv/sub/f file 600 1000:1000',
    ])
  })

  test('--chmod sets the mode of every copied member, directories too, but not of the parents it makes (BuildKit < 0.21)', () => {
    expect(run([copy(['/agent-server/lib'], '/opt/a/b', { chown: '1000:team', chmod: 0o640 })])).toEqual([
      'opt dir 755 1000:2000',
      'opt/a dir 755 1000:2000',
      'opt/a/b dir 755 1000:2000',
      'opt/a/b/sub dir 640 1000:2000',
      'opt/a/b/sub/f file 640 1000:2000',
    ])
    expect(() => run([copy(['/data/a.txt'], '/opt/x/', { chmod: 0o640 })], '0.21.0')).toThrow(Unsupported)
    expect(() => run([copy(['/data/a.txt'], '/srv/', { chmod: 0o640 })], '0.21.0')).not.toThrow()
  })

  test("--chmod and setuid: before BuildKit 0.13 the source's special bits stay; since, the --chmod value is the mode", () => {
    expect(run([copy(['/agent-server/suid'], '/srv/', { chmod: 0o755 })], '0.8')).toContain('srv/suid file 4755 0:0')
    expect(run([copy(['/agent-server/suid'], '/srv/', { chmod: 0o755 })], '0.13.0')).toContain('srv/suid file 755 0:0')
    expect(() => run([copy(['/agent-server/suid'], '/srv/', { chmod: 0o755 })], null)).toThrow('BuildKit version')
  })

  test('the destination: a trailing / is a directory, without one a file is renamed, an existing directory takes it inside', () => {
    expect(run([copy(['/data/a.txt'], '/r/renamed')])).toEqual(['r dir 755 0:0', 'r/renamed file 644 1234:5678'])
    expect(run([copy(['/data/b.txt'], '/srv')])).toEqual(['srv dir 711 7:8', 'srv/b.txt file 644 0:0'])
    expect(run([copy(['/data/b.txt'], '/lnk/y/')])).toEqual([
      'srv dir 711 7:8',
      'srv/y dir 755 0:0',
      'srv/y/b.txt file 644 0:0',
    ])
  })

  test('wildcards: matches in order into a directory; one match without / is a file; several without / leave the last; none copy nothing', () => {
    expect(run([copy(['/data/*.txt'], '/g/')])).toEqual([
      'g dir 755 0:0',
      'g/a.txt file 644 1234:5678',
      'g/b.txt file 644 0:0',
    ])
    expect(run([copy(['/data/a*'], '/g')])).toEqual(['g file 644 1234:5678'])
    expect(run([copy(['/data/*.txt'], '/g2')])).toEqual(['g2 file 644 0:0'])
    expect(run([copy(['/data/*.none'], '/e/')])).toEqual([])
  })

  test('a symlink named as a source is followed (its target copied under its name); symlinks inside a directory stay links', () => {
    expect(run([copy(['/data/abs-link'], '/s/')])).toEqual(['s dir 755 0:0', 's/abs-link file 644 1234:5678'])
    expect(run([copy(['/agent-server/bin'], '/b')])).toContain('b/link symlink 777 0:0 → tool')
  })

  test('a hard link pair is one file only within one source: named as two sources, they are two files', () => {
    expect(run([copy(['/agent-server/bin/hard', '/agent-server/bin/tool'], '/h/')])).toEqual([
      'h dir 755 0:0',
      'h/hard file 750 0:0',
      'h/tool file 750 0:0',
    ])
  })
})

describe('owners by name, failures, WORKDIR', () => {
  test("names come from the base's /etc/passwd and /etc/group; a user alone takes its passwd group", () => {
    expect(run([copy(['/data/b.txt'], '/u/', { chown: 'agent' })])).toContain('u/b.txt file 644 1000:1000')
    expect(run([copy(['/data/b.txt'], '/u/', { chown: 'agent:team' })])).toContain('u/b.txt file 644 1000:2000')
    expect(run([copy(['/data/b.txt'], '/u/', { chown: 'big' })])).toContain('u/b.txt file 644 1000680000:1000680000')
  })

  test("a name the base does not know stops the image with docker's words (BuildKit would make it root's)", () => {
    expect(() => run([copy(['/data/b.txt'], '/u/', { chown: 'ghost' })])).toThrow(
      new UnknownOwner('unable to find user ghost: no matching entries in passwd file'),
    )
    expect(() => run([copy(['/data/b.txt'], '/u/', { chown: 'agent:ghosts' })])).toThrow('unable to find group ghosts')
  })

  test('a file over a base directory, or a directory over a base file, fails as docker build fails', () => {
    expect(() => run([copy(['/data/a.txt'], '/srv/x')])).not.toThrow() // an existing directory takes the file inside
    expect(() => run([copy(['/agent-server'], '/etc/passwd')])).toThrow(CopyFailure)
    expect(() => run([copy(['/agent-server/lib'], '/srv/'), copy(['/data/a.txt'], '/srv/sub')])).not.toThrow()
    expect(() => run([copy(['/data'], '/srv/'), copy(['/agent-server/lib'], '/srv/a.txt/')])).toThrow(CopyFailure)
  })

  test('WORKDIR makes missing directories owned by the USER in effect and leaves an existing one alone', () => {
    expect(run([{ kind: 'workdir', path: '/work/dir', user: 'agent' }])).toEqual([
      'work dir 755 1000:1000',
      'work/dir dir 755 1000:1000',
    ])
    expect(run([{ kind: 'workdir', path: '/w3', user: '4242:4343' }])).toEqual(['w3 dir 755 4242:4343'])
    expect(run([{ kind: 'workdir', path: '/srv/x', user: 'agent' }])).toEqual([])
  })

  test('a question the base has not answered yet stops the run with the path to ask (it is read again, then)', () => {
    const fs = new DestFs(new BaseFiles([], false)) // nothing read yet
    const ops = [copy(['/data/b.txt'], '/u/', { chown: 'agent' })]
    expect(() => runFileOps(fs, ops, new Map([['builder', source(BUILDER)]]), copyRules('0.8'))).toThrow(NeedBase)
  })
})
