// Reading the engine's own answers (lib/engine/answers.ts, capabilities.ts) on the recorded engines of
// tests/fixtures/engines/: what each parser decides from what docker printed.
import { describe, expect, test } from 'bun:test'
import path from 'node:path'
import {
  helpFlags,
  parseBuildxInspect,
  parseBuildxVersion,
  parseInfo,
  parseVersion,
  totalBytes,
} from '../lib/engine/answers.ts'
import { boundFlag, onThisDisk, pruneFlagsOf } from '../lib/engine/capabilities.ts'
import { ENGINES_DIR, helpFile, readRecorded } from './helpers/engine-fixtures.ts'

const answer = (engine: string, file: string) => readRecorded(path.join(ENGINES_DIR, engine), file)!.body
const help = (engine: string, command: string) => helpFlags(answer(engine, helpFile(command)), command)

describe('engine answers', () => {
  test('docker version: client, daemon and API version', () => {
    expect(parseVersion(answer('docker-20.10', 'version.txt'))).toEqual({
      client: '20.10.24+dfsg1',
      server: '20.10.24+dfsg1',
      api: '1.41',
    })
    expect(parseVersion(answer('docker-29.7-containerd-buildx-0.31-docker', 'version.txt')).api).toBe('1.55')
    expect(parseVersion('Cannot connect to the Docker daemon')).toEqual({})
  })

  test('docker info: the containerd image store from DriverStatus driver-type, overlay2 otherwise', () => {
    const real = parseInfo(answer('docker-20.10', 'info.txt'))!
    expect(real).toMatchObject({ storageDriver: 'overlay2', imageStore: 'graphdriver' })
    expect(real.registryConfig?.InsecureRegistryCIDRs).toEqual(['127.0.0.0/8'])
    expect(parseInfo(answer('docker-29.7-containerd-buildx-0.31-docker', 'info.txt'))).toMatchObject({
      storageDriver: 'overlayfs',
      imageStore: 'containerd',
      dataRoot: '/var/lib/docker',
    })
    expect(parseInfo('not json')).toBeUndefined()
  })

  test('docker buildx version: the version, or none when buildx is not installed (the real 20.10 answer)', () => {
    expect(parseBuildxVersion(answer('docker-20.10', 'buildx-version.txt'))).toBeUndefined()
    expect(parseBuildxVersion(answer('docker-28.5-buildx-0.29-remote', 'buildx-version.txt'))).toBe('0.29.1')
  })

  test("docker buildx inspect: the builder's name and driver, its node's endpoint and BuildKit (both spellings)", () => {
    expect(parseBuildxInspect(answer('docker-28.5-buildx-0.29-remote', 'buildx-inspect.txt'))).toEqual({
      name: 'fleet-remote',
      driver: 'remote',
      endpoint: 'tcp://buildkitd.ci.internal:1234',
      status: 'running',
      buildkit: '0.25.2',
    })
    // buildx 0.11 says `Buildkit:`
    expect(parseBuildxInspect(answer('docker-24.0-buildx-0.11-docker', 'buildx-inspect.txt')).buildkit)
      .toBe('0.11.7-0.20240124010513-435cb77e369c')
  })

  test("--help: the flags a command lists; a client's top-level usage is not the command (real 20.10)", () => {
    expect(help('docker-20.10', 'builder prune')).toEqual([
      '--all',
      '--filter',
      '--force',
      '--keep-storage',
      '-a',
      '-f',
    ])
    expect(help('docker-20.10', 'buildx prune')).toBeUndefined() // exits 0 with `docker --help`'s text
    // buildx ≥ 0.18 hides the deprecated --keep-storage; 0.17 still lists it
    expect(help('docker-28.5-buildx-0.29-container', 'buildx prune')).not.toContain('--keep-storage')
    expect(help('docker-28.5-buildx-0.29-container', 'buildx prune')).toContain('--max-used-space')
    expect(help('docker-27.5-buildx-0.17-container', 'buildx prune')).toContain('--keep-storage')
    // Docker ≥ 23 with buildx: buildx answers `docker builder prune`
    expect(help('docker-29.7-containerd-buildx-0.31-docker', 'builder prune')).toContain('--reserved-space')
  })

  test('docker buildx du: the Total line in bytes', () => {
    expect(totalBytes(answer('docker-28.5-buildx-0.29-remote', 'buildx-du.txt'))).toBe(2.215e9)
    expect(totalBytes('Total reclaimed space: 0B')).toBe(0)
  })
})

describe('what an engine accepts', () => {
  test('the cap flag per prune command; --max-used-space only where the builder runs BuildKit ≥ 0.17', () => {
    const remote = pruneFlagsOf(help('docker-28.5-buildx-0.29-remote', 'buildx prune'), '0.25.2')!
    const k8s = pruneFlagsOf(help('docker-29.7-buildx-0.31-kubernetes', 'buildx prune'), '0.16.0')!
    expect(remote).toEqual({ keep: '--reserved-space', maxUsed: true, minFree: true, until: true })
    expect(k8s).toEqual({ keep: '--reserved-space', maxUsed: false, minFree: false, until: true })
    expect(boundFlag(remote)).toBe('--max-used-space')
    expect(boundFlag(k8s)).toBe('--reserved-space')
    expect(boundFlag(pruneFlagsOf(help('docker-27.5-buildx-0.17-container', 'buildx prune'), '0.18.2')))
      .toBe('--keep-storage')
    expect(pruneFlagsOf(undefined)).toBeUndefined()
  })

  test('docker and docker-container builders write to this disk; remote and kubernetes do not; unknown: assume so', () => {
    expect(['docker', 'docker-container', 'remote', 'kubernetes', 'something-new'].map(onThisDisk))
      .toEqual([true, true, false, false, true])
  })
})
