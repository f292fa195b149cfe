/**
 * SPEC §7/§13: asya.sh/concurrency, asya.sh/batch-size and asya.sh/batch-wait are validated and
 * reach both containers as ASYA_CONCURRENCY / ASYA_BATCH_SIZE / ASYA_BATCH_WAIT.
 */
import t from 'tap'
import { parsePodAnnotations } from '../../src/annotations.js'
import { injectPod } from '../../webhook/inject.js'
import { testConfig } from './fixtures.js'

const labels = { 'asya.sh/actor': 'a' }

function envOf(container: unknown): Record<string, string> {
  const env = (container as { env?: { name: string; value?: string }[] }).env ?? []
  return Object.fromEntries(env.filter((e) => e.value !== undefined).map((e) => [e.name, e.value as string]))
}

t.test('absent: nothing set, the components keep their defaults', async (t) => {
  const v = parsePodAnnotations(labels, {}).value
  t.equal(v?.concurrency, undefined)
  t.equal(v?.batchSize, undefined)
  t.equal(v?.batchWait, undefined)
  const r = injectPod({ metadata: { labels, annotations: { 'asya.sh/handler': 'm.f' } }, spec: { containers: [{ name: 'c' }] } }, { config: testConfig, namespace: 'n' })
  t.equal(r.kind, 'injected')
  if (r.kind !== 'injected') return
  t.notMatch(JSON.stringify(r.pod), /ASYA_CONCURRENCY|ASYA_BATCH/)
})

t.test('valid values are normalised and passed to the runtime and the sidecar', async (t) => {
  const v = parsePodAnnotations(labels, { 'asya.sh/concurrency': ' 16 ', 'asya.sh/batch-size': '32', 'asya.sh/batch-wait': '0.002s' }).value
  t.same([v?.concurrency, v?.batchSize, v?.batchWait], [16, 32, '2ms'])
  t.equal(parsePodAnnotations(labels, { 'asya.sh/batch-wait': '0' }).value?.batchWait, '0s', 'no wait at all is allowed')
  t.equal(parsePodAnnotations(labels, { 'asya.sh/batch-wait': '60s' }).value?.batchWait, '60s', 'the upper bound is inclusive')
  const pod = {
    metadata: { labels, annotations: { 'asya.sh/handler': 'm.f', 'asya.sh/concurrency': '8', 'asya.sh/batch-size': '4', 'asya.sh/batch-wait': '5ms' } },
    spec: { containers: [{ name: 'c', env: [{ name: 'ASYA_CONCURRENCY', value: '99' }] }] },
  }
  const r = injectPod(pod, { config: testConfig, namespace: 'n' })
  t.equal(r.kind, 'injected')
  if (r.kind !== 'injected') return
  const spec = r.pod.spec as { containers: unknown[]; initContainers: unknown[] }
  const runtime = envOf(spec.containers[0])
  const sidecar = envOf(spec.initContainers.find((c) => (c as { name: string }).name === 'asya-sidecar'))
  for (const [name, env] of [['runtime', runtime], ['sidecar', sidecar]] as const) {
    t.equal(env.ASYA_CONCURRENCY, '8', `${name}: ASYA_CONCURRENCY (the annotation wins over the container's own env)`)
    t.equal(env.ASYA_BATCH_SIZE, '4', `${name}: ASYA_BATCH_SIZE`)
    t.equal(env.ASYA_BATCH_WAIT, '5ms', `${name}: ASYA_BATCH_WAIT`)
  }
})

t.test('invalid values deny the pod naming the annotation and its range', async (t) => {
  const cases: [Record<string, string>, string, RegExp][] = [
    [{ 'asya.sh/concurrency': '0' }, 'asya.sh/concurrency', /\[1, 1000\]/],
    [{ 'asya.sh/concurrency': '1001' }, 'asya.sh/concurrency', /\[1, 1000\]/],
    [{ 'asya.sh/concurrency': '2.5' }, 'asya.sh/concurrency', /integer/],
    [{ 'asya.sh/batch-size': '-3' }, 'asya.sh/batch-size', /\[1, 1000\]/],
    [{ 'asya.sh/batch-size': '' }, 'asya.sh/batch-size', /integer/],
    [{ 'asya.sh/batch-wait': 'soon' }, 'asya.sh/batch-wait', /\[0ms, 60s\]/],
    [{ 'asya.sh/batch-wait': '61s' }, 'asya.sh/batch-wait', /\[0ms, 60s\]/],
  ]
  for (const [annotations, name, range] of cases) {
    const r = injectPod({ metadata: { labels, annotations: { 'asya.sh/handler': 'm.f', ...annotations } }, spec: { containers: [{ name: 'c' }] } }, { config: testConfig, namespace: 'n' })
    t.equal(r.kind, 'denied', JSON.stringify(annotations))
    if (r.kind !== 'denied') continue
    t.same(r.problems.map((p) => p.annotation), [name])
    t.match(r.message, name)
    t.match(r.message, range)
  }
  const many = parsePodAnnotations(labels, { 'asya.sh/concurrency': 7 as unknown as string, 'asya.sh/batch-size': 'x' })
  t.same(many.problems.map((p) => p.annotation), ['asya.sh/concurrency', 'asya.sh/batch-size'], 'every problem once, a non-string reported as such')
  t.match(many.problems[0]?.message, /string value/)
})
