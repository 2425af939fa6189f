// Integration tests run a real dockerd on a loop-mounted disk: they need root and loop devices.
// Where they cannot run they say so loudly and skip; under CI=true that is a failure, not a skip.
import { describe, test } from 'bun:test'
import fs from 'node:fs'

function checkIntegration(): { ok: boolean; why?: string } {
  if (process.getuid?.() !== 0) {
    return { ok: false, why: 'not running as root (the sandbox loop-mounts a disk and starts dockerd)' }
  }
  if (!fs.existsSync('/dev/loop-control')) {
    return { ok: false, why: 'no loop devices (/dev/loop-control is missing; run the container privileged)' }
  }
  return { ok: true }
}

export const integration: { ok: boolean; why?: string } = checkIntegration()
const underCI = process.env.CI === 'true'

/** `describe` for tests that need the sandbox: runs them, or fails (CI=true) / skips loudly (elsewhere). */
export function describeIntegration(name: string, fn: () => void): void {
  if (integration.ok) return describe(name, fn)
  const message = `integration tests "${name}" cannot run: ${integration.why}`
  if (underCI) {
    return describe(name, () => {
      test('integration prerequisites are met (required under CI=true)', () => {
        throw new Error(`${message}. Under CI=true this is a failure, not a skip.`)
      })
    })
  }
  console.warn(
    `\n${
      '!'.repeat(100)
    }\n!! SKIPPING ${message}\n!! Run as root on a machine with loop devices to prove this for real.\n${
      '!'.repeat(100)
    }\n`,
  )
  describe.skip(name, fn)
}
