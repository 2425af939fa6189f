// The tar format, just enough for image layers: read ustar/PAX/GNU (long names, base-256 numbers),
// write deterministic ustar with PAX records only where ustar cannot say it.

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

/**
 * Iterates the members of an uncompressed tar. PAX (`x`) and GNU long-name (`L`/`K`) headers are folded
 * into the member they describe. Data is copied out only when `keepData(path)` says so.
 */
export function* readTar(tar: Uint8Array, keepData: (path: string) => boolean = () => false): Generator<TarEntry> {
  let at = 0
  let pax: Record<string, string> = {}
  let longName: string | undefined
  let longLink: string | undefined
  while (at + BLOCK <= tar.length) {
    const h = tar.subarray(at, at + BLOCK)
    if (h.every((b) => b === 0)) break
    const flag = String.fromCharCode(h[156])
    const meta = 'xgLK'.includes(flag)
    const size = !meta && pax.size ? Number(pax.size) : number(h, 124, 12)
    const dataStart = at + BLOCK
    const data = tar.subarray(dataStart, dataStart + size)
    at = dataStart + Math.ceil(size / BLOCK) * BLOCK
    if (flag === 'x') {
      pax = { ...pax, ...paxRecords(data) }
      continue
    }
    if (flag === 'g') continue
    if (flag === 'L') {
      longName = text(data, 0, data.length)
      continue
    }
    if (flag === 'K') {
      longLink = text(data, 0, data.length)
      continue
    }
    const prefix = text(h, 257, 6).startsWith('ustar') ? text(h, 345, 155) : ''
    const name = pax.path ?? longName ?? (prefix ? `${prefix}/${text(h, 0, 100)}` : text(h, 0, 100))
    const type = TYPES[flag] ?? 'other'
    const path = cleanPath(name)
    const entry: TarEntry = {
      path,
      type,
      size,
      mode: number(h, 100, 8) & 0o7777,
      uid: pax.uid ? Number(pax.uid) : number(h, 108, 8),
      gid: pax.gid ? Number(pax.gid) : number(h, 116, 8),
      mtime: pax.mtime ? Math.floor(Number(pax.mtime)) : number(h, 136, 12),
    }
    if (type === 'symlink' || type === 'hardlink') entry.linkname = pax.linkpath ?? longLink ?? text(h, 157, 100)
    if (type === 'file' && keepData(path)) entry.data = data.slice()
    pax = {}
    longName = longLink = undefined
    yield entry
  }
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

function header(
  name: string,
  type: string,
  mode: number,
  uid: number,
  gid: number,
  size: number,
  mtime: number,
  linkname = '',
): Uint8Array {
  const h = new Uint8Array(BLOCK)
  const put = (value: string, start: number, length: number) => h.set(encoder.encode(value).subarray(0, length), start)
  put(name, 0, 100)
  put(octal(mode, 8), 100, 8)
  put(octal(uid, 8), 108, 8)
  put(octal(gid, 8), 116, 8)
  put(octal(size, 12), 124, 12)
  put(octal(mtime, 12), 136, 12)
  put('        ', 148, 8)
  put(type, 156, 1)
  put(linkname, 157, 100)
  put('ustar\0' + '00', 257, 8)
  let sum = 0
  for (const b of h) sum += b
  put(octal(sum, 7) + ' ', 148, 8)
  return h
}

const fits = (s: string) => encoder.encode(s).length <= 100 && /^[\x20-\x7e]*$/.test(s)
const padded = (data: Uint8Array) => {
  const out = new Uint8Array(Math.ceil(data.length / BLOCK) * BLOCK)
  out.set(data)
  return out
}

/**
 * Writes members in the order given, each with the given mtime; directories get a trailing `/`.
 * Names or link targets longer than 100 bytes (or non-ASCII) go in a PAX record. Ends with two zero blocks.
 */
export function writeTar(entries: TarEntry[], mtime = 0): Uint8Array {
  const parts: Uint8Array[] = []
  for (const e of entries) {
    const name = e.type === 'dir' ? `${e.path}/` : e.path
    const link = e.linkname ?? ''
    const records: Record<string, string> = {}
    if (!fits(name)) records.path = name
    if (!fits(link)) records.linkpath = link
    if (Object.keys(records).length) {
      const body = paxBlock(records)
      const paxName = `PaxHeaders/${name.split('/').filter(Boolean).pop() ?? ''}`.slice(0, 99)
      parts.push(header(paxName.replace(/[^\x20-\x7e]/g, '_'), 'x', 0o644, 0, 0, body.length, mtime), padded(body))
    }
    const flag = { file: '0', dir: '5', symlink: '2', hardlink: '1', other: '0' }[e.type]
    const data = e.type === 'file' ? e.data ?? new Uint8Array(0) : new Uint8Array(0)
    const ascii = (s: string) => (fits(s) ? s : s.replace(/[^\x20-\x7e]/g, '_').slice(-100))
    parts.push(header(ascii(name), flag, e.mode, e.uid, e.gid, data.length, mtime, ascii(link)), padded(data))
  }
  parts.push(new Uint8Array(BLOCK * 2))
  const total = parts.reduce((n, p) => n + p.length, 0)
  const out = new Uint8Array(total)
  let at = 0
  for (const p of parts) {
    out.set(p, at)
    at += p.length
  }
  return out
}
