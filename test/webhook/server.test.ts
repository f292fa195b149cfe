import t from 'tap'
import { Agent } from 'node:https'
import { request as tlsRequest } from 'node:https'
import fastJsonPatch from 'fast-json-patch'
import { injectPod } from '../../webhook/inject.js'
import { testConfig } from './fixtures.js'
import { actorPod, admissionReview, certs, get, plainPod, post, startServer, tmp, webhookConfig, type Reply } from './helpers.js'

interface Out {
  apiVersion: string
  kind: string
  response: { uid: string; allowed: boolean; patchType?: string; patch?: string; warnings?: string[]; status?: { code: number; message: string } }
}

const c = await certs()
const { server, url, registry } = await startServer(webhookConfig(c.files))
t.teardown(() => server.close())
const ca = c.caCert

async function mutate(review: Record<string, unknown>): Promise<Out> {
  const r = await post(url, JSON.stringify(review), { ca })
  if (r.status !== 200) throw new Error(`status ${r.status}: ${r.body}`)
  return r.json() as Out
}

t.test('actor pod over verified HTTPS: same uid, JSONPatch equal to injectPod, applies cleanly', async (t) => {
  const pod = actorPod('echo')
  const review = admissionReview(pod)
  const out = await mutate(review)
  t.equal(out.apiVersion, 'admission.k8s.io/v1')
  t.equal(out.kind, 'AdmissionReview')
  t.equal(out.response.uid, (review.request as { uid: string }).uid, 'uid echoed')
  t.equal(out.response.allowed, true)
  t.equal(out.response.patchType, 'JSONPatch')
  const patch = JSON.parse(Buffer.from(out.response.patch ?? '', 'base64').toString('utf8')) as fastJsonPatch.Operation[]
  const expected = injectPod(pod, { config: testConfig, namespace: 'team-a' })
  t.equal(expected.kind, 'injected')
  if (expected.kind === 'injected') t.same(patch, expected.patch, 'server and CLI share one injection')
  const applied = fastJsonPatch.applyPatch(structuredClone(pod), patch, true, false).newDocument as { spec: { initContainers: { name: string }[] } }
  t.equal(applied.spec.initContainers[0]?.name, 'asya-sidecar')
})

t.test('non-actor, non-Pod, non-CREATE and excluded namespaces: allowed without patch', async (t) => {
  const cases: [string, Record<string, unknown>][] = [
    ['no label', admissionReview(plainPod())],
    ['UPDATE', admissionReview(actorPod(), { operation: 'UPDATE' })],
    ['Deployment', admissionReview({ kind: 'Deployment' }, { kind: { group: 'apps', version: 'v1', kind: 'Deployment' } })],
    ['kube-system', admissionReview(actorPod(), { namespace: 'kube-system' })],
    ['system namespace', admissionReview(actorPod(), { namespace: 'asya-system' })],
    ['configured exclusion', admissionReview(actorPod(), { namespace: 'legacy-apps' })],
  ]
  for (const [name, review] of cases) {
    const out = await mutate(review)
    t.equal(out.response.allowed, true, name)
    t.equal(out.response.patch, undefined, `${name}: no patch`)
  }
})

t.test('invalid annotation: denied, message names the annotation and accepted values', async (t) => {
  const out = await mutate(admissionReview(actorPod('x', { 'asya.sh/handler-mode': 'raw' })))
  t.equal(out.response.allowed, false)
  t.equal(out.response.patch, undefined, 'nothing half-injected')
  t.match(out.response.status?.message, /asya\.sh\/handler-mode="raw".*payload, envelope/)
})

t.test('ambiguous runtime container: allowed unchanged with a warning', async (t) => {
  const pod = actorPod('amb')
  ;(pod.spec as { containers: unknown[] }).containers.push({ name: 'other', image: 'x' })
  const out = await mutate(admissionReview(pod))
  t.equal(out.response.allowed, true)
  t.equal(out.response.patch, undefined)
  t.match(out.response.warnings?.[0], /asya\.sh\/runtime-container/)
})

