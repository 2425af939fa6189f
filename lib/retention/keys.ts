// A fleet's keys, newest first (see retention.ts for the rule), and the key of a tag.
import pMap from 'p-map'
import type { Reader } from './read.ts'

/** A plan that must not go ahead (the keys cannot be ordered): nothing is deleted. */
export class RetentionError extends Error {}

type Listed = { digest: string; tags: string[] }

/** Keys newest first (by config `created`), the newest `n` kept; refuses a tie or an unknown time across the cut. */
export async function orderKeys(
  fleet: { builder: string; keyed: string[] },
  versions: Map<string, Listed[]>,
  read: Reader,
  n: number,
): Promise<Array<{ key: string; created?: string; keep: boolean }>> {
  const builderTags = versions.get(fleet.builder)!.flatMap((v) => v.tags.map((t) => ({ key: t, v })))
  const named = new Set(builderTags.map((b) => b.key))
  const keyOf = keyReader([...named], fleet.builder)
  const firstOf = new Map<string, { repository: string; digest: string }>()
  for (const r of fleet.keyed.slice(1)) {
    for (const v of versions.get(r)!) {
      for (const t of [...v.tags].sort()) {
        if (!firstOf.has(keyOf(r, t))) firstOf.set(keyOf(r, t), { repository: r, digest: v.digest })
      }
    }
  }
  const all = [...new Set([...named, ...firstOf.keys()])]
  const dated = await pMap(all, async (key) => {
    const b = builderTags.find((x) => x.key === key)
    const at = b ? { repository: fleet.builder, digest: b.v.digest } : firstOf.get(key)!
    return { key, built: Boolean(b), created: await read.created(at.repository, at.digest) }
  }, { concurrency: 8 })
  dated.sort((a, b) =>
    Number(b.built) - Number(a.built) || (b.created ?? '').localeCompare(a.created ?? '') || a.key.localeCompare(b.key)
  )
  const last = dated[n - 1]
  const first = dated[n]
  if (first?.built && (!first.created || first.created === last?.created)) {
    throw new RetentionError(
      `cannot tell which keys are the newest ${n}: ${last.key} and ${first.key} were created at ${
        first.created ?? 'an unknown time'
      } (builds with SOURCE_DATE_EPOCH write one fixed time); nothing deleted`,
    )
  }
  return dated.map(({ key, created }, i) => ({ key, created, keep: i < n }))
}

/** The key of a tag: eval-builder:KEY; eval-base/eval-agent:KEY-DOCKER_ID (the longest known key, else up to the first -). */
export function keyReader(keys: string[], builder: string) {
  const longestFirst = [...keys].sort((a, b) => b.length - a.length)
  return (repository: string, tag: string) =>
    repository === builder ? tag : longestFirst.find((k) => tag.startsWith(`${k}-`)) ?? tag.split('-')[0]
}
