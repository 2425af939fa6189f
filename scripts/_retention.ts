// Private helper of scripts/prune.ts (not a task): registry retention, the branch of prune that talks to the fleet's
// registry instead of the Docker daemon — it frees no local disk. The plan and the deletions are
// lib/retention/retention.ts; this prints them, asks the back end to delete with --yes, and says what the registry's
// own garbage collection still has to run.
import os from 'node:os'
import path from 'node:path'
import { UsageError } from '../lib/cli/flags.ts'
import { FatalError } from '../lib/cli/main.ts'
import { configureReport, report, secretValues } from '../lib/cli/report.ts'
import { formatBytes } from '../lib/cli/size.ts'
import { findCredentials } from '../lib/registry/auth.ts'
import { RegistryClient } from '../lib/registry/client.ts'
import {
  applyRetention,
  fleetRepositories,
  planRetention,
  type RetentionBackend,
  RetentionError,
  type RetentionPlan,
} from '../lib/retention/retention.ts'
import { ghcrBackend } from '../lib/retention/ghcr.ts'
import { registryBackend } from '../lib/retention/registry.ts'

export type RetentionFlags = {
  registry: string
  keepKeys?: number
  yes: boolean
  mirror: boolean
  registryApi: string
  githubApi: string
  passwordEnv?: string
  registryUser?: string
  insecureRegistry: string[]
}

export async function registryRetention(flags: RetentionFlags, env: Record<string, string | undefined>) {
  if (!flags.keepKeys) throw new UsageError('--registry PREFIX needs --keep-keys N (the newest N keys stay)')
  const fleet = fleetRepositories(flags.registry)
  const api = flags.registryApi === 'auto' ? (fleet.registry === 'ghcr.io' ? 'ghcr' : 'registry') : flags.registryApi
  const token = flags.passwordEnv ? env[flags.passwordEnv] : undefined
  if (flags.passwordEnv && !token) throw new UsageError(`--password-env ${flags.passwordEnv}: that variable is not set`)
  configureReport({ github: env.GITHUB_ACTIONS === 'true', secrets: [...secretValues(env), ...(token ? [token] : [])] })
  if (api === 'ghcr' && !token) {
    throw new UsageError(
      '--registry-api ghcr needs --password-env NAME: a token with read:packages and delete:packages',
    )
  }
  const owner = fleet.path.split('/')[0]
  const dockerConfigDir = env.DOCKER_CONFIG ?? path.join(os.homedir(), '.docker')
  const client = new RegistryClient({
    insecure: { names: flags.insecureRegistry },
    // the token reads the fleet's manifests too (GHCR takes it as the password of any user name)
    credentials: (registry) =>
      token && registry === fleet.registry
        ? Promise.resolve({ username: flags.registryUser ?? owner, password: token })
        : findCredentials(registry, { dockerConfigDir }),
  })
  const backend: RetentionBackend = api === 'ghcr'
    ? ghcrBackend({ api: flags.githubApi, token: token!, owner })
    : registryBackend(client, fleet.registry)
  const how = api === 'ghcr' ? `GitHub Packages API at ${flags.githubApi}` : 'the Registry HTTP API'
  report.phase(
    `registry retention: ${flags.registry}, newest ${flags.keepKeys} keys (${how})${flags.yes ? '' : ', dry run'}`,
  )
  const o = { client, backend, prefix: flags.registry, keepKeys: flags.keepKeys, mirror: flags.mirror }
  const plan = await planRetention(o).catch((e) => {
    throw e instanceof RetentionError ? new FatalError(e.message) : e
  })
  printPlan(plan, flags.yes)
  if (!flags.yes) return void report.info('dry run: nothing deleted; --yes deletes what is listed above'), 0
  const done = await applyRetention(plan, o)
  for (const f of done.failed) report.fail(`${f.item.repository}@${f.item.digest}: ${f.error}`)
  const tags = done.deleted.reduce((n, d) => n + d.tags.length, 0)
  report.info(`deleted ${done.deleted.length} manifests (${tags} tags); ${done.failed.length} failed`)
  report.info(`to free the bytes: ${backend.gc}`)
  return done.failed.length ? 1 : 0
}

/** Every manifest that goes (one line each, tags or digest, and why), what stays that a reader might expect to go, totals. */
function printPlan(plan: RetentionPlan, yes: boolean) {
  const verb = yes ? 'delete' : 'would delete'
  report.info(
    `keys, newest first: ${
      plan.keys.map((k) => `${k.key} (${k.created ?? 'created ?'}) ${k.keep ? 'kept' : 'goes'}`).join(' · ')
    }`,
  )
  for (const d of plan.manifests) {
    const name = d.tags.length ? `${d.repository}:${d.tags.join(',')} @${d.digest}` : `${d.repository}@${d.digest}`
    report.info(`  ${verb} ${name} — ${d.why}`)
  }
  for (const h of plan.held) report.info(`  keep ${h.repository}${h.what} — ${h.why}`)
  const old = plan.keys.filter((k) => !k.keep).length
  const attestations = plan.manifests.filter((d) => d.why.startsWith('attestation')).length
  report.info(
    `${verb}: ${plan.tags.length} tags of ${old} older keys, ${plan.manifests.length} manifests (${attestations} ` +
      `attestations), about ${formatBytes(plan.bytes)} of blobs only they refer to`,
  )
  for (const n of plan.notes) report.info(`note: ${n}`)
}
