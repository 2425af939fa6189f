// The CI examples (examples/github-workflow.yml, README's snippet) name the registry in lower case: GitHub's
// repository and owner names keep their capitals, image names may not have any, and Actions expressions have no
// lower(). The step that lower-cases them is run here the way the runner runs it (bash, $GITHUB_ENV).
import { describe, expect, test } from 'bun:test'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { $ } from 'zx'
import { parsePrefix } from '../lib/registry/ref.ts'
import { ROOT } from './helpers/fixture.ts'

const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8')
const SOURCES = {
  'examples/github-workflow.yml': fs.readFileSync(path.join(ROOT, 'examples/github-workflow.yml'), 'utf8'),
  "README's CI snippet": [...readme.matchAll(/^```yaml\n([\s\S]*?)^```$/gm)].map((m) => m[1]).join('\n'),
}

describe('the CI examples', () => {
  for (const [name, text] of Object.entries(SOURCES)) {
    test(`${name}: no registry name from a GitHub expression (it keeps capitals)`, () => {
      expect(text).not.toMatch(/\$\{\{\s*github\.(repository|repository_owner)\s*\}\}/)
    })

    test(`${name}: its step writes a lower-case IMAGEFLEET_REGISTRY for an owner with capitals`, async () => {
      const steps = [...text.matchAll(/run: (.*IMAGEFLEET_REGISTRY=.*GITHUB_ENV.*)$/gm)].map((m) => m[1])
      expect(steps).toHaveLength(1)
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'workflow-test-'))
      const envFile = path.join(dir, 'github_env')
      const env = {
        ...process.env,
        GITHUB_REPOSITORY: 'MyOrg/Fleet',
        GITHUB_REPOSITORY_OWNER: 'MyOrg',
        GITHUB_ENV: envFile,
      }
      await $({ env, quiet: true })`bash -e -c ${steps[0]}`
      const value = /^IMAGEFLEET_REGISTRY=(.*)$/m.exec(fs.readFileSync(envFile, 'utf8'))![1]
      fs.rmSync(dir, { recursive: true, force: true })
      expect(value).toMatch(/^ghcr\.io\/myorg(\/fleet)?$/)
      expect(parsePrefix(value).registry).toBe('ghcr.io')
    })
  }
})
