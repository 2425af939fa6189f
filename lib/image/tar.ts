// The tar format, as image layers use it: read ustar/PAX/GNU (long names, base-256 numbers) from a stream, write
// deterministic ustar with PAX records only where ustar cannot say it (long or non-ASCII names, large ids and sizes).
//
// Hand-written, not tar-stream (npm), after trying it under Bun and Deno (issue 15). Two cases decided it:
// - Speed where it matters: registry assembly walks the headers of whole base layers to prove a path absent. Over a
//   100 MB layer tar-stream took 580–760 ms; gunzip alone takes 82–137 ms, and this reader skips file bodies without
//   copying them, so the walk costs little more than the gunzip (tests/layer.test.ts measures nothing; the bench does).
// - Large ids: tar-stream's packer writes uid 1000680000 as 7777777 (2097151) with no PAX record unless the caller
//   builds the record itself, and its extractor leaves header.uid at the ustar field even when a PAX uid follows.
//   Both rules are ours either way (PAX_LIMITS below), and they are ~40 lines.

export type TarType = 'file' | 'dir' | 'symlink' | 'hardlink' | 'other'
/** One archive member. `path` has no leading `/` or `./` and no trailing `/`. `data` only when asked for. */
export type TarEntry = {
  path: string
  type: TarType
  mode: number
  uid: number
  gid: number
  size: number
  mtime: number
  linkname?: string
  data?: Uint8Array
}

const BLOCK = 512
const decoder = new TextDecoder()
const encoder = new TextEncoder()
const TYPES: Record<string, TarType> = {
  '0': 'file',
  '\0': 'file',
  '7': 'file',
  '1': 'hardlink',
  '2': 'symlink',
  '5': 'dir',
}
/** Largest value each numeric ustar field holds in octal; above it the value goes in a PAX record (as Go writes it). */
const PAX_LIMITS = { uid: 0o7777777, gid: 0o7777777, size: 0o77777777777 } as const

/** `./a/b/` → `a/b`; `/` and `.` → `` (the root). */
export function cleanPath(p: string): string {
  const parts: string[] = []
  for (const part of p.split('/')) {
    if (part === '' || part === '.') continue
    if (part === '..') parts.pop()
    else parts.push(part)
  }
  return parts.join('/')
}

function text(buf: Uint8Array, start: number, length: number): string {
  const slice = buf.subarray(start, start + length)
  const end = slice.indexOf(0)
  return decoder.decode(end < 0 ? slice : slice.subarray(0, end))
}

/** Octal, or GNU base-256 when the high bit of the first byte is set. */
function number(buf: Uint8Array, start: number, length: number): number {
  if (buf[start] & 0x80) {
    let n = buf[start] & 0x7f
    for (let i = 1; i < length; i++) n = n * 256 + buf[start + i]
    return n
  }
  const s = text(buf, start, length).trim()
  return s ? parseInt(s, 8) : 0
}

function paxRecords(data: Uint8Array): Record<string, string> {
  const out: Record<string, string> = {}
  let at = 0
  while (at < data.length) {
    const space = data.indexOf(0x20, at)
    if (space < 0) break
    const length = parseInt(decoder.decode(data.subarray(at, space)), 10)
    if (!(length > 0)) break
    const record = decoder.decode(data.subarray(space + 1, at + length - 1))
    const eq = record.indexOf('=')
    if (eq > 0) out[record.slice(0, eq)] = record.slice(eq + 1)
    at += length
  }
  return out
}

type Pending = { entry?: TarEntry; meta?: string; size: number; padding: number; keep: boolean; parts: Uint8Array[] }

/**
 * A streaming tar reader: feed it chunks in order; it calls `onEntry` for every member, with PAX (`x`, `g`) and GNU
 * long-name (`L`, `K`) headers folded in. File bodies are skipped unless `keepData(path)`; a member whose body is
 * skipped is reported at its header, so `onEntry` returning true (stop) saves reading the rest.
 */
export class TarReader {
  private header = new Uint8Array(BLOCK)
  private headerFill = 0
  private pending?: Pending
  private pax: Record<string, string> = {}
  private global: Record<string, string> = {}
  private longName?: string
  private longLink?: string
  /** True once the end-of-archive block was read or `onEntry` asked to stop. */
  done = false

