import { describe, expect, test } from 'bun:test'
import { dockerIdOf, fillTemplate, parseInstances, referenceProblem, templateProblems } from '../lib/fleet/instances.ts'

const TEMPLATE = 'docker.io/swebench/sweb.eval.x86_64.{docker_id}:latest'

describe('instances file', () => {
  test('accepts bare ids, JSON objects and SWE-bench rows; skips blanks and comments', () => {
    const text = [
      '# a comment',
      '',
      'django__django-11099',
      '{"id": "astropy__astropy-12907", "upstream": "ghcr.io/me/astropy:1"}',
      '{"instance_id": "sympy__sympy-20590", "repo": "sympy/sympy", "base_commit": "abc"}',
    ].join('\n')
    const { instances, problems } = parseInstances(text, TEMPLATE)
    expect(problems).toEqual([])
    expect(instances.map((i) => [i.id, i.dockerId, i.upstream, i.line])).toEqual([
      [
        'django__django-11099',
        'django_1776_django-11099',
        'docker.io/swebench/sweb.eval.x86_64.django_1776_django-11099:latest',
        3,
      ],
      ['astropy__astropy-12907', 'astropy_1776_astropy-12907', 'ghcr.io/me/astropy:1', 4],
      [
        'sympy__sympy-20590',
        'sympy_1776_sympy-20590',
        'docker.io/swebench/sweb.eval.x86_64.sympy_1776_sympy-20590:latest',
        5,
      ],
    ])
  })

  test('docker_id lower-cases and maps __ to _1776_ as SWE-bench does', () => {
    expect(dockerIdOf('Pylint-Dev__pylint-4970')).toBe('pylint-dev_1776_pylint-4970')
    expect(fillTemplate('r/{id}:{docker_id}', 'A__b')).toBe('r/A__b:a_1776_b')
  })

  test('names every problem with its line number', () => {
    const bad = [
      'ok-1',
      'ok-1',
      '$(reboot)',
      'a`id`',
      'x;rm',
      'a|b',
      '../../etc',
      'has space',
      '{"id": 3}',
      '{not json',
      '[1,2]',
      '{"repo": "x"}',
      '{"id": "ok-2", "upstream": "Bad Ref!"}',
      'x'.repeat(200),
    ]
    const { instances, problems } = parseInstances(bad.join('\n'), TEMPLATE)
    expect(instances.map((i) => i.id)).toEqual(['ok-1'])
    expect(problems).toHaveLength(bad.length - 1)
    for (let line = 2; line <= bad.length; line++) {
      expect(problems.some((p) => p.startsWith(`line ${line}:`))).toBe(true)
    }
    expect(problems[0]).toContain('duplicate id ok-1 (first on line 1)')
    expect(problems.find((p) => p.startsWith('line 3:'))).toContain('shell characters')
    expect(problems.find((p) => p.startsWith('line 7:'))).toContain('path')
    expect(problems.find((p) => p.startsWith('line 8:'))).toContain('white space')
  })

  test('ids equal after lower-casing are duplicates (they would share a tag)', () => {
    const { problems } = parseInstances('Foo__bar-1\nfoo__bar-1\n', TEMPLATE)
    expect(problems).toEqual(['line 2: duplicate id foo__bar-1 (first on line 1)'])
  })

  test('upstream templates must use known placeholders and make valid references', () => {
    expect(templateProblems(TEMPLATE)).toEqual([])
    expect(templateProblems('reg/{instance}:latest')[0]).toContain('unknown placeholder {instance}')
    expect(templateProblems('reg/UPPER/{docker_id}')).toEqual([
      "--upstream reg/UPPER/{docker_id}: repository names are lower-case: 'reg/UPPER/{docker_id}' → use --upstream reg/upper/{docker_id}",
    ])
    expect(templateProblems('reg/x:{id};rm -rf /')).toEqual([
      '--upstream reg/x:{id};rm -rf /: empty or contains white space',
    ])
  })

  test('image references follow docker grammar', () => {
    for (
      const ok of [
        'busybox',
        'a/b:c',
        '127.0.0.1:5000/x/y:z',
        'ghcr.io/a/b@sha256:' + 'a'.repeat(64),
        'localhost/x_y__z-w:1.0',
      ]
    ) {
      expect(referenceProblem(ok)).toBeUndefined()
    }
    for (const bad of ['a/B', 'a b', 'a:b:c', 'a/b:', '-a', 'a//b', '$(x)', 'a/b:' + 't'.repeat(129)]) {
      expect(referenceProblem(bad)).toBeString()
    }
  })

  test('a JSON array (a dataset saved whole) is named as the wrong format, not reported line by line', () => {
    const rows = [{ instance_id: 'django__django-11099' }, { instance_id: 'sympy__sympy-20590' }]
    for (const text of [JSON.stringify(rows), JSON.stringify(rows, null, 2)]) {
      const { instances, problems } = parseInstances(text, TEMPLATE)
      expect(instances).toEqual([])
      expect(problems).toEqual([
        "is a JSON array of 2 rows, not one instance a line: write one id or JSON object a line (JSON lines), e.g. with jq -c '.[]'",
      ])
    }
    const object = parseInstances(JSON.stringify(rows[0], null, 2), TEMPLATE)
    expect(object.problems).toEqual([
      "is one JSON object over several lines, not one instance a line: write one id or JSON object a line (JSON lines), e.g. with jq -c '.[]'",
    ])
    expect(parseInstances('[{"id": "a"},\n', TEMPLATE).problems[0]).toStartWith("starts with '[' like a JSON array")
  })

  test('a bad --upstream template is named once, not again on every line it fills', () => {
    expect(parseInstances('a__b-1\na__b-2\n', 'ghcr.io/MyOrg/{docker_id}:latest').problems).toEqual([])
    expect(templateProblems('ghcr.io/MyOrg/{docker_id}:latest')).toEqual([
      "--upstream ghcr.io/MyOrg/{docker_id}:latest: repository names are lower-case: 'MyOrg/{docker_id}' → use --upstream ghcr.io/myorg/{docker_id}:latest",
    ])
  })

  test('an upstream with capitals or a URL scheme is named with its fix', () => {
    const { problems } = parseInstances(
      '{"id": "a-1", "upstream": "ghcr.io/Me/env:1"}\n{"id": "a-2", "upstream": "https://ghcr.io/me/env:1"}',
      TEMPLATE,
    )
    expect(problems).toEqual([
      `line 1: upstream "ghcr.io/Me/env:1" is not a valid image reference: repository names are lower-case: 'Me/env' (use 'ghcr.io/me/env:1')`,
      `line 2: upstream "https://ghcr.io/me/env:1" is not a valid image reference: 'https://' is a URL scheme: image names have none (docker picks HTTPS, or plain HTTP for a loopback or insecure registry) (use 'ghcr.io/me/env:1')`,
    ])
  })
})
