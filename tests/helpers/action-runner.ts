// A stand-in for the GitHub Actions runner, as far as a composite action of `run:` steps goes (imagefleet's two
// action.yml files): the YAML is parsed with Bun's built-in parser (Bun.YAML, no dependency), each step's
// `${{ inputs.x }}`, `${{ steps.id.outputs.y }}`, `${{ github.action_path }}` and `${{ github.workspace }}` are
// evaluated (any other expression is an error, so a test cannot pass over one it does not understand), the step runs
// as the runner runs `shell: bash` — `bash --noprofile --norc -eo pipefail FILE` in GITHUB_WORKSPACE — with its own
// GITHUB_OUTPUT and GITHUB_STEP_SUMMARY files, and a failed step skips the rest. Like the real runner for composite
// actions it sets no INPUT_* variables itself (actions/runner#665): a step sees what its `env:` maps.
import fs from 'node:fs'
import path from 'node:path'
import { $ } from 'zx'

export type ActionInput = { description?: string; required?: boolean; default?: string }
export type ActionStep = {
  id?: string
  name?: string
  shell?: string
  run?: string
  env?: Record<string, string>
  uses?: string
  'working-directory'?: string
}
export type Action = {
  name: string
  description: string
  inputs: Record<string, ActionInput>
  outputs: Record<string, { description?: string; value: string }>
  runs: { using: string; steps: ActionStep[] }
}

export function loadAction(file: string): Action {
  return Bun.YAML.parse(fs.readFileSync(file, 'utf8')) as Action
}

export type RunOptions = {
  /** `with:` of the calling step (strings, as the runner passes them) */
  inputs: Record<string, string>
  /** GITHUB_ACTION_PATH: the directory holding action.yml */
  actionPath: string
  /** GITHUB_WORKSPACE, where run steps start */
  workspace: string
  /** the job's environment (CI, GITHUB_ACTIONS, GITHUB_REPOSITORY, PATH, DOCKER_HOST, …) */
  env: Record<string, string>
  /** where the per-step GITHUB_OUTPUT / GITHUB_STEP_SUMMARY files go */
  files: string
}
export type ActionRun = {
  exitCode: number
  outputs: Record<string, string>
  steps: Record<string, Record<string, string>>
  /** every step's stdout and stderr, in order */
  log: string
  /** the job summary: every step's GITHUB_STEP_SUMMARY, appended */
  summary: string
}

/** Runs the action's steps in order; resolves when one fails or all are done. */
export async function runAction(action: Action, o: RunOptions): Promise<ActionRun> {
  if (action.runs.using !== 'composite') throw new Error(`runs.using ${action.runs.using}: only composite is run here`)
  const steps: ActionRun['steps'] = {}
  const evaluate = evaluator(action, o, steps)
  let log = ''
  let summary = ''
  let exitCode = 0
  for (const [i, step] of action.runs.steps.entries()) {
    if (step.uses || !step.run) throw new Error(`step ${i + 1}: only run steps are supported here`)
    if (step.shell !== 'bash') throw new Error(`step ${i + 1}: a composite run step must name its shell (bash)`)
    const files = { output: path.join(o.files, `output-${i}`), summary: path.join(o.files, `summary-${i}`) }
    const script = path.join(o.files, `step-${i}.sh`)
    for (const f of Object.values(files)) fs.writeFileSync(f, '')
    fs.writeFileSync(script, evaluate(step.run))
    const env = {
      ...o.env,
      GITHUB_ACTION_PATH: o.actionPath,
      GITHUB_WORKSPACE: o.workspace,
      GITHUB_OUTPUT: files.output,
      GITHUB_STEP_SUMMARY: files.summary,
      ...Object.fromEntries(Object.entries(step.env ?? {}).map(([k, v]) => [k, evaluate(String(v))])),
    }
    const cwd = step['working-directory'] ? path.resolve(o.workspace, evaluate(step['working-directory'])) : o.workspace
    const r = await $({ env, cwd, nothrow: true, quiet: true })`bash --noprofile --norc -eo pipefail ${script}`
    log += `## step ${i + 1}: ${step.name ?? step.id ?? ''}\n${r.stdout}${r.stderr}`
    summary += fs.readFileSync(files.summary, 'utf8')
    if (step.id) steps[step.id] = parseOutputs(fs.readFileSync(files.output, 'utf8'))
    if (r.exitCode !== 0) {
      exitCode = r.exitCode ?? 1
      break
    }
  }
  const outputs = Object.fromEntries(Object.entries(action.outputs).map(([k, v]) => [k, evaluate(v.value)]))
  return { exitCode, outputs, steps, log, summary }
}

/** `name=value` lines and the `name<<DELIMITER … DELIMITER` form, as the runner reads GITHUB_OUTPUT. */
export function parseOutputs(text: string): Record<string, string> {
  const out: Record<string, string> = {}
  const lines = text.split('\n')
  for (let i = 0; i < lines.length; i++) {
    const heredoc = /^([^=<]+)<<(.+)$/.exec(lines[i])
    if (heredoc) {
      const end = lines.indexOf(heredoc[2], i + 1)
      out[heredoc[1]] = lines.slice(i + 1, end).join('\n')
      i = end
    } else if (lines[i].includes('=')) {
      out[lines[i].slice(0, lines[i].indexOf('='))] = lines[i].slice(lines[i].indexOf('=') + 1)
    }
  }
  return out
}

function evaluator(action: Action, o: RunOptions, steps: ActionRun['steps']) {
  const evaluate = (text: string): string =>
    text.replace(/\$\{\{\s*(.*?)\s*\}\}/g, (_, expr: string) => {
      let m: RegExpExecArray | null
      if ((m = /^inputs\.([\w-]+)$/.exec(expr))) {
        if (!(m[1] in action.inputs)) throw new Error(`\${{ ${expr} }}: the action declares no input ${m[1]}`)
        return o.inputs[m[1]] ?? evaluate(String(action.inputs[m[1]].default ?? ''))
      }
      if ((m = /^steps\.([\w-]+)\.outputs\.([\w-]+)$/.exec(expr))) return steps[m[1]]?.[m[2]] ?? ''
      if (expr === 'github.action_path') return o.actionPath
      if (expr === 'github.workspace') return o.workspace
      throw new Error(`\${{ ${expr} }}: not an expression this test runner evaluates`)
    })
  return evaluate
}