  constructor(
    private readonly onEntry: (entry: TarEntry) => boolean | void,
    private readonly keepData: (path: string) => boolean = () => false,
  ) {}

  /** Consumes one chunk; returns false once done (the caller may stop feeding). */
  push(chunk: Uint8Array): boolean {
    let at = 0
    while (at < chunk.length && !this.done) {
      if (this.pending) at = this.body(chunk, at)
      else {
        const take = Math.min(BLOCK - this.headerFill, chunk.length - at)
        this.header.set(chunk.subarray(at, at + take), this.headerFill)
        this.headerFill += take
        at += take
        if (this.headerFill === BLOCK) {
          this.headerFill = 0
          this.startMember(this.header)
        }
      }
    }
    return !this.done
  }

  private body(chunk: Uint8Array, at: number): number {
    const p = this.pending!
    if (p.size > 0) {
      const take = Math.min(p.size, chunk.length - at)
      if (p.keep) p.parts.push(chunk.slice(at, at + take))
      p.size -= take
      at += take
      if (p.size === 0) this.finishBody(p)
      return at
    }
    const skip = Math.min(p.padding, chunk.length - at)
    p.padding -= skip
    if (p.padding === 0) this.pending = undefined
    return at + skip
  }

  private startMember(h: Uint8Array): void {
    if (h.every((b) => b === 0)) {
      this.done = true
      return
    }
    const flag = String.fromCharCode(h[156])
    const meta = 'xgLK'.includes(flag)
    const records = { ...this.global, ...this.pax }
    const size = !meta && records.size ? Number(records.size) : number(h, 124, 12)
    const pending: Pending = { size, padding: (BLOCK - (size % BLOCK)) % BLOCK, keep: meta, parts: [] }
    if (meta) pending.meta = flag
    else {
      const entry = this.entryOf(h, flag, size, records)
      pending.entry = entry
      pending.keep = entry.type === 'file' && size > 0 && this.keepData(entry.path)
      if (!pending.keep) this.emit(entry)
    }
    this.pending = pending
    if (size === 0) this.finishBody(pending)
  }

  private entryOf(h: Uint8Array, flag: string, size: number, pax: Record<string, string>): TarEntry {
    const prefix = text(h, 257, 6).startsWith('ustar') ? text(h, 345, 155) : ''
    const name = pax.path ?? this.longName ?? (prefix ? `${prefix}/${text(h, 0, 100)}` : text(h, 0, 100))
    const type = TYPES[flag] ?? 'other'
    const entry: TarEntry = {
      path: cleanPath(name),
      type,
      size: type === 'file' ? size : 0,
      mode: number(h, 100, 8) & 0o7777,
      uid: pax.uid ? Number(pax.uid) : number(h, 108, 8),
      gid: pax.gid ? Number(pax.gid) : number(h, 116, 8),
      mtime: pax.mtime ? Math.floor(Number(pax.mtime)) : number(h, 136, 12),
    }
    if (type === 'symlink' || type === 'hardlink') entry.linkname = pax.linkpath ?? this.longLink ?? text(h, 157, 100)
    this.pax = {}
    this.longName = this.longLink = undefined
    return entry
  }

  private finishBody(p: Pending): void {
    const data = concat(p.parts)
    if (p.meta === 'x') this.pax = { ...this.pax, ...paxRecords(data) }
    else if (p.meta === 'g') this.global = { ...this.global, ...paxRecords(data) }
    else if (p.meta === 'L') this.longName = text(data, 0, data.length)
    else if (p.meta === 'K') this.longLink = text(data, 0, data.length)
    else if (p.keep) this.emit({ ...p.entry!, data })
    if (p.padding === 0) this.pending = undefined
  }

  private emit(entry: TarEntry): void {
    if (this.onEntry(entry) === true) this.done = true
  }
}

function concat(parts: Uint8Array[]): Uint8Array {
  if (parts.length === 1) return parts[0]
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0))
  let at = 0
  for (const p of parts) {
    out.set(p, at)
    at += p.length
  }
  return out
}

