/**
 * The whole install, end to end, on the Kubernetes API test server: the rendered `deploy/`
 * (base + dev overlay) is applied, the real system process (webhook over HTTPS + controller) runs
 * against it, and labelling an existing Deployment with the example-actor patch yields pods with
 * the sidecar injected (through the API server's admission call), the queue and DLQ on the real
 * RabbitMQ, a ScaledObject and the status annotation. Removing the label cleans up.
 */
import { execFileSync } from 'node:child_process'
import t from 'tap'
import { parseAllDocuments } from 'yaml'
import { createLogger } from '../../src/logger.js'
import { startSystem } from '../../src/system/main.js'
import { generateCerts } from '../../webhook/certs.js'
import { rabbitTransport, testExchange } from '../support/rabbitmq.js'
import { tmp } from '../webhook/helpers.js'
import { RESOURCES, startKubeApiServer, type KObj } from './kube-api-server.js'

function render(target: string): KObj[] {
  return parseAllDocuments(execFileSync('kubectl', ['kustomize', `deploy/${target}`], { encoding: 'utf8' })).map((d) => d.toJSON() as KObj)
}

function pathFor(o: KObj): string {
  const r = RESOURCES.find((x) => x.kind === o.kind && (x.group === '' ? o.apiVersion === x.version : o.apiVersion === `${x.group}/${x.version}`))
  if (!r) throw new Error(`kind ${o.kind} not served by the test server`)
  const base = r.group === '' ? `/api/${r.version}` : `/apis/${r.group}/${r.version}`
  return r.namespaced ? `${base}/namespaces/${o.metadata.namespace ?? 'default'}/${r.plural}` : `${base}/${r.plural}`
}

