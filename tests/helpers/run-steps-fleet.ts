// A small fleet whose Dockerfiles have RUN steps, on a sandbox: a builder stage FROM the seed image that writes
// /opt/agent/VERSION, a base stage FROM each instance's upstream (the seed) that writes /etc/base, and an assemble
// Dockerfile that copies the agent in. `baseDefault` is the `ARG BASE_IMAGE` line's default (none: the contract case).
import fs from 'node:fs'
import path from 'node:path'

export function writeRunStepsFleet(
  context: string,
  o: { seedImage: string; ids: string[]; baseDefault?: string },
): { context: string; instances: string } {
  fs.mkdirSync(context)
  const baseArg = o.baseDefault === undefined ? 'ARG BASE_IMAGE' : `ARG BASE_IMAGE=${o.baseDefault}`
  fs.writeFileSync(
    path.join(context, 'Dockerfile'),
    `${baseArg}\nFROM ${o.seedImage} AS builder\nRUN mkdir -p /opt/agent && echo agent > /opt/agent/VERSION\n` +
      'FROM ${BASE_IMAGE} AS base\nRUN echo base > /etc/base\n',
  )
  fs.writeFileSync(
    path.join(context, 'Dockerfile.assemble'),
    'ARG BASE_IMAGE\nARG BUILDER_IMAGE\nFROM ${BUILDER_IMAGE} AS builder\nFROM ${BASE_IMAGE}\nCOPY --from=builder /opt/agent /opt/agent\n',
  )
  const instances = path.join(context, 'instances.jsonl')
  fs.writeFileSync(instances, o.ids.map((id) => JSON.stringify({ id, upstream: o.seedImage })).join('\n'))
  return { context, instances }
}
