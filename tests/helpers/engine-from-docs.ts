#!/usr/bin/env bun
// Writes the --help fixtures of a documented engine (tests/fixtures/engines/<name>/help/) from the reference pages
// at that exact version: docker/cli docs/reference/commandline/*.md and docker/buildx docs/reference/buildx_*.md.
// Their options tables are generated from the commands' flag definitions (between MARKER_GEN_START and _END;
// hidden and deprecated flags are left out, as --help leaves them out). Needs the repositories on this machine:
//   bun tests/helpers/engine-from-docs.ts CLI_GIT_DIR BUILDX_GIT_DIR
// The answers to version/info/inspect/du are written by hand from the sources named in their headers.
import cp from 'node:child_process'
import path from 'node:path'
import { ENGINES_DIR, helpFile, writeRecorded } from './engine-fixtures.ts'

type Page = { repo: 'cli' | 'buildx'; tag: string; page: string; usage: string; note?: string }
const cli = (tag: string, page: string, usage: string): Page => ({ repo: 'cli', tag, page, usage })
const bx = (tag: string, page: string, usage: string, note?: string): Page => ({
  repo: 'buildx',
  tag,
  page,
  usage,
  note,
})

// Docker ≥ 23 with buildx installed forwards `docker build` and `docker builder …` to buildx (docker/cli
// cmd/docker/builder.go forwardBuilder, with BUILDX_BUILDER set to the default builder): buildx answers their --help.
const FORWARDED = 'forwarded to buildx by docker/cli cmd/docker/builder.go forwardBuilder'

/** The pages each documented engine's --help comes from: Docker CLI version, buildx version. */
function pages(cliTag: string, buildxTag: string): Record<string, Page> {
  const d = `docs/reference/commandline`
  return {
    version: cli(cliTag, `${d}/version.md`, 'docker version [OPTIONS]'),
    info: cli(cliTag, `${d}/info.md`, 'docker info [OPTIONS]'),
    login: cli(cliTag, `${d}/login.md`, 'docker login [OPTIONS] [SERVER]'),
    push: cli(cliTag, `${d}/push.md`, 'docker push [OPTIONS] NAME[:TAG]'),
    rmi: cli(cliTag, `${d}/rmi.md`, 'docker rmi [OPTIONS] IMAGE [IMAGE...]'),
    'system prune': cli(cliTag, `${d}/system_prune.md`, 'docker system prune [OPTIONS]'),
    'system df': cli(cliTag, `${d}/system_df.md`, 'docker system df [OPTIONS]'),
    'image prune': cli(cliTag, `${d}/image_prune.md`, 'docker image prune [OPTIONS]'),
    build: bx(buildxTag, 'docs/reference/buildx_build.md', 'docker build [OPTIONS] PATH | URL | -', FORWARDED),
    'builder prune': bx(buildxTag, 'docs/reference/buildx_prune.md', 'docker builder prune', FORWARDED),
    'buildx version': bx(buildxTag, 'docs/reference/buildx_version.md', 'docker buildx version'),
    'buildx inspect': bx(buildxTag, 'docs/reference/buildx_inspect.md', 'docker buildx inspect [NAME]'),
    'buildx build': bx(buildxTag, 'docs/reference/buildx_build.md', 'docker buildx build [OPTIONS] PATH | URL | -'),
    'buildx prune': bx(buildxTag, 'docs/reference/buildx_prune.md', 'docker buildx prune'),
    'buildx du': bx(buildxTag, 'docs/reference/buildx_du.md', 'docker buildx du'),
  }
}

/** The documented engines: fixture directory → Docker CLI tag, buildx tag. */
export const DOCUMENTED: Record<string, [string, string]> = {
  'docker-24.0-buildx-0.11-docker': ['v24.0.9', 'v0.11.2'],
  'docker-27.5-buildx-0.17-container': ['v27.5.1', 'v0.17.1'],
  'docker-28.5-buildx-0.29-container': ['v28.5.2', 'v0.29.1'],
  'docker-28.5-buildx-0.29-remote': ['v28.5.2', 'v0.29.1'],
  'docker-29.7-containerd-buildx-0.31-docker': ['v29.7.2', 'v0.31.1'],
  'docker-29.7-buildx-0.31-kubernetes': ['v29.7.2', 'v0.31.1'],
}

/** The generated options table of a reference page, as docker prints it under `Options:`. */
export function renderHelp(markdown: string, usage: string): string {
  const gen = markdown.split('<!---MARKER_GEN_START-->')[1]?.split('<!---MARKER_GEN_END-->')[0]
  if (!gen) throw new Error('no generated section')
  const summary = gen.trim().split('\n')[0]
  const rows = gen.split('\n').filter((l) => /^\|\s*\[?`-/.test(l))
  const lines = rows.map((row) => {
    const [name, type, , description] = row.split(/(?<!\\)\|/).slice(1).map((c) => c.trim())
    const flags = [...name.matchAll(/`(-{1,2}[A-Za-z0-9][A-Za-z0-9-]*)`/g)].map((m) => m[1])
    const long = flags.find((f) => f.startsWith('--'))!
    const short = flags.find((f) => !f.startsWith('--'))
    const t = type.replace(/`/g, '')
    const left = `${short ? `${short}, ` : '    '}${long}${t && t !== 'bool' ? ` ${t}` : ''}`
    return {
      left,
      description: description.replace(/\[([^\]]*)\]\([^)]*\)/g, '$1').replace(/`/g, '').replace(/\\\|/g, '|'),
    }
  })
  const width = Math.max(...lines.map((l) => l.left.length)) + 3
  const options = lines.map((l) => `  ${l.left.padEnd(width)}${l.description}`)
  return `\nUsage:  ${usage}\n\n${summary}\n\nOptions:\n${options.join('\n')}\n`
}

if (import.meta.main) {
  const [cliGit, buildxGit] = process.argv.slice(2)
  if (!cliGit || !buildxGit) throw new Error('usage: engine-from-docs.ts CLI_GIT_DIR BUILDX_GIT_DIR')
  for (const [engine, [cliTag, buildxTag]] of Object.entries(DOCUMENTED)) {
    for (const [command, p] of Object.entries(pages(cliTag, buildxTag))) {
      const git = p.repo === 'cli' ? cliGit : buildxGit
      const markdown = cp.execFileSync('git', ['--git-dir', git, 'show', `${p.tag}:${p.page}`], { encoding: 'utf8' })
      const repo = p.repo === 'cli' ? 'docker/cli' : 'docker/buildx'
      writeRecorded(path.join(ENGINES_DIR, engine), helpFile(command), {
        command: `docker ${command} --help`,
        from: `recorded answers, not a real engine: the options table of ${repo} ${p.tag} ${p.page}${
          p.note ? ` (${p.note})` : ''
        }, written by tests/helpers/engine-from-docs.ts`,
        exit: 0,
        body: renderHelp(markdown, p.usage),
      })
    }
  }
}
