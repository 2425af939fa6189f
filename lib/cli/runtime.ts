// The runtime running this process (Bun, or Deno, which needs `run -A`), as the command that runs another
// script under the same one — so a script started with Deno starts its children with Deno too.
export const runtimeCommand = (): string[] =>
  'Deno' in globalThis ? [process.execPath, 'run', '-A'] : [process.execPath, ...process.execArgv]
