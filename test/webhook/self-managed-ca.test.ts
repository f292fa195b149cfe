/**
 * Self-managed CA against the in-process Kubernetes API server (test/k8s/kube-api-server.ts; formerly test/controller/mini-kube.ts until
 * the shared test/k8s server lands): two replicas race to create the CA, both adopt one, each
 * serves a cert chaining to the caBundle they patched; a reset caBundle is re-patched.
 */
import t from 'tap'
import { join } from 'node:path'
import { AdmissionregistrationV1Api, CoreV1Api } from '@kubernetes/client-node'
import { Registry } from 'prom-client'
import { startKubeApiServer } from '../k8s/kube-api-server.js'
import { startSystem } from '../../src/system/main.js'
import { SelfManagedCa } from '../../webhook/self-managed-ca.js'
import { NAMESPACE, SERVICE, actorPod, admissionReview, post, silent, startServer, tmp, waitFor, webhookConfig } from './helpers.js'

const kube = await startKubeApiServer({ autoCreateNamespaces: true })
t.teardown(() => kube.close())
const admission = kube.kubeConfig.makeApiClient(AdmissionregistrationV1Api)
const core = kube.kubeConfig.makeApiClient(CoreV1Api)

async function createWebhookConfiguration(name: string): Promise<void> {
  await admission.createMutatingWebhookConfiguration({
    body: {
      apiVersion: 'admissionregistration.k8s.io/v1',
      kind: 'MutatingWebhookConfiguration',
      metadata: { name },
      webhooks: [
        {
          name: 'pods.asya.sh',
          admissionReviewVersions: ['v1'],
          sideEffects: 'None',
          clientConfig: { service: { name: SERVICE, namespace: NAMESPACE, path: '/mutate' } },
        },
        // Someone else's webhook in the same object: never touched.
        { name: 'other.example.com', admissionReviewVersions: ['v1'], sideEffects: 'None', clientConfig: { service: { name: 'other', namespace: 'other' }, caBundle: 'b3RoZXI=' } },
      ],
    },
  })
}

async function bundles(name: string): Promise<(string | undefined)[]> {
  const cfg = await admission.readMutatingWebhookConfiguration({ name })
  return (cfg.webhooks ?? []).map((w) => w.clientConfig.caBundle)
}

function replica(cfgName: string, secret: string, registry = new Registry()): { ca: SelfManagedCa; files: { cert: string; key: string } } {
  const dir = tmp('asya-smca-')
  const files = { cert: join(dir, 'tls', 'tls.crt'), key: join(dir, 'tls', 'tls.key') }
  const ca = new SelfManagedCa({
    kubeConfig: kube.kubeConfig,
    namespace: NAMESPACE,
    service: SERVICE,
    caSecretName: secret,
    webhookConfigurationName: cfgName,
    certFile: files.cert,
    keyFile: files.key,
    workDir: join(dir, 'work'),
    resyncMs: 200,
    logger: silent,
    registry,
  })
  return { ca, files }
}

t.test('two replicas share one CA, serve chained certs and keep caBundle patched', async (t) => {
  const cfgName = `asya-webhook-${Math.random().toString(36).slice(2, 8)}`
  const secret = `${cfgName}-ca`
  await createWebhookConfiguration(cfgName)
  const a = replica(cfgName, secret)
  const b = replica(cfgName, secret)
  await Promise.all([a.ca.start(), b.ca.start()])
  t.teardown(() => {
    a.ca.stop()
    b.ca.stop()
  })
  t.ok(a.ca.caBundle, 'CA known')
  t.equal(a.ca.caBundle, b.ca.caBundle, 'both replicas use the one CA (the create race is settled by 409)')
  const stored = await core.readNamespacedSecret({ name: secret, namespace: NAMESPACE })
  t.equal(stored.data?.['ca.crt'], a.ca.caBundle, 'the CA lives in the Secret')
  await waitFor('caBundle patched', async () => (await bundles(cfgName))[0] === a.ca.caBundle)
  t.equal((await bundles(cfgName))[1], 'b3RoZXI=', 'other webhooks in the object untouched')

  const ca = Buffer.from(a.ca.caBundle ?? '', 'base64').toString()
  for (const [name, r] of [['a', a], ['b', b]] as const) {
    const { server, url } = await startServer(webhookConfig(r.files))
    t.teardown(() => server.close())
    const reply = await post(url, JSON.stringify(admissionReview(actorPod())), { ca })
    t.equal(reply.status, 200, `replica ${name}: serving cert chains to the caBundle`)
  }

  // A `kubectl apply` of the original manifest resets caBundle: it is put back.
  const cfg = await admission.readMutatingWebhookConfiguration({ name: cfgName })
  const first = cfg.webhooks?.[0]
  if (first) delete first.clientConfig.caBundle
  await admission.replaceMutatingWebhookConfiguration({ name: cfgName, body: cfg })
  t.equal((await bundles(cfgName))[0], undefined, 'reset')
  await waitFor('caBundle re-patched', async () => (await bundles(cfgName))[0] === a.ca.caBundle)
  t.pass('re-patched after the reset')
})

t.test('configuration created after start is patched when it appears', async (t) => {
  const cfgName = `asya-webhook-late-${Math.random().toString(36).slice(2, 8)}`
  const r = replica(cfgName, `${cfgName}-ca`)
  await r.ca.start()
  t.teardown(() => r.ca.stop())
  await createWebhookConfiguration(cfgName)
  await waitFor('caBundle patched', async () => (await bundles(cfgName))[0] === r.ca.caBundle)
  t.pass('patched')
})

t.test('system process in self-managed mode is ready and serves a cert chained to the patched caBundle', async (t) => {
  const cfgName = `asya-webhook-sys-${Math.random().toString(36).slice(2, 8)}`
  await createWebhookConfiguration(cfgName)
  const dir = tmp('asya-smsys-')
  const sys = await startSystem({
    kubeConfig: kube.kubeConfig,
    logger: silent,
    env: {
      ASYA_CONTROLLER_ENABLED: 'false',
      ASYA_METRICS_ADDR: '127.0.0.1:0',
      ASYA_WEBHOOK_ADDR: '127.0.0.1:0',
      ASYA_SYSTEM_NAMESPACE: NAMESPACE,
      ASYA_WEBHOOK_CERT_MODE: 'self-managed',
      ASYA_WEBHOOK_CONFIGURATION: cfgName,
      ASYA_WEBHOOK_CA_SECRET: `${cfgName}-ca`,
      ASYA_TLS_CERT_FILE: join(dir, 'tls.crt'),
      ASYA_TLS_KEY_FILE: join(dir, 'tls.key'),
    },
  })
  t.teardown(() => sys.stop())
  await waitFor('ready', () => sys.webhook?.isReady() === true)
  const bundle = (await bundles(cfgName))[0]
  t.ok(bundle, 'caBundle set')
  const reply = await post(sys.webhookUrl ?? '', JSON.stringify(admissionReview(actorPod())), { ca: Buffer.from(bundle ?? '', 'base64').toString() })
  t.equal(reply.status, 200)
})
