import t from 'tap'
import { parsePodAnnotations } from '../../src/annotations.js'
import { injectPod } from '../../webhook/inject.js'
import { testConfig } from './fixtures.js'

t.test('pod annotations: defaults, normalisation, every problem reported at once', async (t) => {
  const ok = parsePodAnnotations({ 'asya.sh/actor': 'a' }, {})
  t.same(ok.value, { actor: 'a', timeoutSeconds: 300, maxRetries: 0, retryBackoff: '1s', retryBackoffMs: 1000, nativeSidecar: true, runtimeCommand: 'inject' })
  const full = parsePodAnnotations({ 'asya.sh/actor': 'a' }, { 'asya.sh/timeout': '5m', 'asya.sh/retry-backoff': '1500ms', 'asya.sh/transport': 'sqs', 'asya.sh/native-sidecar': 'false' })
  t.equal(full.value?.timeoutSeconds, 300, '"5m" is 300 seconds')
  t.equal(full.value?.retryBackoff, '1500ms')
  t.equal(full.value?.transport, 'sqs')
  t.equal(full.value?.nativeSidecar, false)
  const bad = parsePodAnnotations({ 'asya.sh/actor': 'a' }, { 'asya.sh/timeout': '0', 'asya.sh/max-retries': 'x', 'asya.sh/handler': 3 as unknown as string })
  t.equal(bad.value, undefined, 'nothing is half-applied')
  t.same(bad.problems.map((p) => p.annotation).sort(), ['asya.sh/handler', 'asya.sh/max-retries', 'asya.sh/timeout'])
  t.match(bad.problems.find((p) => p.annotation === 'asya.sh/handler')?.message, /string value/)
  t.match(parsePodAnnotations({ 'asya.sh/actor': 'a' }, { 'asya.sh/timeout': '1.5' }).problems[0]?.message, /whole seconds/)
})

t.test('a transport the cluster has no settings for is denied, naming the configured ones', async (t) => {
  const config = { ...testConfig, transports: { ...testConfig.transports, sqs: undefined } }
  delete config.transports.sqs
  delete config.transports.nats
  const r = injectPod(
    { metadata: { labels: { 'asya.sh/actor': 'x' }, annotations: { 'asya.sh/transport': 'sqs', 'asya.sh/handler': 'a.b' } }, spec: { containers: [{ name: 'c' }] } },
    { config, namespace: 'n' },
  )
  t.equal(r.kind, 'denied')
  if (r.kind === 'denied') t.match(r.message, /asya\.sh\/transport="sqs".*\(rabbitmq\)/)
})

t.test('garbage pods never throw', async (t) => {
  for (const pod of [null, 1, 'x', [], {}, { metadata: null }, { metadata: { labels: { 'asya.sh/actor': 'a' } } }, { metadata: { labels: { 'asya.sh/actor': 'a' } }, spec: { containers: 'no' } }, { metadata: { labels: { 'asya.sh/actor': 'a' } }, spec: { containers: [null, 1, { name: 'x' }] } }]) {
    const r = injectPod(pod, { config: testConfig })
    t.ok(['skipped', 'denied', 'injected'].includes(r.kind), JSON.stringify(pod))
  }
})
