// What a run wrote, read back strictly: every line of a .jsonl file (manifest.jsonl, disk.jsonl) parsed; an empty
// file, a blank line or a line that is not JSON throws. lib/run/records.ts readJsonl skips such lines on purpose (a run cut short may
// leave half a line); a test reads what the run must have written whole.
import fs from 'node:fs'

/** Untyped unless asked (`jsonLines<ManifestRecord>(…)`), as `JSON.parse` gives: tests read fields records may lack. */
// deno-lint-ignore no-explicit-any
export function jsonLines<T = any>(file: string): T[] {
  return fs.readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as T)
}
