// The order a run takes its instances in. The pipeline decides it, not the input file: instances that share big
// upstream layers (a group, lib/fleet/groups.ts) run together, a group at a time, so each shared environment is
// pulled once and can be evicted as soon as its group is done. Within a group the instances file's order holds;
// the order of groups depends only on the set of instances, so a resumed run and every shard agree.
// `--order input` keeps the instances file's order (groups are still reported).
import { formatBytes } from '../cli/size.ts'
import { type Group, groupInstances, type Layer } from './groups.ts'
import type { Instance } from './instances.ts'

export type Order = 'groups' | 'input'
export type Schedule = { order: Instance[]; groups: Group[]; by: Order }

export function scheduleFleet(
  instances: Instance[],
  layersOf: (i: Instance) => Layer[] | undefined,
  by: Order,
): Schedule {
  const groups = groupInstances(instances, layersOf)
  return { order: by === 'groups' ? groups.flatMap((g) => g.members) : instances, groups, by }
}

/** How a group is known, in words: its shared layers, or the row/id/upstream it fell back to. */
function source(g: Group): string {
  if (g.shared.length) return `${g.shared.length} shared layers, ${formatBytes(g.sharedBytes)}`
  return g.key.replace(/^env:/, 'environment ').replace(/^upstream:/, 'upstream ')
}

/** The schedule as log lines: one per group, in the order they run (long fleets: the first and last few). */
export function describeSchedule(s: Schedule, max = 40): string[] {
  const lines = s.groups.map((g, k) =>
    `  ${k + 1}. ${g.members.length} instance${g.members.length === 1 ? '' : 's'} (${source(g)}): ${g.members[0].id}${
      g.members.length > 1 ? ` … ${g.members[g.members.length - 1].id}` : ''
    }`
  )
  const shown = lines.length > max
    ? [...lines.slice(0, max - 5), `  … ${lines.length - max + 5} more groups …`, ...lines.slice(-5)]
    : lines
  const head = s.by === 'groups'
    ? `schedule: ${s.groups.length} group${
      s.groups.length === 1 ? '' : 's'
    }, run a group at a time (--order input keeps the file's order)`
    : `schedule: the instances file's order (--order input); ${s.groups.length} groups share layers`
  return [head, ...shown]
}
