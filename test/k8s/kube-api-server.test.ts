/** The Kubernetes API test server, exercised through the real @kubernetes/client-node and kubectl. */
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https'
import type { AddressInfo } from 'node:net'
import t from 'tap'
import { AppsV1Api, CoreV1Api, Watch } from '@kubernetes/client-node'
import { generateCerts } from '../../webhook/certs.js'
import { tmp } from '../webhook/helpers.js'
import { startKubeApiServer, matchLabelSelector, type KubeApiServer } from './kube-api-server.js'

let api: KubeApiServer
let core: CoreV1Api
let apps: AppsV1Api
t.before(async () => {
  api = await startKubeApiServer()
  core = api.kubeConfig.makeApiClient(CoreV1Api)
  apps = api.kubeConfig.makeApiClient(AppsV1Api)
})
t.teardown(() => api.close())

async function raw(method: string, path: string, body?: unknown, contentType = 'application/json'): Promise<{ status: number; json: Record<string, any> }> {
  const res = await fetch(`${api.url}${path}`, { method, headers: { 'content-type': contentType }, ...(body !== undefined ? { body: JSON.stringify(body) } : {}) })
  return { status: res.status, json: (await res.json()) as Record<string, any> }
}

async function until(cond: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out')
    await new Promise((r) => setTimeout(r, 20))
  }
}

t.test('CRUD status codes, Status objects, resourceVersion conflicts', async (t) => {
  await core.createNamespace({ body: { metadata: { name: 'crud' } } })
  const cm = await core.createNamespacedConfigMap({ namespace: 'crud', body: { metadata: { name: 'a' }, data: { k: 'v' } } })
  t.ok(cm.metadata?.uid && cm.metadata.resourceVersion, 'uid and resourceVersion assigned')
  const dup = await raw('POST', '/api/v1/namespaces/crud/configmaps', { metadata: { name: 'a' } })
  t.equal(dup.status, 409)
  t.equal(dup.json.reason, 'AlreadyExists')
  t.equal(dup.json.kind, 'Status')
  const missing = await raw('GET', '/api/v1/namespaces/crud/configmaps/nope')
  t.equal(missing.status, 404)
  t.equal(missing.json.reason, 'NotFound')
  const noNs = await raw('POST', '/api/v1/namespaces/ghost/configmaps', { metadata: { name: 'x' } })
  t.equal(noNs.status, 404, 'namespace must exist')
  const noName = await raw('POST', '/api/v1/namespaces/crud/configmaps', { metadata: {} })
  t.equal(noName.status, 422)
  const stale = await raw('PUT', '/api/v1/namespaces/crud/configmaps/a', { metadata: { name: 'a', resourceVersion: '1' }, data: {} })
  t.equal(stale.status, 409)
  t.equal(stale.json.reason, 'Conflict')
  const fresh = await core.replaceNamespacedConfigMap({ name: 'a', namespace: 'crud', body: { ...cm, data: { k: 'w' } } })
  t.ok(Number(fresh.metadata?.resourceVersion) > Number(cm.metadata?.resourceVersion), 'resourceVersion grows')
  const merged = await raw('PATCH', '/api/v1/namespaces/crud/configmaps/a', { data: { k2: 'x' } }, 'application/merge-patch+json')
  t.same(merged.json.data, { k: 'w', k2: 'x' }, 'merge patch')
  const patched = await raw('PATCH', '/api/v1/namespaces/crud/configmaps/a', [{ op: 'remove', path: '/data/k' }], 'application/json-patch+json')
  t.same(patched.json.data, { k2: 'x' }, 'JSON patch')
  const badPatch = await raw('PATCH', '/api/v1/namespaces/crud/configmaps/a', [{ op: 'remove', path: '/data/none' }], 'application/json-patch+json')
  t.equal(badPatch.status, 422)
  const del = await raw('DELETE', '/api/v1/namespaces/crud/configmaps/a')
  t.equal(del.status, 200)
  t.equal((await raw('GET', '/api/v1/namespaces/crud/configmaps/a')).status, 404)
  api.failNext(500, { method: 'GET', pathIncludes: '/configmaps' })
  t.equal((await raw('GET', '/api/v1/namespaces/crud/configmaps')).status, 500, 'fault injection')
})