/** Every member of an uncompressed tar in memory; bodies only where `keepData(path)` says so. */
export function readTar(tar: Uint8Array, keepData: (path: string) => boolean = () => false): TarEntry[] {
  const entries: TarEntry[] = []
  new TarReader((e) => void entries.push(e), keepData).push(tar)
  return entries
}

const octal = (n: number, width: number) => n.toString(8).padStart(width - 1, '0') + '\0'

function paxBlock(records: Record<string, string>): Uint8Array {
  let body = ''
  for (const [key, value] of Object.entries(records)) {
    const rest = ` ${key}=${value}\n`
    const restBytes = encoder.encode(rest).length
    let length = restBytes + 1
    while (String(length).length + restBytes !== length) length = String(length).length + restBytes
    body += `${length}${rest}`
  }
  return encoder.encode(body)
}

type Header = { name: string; type: string; mode: number; uid: number; gid: number; size: number; mtime: number }

function header(f: Header, linkname = ''): Uint8Array {
  const h = new Uint8Array(BLOCK)
  const put = (value: string, start: number, length: number) => h.set(encoder.encode(value).subarray(0, length), start)
  put(f.name, 0, 100)
  put(octal(f.mode, 8), 100, 8)
  put(octal(f.uid, 8), 108, 8)
  put(octal(f.gid, 8), 116, 8)
  put(octal(f.size, 12), 124, 12)
  put(octal(f.mtime, 12), 136, 12)
  put('        ', 148, 8)
  put(f.type, 156, 1)
  put(linkname, 157, 100)
  put('ustar\0' + '00', 257, 8)
  let sum = 0
  for (const b of h) sum += b
  put(octal(sum, 7) + ' ', 148, 8)
  return h
}

const fits = (s: string) => encoder.encode(s).length <= 100 && /^[\x20-\x7e]*$/.test(s)
const ascii = (s: string) => (fits(s) ? s : s.replace(/[^\x20-\x7e]/g, '_').slice(-100))
const padded = (data: Uint8Array) => {
  const out = new Uint8Array(Math.ceil(data.length / BLOCK) * BLOCK)
  out.set(data)
  return out
}
const FLAGS: Record<TarType, string> = { file: '0', dir: '5', symlink: '2', hardlink: '1', other: '0' }

/** The PAX records a member needs: what its ustar header cannot hold exactly. */
function paxFor(name: string, link: string, e: TarEntry, size: number): Record<string, string> {
  const records: Record<string, string> = {}
  if (!fits(name)) records.path = name
  if (!fits(link)) records.linkpath = link
  if (e.uid > PAX_LIMITS.uid) records.uid = String(e.uid)
  if (e.gid > PAX_LIMITS.gid) records.gid = String(e.gid)
  if (size > PAX_LIMITS.size) records.size = String(size)
  return records
}

/**
 * Writes members in the order given, each with the given mtime; directories get a trailing `/`. What ustar cannot
 * hold goes in a PAX record before the member (its ustar field then holds 0, as Go's archive/tar writes it).
 * Ends with two zero blocks.
 */
export function writeTar(entries: TarEntry[], mtime = 0): Uint8Array {
  const parts: Uint8Array[] = []
  for (const e of entries) {
    const name = e.type === 'dir' ? `${e.path}/` : e.path
    const link = e.linkname ?? ''
    const data = e.type === 'file' ? e.data ?? new Uint8Array(0) : new Uint8Array(0)
    const records = paxFor(name, link, e, data.length)
    if (Object.keys(records).length) {
      const body = paxBlock(records)
      const paxName = `PaxHeaders/${name.split('/').filter(Boolean).pop() ?? ''}`.slice(0, 99)
      const pax = { name: ascii(paxName), type: 'x', mode: 0o644, uid: 0, gid: 0, size: body.length, mtime }
      parts.push(header(pax), padded(body))
    }
    const numbers = {
      uid: records.uid ? 0 : e.uid,
      gid: records.gid ? 0 : e.gid,
      size: records.size ? 0 : data.length,
    }
    parts.push(header({ name: ascii(name), type: FLAGS[e.type], mode: e.mode, mtime, ...numbers }, ascii(link)))
    parts.push(padded(data))
  }
  parts.push(new Uint8Array(BLOCK * 2))
  return concat(parts)
}
