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

/** One challenge of a `WWW-Authenticate` header: scheme (lowercase) plus its parameters (realm, service, scope, …). */
export type Challenge = { scheme: string; params: Record<string, string> }

/** A token (RFC 9110 §5.6.2), optionally `= token / quoted-string`: either a scheme or one of its parameters. */
const ITEM = /[\s,]*([!#$%&'*+\-.^_`|~0-9A-Za-z]+)(?:\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*)))?/y

/**
 * Every challenge in a `WWW-Authenticate` value. RFC 9110 §11.6.1 allows several in one header, and fetch's
 * `Headers.get` joins repeated headers with ", ", so `Basic realm="a", Bearer realm="b",service="s"` is two
 * challenges: a bare token starts a challenge, `name=value` belongs to the one before it. (token68 challenges,
 * which registries do not send, are not read.)
 */
export function parseChallenges(header: string): Challenge[] {
  const challenges: Challenge[] = []
  ITEM.lastIndex = 0
  for (let m = ITEM.exec(header); m && m[0]; m = ITEM.exec(header)) {
    const [, name, quoted, bare] = m
    if (quoted === undefined && bare === undefined) challenges.push({ scheme: name.toLowerCase(), params: {} })
    else if (challenges.length) challenges.at(-1)!.params[name.toLowerCase()] = quoted?.replace(/\\(.)/g, '$1') ?? bare
  }
  return challenges
}

/** The challenge to answer: Bearer when offered (its realm is the token server), else Basic, else the first. */
export function pickChallenge(header: string): Challenge | undefined {
  const all = parseChallenges(header)
  return all.find((c) => c.scheme === 'bearer') ?? all.find((c) => c.scheme === 'basic') ?? all[0]
}

export const basicHeader = (c: Credentials) =>
  `Basic ${Buffer.from(`${c.username ?? ''}:${c.password ?? ''}`).toString('base64')}`

/** How the client sends one request (its limits and error classes apply to the token server too). */
export type Send = (
  url: string,
  init: { method: string; headers: Record<string, string>; body?: Uint8Array },
) => Promise<Response>

/** A failed token request, with the token server's status for the caller to class. */
export class TokenError extends Error {
  constructor(message: string, readonly status?: number) {
    super(message)
  }
}

/**
 * Fetches a bearer token from the challenge's realm for scopes like `repository:NAME:pull,push`.
 * With an identity token: the OAuth2 refresh-token grant (POST); a token server without OAuth2 answers that
 * with 404, and then the GET below is used, as distribution's docs/spec/auth/oauth.md says ("If the request to
 * the endpoint returns 404 using the HTTP POST method, refer to Token Documentation for using the HTTP GET
 * method supported by all token servers"). Otherwise GET with basic auth, or anonymously.
 */
export async function fetchToken(
  challenge: Challenge,
  scopes: string[],
  creds: Credentials | undefined,
  send: Send,
): Promise<{ token: string; expiresInSeconds: number }> {
  const realm = challenge.params.realm
  if (!realm) throw new TokenError('registry sent a Bearer challenge without a realm')
  const service = challenge.params.service
  if (creds?.identityToken) {
    const form = new URLSearchParams({
      grant_type: 'refresh_token',
      refresh_token: creds.identityToken,
      client_id: 'imagefleet',
    })
    if (service) form.set('service', service)
    if (scopes.length) form.set('scope', scopes.join(' '))
    const res = await send(realm, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new TextEncoder().encode(form.toString()),
    })
    if (res.status !== 404) return readToken(res, realm, scopes)
    await res.body?.cancel()
  }
  const url = new URL(realm)
  if (service) url.searchParams.set('service', service)
  for (const scope of scopes) url.searchParams.append('scope', scope)
  // an identity token on GET goes as the password, under docker's "<token>" user name when none is known
  const basic = creds?.identityToken
    ? { username: creds.username ?? '<token>', password: creds.identityToken }
    : creds?.username
    ? creds
    : undefined
  const res = await send(url.toString(), { method: 'GET', headers: basic ? { authorization: basicHeader(basic) } : {} })
  return readToken(res, realm, scopes)
}

async function readToken(res: Response, realm: string, scopes: string[]) {
  if (!res.ok) {
    const detail = (await res.text().catch(() => '')).replace(/\s+/g, ' ').trim().slice(0, 200)
    throw new TokenError(
      `token server ${realm} answered ${res.status} for ${scopes.join(' ') || 'no scope'}${
        detail ? `: ${detail}` : ''
      }`,
      res.status,
    )
  }
  const text = await res.text() // a body that stalls fails as timeout (transient), not as a missing token
  let body: { token?: string; access_token?: string; expires_in?: number } = {}
  try {
    body = JSON.parse(text)
  } catch { /* not JSON: no token */ }
  const token = body?.token ?? body?.access_token
  if (!token) throw new TokenError(`token server ${realm} returned no token`)
  return { token, expiresInSeconds: body.expires_in ?? 60 }
}