t.test('list with label selectors; watch events; 410 Expired for compacted history', async (t) => {
  await core.createNamespace({ body: { metadata: { name: 'w' } } })
  const events: string[] = []
  const w = new Watch(api.kubeConfig)
  const req = await w.watch('/api/v1/namespaces/w/configmaps', {}, (type, obj: { metadata: { name: string } }) => events.push(`${type}:${obj.metadata.name}`), () => undefined)
  await core.createNamespacedConfigMap({ namespace: 'w', body: { metadata: { name: 'x', labels: { app: 'one' } } } })
  await core.createNamespacedConfigMap({ namespace: 'w', body: { metadata: { name: 'y', labels: { app: 'two' } } } })
  await raw('PATCH', '/api/v1/namespaces/w/configmaps/x', { data: { a: '1' } }, 'application/merge-patch+json')
  await core.deleteNamespacedConfigMap({ name: 'y', namespace: 'w' })
  await until(() => events.length >= 4)
  t.same(events, ['ADDED:x', 'ADDED:y', 'MODIFIED:x', 'DELETED:y'])
  req.abort()
  const list = await core.listNamespacedConfigMap({ namespace: 'w', labelSelector: 'app in (one,three)' })
  t.same(list.items.map((i) => i.metadata?.name), ['x'])
  t.ok(matchLabelSelector('a=b,!c,d notin (x)', { a: 'b', d: 'y' }))
  t.notOk(matchLabelSelector('a!=b', { a: 'b' }))
  const rv = list.metadata?.resourceVersion as string
  api.compactHistory()
  const res = await fetch(`${api.url}/api/v1/namespaces/w/configmaps?watch=1&resourceVersion=${Number(rv) - 1}`)
  const text = await res.text()
  t.match(text, /"type":"ERROR".*"code":410/, 'a too old resourceVersion gets 410 Expired')
})

t.test('ownerReference garbage collection', async (t) => {
  await core.createNamespace({ body: { metadata: { name: 'gc' } } })
  const owner = await core.createNamespacedConfigMap({ namespace: 'gc', body: { metadata: { name: 'owner' } } })
  await core.createNamespacedConfigMap({
    namespace: 'gc',
    body: { metadata: { name: 'dependent', ownerReferences: [{ apiVersion: 'v1', kind: 'ConfigMap', name: 'owner', uid: owner.metadata?.uid as string }] } },
  })
  await core.deleteNamespacedConfigMap({ name: 'owner', namespace: 'gc' })
  await until(() => api.get('configmaps', 'gc', 'dependent') === undefined)
  t.pass('dependent deleted with its owner')
})

t.test('Deployment → ReplicaSet → Pods follows spec.replicas; deleting it removes the pods', async (t) => {
  await core.createNamespace({ body: { metadata: { name: 'apps' } } })
  const template = { metadata: { labels: { app: 'd' } }, spec: { containers: [{ name: 'c', image: 'busybox:1.36' }] } }
  await apps.createNamespacedDeployment({ namespace: 'apps', body: { metadata: { name: 'd' }, spec: { replicas: 2, selector: { matchLabels: { app: 'd' } }, template } } })
  await until(() => api.list('pods', 'apps').length === 2)
  const pod = api.list('pods', 'apps')[0]
  t.equal(pod?.metadata.ownerReferences?.[0]?.kind, 'ReplicaSet')
  await raw('PATCH', '/apis/apps/v1/namespaces/apps/deployments/d', { spec: { replicas: 3 } }, 'application/merge-patch+json')
  await until(() => api.list('pods', 'apps').length === 3)
  t.pass('scaled to 3')
  await apps.deleteNamespacedDeployment({ name: 'd', namespace: 'apps' })
  await until(() => api.list('pods', 'apps').length === 0 && api.list('replicasets', 'apps').length === 0)
  t.pass('ReplicaSet and pods collected')
})

