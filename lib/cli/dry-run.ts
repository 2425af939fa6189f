// --dry-run: zx still builds every command exactly as it would run it (quoting and all), but the
// spawn prints it instead of running it. The printed lines paste into a shell as they are.
import cp from 'node:child_process'

export function dryRunSpawn(print: (command: string) => void, prefix = '', postfix = ''): typeof cp.spawn {
  return ((command: string, _args: unknown, options: cp.SpawnOptions) => {
    let shown = command
    if (prefix && shown.startsWith(prefix)) shown = shown.slice(prefix.length)
    if (postfix && shown.endsWith(postfix)) shown = shown.slice(0, -postfix.length)
    print(shown.trim())
    return cp.spawn('true', [], { ...options, shell: false })
  }) as typeof cp.spawn
}
