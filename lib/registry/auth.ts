// Registry credentials the way the docker CLI finds them, and the bearer-token dance.
// Lookup order, as docker: credHelpers[host] → credsStore → auths[host] → anonymous.
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import path from 'node:path'
import { DOCKER_HUB } from './ref.ts'

/** What a registry login yields: a username/password pair or an identity (refresh) token. */
export type Credentials = { username?: string; password?: string; identityToken?: string }
export type CredentialOptions = {
  /** Directory holding docker's config.json (the caller resolves $DOCKER_CONFIG or ~/.docker). Absent: anonymous. */
  dockerConfigDir?: string
  /** Seconds a `docker-credential-*` helper may take (default 10). */
  helperTimeoutSeconds?: number
}

type AuthEntry = { auth?: string; username?: string; password?: string; identitytoken?: string }
type DockerConfig = { auths?: Record<string, AuthEntry>; credHelpers?: Record<string, string>; credsStore?: string }

/** The key docker uses for Docker Hub in config.json and with credential helpers. */
export const HUB_SERVER = 'https://index.docker.io/v1/'

/** Reads `<dir>/config.json`; a missing file means no credentials, a broken one is an error worth seeing. */
export function readDockerConfig(dir: string): DockerConfig {
  const file = path.join(dir, 'config.json')
  if (!fs.existsSync(file)) return {}
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8'))
  } catch (e) {
    throw new Error(`cannot read ${file}: ${(e as Error).message}`)
  }
}

/** `https://host:port/v1/` → `host:port`, as docker's ConvertToHostname; Hub aliases all become `docker.io`. */
function hostOf(key: string): string {
  const host = key.replace(/^[a-z]+:\/\//i, '').split('/')[0].toLowerCase()
  return ['index.docker.io', 'registry-1.docker.io', 'docker.io'].includes(host) ? 'docker.io' : host
}

/** Finds the credentials for one registry host (as in ImageRef.registry). */
export async function findCredentials(registry: string, options: CredentialOptions): Promise<Credentials | undefined> {
  if (!options.dockerConfigDir) return undefined
  const config = readDockerConfig(options.dockerConfigDir)
  const wanted = hostOf(registry)
  const server = registry === DOCKER_HUB ? HUB_SERVER : registry
  const helperKey = Object.keys(config.credHelpers ?? {}).find((k) => hostOf(k) === wanted)
  const helper = helperKey ? config.credHelpers![helperKey] : config.credsStore
  if (helper) {
    try {
      const found = await runCredentialHelper(helper, helperKey ?? server, options.helperTimeoutSeconds ?? 10)
      if (found || helperKey) return found
    } catch (e) {
      // A credsStore named on a developer laptop (desktop, osxkeychain) is often absent on CI: fall back to auths.
      if (helperKey || !/ENOENT/.test((e as Error).message)) throw e
    }
  }
  const authKey = Object.keys(config.auths ?? {}).find((k) => hostOf(k) === wanted)
  return authKey ? fromAuthEntry(config.auths![authKey]) : undefined
}

function fromAuthEntry(entry: AuthEntry): Credentials | undefined {
  if (entry.identitytoken) return { username: entry.username, identityToken: entry.identitytoken }
  if (entry.auth) {
    const text = Buffer.from(entry.auth, 'base64').toString('utf8')
    const colon = text.indexOf(':')
    if (colon > 0) return { username: text.slice(0, colon), password: text.slice(colon + 1) }
  }
  if (entry.username && entry.password) return { username: entry.username, password: entry.password }
  return undefined
}

/**
 * `docker-credential-<helper> get` with the server on stdin. Not a docker command: the helper protocol.
 * "credentials not found" is anonymous; any other failure throws naming the helper.
 */
export function runCredentialHelper(
  helper: string,
  server: string,
  timeoutSeconds: number,
): Promise<Credentials | undefined> {
  const program = `docker-credential-${helper}`
  return new Promise((resolve, reject) => {
    const child = spawn(program, ['get'], { stdio: ['pipe', 'pipe', 'pipe'], timeout: timeoutSeconds * 1000 })
    let out = ''
    let err = ''
    child.stdout.on('data', (d) => (out += d))
    child.stderr.on('data', (d) => (err += d))
    child.on('error', (e) => reject(new Error(`${program}: ${e.message}`)))
    child.on('close', (code) => {
      if (code !== 0) {
        if (/credentials not found/i.test(out + err)) return resolve(undefined)
        return reject(new Error(`${program} get failed (exit ${code}): ${(out + err).trim()}`))
      }
      try {
        const { Username, Secret } = JSON.parse(out)
        resolve(Username === '<token>' ? { identityToken: Secret } : { username: Username, password: Secret })
      } catch {
        reject(new Error(`${program} get printed no JSON`))
      }
    })
    child.stdin.end(server)
  })
}

/** A parsed `WWW-Authenticate` header: scheme plus its parameters (realm, service, scope, …). */
export type Challenge = { scheme: string; params: Record<string, string> }

export function parseChallenge(header: string): Challenge {
  const space = header.indexOf(' ')
  const scheme = (space < 0 ? header : header.slice(0, space)).toLowerCase()
  const params: Record<string, string> = {}
  const re = /([a-zA-Z_]+)=(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))/g
  for (const m of header.slice(space + 1).matchAll(re)) params[m[1].toLowerCase()] = m[2] ?? m[3]
  return { scheme, params }
}

export const basicHeader = (c: Credentials) =>
  `Basic ${Buffer.from(`${c.username ?? ''}:${c.password ?? ''}`).toString('base64')}`

/**
 * Fetches a bearer token from the challenge's realm for scopes like `repository:NAME:pull,push`.
 * With an identity token: the OAuth2 refresh-token grant (POST); otherwise GET with basic auth or anonymously.
 * Returns the token and how long it may be reused.
 */
export async function fetchToken(
  challenge: Challenge,
  scopes: string[],
  creds: Credentials | undefined,
  fetchFn: typeof fetch,
  signal?: AbortSignal,
): Promise<{ token: string; expiresInSeconds: number }> {
  const realm = challenge.params.realm
  if (!realm) throw new Error('registry sent a Bearer challenge without a realm')
  const service = challenge.params.service
  let response: Response
  if (creds?.identityToken) {
    const form = new URLSearchParams({
      grant_type: 'refresh_token',
      refresh_token: creds.identityToken,
      client_id: 'imagefleet',
    })
    if (service) form.set('service', service)
    if (scopes.length) form.set('scope', scopes.join(' '))
    response = await fetchFn(realm, { method: 'POST', body: form, signal })
  } else {
    const url = new URL(realm)
    if (service) url.searchParams.set('service', service)
    for (const scope of scopes) url.searchParams.append('scope', scope)
    const headers: Record<string, string> = creds?.username ? { authorization: basicHeader(creds) } : {}
    response = await fetchFn(url, { headers, signal })
  }
  if (!response.ok) {
    const status = response.status
    await response.body?.cancel()
    throw Object.assign(new Error(`token server ${realm} answered ${status} for ${scopes.join(' ') || 'no scope'}`), {
      status,
    })
  }
  const body = (await response.json()) as { token?: string; access_token?: string; expires_in?: number }
  const token = body.token ?? body.access_token
  if (!token) throw new Error(`token server ${realm} returned no token`)
  return { token, expiresInSeconds: body.expires_in ?? 60 }
}
