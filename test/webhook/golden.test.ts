/**
 * Golden files: test/webhook/golden/<case>.input.json (namespace + pod) → <case>.output.json
 * (what injectPod decided and the JSON Patch). `REFRESH_GOLDEN=1 npx tap test/webhook/golden.test.ts`
 * rewrites the outputs; review the diff before committing.
 */
import t from 'tap'
import { readdirSync, readFileSync, writeFileSync, existsSync } from 'node:fs'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import fastJsonPatch from 'fast-json-patch'
import { Pod } from 'kubernetes-models/v1'
import { injectPod, type InjectResult } from '../../webhook/inject.js'
import { testConfig } from './fixtures.js'

const dir = join(dirname(fileURLToPath(import.meta.url)), 'golden')
const refresh = process.env.REFRESH_GOLDEN === '1'
const inputs = readdirSync(dir).filter((f) => f.endsWith('.input.json')).sort()

function summary(r: InjectResult): unknown {
  if (r.kind === 'skipped') return { kind: r.kind, reason: r.reason, warnings: r.warnings }
  if (r.kind === 'denied') return { kind: r.kind, message: r.message, annotations: r.problems.map((p) => p.annotation) }
  return { kind: r.kind, actor: r.actor, warnings: r.warnings, patch: r.patch }
}

t.ok(inputs.length >= 20, 'golden cases are present')
t.throws(() => new Pod({ spec: { containers: [{ name: 'x', ports: [{ containerPort: 'not-a-number' }] }] } } as unknown as ConstructorParameters<typeof Pod>[0]).validate(), 'the schema check can fail')

for (const file of inputs) {
  const name = file.replace(/\.input\.json$/, '')
  t.test(name, async (t) => {
    const input = JSON.parse(readFileSync(join(dir, file), 'utf8')) as { namespace: string; pod: Record<string, unknown> }
    const before = JSON.stringify(input.pod)
    const result = injectPod(input.pod, { config: testConfig, namespace: input.namespace })
    t.equal(JSON.stringify(input.pod), before, 'the input pod is not modified')
    const outPath = join(dir, `${name}.output.json`)
    const actual = JSON.stringify(summary(result), null, 2) + '\n'
    if (refresh || !existsSync(outPath)) writeFileSync(outPath, actual)
    t.equal(actual, readFileSync(outPath, 'utf8'), `matches golden/${name}.output.json (REFRESH_GOLDEN=1 to regenerate)`)

    // The name of the case says what must happen; the golden alone could freeze a wrong answer.
    const expectedKind = name.startsWith('reject-') ? 'denied' : name.startsWith('skip-') ? 'skipped' : 'injected'
    t.equal(result.kind, expectedKind, `case kind is ${expectedKind}`)
    if (result.kind === 'denied') t.match(result.message, /annotation|label/, 'message names the annotation')
    if (result.kind !== 'injected') return

    const applied = fastJsonPatch.applyPatch(structuredClone(input.pod), result.patch, true, false).newDocument
    t.same(applied, result.pod, 'the patch turns the input into the mutated pod')
    t.doesNotThrow(() => new Pod(structuredClone(result.pod) as ConstructorParameters<typeof Pod>[0]).validate(), 'the mutated pod passes the Kubernetes schema')
    const again = injectPod(applied, { config: testConfig, namespace: input.namespace })
    t.equal(again.kind, 'skipped', 'a second admission makes no patch')
    if (again.kind === 'skipped') t.equal(again.reason, 'already_injected')
    t.notMatch(JSON.stringify(result.patch), /never-inline-this/, 'no password is inlined')
  })
}
