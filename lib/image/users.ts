// `COPY --chown=name[:group]` and a WORKDIR made under `USER name` resolved the way BuildKit resolves them: against
// the /etc/passwd and /etc/group of the image being built (moby/buildkit solver/llbsolver/ops/user_linux.go readUser,
// llb WithUser for the parsing). One difference, on purpose: BuildKit (every version, checked on the sandbox's
// dockerd 20.10 / BuildKit v0.8) gives a name it cannot find uid 0 / keeps the user's gid and builds on; here an
// unknown name stops the image with the words docker uses for USER at run time, since a silently root-owned agent is
// never what the Dockerfile meant. Nothing is built differently: that image fails, with the reason.

export type Owner = { uid: number; gid: number }
/** One side of `user[:group]`: a number (or `root`), or a name to look up. */
type Part = { id: number } | { name: string }

export class UnknownOwner extends Error {}

/** `root` → 0, decimal that fits 32 bits → that id, anything else is a name (llb parseUID). */
function part(v: string): Part {
  if (v === 'root') return { id: 0 }
  return /^\d+$/.test(v) && Number(v) <= 0xffffffff ? { id: Number(v) } : { name: v }
}

/** Splits an owner spec at its first `:`. Empty parts are refused: BuildKit would look up the name "". */
export function parseOwner(spec: string): { user: Part; group?: Part } {
  const colon = spec.indexOf(':')
  const [user, group] = colon < 0 ? [spec, undefined] : [spec.slice(0, colon), spec.slice(colon + 1)]
  if (!user || group === '') throw new UnknownOwner(`'${spec}' is not user[:group]`)
  return { user: part(user), ...(group === undefined ? {} : { group: part(group) }) }
}

/** True when resolving `spec` needs /etc/passwd (a user name) or /etc/group (a group name). */
export function ownerNeeds(spec: string): { passwd: boolean; group: boolean } {
  const { user, group } = parseOwner(spec)
  return { passwd: 'name' in user, group: Boolean(group && 'name' in group) }
}

/** The first line of a colon-separated database whose first field is `name` (libcontainer ParsePasswdFilter). */
function lookup(file: string | undefined, name: string): string[] | undefined {
  for (const line of (file ?? '').split('\n')) {
    const fields = line.trim().split(':')
    if (fields[0] === name && fields.length >= 3) return fields
  }
  return undefined
}
const id = (field: string | undefined) => (/^\d+$/.test(field ?? '') ? Number(field) : 0)

/**
 * Resolves `user[:group]` with the image's files (undefined: the image has no such file). A user alone gives its
 * passwd gid; a numeric user alone gives gid = uid.
 */
export function resolveOwner(spec: string, files: { passwd?: string; group?: string }): Owner {
  const { user, group } = parseOwner(spec)
  let owner: Owner
  if ('id' in user) owner = { uid: user.id, gid: user.id }
  else {
    const entry = lookup(files.passwd, user.name)
    if (!entry) throw new UnknownOwner(`unable to find user ${user.name}: no matching entries in passwd file`)
    owner = { uid: id(entry[2]), gid: id(entry[3]) }
  }
  if (!group) return owner
  if ('id' in group) return { ...owner, gid: group.id }
  const entry = lookup(files.group, group.name)
  if (!entry) throw new UnknownOwner(`unable to find group ${group.name}: no matching entries in group file`)
  return { ...owner, gid: id(entry[2]) }
}
