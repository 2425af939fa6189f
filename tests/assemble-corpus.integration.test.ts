// The equivalence corpus (issue 15): every assemble Dockerfile in tests/fixtures/assemble/ — one feature or edge case
// each — is built both ways on the real sandbox engine (dockerd 20.10, BuildKit v0.8) over the same builder and base
// images, and a container of each is exported (`docker export`) and compared: every path, its type, numeric owner,
// mode, size, content hash, symlink and hard-link target; then the config (Env, Entrypoint, Cmd, User, WorkingDir,
// Labels, ExposedPorts). A case registry mode refuses must be refused with its reason, never built differently.
// The sandbox cannot fetch a `# syntax=` frontend (no network): the docker side gets the same file without that line.
import { afterAll, beforeAll, expect, test } from 'bun:test'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { $ } from 'zx'
import { Assembler } from '../lib/image/assemble-registry.ts'
import { parseAssembleDockerfile } from '../lib/image/assemble-dockerfile.ts'
import { buildkitVersion } from '../lib/image/buildkit-rules.ts'
import { RegistryClient } from '../lib/registry/client.ts'
import { type Sandbox, sandboxDown, sandboxUp } from '../scripts/_sandbox-engine.ts'
import { CONFIG_FIELDS, differences, listing } from './helpers/image-listing.ts'
import { describeIntegration } from './helpers/integration.ts'

const FIXTURES = path.resolve(import.meta.dir, 'fixtures/assemble')
/** What each case must come to. `refused`: registry mode says `why`; the docker side `builds` or `fails` as noted. */
const EXPECT: Record<string, { refused?: string; docker?: 'builds' | 'fails' }> = {
  '16-refused-link.Dockerfile': { refused: 'Unknown flag: link', docker: 'fails' },
  '17-refused-run.Dockerfile': { refused: 'line 7: RUN needs a docker build', docker: 'builds' },
  '18-unknown-user.Dockerfile': {
    refused: 'unable to find user ghost: no matching entries in passwd file',
    docker: 'builds',
  },
}
const CASES = fs.readdirSync(FIXTURES).filter((f) => /^\d\d-.*\.Dockerfile$/.test(f)).sort()
const BUILD_ARGS = { BUILD_TAG: '7' }

