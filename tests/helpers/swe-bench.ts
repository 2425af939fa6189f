// Instance lists shaped like the field's: SWE-bench Verified's 500 instances with their real repository counts,
// listed in id order (so a repository's environment versions interleave, as in the dataset).
import { type Instance, parseInstances } from '../../lib/fleet/instances.ts'

/** Instances per repository in SWE-bench Verified (500 in all). */
export const VERIFIED_REPOS: Record<string, number> = {
  'django__django': 231,
  'sympy__sympy': 75,
  'sphinx-doc__sphinx': 44,
  'matplotlib__matplotlib': 34,
  'scikit-learn__scikit-learn': 32,
  'astropy__astropy': 22,
  'pydata__xarray': 22,
  'pytest-dev__pytest': 19,
  'pylint-dev__pylint': 10,
  'psf__requests': 8,
  'mwaskom__seaborn': 2,
  'pallets__flask': 1,
}

/** The ids of a Verified-shaped list, sorted (the dataset's order): `django__django-10097`, … */
export function verifiedIds(): string[] {
  return Object.entries(VERIFIED_REPOS)
    .flatMap(([repo, n]) => Array.from({ length: n }, (_, k) => `${repo}-${10_000 + 37 * k}`))
    .sort()
}

/** The Verified-shaped list as parsed instances (ids only, default upstream template). */
export function verifiedInstances(template = 'docker.io/swebench/sweb.eval.x86_64.{docker_id}:latest'): Instance[] {
  const { instances, problems } = parseInstances(verifiedIds().join('\n'), template)
  if (problems.length) throw new Error(problems.join('\n'))
  return instances
}

/** A deterministic shuffle (tests that the order of the list changes nothing). */
export function shuffled<T>(xs: T[], seed: number): T[] {
  const out = [...xs]
  let s = seed
  for (let i = out.length - 1; i > 0; i--) {
    s = (s * 1103515245 + 12345) % 2 ** 31
    const j = s % (i + 1)
    ;[out[i], out[j]] = [out[j], out[i]]
  }
  return out
}
