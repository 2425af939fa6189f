// The Dockerfile contract (lib/fleet/dockerfile-contract.ts), checked before anything is built: what each FROM
// needs, what the builder build gets, and the problems named with their fixes. The real engine's side is in
// dockerfile-contract.integration.test.ts.
import { describe, expect, test } from 'bun:test'
import { builderBuildArgs, contractProblems, readDockerfile } from '../lib/fleet/dockerfile-contract.ts'

type Options = Parameters<typeof contractProblems>[2]
const MAIN: Options = { given: ['BASE_IMAGE'], buildArgs: [], builder: 'builder' }
const check = (text: string, o: Options = MAIN) => contractProblems('Dockerfile', readDockerfile(text), o)

describe('the Dockerfile contract', () => {
  test('ARG BASE_IMAGE without a default: accepted, and the builder build gets BASE_IMAGE=scratch', () => {
    const text =
      'ARG BASE_IMAGE\nFROM busybox AS builder\nRUN true\nFROM ${BASE_IMAGE} AS base\nCOPY --from=builder /x /x\n'
    expect(check(text)).toEqual([])
    expect(builderBuildArgs(readDockerfile(text), [])).toEqual(['BASE_IMAGE=scratch'])
  })

  test('with a default, or a --build-arg BASE_IMAGE, the builder build gets nothing extra', () => {
    expect(builderBuildArgs(readDockerfile('ARG BASE_IMAGE=scratch\nFROM ${BASE_IMAGE} AS base\n'), [])).toEqual([])
    expect(builderBuildArgs(readDockerfile('ARG BASE_IMAGE\nFROM ${BASE_IMAGE} AS base\n'), ['BASE_IMAGE=x'])).toEqual(
      [],
    )
  })

  test('a builder that needs ${BASE_IMAGE} (directly or through COPY --from) is refused: it is built once for all', () => {
    const direct = 'ARG BASE_IMAGE\nFROM ${BASE_IMAGE} AS builder\nFROM ${BASE_IMAGE} AS base\n'
    expect(check(direct)).toEqual([
      "Dockerfile line 2: FROM ${BASE_IMAGE}: the builder stage 'builder' needs it, but BASE_IMAGE is each instance's image and the builder is built once for all → build the builder FROM a fixed image (or give `ARG BASE_IMAGE` a default)",
    ])
    const through = 'ARG BASE_IMAGE\nFROM ${BASE_IMAGE} AS env\nFROM busybox AS builder\nCOPY --from=env /x /x\n' +
      'FROM env AS base\n'
    expect(check(through)).toHaveLength(1)
    expect(check(through)[0]).toStartWith("Dockerfile line 2: FROM ${BASE_IMAGE}: the builder stage 'builder' needs it")
  })

  test('another ARG without a default needs a --build-arg, named with both fixes, once', () => {
    const text = 'ARG SEED_IMAGE\nARG BASE_IMAGE=scratch\nFROM ${SEED_IMAGE} AS builder\nFROM ${BASE_IMAGE} AS base\n'
    expect(check(text)).toEqual([
      'Dockerfile line 3: FROM ${SEED_IMAGE} needs SEED_IMAGE, but `ARG SEED_IMAGE` has no default and no --build-arg SEED_IMAGE=… is given → give it a default (`ARG SEED_IMAGE=IMAGE`) or pass --build-arg SEED_IMAGE=IMAGE',
    ])
    expect(check(text, { ...MAIN, buildArgs: ['SEED_IMAGE=busybox'] })).toEqual([])
  })

  test('a FROM variable that is not a global ARG can never get a value', () => {
    expect(check('FROM busybox AS builder\nFROM ${BASE_IMAGE} AS base\n')).toEqual([
      'Dockerfile line 2: FROM ${BASE_IMAGE} uses BASE_IMAGE, which is not a global ARG → declare `ARG BASE_IMAGE` before the first FROM',
    ])
  })

  test('the assemble Dockerfile gets BASE_IMAGE and BUILDER_IMAGE', () => {
    const assemble = 'ARG BASE_IMAGE\nARG BUILDER_IMAGE\nFROM ${BUILDER_IMAGE} AS builder\nFROM ${BASE_IMAGE}\n'
    expect(check(assemble, { given: ['BASE_IMAGE', 'BUILDER_IMAGE'], buildArgs: [] })).toEqual([])
  })
})
