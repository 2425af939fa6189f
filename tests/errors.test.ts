// Error classes (lib/run/errors.ts): real docker and BuildKit output lines land in the class a CI log reader can act
// on, registry client failures map into the same catalogue, and only the transient classes are retried.
// "captured": run on the sandbox (docker 20.10.24 client and daemon, BuildKit inside dockerd, distribution 2.8) and
// copied from its output; "reported": as quoted in the named issue thread (Docker 23+, buildx, hosted registries).
import { describe, expect, test } from 'bun:test'
import { classify, CommandError, type ErrorClass, explain, toCommandError, TRANSIENT } from '../lib/run/errors.ts'
import { RegistryError } from '../lib/registry/client.ts'
import { ERROR_CLASSES } from '../lib/registry/http.ts'

const LINES: Array<[ErrorClass, string, string]> = [
  // a RUN that fills the disk: the step's own output says so; BuildKit only says the executor failed
  ['no_space', 'captured: RUN cat /dev/zero > /blob', '#5 0.307 cat: write error: No space left on device'],
  [
    'no_space',
    'captured: docker pull onto a full disk',
    'write /var/lib/docker/tmp/GetImageBlob1403946256: no space left on device',
  ],
  [
    'no_space',
    'captured: BuildKit pulling a FROM image onto a full disk',
    'failed to copy: write /var/lib/docker/buildkit/content/ingest/179e35bf/data: no space left on device',
  ],
  ['no_space', 'Node.js fs on a full disk', 'Error: ENOSPC: no space left on device, write'],
  [
    'upstream_missing',
    'captured: FROM a tag the registry lacks (docker build)',
    'failed to solve with frontend dockerfile.v0: failed to create LLB definition: 127.0.0.1:40455/up/nope:latest: not found',
  ],
  [
    'upstream_missing',
    'captured: docker pull of a missing tag',
    'Error response from daemon: manifest for 127.0.0.1:40455/up/nope:latest not found: manifest unknown: manifest unknown',
  ],
  ['upstream_missing', 'captured: docker manifest inspect', 'no such manifest: 127.0.0.1:40455/up/nope:latest'],
  [
    'upstream_missing',
    'reported: zhaarey/wrapper#33 (Docker Hub, a repository that does not exist; before `auth`)',
    'ERROR: failed to solve: builder: failed to resolve source metadata for docker.io/library/builder:latest: pull access denied, repository does not exist or may require authorization: server message: insufficient_scope: authorization failed',
  ],
  [
    'upstream_missing',
    'reported: docker/buildx#1611 (docker pull, same case)',
    "Error response from daemon: pull access denied for base, repository does not exist or may require 'docker login': denied: requested access to the resource is denied",
  ],
  [
    'rate_limited',
    "Docker Hub's pull limit (docs.docker.com, before `auth`: it names the unauthenticated limit)",
    'Error response from daemon: toomanyrequests: You have reached your unauthenticated pull rate limit. https://www.docker.com/increase-rate-limit',
  ],
  [
    'rate_limited',
    'BuildKit resolving a FROM image past the limit',
    'failed to copy: httpReadSeeker: failed open: unexpected status code https://registry-1.docker.io/v2/library/python/manifests/sha256:0a1b: 429 Too Many Requests - Server message: toomanyrequests: You have reached your pull rate limit.',
  ],
  ['auth', 'captured: docker push to a registry that wants a token (tests/helpers/hosted-registry.ts)', 'unauthorized'],
  ['auth', 'docker push without rights on the repository', 'denied: requested access to the resource is denied'],
  [
    'auth',
    'reported: skjerns/3dprintedbrain_docker#5 (the token server refused)',
    'ERROR: failed to solve: freesurfer/freesurfer:7.4.1: failed to resolve source metadata for docker.io/freesurfer/freesurfer:7.4.1: failed to authorize: failed to fetch oauth token: unexpected status from GET request to https://auth.docker.io/token?scope=repository%3Afreesurfer%2Ffreesurfer%3Apull&service=registry.docker.io: 401 Unauthorized',
  ],
  ['auth', 'ECR without docker login', 'no basic auth credentials'],
  [
    'timeout',
    'a registry that does not answer (Go net/http client timeout)',
    'Error response from daemon: Get "https://registry-1.docker.io/v2/": net/http: request canceled while waiting for connection (Client.Timeout exceeded while awaiting headers)',
  ],
  ['timeout', 'Go net/http', 'Get "https://ghcr.io/v2/": net/http: TLS handshake timeout'],
  ['timeout', 'Go net dialer', 'dial tcp 140.82.112.33:443: i/o timeout'],
  [
    'network',
    'captured: docker push to a registry that is down',
    'Get "http://127.0.0.1:1/v2/": dial tcp 127.0.0.1:1: connect: connection refused',
  ],
  [
    'network',
    'captured: any docker command while dockerd is down',
    'Cannot connect to the Docker daemon at unix:///tmp/11t-sb/docker.sock. Is the docker daemon running?',
  ],
  ['network', 'captured: docker build while dockerd is killed', 'unexpected EOF'],
  [
    'network',
    'docker push to a registry restarting behind a proxy',
    'received unexpected HTTP status: 503 Service Unavailable',
  ],
  ['network', 'Go net', 'read tcp 172.17.0.2:45678->140.82.112.33:443: read: connection reset by peer'],
  ['network', 'Go resolver', 'dial tcp: lookup ghcr.io on 127.0.0.53:53: server misbehaving'],
  [
    'build_error',
    'captured: a RUN that exits 2 (docker 20.10)',
    'executor failed running [/bin/sh -c echo compiling; exit 2]: exit code: 2',
  ],
  [
    'build_error',
    'a RUN that exits 2 (BuildKit ≥ 0.11)',
    'ERROR: failed to solve: process "/bin/sh -c make" did not complete successfully: exit code: 2',
  ],
  [
    'build_error',
    'captured: COPY of a path the context lacks (docker 20.10)',
    'failed to compute cache key: failed to walk /var/lib/docker/tmp/buildkit-mount1993135406/opt: lstat /var/lib/docker/tmp/buildkit-mount1993135406/opt: no such file or directory',
  ],
  [
    'build_error',
    'reported: docker/buildx#1075 (COPY of a missing path, BuildKit ≥ 0.10): not a missing FROM image',
    'ERROR: failed to solve: failed to compute cache key: failed to calculate checksum of ref vseuhyvqn4l8k1dz9mg7kjmgb::d29fvtefjg5fqipg4a6jo3lrp: "/dist/kubernetes-ingress_linux_amd64/nginx-ingress": not found',
  ],
]

