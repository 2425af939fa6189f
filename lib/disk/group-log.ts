// The run log's account per group: once a group's last image is done, what the disk budget predicted for it against
// what the disk took meanwhile, and the learned model (issue 10: "the budget's prediction and its real/predicted
// ratio are logged per group").
import { formatBytes } from '../cli/size.ts'
import { report } from '../cli/report.ts'
import type { Group } from '../fleet/groups.ts'
import type { Instance } from '../fleet/instances.ts'
import type { Run } from '../run/records.ts'
import type { DiskBudget } from './budget.ts'

/**
 * Per group, once its last image is done: what the budget predicted for it against what the disk lost meanwhile
 * (groups next to each other overlap at their edges, so this is the group's share plus its neighbours' edges).
 */
export class GroupLog {
  private readonly of = new Map<Instance, Group>()
  private readonly state = new Map<Group, { left: number; predicted: number; consumedAtStart?: number }>()

  constructor(groups: Group[], private readonly disk: DiskBudget, private readonly run: Run) {
    for (const g of groups) {
      for (const m of g.members) this.of.set(m, g)
      this.state.set(g, { left: g.members.length, predicted: 0 })
    }
  }

  admitted(inst: Instance): void {
    const st = this.state.get(this.of.get(inst)!)
    if (st && st.consumedAtStart === undefined) st.consumedAtStart = this.disk.consumed()
  }

  done(inst: Instance, cost: number): void {
    const g = this.of.get(inst)
    const st = g && this.state.get(g)
    if (!g || !st) return
    st.predicted += cost
    if (--st.left > 0) return
    const measured = this.disk.consumed() - (st.consumedAtStart ?? 0)
    const ratio = st.predicted > 0 ? (measured / st.predicted).toFixed(2) : 'n/a'
    const line = `group ${g.key}: ${g.members.length} images, predicted ${formatBytes(st.predicted)}, the disk took ` +
      `${formatBytes(measured)} meanwhile (real/predicted ${ratio}); learned r=${this.disk.model.r.toFixed(2)} k=${
        formatBytes(this.disk.model.k)
      }`
    this.run.sample(`budget ${line}`)
    report.dim(line)
  }
}
