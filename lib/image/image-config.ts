// The final stage's steps applied to one base image's config the way `docker build` (BuildKit) applies them:
// expansion sees the base Env and the ARGs, ENV replaces or appends, WORKDIR resolves against the previous one,
// ENTRYPOINT clears Cmd unless CMD came first, shell forms use the base's Shell or /bin/sh -c, one history entry per
// instruction. The file changes (COPY, the directory WORKDIR makes) come out as FileOps, expanded and absolute.
import path from 'node:path'
import type { AssembleStep } from './assemble-dockerfile.ts'
import type { FileOp } from './copy.ts'
import { expandWord, varsFrom } from './dockerfile-words.ts'

/** The parts of an image config (docker or OCI: same field names) that assembly reads and writes. */
export type ImageConfig = {
  created?: string
  architecture?: string
  os?: string
  variant?: string
  config?: {
    Env?: string[] | null
    Entrypoint?: string[] | null
    Cmd?: string[] | null
    WorkingDir?: string
    User?: string
    Labels?: Record<string, string> | null
    ExposedPorts?: Record<string, object> | null
    Shell?: string[]
    ArgsEscaped?: boolean
    OnBuild?: string[] | null
    [k: string]: unknown
  }
  rootfs: { type: string; diff_ids: string[] }
  history?: { created?: string; created_by?: string; comment?: string; empty_layer?: boolean }[]
  [k: string]: unknown
}

/** The config with its history written (every new entry empty), the file changes, and each one's history entry. */
export type Evaluated = { image: ImageConfig; ops: FileOp[]; historyOf: number[] }

/** Go's %q of a []string, as BuildKit writes ENTRYPOINT/CMD history: ["a" "b"]. */
const goQuoted = (args: string[]) => `[${args.map((a) => JSON.stringify(a)).join(' ')}]`

/** Applies the steps to a base config. `created` is the time written on the image and the new history entries. */
export function evaluateSteps(base: ImageConfig, steps: AssembleStep[], created: string): Evaluated {
  const image: ImageConfig = structuredClone(base)
  const config = (image.config ??= {})
  if (config.OnBuild?.length) throw new Error(`the base image has ONBUILD triggers, which docker build would run`)
  const vars = new Map((config.Env ?? []).map((e) => [e.slice(0, e.indexOf('=') >>> 0), e.slice(e.indexOf('=') + 1)]))
  const expand = (w: string) => expandWord(w, varsFrom(vars))
  const history = (image.history ??= [])
  const commit = (createdBy: string) =>
    history.push({ created, created_by: createdBy, comment: 'buildkit.dockerfile.v0', empty_layer: true }) - 1
  const ops: FileOp[] = []
  const historyOf: number[] = []
  let cmdSet = false
  for (const step of steps) {
    switch (step.kind) {
      case 'arg':
        if (step.value !== undefined) vars.set(step.name, step.value)
        commit(`ARG ${step.name}${step.value !== undefined ? `=${step.value}` : ''}`)
        break
      case 'env':
      case 'label': {
        const pairs = step.pairs.map(([k, v]) => [expand(k), expand(v)] as const)
        for (const [k, v] of pairs) {
          if (step.kind === 'label') (config.Labels ??= {})[k] = v
          else {
            vars.set(k, v)
            config.Env = setEnv(config.Env ?? [], k, v)
          }
        }
        commit(`${step.kind.toUpperCase()} ${pairs.map(([k, v]) => `${k}=${v}`).join(' ')}`)
        break
      }
      case 'workdir': {
        config.WorkingDir = path.posix.resolve(config.WorkingDir || '/', expand(step.word))
        const at = commit(`WORKDIR ${config.WorkingDir}`)
        if (config.WorkingDir !== '/') {
          ops.push({ kind: 'workdir', path: config.WorkingDir, ...(config.User ? { user: config.User } : {}) })
          historyOf.push(at)
        }
        break
      }
      case 'user':
        config.User = expand(step.word)
        commit(`USER ${config.User}`)
        break
      case 'expose': {
        const ports = step.words.flatMap((w) => exposedPorts(expand(w)))
        config.ExposedPorts = { ...config.ExposedPorts, ...Object.fromEntries(ports.map((p) => [p, {}])) }
        commit(`EXPOSE map[${ports.map((p) => `${p}:{}`).join(' ')}]`)
        break
      }
      case 'entrypoint':
      case 'cmd': {
        const args = step.shellForm
          ? [...(config.Shell?.length ? config.Shell : ['/bin/sh', '-c']), step.args.join(' ')]
          : step.args
        if (step.kind === 'cmd') {
          config.Cmd = args
          config.ArgsEscaped = true
          cmdSet = true
        } else {
          config.Entrypoint = args
          if (!cmdSet) delete config.Cmd
        }
        commit(`${step.kind.toUpperCase()} ${goQuoted(args)}`)
        break
      }
      case 'copy': {
        const words = step.words.map(expand)
        const chown = step.chown === undefined ? undefined : expand(step.chown)
        const flags = step.flags.map((f) => (f.startsWith('--chown=') ? `--chown=${chown}` : f))
        historyOf.push(commit(['COPY', ...flags, ...words].join(' ') + ' # buildkit'))
        ops.push({
          kind: 'copy',
          source: step.image,
          sources: words.slice(0, -1).map((s) => path.posix.join('/', s)),
          dest: copyDest(words[words.length - 1], config.WorkingDir),
          ...(chown !== undefined ? { chown } : {}),
          ...(step.chmod !== undefined ? { chmod: step.chmod } : {}),
        })
        break
      }
    }
  }
  image.created = created
  return { image, ops, historyOf }
}

/** The frontend's destination: relative to WORKDIR, cleaned, a trailing `/` kept when written (or `.`). */
function copyDest(dest: string, workdir?: string): string {
  const absolute = path.posix.join('/', dest.startsWith('/') ? dest : path.posix.join(workdir || '/', dest))
    .replace(/(.)\/+$/, '$1')
  const dir = dest === '.' || dest === '' || dest.endsWith('/')
  return dir && absolute !== '/' ? `${absolute}/` : absolute
}

/** `80`, `53/udp`, `8000-8002/tcp` → docker's port keys. */
function exposedPorts(word: string): string[] {
  const m = /^(\d+)(?:-(\d+))?(?:\/(tcp|udp|sctp))?$/i.exec(word)
  if (!m) throw new Error(`EXPOSE ${word}: not a port, port range or port/protocol`)
  const [from, to] = [Number(m[1]), Number(m[2] ?? m[1])]
  return Array.from({ length: to - from + 1 }, (_, i) => `${from + i}/${(m[3] ?? 'tcp').toLowerCase()}`)
}

/** The history entry of the step that made the layer carries it; the layer's diff_id goes on rootfs. */
export function attachLayer(e: Evaluated, layer?: { diffId: string; op: number }): ImageConfig {
  if (!layer) return e.image
  const image = structuredClone(e.image)
  delete image.history![e.historyOf[layer.op]].empty_layer
  image.rootfs = { ...image.rootfs, diff_ids: [...image.rootfs.diff_ids, layer.diffId] }
  return image
}

function setEnv(env: string[], key: string, value: string): string[] {
  const at = env.findIndex((e) => e.split('=')[0] === key)
  return at >= 0 ? env.map((e, i) => (i === at ? `${key}=${value}` : e)) : [...env, `${key}=${value}`]
}
