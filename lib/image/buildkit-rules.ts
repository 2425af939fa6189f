// The COPY rules that differ between BuildKit versions, as data. Registry assembly follows the version that
// `docker build` uses on this machine (from preflight: the buildx builder's BuildKit, or the one dockerd 20.10
// embeds); a Dockerfile that hits a rule whose version is unknown is refused, never guessed.
// Everything else in copy.ts is the same in every version from v0.8 to today (fsutil copy/copy.go and mkdir.go).

/** One change of behaviour, from `since` on. Each entry: what changed, and where. */
export const BUILDKIT_CHANGES = [
  {
    since: '0.13',
    // --chmod=M on a copied member: before, only the 0777 bits came from M and setuid/setgid/sticky stayed as the
    // source had them (fsutil copyFileInfo `(m &^ 0777) | (M & 0777)`, v0.8, checked on the sandbox); since fsutil
    // 8bcf9db (vendored in BuildKit v0.13.0) the mode is M, special bits included.
    rule: 'chmodReplacesSpecialBits',
  },
  {
    since: '0.21',
    // Directories a COPY --chmod=M creates (missing parents, the destination): 0755 before; since fsutil 183e7fb
    // (vendored in BuildKit v0.21.0) they are made with mode M, then masked by the daemon's umask, which nothing here
    // can read: such a COPY is refused on these versions.
    rule: 'createdDirsTakeChmod',
  },
] as const

/** BuildKit's version per Docker engine for an engine without buildx: dockerd 20.10 embeds BuildKit v0.8. */
const EMBEDDED = [{ engine: /^20\.10\./, buildkit: '0.8' }] as const

export type CopyRules = {
  version: string
  /** The mode a copied member ends with under --chmod=M, from the source's mode. */
  chmodMode(source: number, chmod: number): number
  /** The mode of a directory the COPY creates, or a reason it cannot be known. */
  createdDirMode(chmod?: number): number | { refuse: string }
}

const versionAtLeast = (version: string, min: string) => {
  const a = version.replace(/^v/, '').split(/[.-]/).map((x) => parseInt(x, 10) || 0)
  const b = min.split('.').map(Number)
  for (let i = 0; i < b.length; i++) if ((a[i] ?? 0) !== b[i]) return (a[i] ?? 0) > b[i]
  return true
}

/** The BuildKit version `docker build` uses, from preflight's facts; undefined when nothing tells. */
export function buildkitVersion(facts: { server?: string; buildkit?: string }): string | undefined {
  if (facts.buildkit) return facts.buildkit.replace(/^v/, '')
  return EMBEDDED.find((e) => e.engine.test(facts.server ?? ''))?.buildkit
}

/** The rules of one BuildKit version; undefined version: only what every version agrees on. */
export function copyRules(version?: string): CopyRules {
  const has = (rule: (typeof BUILDKIT_CHANGES)[number]['rule']) => {
    const change = BUILDKIT_CHANGES.find((c) => c.rule === rule)!
    return version === undefined ? undefined : versionAtLeast(version, change.since)
  }
  const unknown = (what: string) => {
    throw new RulesUnknown(`${what} depends on the BuildKit version, which preflight could not tell`)
  }
  return {
    version: version ?? 'unknown',
    chmodMode(source, chmod) {
      const replaces = has('chmodReplacesSpecialBits')
      if (replaces === undefined && ((source | chmod) & 0o7000)) unknown('--chmod with setuid/setgid/sticky bits')
      return replaces ? chmod & 0o7777 : (source & 0o7000) | (chmod & 0o777)
    },
    createdDirMode(chmod) {
      if (chmod === undefined) return 0o755
      const takes = has('createdDirsTakeChmod')
      if (takes === undefined) return { refuse: 'directories made by COPY --chmod depend on the BuildKit version' }
      if (takes) return { refuse: `BuildKit ${version} makes them with the --chmod mode masked by the daemon's umask` }
      return 0o755
    },
  }
}

export class RulesUnknown extends Error {}
