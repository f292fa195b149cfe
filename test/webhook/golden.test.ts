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
import type { InjectionConfig } from '../../src/system/config.js'
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
    // `config` (optional): system settings this case adds to the fixed test configuration.
    const input = JSON.parse(readFileSync(join(dir, file), 'utf8')) as { namespace: string; pod: Record<string, unknown>; config?: Partial<InjectionConfig> }
    const config: InjectionConfig = { ...testConfig, ...(input.config ?? {}) }
    const before = JSON.stringify(input.pod)
    const result = injectPod(input.pod, { config, namespace: input.namespace })
    t.equal(JSON.stringify(input.pod), before, 'the input pod is not modified')
    const outPath = join(dir, `${name}.output.json`)
    const actual = JSON.stringify(summary(result), null, 2) + '\n'
    // A missing golden fails: one that wrote itself would freeze whatever the code does today.
    if (refresh) writeFileSync(outPath, actual)
    if (!existsSync(outPath)) t.fail(`golden/${name}.output.json is missing: write it with REFRESH_GOLDEN=1 and review it`)
    else t.equal(actual, readFileSync(outPath, 'utf8'), `matches golden/${name}.output.json (REFRESH_GOLDEN=1 to regenerate)`)

    // The name of the case says what must happen; the golden alone could freeze a wrong answer.
    const expectedKind = name.startsWith('reject-') ? 'denied' : name.startsWith('skip-') ? 'skipped' : 'injected'
    t.equal(result.kind, expectedKind, `case kind is ${expectedKind}`)
    if (result.kind === 'denied') t.match(result.message, /annotation|label/, 'message names the annotation')
    if (result.kind !== 'injected') return
    // Timeout recovery (SPEC §5): on unless the case says it cannot be.
    if (name.includes('recovery-off')) t.match(result.recoveryOff, /timeout recovery is off/, 'recovery off is reported')
    else {
      t.equal(result.recoveryOff, undefined, 'timeout recovery stays on')
      const containers = (result.pod.spec as { containers: Array<{ name: string; livenessProbe?: unknown; volumeMounts?: Array<{ mountPath: string }> }> }).containers
      const runtime = containers.find((c) => c.name !== 'asya-sidecar' && (c.volumeMounts ?? []).some((m) => m.mountPath === '/opt/asya/asya_runtime.py'))
      t.match(JSON.stringify(runtime?.livenessProbe), /runtime-ready/, "the runtime's liveness probe checks the ready file")
    }

    const applied = fastJsonPatch.applyPatch(structuredClone(input.pod), result.patch, true, false).newDocument
    t.same(applied, result.pod, 'the patch turns the input into the mutated pod')
    t.doesNotThrow(() => new Pod(structuredClone(result.pod) as ConstructorParameters<typeof Pod>[0]).validate(), 'the mutated pod passes the Kubernetes schema')
    const again = injectPod(applied, { config, namespace: input.namespace })
    t.equal(again.kind, 'skipped', 'a second admission makes no patch')
    if (again.kind === 'skipped') t.equal(again.reason, 'already_injected')
    t.notMatch(JSON.stringify(result.patch), /never-inline-this/, 'no password is inlined')
  })
}
