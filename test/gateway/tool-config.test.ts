/**
 * Tool config in upstream's routes.yaml format: strict parsing (unknown keys fail naming file and
 * key, all problems at once), named routes, defaults, file or directory, JSON-Schema types, and
 * arguments → payload checks.
 */
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { argumentsToPayload, loadToolConfig, parseToolConfig, toolInputSchema } from '../../gateway/tool-config.js'
import { AsyaError } from '../../src/errors.js'

const UPSTREAM_EXAMPLE = `
defaults:
  progress: true
  timeout: 300
routes:
  text-pipeline: [preprocess, infer, postprocess]
tools:
  - name: summarize
    description: Summarize text
    parameters:
      text: { type: string, required: true, description: input }
      style: { type: string, options: [short, long], default: short }
      max_words: { type: integer }
      tags: { type: array, items: { type: string } }
      options:
        type: object
        properties:
          temperature: { type: number, default: 0.2 }
          model: { type: string, required: true }
    route: text-pipeline
    metadata: { team: nlp }
  - name: direct
    description: explicit route
    route: [one, two]
    progress: false
    timeout: 10
`

function problems(fn: () => unknown): string[] {
  try {
    fn()
  } catch (err) {
    if (err instanceof AsyaError && err.code === 'ASYA_ERR_TOOL_CONFIG_INVALID') return err.details.problems as string[]
    throw err
  }
  throw new Error('expected ASYA_ERR_TOOL_CONFIG_INVALID')
}

t.test('upstream example: routes resolved, defaults applied', async (t) => {
  const c = parseToolConfig([{ file: 'routes.yaml', text: UPSTREAM_EXAMPLE }])
  const [s, d] = c.tools
  t.same(s?.actors, ['preprocess', 'infer', 'postprocess'])
  t.equal(s?.progress, true)
  t.equal(s?.timeoutSec, 300)
  t.same(s?.metadata, { team: 'nlp' })
  t.same(d?.actors, ['one', 'two'])
  t.equal(d?.progress, false)
  t.equal(d?.timeoutSec, 10)
  t.equal(d?.wait, false)
})

t.test('input schema has the real JSON-Schema types (object stays object)', async (t) => {
  const c = parseToolConfig([{ file: 'routes.yaml', text: UPSTREAM_EXAMPLE }])
  const schema = toolInputSchema(c.tools[0]!)
  t.same(schema.required, ['text'])
  t.same(schema.properties.style, { type: 'string', default: 'short', enum: ['short', 'long'] })
  t.same(schema.properties.max_words, { type: 'integer' })
  t.same(schema.properties.tags, { type: 'array', items: { type: 'string' } })
  t.same(schema.properties.options, {
    type: 'object',
    properties: { temperature: { type: 'number', default: 0.2 }, model: { type: 'string' } },
    required: ['model'],
  })
})

t.test('unknown keys fail naming file and key; every problem at once', async (t) => {
  const p = problems(() =>
    parseToolConfig([
      {
        file: 'a.yaml',
        text: `
bogus: 1
defaults: { progres: true }
tools:
  - name: x
    route: [a]
    timout: 5
    parameters:
      p: { type: string, requird: true }
      q: { type: strin }
`,
      },
    ]),
  )
  t.ok(p.some((m) => m.startsWith('a.yaml: bogus: unknown key')), p.join('\n'))
  t.ok(p.some((m) => m.startsWith('a.yaml: defaults.progres: unknown key')))
  t.ok(p.some((m) => m.startsWith('a.yaml: tools[0](x).timout: unknown key')))
  t.ok(p.some((m) => m.startsWith('a.yaml: tools[0](x).parameters.p.requird: unknown key')))
  t.ok(p.some((m) => m.startsWith('a.yaml: tools[0](x).parameters.q.type: must be one of')))
})

t.test('routes: missing, unknown template, bad actor names, end actors', async (t) => {
  const p = problems(() =>
    parseToolConfig([
      {
        file: 'r.yaml',
        text: `
tools:
  - { name: a }
  - { name: b, route: nope }
  - { name: c, route: [Bad_Name] }
  - { name: d, route: [x, happy-end] }
  - { name: e, route: [x] }
  - { name: e, route: [y] }
`,
      },
    ]),
  )
  t.ok(p.some((m) => m.includes('tools[0](a).route: is required')))
  t.ok(p.some((m) => m.includes('tools[1](b).route: route template "nope" not found')))
  t.ok(p.some((m) => m.includes('tools[2](c).route[0]')))
  t.ok(p.some((m) => m.includes('must not name the end actor happy-end')))
  t.ok(p.some((m) => m.includes('duplicate tool name "e"')))
})

t.test('a directory of files is merged; duplicates across files fail', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'asya-tools-'))
  writeFileSync(join(dir, '01-routes.yaml'), 'routes: { p: [a, b] }\ndefaults: { timeout: 7 }\n')
  writeFileSync(join(dir, '02-tools.yml'), 'tools:\n  - { name: t1, route: p }\n')
  writeFileSync(join(dir, 'README.md'), 'ignored')
  const c = loadToolConfig(dir)
  t.same(c.tools.map((x) => [x.name, x.actors, x.timeoutSec]), [['t1', ['a', 'b'], 7]])
  writeFileSync(join(dir, '03-dup.yaml'), 'tools:\n  - { name: t1, route: [z] }\n')
  const p = problems(() => loadToolConfig(dir))
  t.ok(p.some((m) => m.includes('03-dup.yaml') && m.includes('duplicate tool name "t1"')))
  t.throws(() => loadToolConfig(join(dir, 'missing.yaml')), { code: 'ASYA_ERR_TOOL_CONFIG_INVALID' })
  t.throws(() => loadToolConfig(mkdtempSync(join(tmpdir(), 'asya-empty-'))), { code: 'ASYA_ERR_TOOL_CONFIG_INVALID' })
})

t.test('YAML syntax errors name the file', async (t) => {
  const p = problems(() => parseToolConfig([{ file: 'broken.yaml', text: 'tools: [\n' }]))
  t.match(p[0], /^broken\.yaml: YAML:/)
})

t.test('arguments → payload: defaults, required, types, enums, nested', async (t) => {
  const tool = parseToolConfig([{ file: 'routes.yaml', text: UPSTREAM_EXAMPLE }]).tools[0]!
  const ok = argumentsToPayload(tool, { text: 'hello', options: { model: 'm' }, extra: 1 })
  t.same(ok, { payload: { text: 'hello', style: 'short', options: { model: 'm', temperature: 0.2 }, extra: 1 } })
  const bad = argumentsToPayload(tool, { style: 'medium', max_words: 2.5, tags: ['a', 3], options: {} })
  t.ok('problems' in bad)
  const list = 'problems' in bad ? bad.problems : []
  t.same(list.sort(), [
    'missing required parameter: options.model',
    'missing required parameter: text',
    'parameter max_words must be an integer',
    'parameter style must be one of "short", "long"',
    'parameter tags[1] must be a string',
  ])
  t.same(argumentsToPayload(tool, [1]), { problems: ['arguments must be a JSON object'] })
})