async function until(cond: () => boolean | Promise<boolean>, what: string, ms = 30_000): Promise<void> {
  const end = Date.now() + ms
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

t.test('deploy/ applied to the API test server; labelling a Deployment wires an actor', async (t) => {
  const api = await startKubeApiServer()
  t.teardown(() => api.close())
  const post = async (o: KObj): Promise<number> => {
    const res = await fetch(`${api.url}${pathFor(o)}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(o) })
    await res.text()
    return res.status
  }
  const certs = await generateCerts({ dir: tmp('asya-wiring-'), service: 'asya-webhook', namespace: 'asya-system' })

  // 1. kubectl apply -k deploy/overlays/dev (the namespace first, as kubectl orders it).
  const objs = render('overlays/dev')
  objs.sort((a, b) => Number(b.kind === 'Namespace') - Number(a.kind === 'Namespace'))
  for (const o of objs) {
    if (o.kind === 'MutatingWebhookConfiguration') {
      for (const w of (o.webhooks as Array<{ clientConfig: { caBundle?: string } }>) ?? []) w.clientConfig.caBundle = certs.caBundle
    }
    t.equal(await post(o), 201, `created ${o.kind}/${o.metadata.name}`)
  }
  // asya-system also holds the end actors' pods (deploy/base/end-actors.yaml): pick the system's own.
  const systemPods = () =>
    api.list('pods', 'asya-system').filter((p) => (p.metadata.labels as Record<string, string> | undefined)?.['app.kubernetes.io/name'] === 'asya-system')
  await until(() => systemPods().length === 1, 'the system Deployment to get its pod')
  t.notOk(
    (systemPods()[0]?.spec as { initContainers?: unknown[] } | undefined)?.initContainers,
    'the system namespace is never mutated',
  )

  // 2. The system process (webhook + controller), configured like the rendered ConfigMap says.
  const exchange = testExchange('asya-wiring')
  const cm = objs.find((o) => o.kind === 'ConfigMap')?.data as Record<string, string>
  const system = await startSystem({
    kubeConfig: api.kubeConfig,
    logger: createLogger('wiring', { level: process.env.ASYA_TEST_LOG_LEVEL ?? 'silent' }),
    env: {
      ...cm,
      POD_NAME: 'asya-system-test',
      POD_NAMESPACE: 'asya-system',
      ASYA_WEBHOOK_CERT_MODE: 'files',
      ASYA_TLS_CERT_FILE: certs.files.cert,
      ASYA_TLS_KEY_FILE: certs.files.key,
      ASYA_WEBHOOK_ADDR: '127.0.0.1:0',
      ASYA_METRICS_ADDR: '127.0.0.1:0',
      ASYA_RABBITMQ_HOST: '127.0.0.1',
      ASYA_RABBITMQ_MANAGEMENT_URL: 'http://127.0.0.1:15672',
      ASYA_RABBITMQ_EXCHANGE: exchange,
      ASYA_CONTROLLER_RESYNC: '2s',
    },
  })
  t.teardown(() => system.stop())
  const hook = new URL(system.webhookUrl as string)
  api.setServiceHost('asya-webhook.asya-system.svc:443', `127.0.0.1:${hook.port}`)

  // 3. An existing, unrelated Deployment in a team namespace, then the example-actor patch.
  const actor = `classify-${Math.random().toString(16).slice(2, 8)}`
  t.equal(await post({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'ml' } }), 201)
  const example = render('overlays/example-actor')[0] as KObj & { spec: { template: { metadata: { labels: Record<string, string> } } } }
  const plain = structuredClone(example)
  delete plain.spec.template.metadata.labels['asya.sh/actor']
  t.equal(await post(plain), 201, 'the Deployment as the team had it')
  await until(() => api.list('pods', 'ml').length === 1, 'its pod')
  t.notOk((api.list('pods', 'ml')[0]?.spec as { initContainers?: unknown[] }).initContainers, 'unlabelled: not injected')

  example.spec.template.metadata.labels['asya.sh/actor'] = actor
  const put = await fetch(`${api.url}/apis/apps/v1/namespaces/ml/deployments/text-classifier`, {
    method: 'PUT',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ ...example, metadata: { ...example.metadata, resourceVersion: api.get('deployments', 'ml', 'text-classifier')?.metadata.resourceVersion } }),
  })
  t.equal(put.status, 200, 'kubectl apply of the patched Deployment')

  // 4. New pods are injected through the API server's admission call.
  await until(() => api.list('pods', 'ml').some((p) => p.metadata.labels?.['asya.sh/actor'] === actor), 'a labelled pod')
  const pod = api.list('pods', 'ml').find((p) => p.metadata.labels?.['asya.sh/actor'] === actor) as KObj & { spec: { initContainers?: Array<{ name: string; restartPolicy?: string }>; containers: Array<{ name: string; command?: string[] }> } }
  t.equal(pod.spec.initContainers?.[0]?.name, 'asya-sidecar', 'native sidecar injected')
  t.equal(pod.spec.initContainers?.[0]?.restartPolicy, 'Always')
  t.same(pod.spec.containers[0]?.command, ['python3', '/opt/asya/asya_runtime.py'], 'runtime command set')
  t.ok(pod.metadata.annotations?.['asya.sh/injected'], 'marked injected')

  // 5. The controller wires the actor: queue + DLQ, ConfigMap, ScaledObject, status.
  const broker = rabbitTransport({ exchange })
  await broker.connect()
  t.teardown(async () => {
    await broker.deleteQueue(actor).catch(() => undefined)
    await broker.deleteQueue(`${actor}-dlq`).catch(() => undefined)
    await broker.close()
  })
  await until(() => api.get('deployments', 'ml', 'text-classifier')?.metadata.annotations?.['asya.sh/status'] === 'Ready', 'asya.sh/status Ready')
  t.equal(await broker.messageCount(actor), 0, `queue asya-${actor} exists`)
  t.equal(await broker.messageCount(`${actor}-dlq`), 0, 'and its DLQ')
  t.ok(api.get('configmaps', 'ml', 'asya-runtime'), 'asya-runtime ConfigMap')
  const so = api.get('scaledobjects', 'ml', 'text-classifier', 'keda.sh') as KObj & { spec: { minReplicaCount: number; maxReplicaCount: number; triggers: Array<{ type: string; metadata: Record<string, string> }> } }
  t.ok(so, 'ScaledObject named after the workload')
  t.equal(so.spec.maxReplicaCount, 10, 'from asya.sh/max-replicas')
  t.equal(so.spec.triggers[0]?.type, 'rabbitmq')
  t.equal(so.metadata.ownerReferences?.[0]?.name, 'text-classifier', 'owned by the Deployment')

  // 6. Label removed: ScaledObject goes, the queue stays (retention: retain).
  delete example.spec.template.metadata.labels['asya.sh/actor']
  const put2 = await fetch(`${api.url}/apis/apps/v1/namespaces/ml/deployments/text-classifier`, {
    method: 'PUT',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ ...example, metadata: { ...example.metadata, resourceVersion: api.get('deployments', 'ml', 'text-classifier')?.metadata.resourceVersion } }),
  })
  t.equal(put2.status, 200, 'label removed by a full replace (our annotations are wiped too)')
  await until(() => api.get('scaledobjects', 'ml', 'text-classifier', 'keda.sh') === undefined, 'ScaledObject removed')
  t.equal(await broker.messageCount(actor), 0, 'queue retained')
})
