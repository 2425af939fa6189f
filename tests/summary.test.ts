// The summary's wording (lib/run/summary.ts): counts read as English, the builder is named once.
import { describe, expect, test } from 'bun:test'
import type { ManifestRecord } from '../lib/run/records.ts'
import { registryLine, summarizeFacts, summaryMarkdown } from '../lib/run/summary.ts'

const record = (phase: ManifestRecord['phase'], id: string, status: ManifestRecord['status']): ManifestRecord => ({
  phase,
  id,
  tag: `r/${phase}:k`,
  status,
  reason: status === 'failed' ? 'base name (${BASE_IMAGE}) should not be blank' : 'built',
  attempts: 1,
  started_at: '2026-01-01T00:00:00.000Z',
  finished_at: '2026-01-01T00:00:01.000Z',
  seconds: 1,
  log: `logs/${phase}/${id}.log`,
  ...(status === 'failed' ? { error_class: 'build_error' as const } : {}),
})

const facts = (records: ManifestRecord[], instances: number) =>
  summarizeFacts({
    records,
    cleanups: [],
    startedAt: '2026-01-01T00:00:00.000Z',
    wallSeconds: 1,
    peakUsed: 0,
    minFree: null,
    instances,
    key: 'k',
  })

describe('summary wording', () => {
  test('one instance, one image: singular nouns', () => {
    const md = summaryMarkdown(facts([record('base', 'a__b-1', 'built')], 1))
    expect(md).toStartWith('## imagefleet: 1 instance (key `k`)')
    expect(md).toContain('### Slowest 1 image\n')
    expect(registryLine({ images: 1, bytesUploaded: 0, mounted: 1, copied: 0, present: 0, notes: [] })).toStartWith(
      'Assembled in the registry: 1 image, 0 B uploaded, 1 blob mounted',
    )
  })

  test('the builder row is "builder", not "builder `builder`"', () => {
    const md = summaryMarkdown(facts([record('builder', 'builder', 'failed')], 2))
    expect(md).toStartWith('## imagefleet: 2 instances')
    expect(md).toContain('| builder | build_error | base name (${BASE_IMAGE}) should not be blank |')
  })
})