t.test('admission: HTTPS with caBundle, selectors, patch applied, denial, failurePolicy', async (t) => {
  const certs = await generateCerts({ dir: tmp('asya-k8s-wh-'), service: 'hook', namespace: 'hooks' })
  const otherCa = await generateCerts({ dir: tmp('asya-k8s-wh2-'), service: 'hook', namespace: 'hooks' })
  const calls: Array<Record<string, any>> = []
  let mode: 'patch' | 'deny' | 'hang' = 'patch'
  const hook: HttpsServer = createHttpsServer({ cert: certs.cert, key: certs.key }, (req, res) => {
    let body = ''
    req.on('data', (c: Buffer) => (body += c.toString()))
    req.on('end', () => {
      const review = JSON.parse(body) as { request: Record<string, any> }
      calls.push(review.request)
      if (mode === 'hang') return
      const patch = Buffer.from(JSON.stringify([{ op: 'add', path: '/metadata/labels/mutated', value: 'yes' }])).toString('base64')
      const response = mode === 'patch' ? { uid: review.request.uid, allowed: true, patchType: 'JSONPatch', patch } : { uid: review.request.uid, allowed: false, status: { code: 403, message: 'asya.sh/timeout: must be a number' } }
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', response }))
    })
  })
  await new Promise<void>((r) => hook.listen(0, '127.0.0.1', () => r()))
  t.teardown(() => new Promise<void>((r) => hook.close(() => r())))
  api.setServiceHost('hook.hooks.svc:443', `127.0.0.1:${(hook.address() as AddressInfo).port}`)
  await core.createNamespace({ body: { metadata: { name: 'adm' } } })
  const mwc = (caBundle: string, failurePolicy: string) => ({
    apiVersion: 'admissionregistration.k8s.io/v1',
    kind: 'MutatingWebhookConfiguration',
    metadata: { name: 'test-hook' },
    webhooks: [
      {
        name: 'test.hook',
        admissionReviewVersions: ['v1'],
        sideEffects: 'None',
        failurePolicy,
        timeoutSeconds: 1,
        objectSelector: { matchExpressions: [{ key: 'hook', operator: 'Exists' }] },
        namespaceSelector: { matchExpressions: [{ key: 'kubernetes.io/metadata.name', operator: 'NotIn', values: ['kube-system'] }] },
        rules: [{ apiGroups: [''], apiVersions: ['v1'], operations: ['CREATE'], resources: ['pods'] }],
        clientConfig: { service: { name: 'hook', namespace: 'hooks', path: '/mutate' }, caBundle },
      },
    ],
  })
  await raw('POST', '/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations', mwc(certs.caBundle, 'Fail'))
  const pod = (name: string, labels: Record<string, string>) => ({ metadata: { name, labels }, spec: { containers: [{ name: 'c', image: 'busybox:1.36' }] } })
  const p1 = await raw('POST', '/api/v1/namespaces/adm/pods', pod('p1', { hook: 'x' }))
  t.equal(p1.status, 201)
  t.equal(p1.json.metadata.labels.mutated, 'yes', 'JSON patch applied')
  t.equal(calls[0]?.operation, 'CREATE')
  t.equal(calls[0]?.namespace, 'adm')
  t.equal(calls[0]?.kind?.kind, 'Pod')
  const before = calls.length
  const p2 = await raw('POST', '/api/v1/namespaces/adm/pods', pod('p2', {}))
  t.equal(p2.status, 201)
  t.equal(calls.length, before, 'objectSelector not matched: webhook not called')
  t.notOk(p2.json.metadata.labels?.mutated)
  const ks = await raw('POST', '/api/v1/namespaces/kube-system/pods', pod('p3', { hook: 'x' }))
  t.equal(ks.status, 201)
  t.equal(calls.length, before, 'namespaceSelector excludes kube-system')
  mode = 'deny'
  const denied = await raw('POST', '/api/v1/namespaces/adm/pods', pod('p4', { hook: 'x' }))
  t.equal(denied.status, 403)
  t.match(denied.json.message, /admission webhook "test.hook" denied the request: asya.sh\/timeout/)
  mode = 'hang'
  const hung = await raw('POST', '/api/v1/namespaces/adm/pods', pod('p5', { hook: 'x' }))
  t.equal(hung.status, 500, 'timeoutSeconds with failurePolicy Fail rejects')
  t.match(hung.json.message, /failed calling webhook/)
  mode = 'patch'
  await raw('PUT', '/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/test-hook', mwc(otherCa.caBundle, 'Fail'))
  const badCa = await raw('POST', '/api/v1/namespaces/adm/pods', pod('p6', { hook: 'x' }))
  t.equal(badCa.status, 500, 'a server certificate not signed by caBundle is refused')
  await raw('PUT', '/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/test-hook', mwc(otherCa.caBundle, 'Ignore'))
  const ignored = await raw('POST', '/api/v1/namespaces/adm/pods', pod('p7', { hook: 'x' }))
  t.equal(ignored.status, 201, 'failurePolicy Ignore admits unmutated')
  t.notOk(ignored.json.metadata.labels.mutated)
  await raw('DELETE', '/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations/test-hook')
})

t.test('kubectl talks to it: discovery, apply, get', async (t) => {
  const kubeconfig = tmp('asya-k8s-kc-') + '/config'
  const { writeFileSync } = await import('node:fs')
  writeFileSync(kubeconfig, api.kubeConfig.exportConfig())
  // Asynchronous: the API server lives in this process's event loop.
  const run = promisify(execFile)
  const kc = async (...args: string[]): Promise<string> => (await run('kubectl', ['--kubeconfig', kubeconfig, ...args], { encoding: 'utf8' })).stdout
  t.match(await kc('version', '-o', 'json'), /"gitVersion": "v1.32.0-asya-test"/)
  t.match(await kc('api-resources', '--api-group=keda.sh'), /scaledobjects/)
  const manifest = tmp('asya-k8s-m-') + '/m.yaml'
  writeFileSync(
    manifest,
    ['apiVersion: v1', 'kind: Namespace', 'metadata: {name: kubectl-ns}', '---', 'apiVersion: v1', 'kind: ConfigMap', 'metadata: {name: from-kubectl, namespace: kubectl-ns}', 'data: {a: b}', ''].join('\n'),
  )
  await kc('create', '-f', manifest, '--validate=false')
  t.match(await kc('-n', 'kubectl-ns', 'get', 'configmaps', '-o', 'name'), /configmap\/from-kubectl/)
  await kc('-n', 'kubectl-ns', 'label', 'configmap', 'from-kubectl', 'asya.sh/actor=x')
  t.equal(api.get('configmaps', 'kubectl-ns', 'from-kubectl')?.metadata.labels?.['asya.sh/actor'], 'x', 'kubectl label (strategic merge patch)')
})
