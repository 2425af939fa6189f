// lastErrorLine (lib/run/error-line.ts): the line of a failed docker command's output that says why. The outputs
// below are the ends of real failures: Debian's docker 20.10 with BuildKit (the sandbox's client), and a buildx
// build of Docker 28 (its layout, with the Dockerfile excerpt).
import { describe, expect, test } from 'bun:test'
import { lastErrorLine } from '../lib/run/error-line.ts'

const BLANK_BASE = `#1 [internal] load build definition from Dockerfile
#1 sha256:11a1bc29f967b8ad7939cb2c8239cb68b887e417922bea52f41cb1fa85417119
#1 transferring dockerfile: 183B 0.0s done
#1 DONE 0.0s
failed to solve with frontend dockerfile.v0: failed to create LLB definition: base name (\${BASE_IMAGE}) should not be blank
`

const RUN_FAILED_20 = `#5 [base 2/2] RUN if [ -e /broken ]; then echo "this upstream is broken" >&2; exit 1; fi
#5 sha256:7510bef84b195329eaaed8839f921c2c38044861633509d5b9683f2383739ebe
#5 0.075 this upstream is broken
#5 ERROR: executor failed running [/bin/sh -c if [ -e /broken ]; then echo "this upstream is broken" >&2; exit 1; fi]: exit code: 1
------
 > [base 2/2] RUN if [ -e /broken ]; then echo "this upstream is broken" >&2; exit 1; fi:
------
executor failed running [/bin/sh -c if [ -e /broken ]; then echo "this upstream is broken" >&2; exit 1; fi]: exit code: 1
`

const RUN_FAILED_28 = `#6 [base 2/2] RUN pip install -e .
#6 1.204 Obtaining file:///testbed
#6 2.913 ERROR: No matching distribution found for numpy==99
#6 ERROR: process "/bin/sh -c pip install -e ." did not complete successfully: exit code: 1
------
 > [base 2/2] RUN pip install -e .:
2.913 ERROR: No matching distribution found for numpy==99
------
Dockerfile:5
--------------------
   3 |     FROM \${BASE_IMAGE} AS base
   4 |     WORKDIR /testbed
   5 | >>> RUN pip install -e .
   6 |     
--------------------
ERROR: failed to build: failed to solve: process "/bin/sh -c pip install -e ." did not complete successfully: exit code: 1
`

describe('the last meaningful error line', () => {
  test("BuildKit's wrappers go, the cause stays (docker 20.10)", () => {
    expect(lastErrorLine(BLANK_BASE)).toBe('base name (${BASE_IMAGE}) should not be blank')
  })

  test("a failed RUN: the executor's line with the step's own last output (docker 20.10)", () => {
    expect(lastErrorLine(RUN_FAILED_20)).toBe(
      'executor failed running [/bin/sh -c if [ -e /broken ]; then echo "this upstream is broken" >&2; exit 1; fi]: exit code: 1 (last output: this upstream is broken)',
    )
  })

  test('a failed RUN behind the Dockerfile excerpt and ERROR: prefixes (buildx, Docker 28)', () => {
    expect(lastErrorLine(RUN_FAILED_28)).toBe(
      'process "/bin/sh -c pip install -e ." did not complete successfully: exit code: 1 (last output: ERROR: No matching distribution found for numpy==99)',
    )
  })

  test('stderr first; stdout when stderr says nothing; undefined when neither does', () => {
    expect(lastErrorLine('denied: requested access to the resource is denied\n', 'abc123: Pushing 1.2MB\n')).toBe(
      'denied: requested access to the resource is denied',
    )
    expect(lastErrorLine('\n------\n', 'no such manifest: x\n')).toBe('no such manifest: x')
    expect(lastErrorLine('', '')).toBeUndefined()
  })

  test('a line too long for a table cell is cut at 300 characters', () => {
    const line = lastErrorLine(`failed to solve: ${'x'.repeat(1000)}`)!
    expect(line).toHaveLength(300)
    expect(line.endsWith('…')).toBe(true)
  })
})
