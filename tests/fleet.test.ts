// loadFleet (lib/fleet/fleet.ts): what it refuses before anything is built, and the names it gives the images.
import { afterAll, describe, expect, test } from 'bun:test'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { parseFlags, UsageError } from '../lib/cli/flags.ts'
import { FLEET_FLAGS, loadFleet } from '../lib/fleet/fleet.ts'
import { CONTEXT } from './helpers/fixture.ts'

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'fleet-test-'))
afterAll(() => fs.rmSync(work, { recursive: true, force: true }))
const instances = path.join(work, 'instances.txt')
fs.writeFileSync(instances, 'django__django-11099\nsympy__sympy-20590\n')

/** loadFleet's problems for these flags (with a valid instances file and context), or [] when it accepts them. */
function problemsOf(args: string[]): string[] {
  const { flags } = parseFlags(FLEET_FLAGS, ['--instances', instances, '--context', CONTEXT, ...args])
  try {
    loadFleet(flags)
    return []
  } catch (e) {
    if (e instanceof UsageError) return e.problems
    throw e
  }
}

describe('--registry and the repository flags', () => {
  test('capitals in --registry: one problem naming the flag and the lower-cased fix (not one per repository)', () => {
    expect(problemsOf(['--registry', 'ghcr.io/MyOrg/Fleet'])).toEqual([
      "--registry ghcr.io/MyOrg/Fleet: repository names are lower-case: 'MyOrg/Fleet' → use --registry ghcr.io/myorg/fleet",
    ])
  })

  test('an http:// prefix: one problem saying image names have no scheme, and the prefix without it', () => {
    expect(problemsOf(['--registry', 'http://127.0.0.1:5000/fleet'])).toEqual([
      "--registry http://127.0.0.1:5000/fleet: 'http://' is a URL scheme: image names have none (docker picks HTTPS, or plain HTTP for a loopback or insecure registry) → use --registry 127.0.0.1:5000/fleet",
    ])
  })

  test('a bad --base-repo is named under its own flag; the other two come from --registry', () => {
    expect(problemsOf(['--registry', 'ghcr.io/me/fleet', '--base-repo', 'ghcr.io/Me/base'])).toEqual([
      "--base-repo ghcr.io/Me/base: repository names are lower-case: 'Me/base' → use --base-repo ghcr.io/me/base",
    ])
  })

  test('a valid prefix names the three repositories under it', () => {
    const { flags } = parseFlags(FLEET_FLAGS, [
      '--instances',
      instances,
      '--context',
      CONTEXT,
      '--registry',
      '127.0.0.1:5000/fleet/',
      '--key',
      'k1',
    ])
    const fleet = loadFleet(flags)
    expect(fleet.builderImage).toBe('127.0.0.1:5000/fleet/eval-builder:k1')
    expect(fleet.baseImage(fleet.instances[0])).toBe('127.0.0.1:5000/fleet/eval-base:k1-django_1776_django-11099')
    expect(fleet.finalImage(fleet.instances[1])).toBe('127.0.0.1:5000/fleet/eval-agent:k1-sympy_1776_sympy-20590')
  })
})