describeIntegration('registry assembly equals docker build, case by case (tests/fixtures/assemble)', () => {
  let tmp: string, sb: Sandbox, sh: typeof $, assembler: Assembler, buildkit: string | undefined
  const images = { builder: '', base: '', tools: '' }
  const results: string[] = []

  beforeAll(async () => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'imagefleet-corpus-'))
    sb = await sandboxUp({ dir: path.join(tmp, 'sb'), disk: 2 * 2 ** 30, baseEnv: process.env })
    sh = $({ env: sb.env, quiet: true })
    fs.mkdirSync(path.join(tmp, 'context'))
    for (const target of ['builder', 'base', 'tools'] as const) {
      images[target] = `${sb.registry}/corpus/${target}:1`
      await sh`docker build --network none --build-arg SEED_IMAGE=${sb.seedImage} --target ${target} -t ${
        images[target]
      } -f ${path.join(FIXTURES, 'images.Dockerfile')} ${path.join(tmp, 'context')}`
      await sh`docker push ${images[target]}`
    }
    const server = (await sh`docker version --format ${'{{.Server.Version}}'}`).stdout.trim()
    buildkit = buildkitVersion({ server })
    console.log(`engine ${server}: COPY rules of BuildKit ${buildkit}`)
    assembler = new Assembler({ client: new RegistryClient(), buildkit })
  })
  afterAll(async () => {
    console.log(`\nequivalence corpus on dockerd's BuildKit ${buildkit}:\n${results.join('\n')}`)
    if (!tmp) return
    await sandboxDown({ dir: path.join(tmp, 'sb') })
    fs.rmSync(tmp, { recursive: true, force: true })
  })

  const textOf = (file: string) =>
    fs.readFileSync(path.join(FIXTURES, file), 'utf8').replaceAll('@TOOLS_IMAGE@', images.tools)
  const buildArgs = () => ({ ...BUILD_ARGS, BASE_IMAGE: images.base, BUILDER_IMAGE: images.builder })

  /** docker build of the file (without its `# syntax=` line: the sandbox has no network to fetch a frontend). */
  async function dockerSide(file: string, tag: string) {
    const f = path.join(tmp, file)
    fs.writeFileSync(f, textOf(file).replace(/^# syntax=.*\n/, ''))
    const args = Object.entries(buildArgs()).flatMap(([k, v]) => ['--build-arg', `${k}=${v}`])
    const r = await $({
      env: sb.env,
      quiet: true,
      nothrow: true,
    })`docker build --network none ${args} -t ${tag} -f ${f} ${path.join(tmp, 'context')}`
    return r.exitCode === 0 ? { built: true } : { built: false, error: r.stderr.trim().split('\n').pop() }
  }

  /** The same file assembled inside the registry; a refusal comes back as its reason. */
  async function registrySide(file: string, ref: string) {
    const plan = parseAssembleDockerfile(textOf(file), { buildArgs: buildArgs() })
    if (!plan.ok) return { refused: plan.why }
    try {
      const r = await assembler.assemble(plan, ref)
      return { seconds: r.seconds, baseBytes: r.base.bytesRead }
    } catch (e) {
      return { refused: (e as Error).message }
    }
  }

  async function exported(image: string): Promise<Map<string, string>> {
    const id = (await sh`docker create ${image}`).stdout.trim()
    const file = path.join(tmp, `${id}.tar`)
    await sh`docker export -o ${file} ${id}`
    await sh`docker rm ${id}`
    const tar = new Uint8Array(fs.readFileSync(file))
    fs.rmSync(file)
    return listing(tar)
  }
  const config = async (image: string) => {
    const c = JSON.parse((await sh`docker image inspect --format ${'{{json .Config}}'} ${image}`).stdout)
    return Object.fromEntries(CONFIG_FIELDS.map((k) => [k, c[k] ?? null]))
  }

  for (const file of CASES) {
    const about = fs.readFileSync(path.join(FIXTURES, file), 'utf8').split('\n').find((l) => /^# (?!syntax=)/.test(l))
    const expected = EXPECT[file]
    const behaviour = expected?.refused ? 'registry mode refuses it with the reason' : 'the same filesystem and config'
    test(`${file}: ${behaviour} — ${about?.slice(2)}`, async () => {
      const name = file.replace(/\.Dockerfile$/, '').toLowerCase()
      const [regRef, dockRef] = [`${sb.registry}/corpus/${name}:registry`, `${sb.registry}/corpus/${name}:docker`]
      const reg = await registrySide(file, regRef)
      const dock = await dockerSide(file, dockRef)
      if (expected?.refused) {
        expect(reg.refused).toContain(expected.refused)
        expect(dock.built).toBe(expected.docker === 'builds')
        results.push(
          `${file}: refused by registry mode (${reg.refused}); docker build ${
            dock.built ? 'builds' : `fails: ${dock.error}`
          }`,
        )
        return
      }
      expect(reg.refused).toBeUndefined()
      expect(dock).toEqual({ built: true })
      await sh`docker pull ${regRef}`
      const [d, r] = [await exported(dockRef), await exported(regRef)]
      const diff = differences(d, r)
      const [cd, cr] = [await config(dockRef), await config(regRef)]
      results.push(
        `${file}: ${d.size} paths, ${diff.length} differ; config ${
          JSON.stringify(cd) === JSON.stringify(cr) ? 'equal' : 'DIFFERS'
        }; ` +
          `registry ${reg.seconds?.toFixed(2)}s, base read ${reg.baseBytes} bytes`,
      )
      if (diff.length) console.log(`${file}:\n  ${diff.join('\n  ')}`)
      expect(diff).toEqual([])
      expect(cr).toEqual(cd)
      await sh`docker rmi ${regRef} ${dockRef}`
    })
  }
})
