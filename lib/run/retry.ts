// --retry-failed: the instances whose last record in --out failed, rebuilt under the key of the run that failed
// them — never a new key for the retried few while the rest of the fleet stays on the old one.
import { UsageError } from '../cli/flags.ts'
import { count, report } from '../cli/report.ts'
import { type Fleet, keyOfTag, withKey } from '../fleet/fleet.ts'
import { dockerIdOf } from '../fleet/instances.ts'
import { type ManifestRecord, previousRecords } from './records.ts'

export type Retry = {
  /** the fleet to build: the failed instances, named under the retried run's key */
  fleet: Fleet
  /** the last record of every image in --out: the summary describes them with the retry's */
  earlier: ManifestRecord[]
}

/** The key of a record's tag (`REPO:KEY`, `REPO:KEY-DOCKER_ID`). */
const keyOf = (r: ManifestRecord) => keyOfTag(r.tag, r.phase === 'builder' ? undefined : dockerIdOf(r.id))

/**
 * The failed instances of the run in `out`, under its key. `key`: an explicit --key, refused when it is another.
 * @throws UsageError when `out` has no manifest, its failures carry several keys, or --key names another one.
 */
export function retryFailed(fleet: Fleet, out: string, key?: string): Retry {
  const last = [...previousRecords(out).values()]
  if (!last.length) {
    throw new UsageError(`--retry-failed: no manifest.jsonl in ${out} (run without it first, with the same --out)`)
  }
  const failed = last.filter((r) => r.status === 'failed' && r.phase !== 'builder')
  const keys = [...new Set((failed.length ? failed : last).map(keyOf).filter((k) => k !== undefined))]
  if (keys.length !== 1) {
    throw new UsageError(
      `--retry-failed: the last records in ${out} carry ${
        keys.length ? `keys ${keys.join(', ')}` : 'no key this fleet names'
      }: pass --key to say which run to retry`,
    )
  }
  const [kept] = keys
  if (key !== undefined && key !== kept) {
    throw new UsageError(
      `--retry-failed --key ${key}: the run in ${out} failed under key ${kept}; retrying its failures under ${key} ` +
        `would split the fleet between two keys → drop --key (the retry keeps ${kept}), or build the whole fleet under ` +
        `${key} without --retry-failed`,
    )
  }
  if (kept !== fleet.key) {
    report.warn(
      `--retry-failed keeps key ${kept}, the key of the run in ${out}: the Dockerfiles and build args now make key ` +
        `${fleet.key}. The failed instances are rebuilt under ${kept}, next to the images already there; to build the ` +
        `whole fleet under ${fleet.key}, run without --retry-failed`,
    )
  } else report.info(`--retry-failed: key ${kept}, the key of the run in ${out}`)
  const ids = new Set(failed.map((r) => r.id))
  const retried = fleet.instances.filter((i) => ids.has(i.id))
  report.info(`--retry-failed: ${retried.length} of ${count(fleet.instances.length, 'instance')} failed last time`)
  return { fleet: { ...withKey(fleet, kept), instances: retried }, earlier: last }
}
