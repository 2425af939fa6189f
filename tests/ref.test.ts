// The one reference grammar (lib/registry/ref.ts): prefixes, repositories and hosts, and the problems it names
// with their fixes. Normalization of full references is in registry.test.ts ('parseImageRef').
import { describe, expect, test } from 'bun:test'
import { ImageRefError, parseImageRef, parsePrefix, parseRepository, prefixHost, refHost } from '../lib/registry/ref.ts'

const refused = (fn: () => unknown): ImageRefError => {
  try {
    fn()
  } catch (e) {
    if (e instanceof ImageRefError) return e
    throw e
  }
  throw new Error('accepted')
}

describe('registry prefixes', () => {
  test('a host alone, a host with a path, or a Docker Hub owner; trailing slashes dropped', () => {
    expect(parsePrefix('127.0.0.1:5000')).toEqual({ prefix: '127.0.0.1:5000', registry: '127.0.0.1:5000' })
    expect(parsePrefix('ghcr.io/me/fleet/')).toEqual({ prefix: 'ghcr.io/me/fleet', registry: 'ghcr.io' })
    expect(parsePrefix('me/fleet')).toEqual({ prefix: 'me/fleet', registry: 'registry-1.docker.io' })
    expect(parsePrefix('GHCR.IO')).toEqual({ prefix: 'GHCR.IO', registry: 'GHCR.IO' }) // host names ignore case
  })

  test('capitals in the path: one problem, the lower-cased prefix as the fix', () => {
    const e = refused(() => parsePrefix('ghcr.io/MyOrg/Fleet'))
    expect(e.problems).toEqual(["repository names are lower-case: 'MyOrg/Fleet'"])
    expect(e.suggestion).toBe('ghcr.io/myorg/fleet')
  })

  test('a URL scheme: one problem saying image names have none, the prefix without it as the fix', () => {
    const e = refused(() => parsePrefix('http://127.0.0.1:5000/fleet'))
    expect(e.problems).toEqual([
      "'http://' is a URL scheme: image names have none (docker picks HTTPS, or plain HTTP for a loopback or insecure registry)",
    ])
    expect(e.suggestion).toBe('127.0.0.1:5000/fleet')
  })

  test('both at once: two problems, one fix for both', () => {
    const e = refused(() => parsePrefix('https://ghcr.io/MyOrg/Fleet'))
    expect(e.problems).toHaveLength(2)
    expect(e.problems[0]).toContain("'https://' is a URL scheme")
    expect(e.problems[1]).toBe("repository names are lower-case: 'MyOrg/Fleet'")
    expect(e.suggestion).toBe('ghcr.io/myorg/fleet')
  })

  test('a capitalised first component is an owner docker would take for a host: lower-case is the fix', () => {
    const e = refused(() => parsePrefix('MyOrg/fleet'))
    expect(e.problems).toEqual(["repository names are lower-case: 'MyOrg/fleet'"])
    expect(e.suggestion).toBe('myorg/fleet')
  })

  test('what cannot be fixed has no suggestion', () => {
    const e = refused(() => parsePrefix('http://ghcr.io/me/fl eet'))
    expect(e.problems).toEqual([expect.stringContaining('URL scheme'), 'empty or contains white space'])
    expect(e.suggestion).toBeUndefined()
    expect(refused(() => parsePrefix('ghcr.io/me:tag')).problems).toEqual(["a repository has no tag (':tag')"])
  })
})

describe('one grammar for repositories, references and hosts', () => {
  test('a repository has no tag or digest; a reference may', () => {
    expect(parseRepository('ghcr.io/me/fleet/eval-base')).toEqual({
      registry: 'ghcr.io',
      repository: 'me/fleet/eval-base',
    })
    expect(refused(() => parseRepository('ghcr.io/me/x:1')).problems).toEqual(["a repository has no tag (':1')"])
    expect(parseImageRef('ghcr.io/me/x:1').tag).toBe('1')
  })

  test('hosts: Docker Hub is docker.io for login and ping, any other registry keeps its port', () => {
    expect(refHost('ubuntu:22.04')).toBe('docker.io')
    expect(refHost('127.0.0.1:5000/fleet/eval-builder:abc')).toBe('127.0.0.1:5000')
    expect(prefixHost('ghcr.io/me/fleet')).toBe('ghcr.io')
    expect(prefixHost('127.0.0.1:5000')).toBe('127.0.0.1:5000')
    expect(prefixHost('me/fleet')).toBe('docker.io')
  })

  test('the error message carries every problem and the fix', () => {
    expect(() => parseImageRef('ghcr.io/MyOrg/env:1')).toThrow(
      "invalid image reference 'ghcr.io/MyOrg/env:1': repository names are lower-case: 'MyOrg/env' (use 'ghcr.io/myorg/env:1')",
    )
  })
})
