// Facts several entry points read from the environment, each read one way: the entry point calls these with its
// environment and passes the values down (lib modules never read process.env).
import os from 'node:os'
import path from 'node:path'

type Env = Record<string, string | undefined>

/** Running as a GitHub Actions step (the runner sets GITHUB_ACTIONS=true): groups, annotations, forced colour. */
export const inGitHubActions = (env: Env): boolean => env.GITHUB_ACTIONS === 'true'

/** Where docker keeps config.json (credentials, plugins): $DOCKER_CONFIG, else ~/.docker, as the docker CLI reads it. */
export const dockerConfigDir = (env: Env): string => env.DOCKER_CONFIG ?? path.join(env.HOME ?? os.homedir(), '.docker')