describe('classify', () => {
  for (const [cls, source, line] of LINES) {
    test(`${cls} ← ${source}`, () => {
      expect(classify(line)).toBe(cls)
    })
  }

  test('a command killed by our --timeout (SIGTERM, then SIGKILL) is a timeout whatever it printed', () => {
    expect(classify('#7 [2/2] RUN make', 'SIGTERM')).toBe('timeout')
    expect(classify('', 'SIGKILL')).toBe('timeout')
  })

  test('the line that names the cause decides, not the build log around it', () => {
    const log = [
      '#5 [2/2] RUN cat /dev/zero > /blob',
      '#5 0.307 cat: write error: No space left on device',
      '#5 ERROR: executor failed running [/bin/sh -c cat /dev/zero > /blob]: exit code: 1',
    ].join('\n')
    expect(classify(log)).toBe('no_space')
  })
})

describe('toCommandError', () => {
  test('a failed zx command: its class, its exit code, the last lines and the one that says why', () => {
    const stderr = [
      '#4 [1/2] FROM 127.0.0.1:40455/up/x:latest',
      '#4 ERROR: failed to copy: write /var/lib/docker/buildkit/content/ingest/179e/data: no space left on device',
      '------',
      ' > [1/2] FROM 127.0.0.1:40455/up/x:latest:',
      '------',
      'failed to copy: write /var/lib/docker/buildkit/content/ingest/179e/data: no space left on device',
    ].join('\n')
    const e = toCommandError('base a__b-1', { stderr, stdout: '', exitCode: 1, signal: null })
    expect(e).toBeInstanceOf(CommandError)
    expect(e.errorClass).toBe('no_space')
    expect(e.exitCode).toBe(1)
    expect(e.line).toBe(
      'failed to copy: write /var/lib/docker/buildkit/content/ingest/179e/data: no space left on device',
    )
    expect(e.message).toStartWith('base a__b-1 failed (no_space: the Docker data root ran out of space)')
  })

  test('a command killed by a signal says so as its line', () => {
    const e = toCommandError('assemble a__b-1', {
      stderr: '#6 [2/3] COPY',
      stdout: '',
      exitCode: null,
      signal: 'SIGTERM',
    })
    expect([e.errorClass, e.line]).toEqual(['timeout', 'killed by SIGTERM'])
  })

  test('a CommandError passes through unchanged', () => {
    const e = new CommandError('base x', 'auth', 'denied', 1)
    expect(toCommandError('other', e)).toBe(e)
  })
})

describe('registry client failures in the catalogue', () => {
  const MAPPED: Record<keyof typeof ERROR_CLASSES, ErrorClass> = {
    auth: 'auth',
    network: 'network',
    timeout: 'timeout',
    rate_limited: 'rate_limited',
    unsupported: 'unsupported_image',
    protocol: 'build_error',
  }
  for (const [registryClass, cls] of Object.entries(MAPPED)) {
    test(`a RegistryError of class ${registryClass} is ${cls}, with the registry's message as its line`, () => {
      const message = `HEAD https://ghcr.io/v2/o/r/manifests/t: registry answered (${registryClass})`
      const e = toCommandError('assemble a__b-1', new RegistryError(message, registryClass as keyof typeof MAPPED, 0))
      expect([e.errorClass, e.line, e.exitCode]).toEqual([cls, message, null])
    })
  }

  test('a 404 for a manifest is a missing FROM image; a 404 for anything else is not', () => {
    const manifest = new RegistryError('GET manifest up/x:latest: registry answered 404 Not Found', 'protocol', 404)
    const blob = new RegistryError('GET blob sha256:ab: registry answered 404 Not Found', 'protocol', 404)
    expect(toCommandError('base x', manifest).errorClass).toBe('upstream_missing')
    expect(toCommandError('base x', blob).errorClass).toBe('build_error')
  })
})

describe('which classes are retried', () => {
  test('network, timeout and rate_limited are transient; the image or its inputs at fault are not', () => {
    expect([...TRANSIENT].sort()).toEqual(['network', 'rate_limited', 'timeout'])
  })

  test('every class is explained in its own words', () => {
    const classes: ErrorClass[] = [
      'no_space',
      'upstream_missing',
      'auth',
      'rate_limited',
      'unsupported_image',
      'network',
      'timeout',
      'build_error',
      'interrupted',
    ]
    const words = classes.map(explain)
    expect(new Set(words).size).toBe(classes.length)
    expect(words.filter((w) => w === 'the build failed')).toHaveLength(1) // build_error's own, nobody else's
  })
})