t.test('dryRun: the same answer, no side effects', async (t) => {
  const wet = await mutate(admissionReview(actorPod('dry')))
  const dry = await mutate(admissionReview(actorPod('dry'), { dryRun: true }))
  t.equal(dry.response.allowed, true)
  t.equal(dry.response.patch, wet.response.patch, 'dry run gets the patch the real request gets')
})

t.test('bad input: 4xx with a message, never 5xx', async (t) => {
  const expect = async (name: string, r: Promise<Reply>, status: number): Promise<void> => {
    const reply = await r
    t.equal(reply.status, status, name)
    t.match((reply.json() as { message: string }).message, /\S/, `${name}: has a message`)
  }
  await expect('wrong content type', post(url, 'hello', { ca, contentType: 'text/plain' }), 415)
  await expect('malformed JSON', post(url, '{"apiVersion":', { ca }), 400)
  await expect('empty body', post(url, '', { ca }), 400)
  await expect('JSON array', post(url, '[]', { ca }), 400)
  await expect('wrong apiVersion', post(url, JSON.stringify({ ...admissionReview(plainPod()), apiVersion: 'admission.k8s.io/v1beta1' }), { ca }), 400)
  await expect('no uid', post(url, JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', request: {} }), { ca }), 400)
  const deep = '['.repeat(200_000) + ']'.repeat(200_000)
  for (const object of [deep, `{"metadata":{"labels":{"asya.sh/actor":${deep}}}}`, `{"metadata":{"labels":{"asya.sh/actor":"a"}},"spec":{"containers":[{"name":"c","x":${deep}}]}}`]) {
    const body = `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"deep","kind":{"kind":"Pod"},"operation":"CREATE","object":${object}}}`
    const reply = await post(url, body, { ca })
    t.equal(reply.status, 200, 'deeply nested object: answered, no crash')
    t.equal((reply.json() as Out).response.uid, 'deep')
  }
  await expect('too large', post(url, JSON.stringify(admissionReview({ big: 'x'.repeat(2 * 1024 * 1024) })), { ca }), 413)
})

t.test('health, readiness and metrics', async (t) => {
  t.equal((await get(url, '/healthz', ca)).status, 200)
  t.equal((await get(url, '/readyz', ca)).status, 200, 'ready: a certificate is loaded')
  const metrics = (await get(url, '/metrics', ca)).body
  t.match(metrics, /asya_webhook_admission_requests_total\{outcome="injected",reason="injected"\} [1-9]/)
  t.match(metrics, /asya_webhook_admission_requests_total\{outcome="skipped",reason="no_actor_label"\} [1-9]/)
  t.match(metrics, /asya_webhook_admission_requests_total\{outcome="denied",reason="invalid_annotation"\} [1-9]/)
  t.match(metrics, /asya_webhook_admission_requests_total\{outcome="bad_request",reason="FST_ERR_CTP_INVALID_MEDIA_TYPE"\} 1/)
  t.match(metrics, /asya_webhook_admission_duration_seconds_count\{outcome="injected"\} [1-9]/)
  t.match(metrics, /asya_webhook_tls_cert_expiry_timestamp_seconds \d/)
  t.ok(registry.getSingleMetric('asya_webhook_admission_requests_total'), 'metrics live in the given registry')
})

t.test('TLS: a client trusting another CA is refused; TLS 1.1 is refused', async (t) => {
  const other = await certs(tmp('asya-other-'))
  await t.rejects(post(url, '{}', { ca: other.caCert }), /certificate|self.signed|verify/i, 'chain verified against the CA')
  await t.rejects(post(url, '{}', { ca, agent: new Agent({ maxVersion: 'TLSv1.1', minVersion: 'TLSv1' }) }), /version|protocol|alert|ssl/i)
  const wrongName = new Promise((resolve, reject) => {
    tlsRequest(`${url}/healthz`, { ca, servername: 'evil.example.com' }, resolve).on('error', reject).end()
  })
  await t.rejects(wrongName, /altnames|Hostname/i, 'the Service name is checked')
})
