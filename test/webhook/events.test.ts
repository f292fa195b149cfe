import t from 'tap'
import { CoreV1Api } from '@kubernetes/client-node'
import { Registry } from 'prom-client'
import { startKubeApiServer } from '../k8s/kube-api-server.js'
import { kubeWarningRecorder } from '../../webhook/events.js'
import { createWebhookServer } from '../../webhook/server.js'
import { actorPod, admissionReview, certs, post, silent, waitFor, webhookConfig } from './helpers.js'

t.test('a pod admitted without injection gets a Warning Event on its owner; dryRun does not', async (t) => {
  const kube = await startKubeApiServer({ autoCreateNamespaces: true })
  t.teardown(() => kube.close())
  const core = kube.kubeConfig.makeApiClient(CoreV1Api)
  const c = await certs()
  const server = await createWebhookServer(webhookConfig(c.files), { logger: silent, registry: new Registry(), recordWarning: kubeWarningRecorder(kube.kubeConfig, silent) })
  const url = await server.listen()
  t.teardown(() => server.close())
  const ambiguous = (ns: string): Record<string, unknown> => {
    const pod = actorPod('amb') as { metadata: Record<string, unknown>; spec: { containers: unknown[] } }
    pod.metadata.ownerReferences = [{ apiVersion: 'apps/v1', kind: 'ReplicaSet', name: 'amb-5f7c', uid: 'u-1', controller: true }]
    pod.spec.containers.push({ name: 'second', image: 'x' })
    return admissionReview(pod, { namespace: ns })
  }
  const dryNs = `dry-${Math.random().toString(36).slice(2, 7)}`
  const wetNs = `wet-${Math.random().toString(36).slice(2, 7)}`
  const dry = ambiguous(dryNs)
  ;(dry.request as Record<string, unknown>).dryRun = true
  // The dry request goes first: had it recorded an Event, it would be there by the time the wet one is.
  t.equal((await post(url, JSON.stringify(dry), { ca: c.caCert })).status, 200)
  t.equal((await post(url, JSON.stringify(ambiguous(wetNs)), { ca: c.caCert })).status, 200)
  await waitFor('the Event', async () => (await core.listNamespacedEvent({ namespace: wetNs })).items.length === 1)
  const [ev] = (await core.listNamespacedEvent({ namespace: wetNs })).items
  t.equal(ev?.type, 'Warning')
  t.equal(ev?.reason, 'AsyaNotInjected')
  t.same([ev?.involvedObject.kind, ev?.involvedObject.name], ['ReplicaSet', 'amb-5f7c'], 'recorded on the owner')
  t.match(ev?.message, /asya\.sh\/runtime-container/)
  t.equal((await core.listNamespacedEvent({ namespace: dryNs })).items.length, 0, 'dryRun: no side effect')
})

t.test('a pod whose own liveness probe cannot carry recovery is injected with a warning, an Event and a metric reason', async (t) => {
  const kube = await startKubeApiServer({ autoCreateNamespaces: true })
  t.teardown(() => kube.close())
  const core = kube.kubeConfig.makeApiClient(CoreV1Api)
  const c = await certs()
  const registry = new Registry()
  const server = await createWebhookServer(webhookConfig(c.files), { logger: silent, registry, recordWarning: kubeWarningRecorder(kube.kubeConfig, silent) })
  const url = await server.listen()
  t.teardown(() => server.close())
  const grpcPod = (): Record<string, unknown> => {
    const pod = actorPod('grpc') as { metadata: Record<string, unknown>; spec: { containers: Array<Record<string, unknown>> } }
    pod.metadata.ownerReferences = [{ apiVersion: 'apps/v1', kind: 'ReplicaSet', name: 'grpc-6c9d', uid: 'u-2', controller: true }]
    ;(pod.spec.containers[0] as Record<string, unknown>).livenessProbe = { grpc: { port: 9090 } }
    return pod
  }
  const ns = `rec-${Math.random().toString(36).slice(2, 7)}`
  const reply = await post(url, JSON.stringify(admissionReview(grpcPod(), { namespace: ns })), { ca: c.caCert })
  const response = (reply.json() as { response: { allowed: boolean; patch?: string; warnings?: string[] } }).response
  t.equal(response.allowed, true, 'admitted')
  t.ok(response.patch, 'and injected')
  t.match(response.warnings?.join('\n'), /timeout recovery is off.*grpc/, 'the warning kubectl shows says recovery is off and why')
  await waitFor('the Event', async () => (await core.listNamespacedEvent({ namespace: ns })).items.length === 1)
  const [ev] = (await core.listNamespacedEvent({ namespace: ns })).items
  t.same([ev?.type, ev?.reason, ev?.involvedObject.name], ['Warning', 'AsyaRecoveryOff', 'grpc-6c9d'])
  t.match(ev?.message, /grpc probe/)
  t.match(await registry.metrics(), /asya_webhook_admission_requests_total\{outcome="injected",reason="recovery_off"\} 1/)

  const composable = actorPod('http') as { spec: { containers: Array<Record<string, unknown>> } }
  ;(composable.spec.containers[0] as Record<string, unknown>).livenessProbe = { httpGet: { path: '/live', port: 8000 } }
  const ns2 = `rec-${Math.random().toString(36).slice(2, 7)}`
  const ok = (await post(url, JSON.stringify(admissionReview(composable, { namespace: ns2 })), { ca: c.caCert })).json() as { response: { warnings?: string[] } }
  t.equal(ok.response.warnings, undefined, 'a composable probe: no warning')
  t.match(await registry.metrics(), /asya_webhook_admission_requests_total\{outcome="injected",reason="injected"\} 1/)
  t.equal((await core.listNamespacedEvent({ namespace: ns2 })).items.length, 0, 'and no Event')
})
