/**
 * The rendered dev (RabbitMQ) and sqs overlays (base included), applied with the real kubectl to
 * the Kubernetes API test server, run as shipped: the system process started from the applied
 * ConfigMap makes its own CA and caBundle, the example Deployment (labelled by the example-actor
 * patch) gets injected pods, queues on the real broker (RabbitMQ, or fauxqs for SQS) and a
 * ScaledObject, asya-system is never injected, and every API request the system process made is
 * allowed by the RBAC we ship.
 */
import { execFile, execFileSync } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import amqp from 'amqplib'
import t, { type Test } from 'tap'
import { parseAllDocuments, stringify } from 'yaml'
import { startSystem } from '../../src/system/main.js'
import { createLogger } from '../../src/logger.js'
import { startKubeApiServer, type KObj } from '../k8s/kube-api-server.js'
import { RABBITMQ_MANAGEMENT, RABBITMQ_URL } from '../support/rabbitmq.js'
import { SQS_TEST_CREDENTIALS, startSqsServer } from '../support/sqs-server.js'
import { ListQueuesCommand, SQSClient } from '@aws-sdk/client-sqs'
import { createTransport } from '../../src/transport/create-transport.js'
import { readSidecarConfig } from '../../sidecar/config.js'
import { Sidecar } from '../../sidecar/sidecar.js'
import { startS3Server } from '../support/s3-server.js'

const s3 = await startS3Server()
t.teardown(() => s3.stop())

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..')
const run = promisify(execFile)
type Rule = { apiGroups?: string[]; resources?: string[]; verbs?: string[]; resourceNames?: string[] }

function render(target: string): KObj[] {
  const out = execFileSync('kubectl', ['kustomize', join(root, 'deploy', target)], { encoding: 'utf8' })
  return parseAllDocuments(out).map((d) => d.toJSON() as KObj)
}

async function waitFor<T>(what: string, fn: () => Promise<T | undefined | false> | T | undefined | false, timeoutMs = 30_000): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const v = await fn()
    if (v !== undefined && v !== false) return v as T
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

/** The RBAC attributes of one API request path, or undefined for non-resource URLs (discovery). */
export function requestAttributes(method: string, path: string): { verb: string; group: string; resource: string; namespace?: string; name?: string } | undefined {
  const parts = path.split('/').filter((p) => p !== '')
  let group: string
  let rest: string[]
  if (parts[0] === 'api' && parts[1] === 'v1') [group, rest] = ['', parts.slice(2)]
  else if (parts[0] === 'apis' && parts.length >= 3) [group, rest] = [parts[1] as string, parts.slice(3)]
  else return undefined
  if (rest.length === 0) return undefined
  let namespace: string | undefined
  if (rest[0] === 'namespaces' && rest.length >= 3) [namespace, rest] = [rest[1], rest.slice(2)]
  const [resource, name, sub] = rest as [string, string | undefined, string | undefined]
  const verb = method === 'WATCH' ? 'watch' : method === 'GET' ? (name ? 'get' : 'list') : method === 'POST' ? 'create' : method === 'PUT' ? 'update' : method === 'PATCH' ? 'patch' : method === 'DELETE' ? (name ? 'delete' : 'deletecollection') : method.toLowerCase()
  return {
    verb,
    group,
    resource: sub ? `${resource}/${sub}` : resource,
    ...(namespace !== undefined ? { namespace } : {}),
    ...(name !== undefined && verb !== 'create' ? { name } : {}),
  }
}

function allows(rules: Rule[], a: { verb: string; group: string; resource: string; name?: string }): boolean {
  return rules.some(
    (r) =>
      (r.apiGroups ?? []).includes(a.group) &&
      (r.resources ?? []).includes(a.resource) &&
      (r.verbs ?? []).includes(a.verb) &&
      // Like the real authorizer: resourceNames never grant create, list or watch.
      (r.resourceNames === undefined || r.resourceNames.length === 0 || (a.name !== undefined && r.resourceNames.includes(a.name))),
  )
}

t.test('request attributes', async (t) => {
  t.same(requestAttributes('GET', '/apis/apps/v1/deployments'), { verb: 'list', group: 'apps', resource: 'deployments' })
  t.same(requestAttributes('WATCH', '/apis/apps/v1/namespaces/x/deployments'), { verb: 'watch', group: 'apps', resource: 'deployments', namespace: 'x' })
  t.same(requestAttributes('PUT', '/apis/keda.sh/v1alpha1/namespaces/x/scaledobjects/a'), { verb: 'update', group: 'keda.sh', resource: 'scaledobjects', namespace: 'x', name: 'a' })
  t.same(requestAttributes('POST', '/api/v1/namespaces/x/secrets'), { verb: 'create', group: '', resource: 'secrets', namespace: 'x' })
  t.same(requestAttributes('GET', '/api/v1/namespaces/x'), { verb: 'get', group: '', resource: 'namespaces', name: 'x' })
  t.same(requestAttributes('PATCH', '/apis/apps/v1/namespaces/x/deployments/d/scale'), { verb: 'patch', group: 'apps', resource: 'deployments/scale', namespace: 'x', name: 'd' })
  t.equal(requestAttributes('GET', '/apis/apps/v1'), undefined, 'discovery is not a resource request')
  t.notOk(allows([{ apiGroups: [''], resources: ['secrets'], verbs: ['get', 'create'], resourceNames: ['ca'] }], { verb: 'create', group: '', resource: 'secrets' }), 'resourceNames do not grant create')
})

interface Transport {
  /** Env that points the system process at the local broker instead of the in-cluster one. */
  env: Record<string, string>
  /** Names of the end actors in this run (the broker may be shared with other tests). */
  ends: [string, string]
  /** The actor's queue and DLQ exist on the broker. */
  queuesExist(actor: string): Promise<boolean>
  cleanup(actor: string): Promise<void>
}

async function rabbitmq(): Promise<Transport> {
  const exchange = `asya-deploy-${randomBytes(4).toString('hex')}`
  // The broker is shared with other tests: end actors of our own.
  const ends: [string, string] = [`happy-${randomBytes(3).toString('hex')}`, `error-${randomBytes(3).toString('hex')}`]
  return {
    ends,
    env: {
      ASYA_RABBITMQ_HOST: '127.0.0.1',
      ASYA_RABBITMQ_MANAGEMENT_URL: RABBITMQ_MANAGEMENT,
      ASYA_RABBITMQ_EXCHANGE: exchange,
      ASYA_ACTOR_HAPPY_END: ends[0],
      ASYA_ACTOR_ERROR_END: ends[1],
    },
    async queuesExist(actor) {
      const conn = await amqp.connect(RABBITMQ_URL)
      try {
        const ch = await conn.createChannel()
        await ch.checkQueue(`asya-${actor}`)
        await ch.checkQueue(`asya-${actor}-dlq`)
        return true
      } catch {
        return false
      } finally {
        await conn.close().catch(() => undefined)
      }
    },
    async cleanup(actor) {
      const conn = await amqp.connect(RABBITMQ_URL)
      const ch = await conn.createChannel()
      for (const a of [actor, ...ends]) for (const q of [`asya-${a}`, `asya-${a}-dlq`]) await ch.deleteQueue(q)
      await ch.deleteExchange(exchange)
      await conn.close()
    },
  }
}

async function sqs(): Promise<Transport> {
  const server = await startSqsServer()
  const client = new SQSClient({ endpoint: server.endpoint, region: server.region, credentials: SQS_TEST_CREDENTIALS })
  const ends: [string, string] = [`happy-${randomBytes(3).toString('hex')}`, `error-${randomBytes(3).toString('hex')}`]
  return {
    ends,
    env: { ASYA_SQS_ENDPOINT: server.endpoint, ASYA_ACTOR_HAPPY_END: ends[0], ASYA_ACTOR_ERROR_END: ends[1] },
    async queuesExist(actor) {
      const { QueueUrls = [] } = await client.send(new ListQueuesCommand({ QueueNamePrefix: `asya-${actor}` }))
      const names = QueueUrls.map((u) => u.split('/').pop())
      return names.includes(`asya-${actor}`) && names.includes(`asya-${actor}-dlq`)
    },
    cleanup: async () => {
      client.destroy()
      await server.stop()
    },
  }
}

/** The shipped end-actor Deployments under this run's end-actor names. */
function relabelEndActor(o: KObj, ends: [string, string]): KObj {
  const labels = (o.spec as { template?: { metadata?: { labels?: Record<string, string> } } } | undefined)?.template?.metadata?.labels
  const actor = labels?.['asya.sh/actor']
  if (o.kind !== 'Deployment' || (actor !== 'happy-end' && actor !== 'error-end')) return o
  const d = structuredClone(o) as KObj & { spec: { template: { metadata: { labels: Record<string, string> }; spec: { containers: Array<{ env: Array<{ name: string; value?: string }> }> } } } }
  const name = actor === 'happy-end' ? ends[0] : ends[1]
  d.spec.template.metadata.labels['asya.sh/actor'] = name
  for (const e of d.spec.template.spec.containers[0]?.env ?? []) if (e.name === 'ASYA_ACTOR_NAME') e.value = name
  return d
}

/**
 * The end actors as applied: the controller wired them (queue, DLQ, ScaledObject never below one
 * replica); a sidecar started from the applied Deployment's own environment (ConfigMaps, env;
 * only broker and storage addresses are the local ones) consumes a finished envelope from its
 * queue and persists it.
 */
async function checkEndActors(t: Test, api: Awaited<ReturnType<typeof startKubeApiServer>>, transport: Transport, overlay: string): Promise<void> {
  const [happy, error] = transport.ends
  for (const [actor, name] of [
    [happy, 'asya-happy-end'],
    [error, 'asya-error-end'],
  ] as const) {
    const so = await waitFor(`ScaledObject ${name}`, () => api.get('scaledobjects', 'asya-system', name, 'keda.sh'))
    t.ok(((so.spec as { minReplicaCount?: number }).minReplicaCount ?? 0) >= 1, `${name}: ScaledObject never scales to zero`)
    t.ok(await transport.queuesExist(actor), `${name}: queue asya-${actor} and its DLQ on the broker`)
    t.ok(api.get('poddisruptionbudgets', 'asya-system', name, 'policy'), `${name}: PDB`)
  }
  const dep = api.get('deployments', 'asya-system', 'asya-happy-end', 'apps') as KObj & {
    spec: { template: { spec: { containers: Array<{ name: string; env?: Array<{ name: string; value?: string; valueFrom?: unknown }>; envFrom?: Array<{ configMapRef?: { name: string }; secretRef?: { name: string } }> }> } } }
  }
  const c = dep.spec.template.spec.containers
  t.same(c.map((x) => x.name), ['asya-sidecar'], 'the end actor is the sidecar image alone')
  // The environment as the kubelet assembles it: envFrom in order, then env (Secrets: local stand-ins).
  const env: Record<string, string> = {}
  for (const ref of c[0]?.envFrom ?? []) {
    if (ref.configMapRef) Object.assign(env, (api.get('configmaps', 'asya-system', ref.configMapRef.name)?.data ?? {}) as Record<string, string>)
  }
  for (const e of c[0]?.env ?? []) if (e.value !== undefined) env[e.name] = e.value
  if (overlay === 'overlays/gateway') t.equal(env.ASYA_GATEWAY_URL, 'http://asya-gateway-internal.asya-system.svc:8081', 'the end actors report to the gateway\'s internal listener (security on)')
  const bucket = `deploy-${randomBytes(3).toString('hex')}`
  await s3.createBucket(bucket)
  const sidecarEnv: Record<string, string> = { ...env, ...transport.env, ...s3.env(bucket), ASYA_METRICS_ADDR: '127.0.0.1:0', ASYA_LOG_LEVEL: 'silent' }
  delete sidecarEnv.ASYA_GATEWAY_URL // no gateway runs in this test
  const config = readSidecarConfig(sidecarEnv)
  t.equal(config.runtimeEnabled, false, 'no runtime')
  t.equal(config.isEndActor, true, 'an end actor')
  const tr = await createTransport(config.transport, {})
  const sidecar = new Sidecar({ config, transport: tr, logger: createLogger('deploy-end', { level: 'silent' }), serveHttp: false })
  await sidecar.start()
  try {
    const publisher = await createTransport(config.transport, {})
    await publisher.connect()
    const id = `deploy-${randomBytes(4).toString('hex')}`
    // What an actor publishes when its route is done.
    await publisher.publish(happy, Buffer.from(JSON.stringify({ id, route: { actors: ['classify'], current: 1 }, payload: { label: 'ok' } })))
    await publisher.close()
    const keys = await waitFor('the finished envelope persisted by the end actor', async () => {
      const k = await s3.list(bucket)
      return k.length > 0 ? k : undefined
    })
    t.match(keys[0] ?? '', new RegExp(`^happy-asya/.+/classify/${id}\\.json$`), 'consumed from its queue and persisted under the shipped prefix')
  } finally {
    await sidecar.stop()
  }
}

async function runOverlay(
  t: Test,
  overlay: string,
  transport: Transport,
  checks: (so: KObj, sidecarEnv: Record<string, string>, api: Awaited<ReturnType<typeof startKubeApiServer>>) => void,
): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'asya-deploy-'))
  const api = await startKubeApiServer()
  const actor = `deploy-${randomBytes(4).toString('hex')}`
  const ns = `ml-${randomBytes(3).toString('hex')}`
  const kubeconfig = join(dir, 'kubeconfig')
  writeFileSync(kubeconfig, api.kubeConfig.exportConfig())
  // Asynchronous on purpose: the API server answers from this process's event loop.
  const kubectl = async (args: string[], input?: KObj[]): Promise<string> => {
    const file = join(dir, `m-${randomBytes(4).toString('hex')}.yaml`)
    if (input) writeFileSync(file, input.map((o) => stringify(o)).join('---\n'))
    return (await run('kubectl', ['--kubeconfig', kubeconfig, ...args, ...(input ? ['-f', file] : [])], { encoding: 'utf8' })).stdout
  }
  let stopSystem: (() => Promise<void>) | undefined
  t.teardown(async () => {
    await stopSystem?.()
    await api.close()
    rmSync(dir, { recursive: true, force: true })
    await transport.cleanup(actor)
  })

  const system = render(overlay).map((o) => relabelEndActor(o, transport.ends))
  t.match(await kubectl(['apply', '--validate=false'], system), /deployment.apps\/asya-system (created|configured)/, `kubectl apply of the rendered ${overlay}`)
  const role = system.filter((o) => o.kind === 'ClusterRole').flatMap((o) => o.rules as Rule[])
  const nsRole = system.filter((o) => o.kind === 'Role').flatMap((o) => o.rules as Rule[])

  // The example actor, in a namespace of its own and with an actor name of its own (the broker
  // is shared with other tests), starting at zero replicas: pods come only once the webhook serves.
  const example = render('overlays/example-actor').map((o) => {
    const d = structuredClone(o) as KObj & { spec: { replicas: number; template: { metadata: { labels: Record<string, string> } } } }
    d.metadata.namespace = ns
    d.spec.replicas = 0
    d.spec.template.metadata.labels['asya.sh/actor'] = actor
    return d
  })
  const namespace: KObj = { apiVersion: 'v1', kind: 'Namespace', metadata: { name: ns } }
  await kubectl(['apply', '--validate=false'], [namespace, ...example])
  const deployName = (example[0] as KObj).metadata.name

  // The system process configured the way the applied Deployment configures it: the applied
  // ConfigMap plus the downward-API variables; only the broker address is the local one.
  const config = api.get('configmaps', 'asya-system', 'asya-config')
  t.ok(config, 'ConfigMap applied')
  const data = (config?.data ?? {}) as Record<string, string>
  t.equal(data.ASYA_WEBHOOK_CERT_MODE, 'self-managed')
  const mark = api.requestLog.length
  const sys = await startSystem({
    kubeConfig: api.kubeConfig,
    logger: createLogger('deploy-test', { level: process.env.ASYA_TEST_LOG ?? 'silent' }),
    env: {
      ...data,
      POD_NAME: 'asya-system-0',
      POD_NAMESPACE: 'asya-system',
      ASYA_LOG_LEVEL: 'silent',
      ...transport.env,
      ASYA_WEBHOOK_ADDR: '127.0.0.1:0',
      ASYA_METRICS_ADDR: '127.0.0.1:0',
      ASYA_TLS_CERT_FILE: join(dir, 'tls.crt'),
      ASYA_TLS_KEY_FILE: join(dir, 'tls.key'),
      ASYA_WEBHOOK_CA_RESYNC: '200ms',
    },
  })
  stopSystem = () => sys.stop()
  const service = (system.find((o) => o.kind === 'Service' && o.metadata.name === 'asya-webhook') as KObj).metadata
  const port = new URL(sys.webhookUrl ?? '').port
  api.setServiceHost(`${service.name}.${service.namespace}.svc:443`, `127.0.0.1:${port}`)

  await waitFor('caBundle patched into the applied MutatingWebhookConfiguration', () => {
    const mwc = api.get('mutatingwebhookconfigurations', undefined, 'asya-webhook', 'admissionregistration.k8s.io') as (KObj & { webhooks: Array<{ clientConfig: { caBundle?: string } }> }) | undefined
    return mwc?.webhooks.every((w) => (w.clientConfig.caBundle ?? '') !== '')
  })
  await waitFor('readyz', async () => (await fetch(`${sys.metricsUrl}/readyz`)).ok)

  await kubectl(['-n', ns, 'patch', `deployment/${deployName}`, '--type=merge', '-p', '{"spec":{"replicas":2}}'])
  const pods = await waitFor('two pods of the example Deployment', () => {
    const p = api.list('pods', ns)
    return p.length === 2 ? p : undefined
  })
  for (const pod of pods) {
    // The sidecar may be a native sidecar (an init container with restartPolicy Always).
    const spec = pod.spec as { containers?: Array<{ name: string }>; initContainers?: Array<{ name: string }> }
    const names = [...(spec.containers ?? []), ...(spec.initContainers ?? [])].map((c) => c.name)
    t.same(names.sort(), ['asya-sidecar', 'model'], `${pod.metadata.name}: sidecar injected beside the model container`)
  }
  // The PodMonitor of the prometheus overlay scrapes the port the webhook actually injects.
  const podMonitor = render('overlays/prometheus').find((o) => o.kind === 'PodMonitor') as KObj & { spec: { podMetricsEndpoints: Array<{ port: string; path: string }> } }
  const sidecar = [...((pods[0]?.spec as { containers?: unknown[] }).containers ?? []), ...((pods[0]?.spec as { initContainers?: unknown[] }).initContainers ?? [])].find(
    (c) => (c as { name: string }).name === 'asya-sidecar',
  ) as { ports?: Array<{ name: string; containerPort: number }>; readinessProbe?: { httpGet?: { path: string } } } | undefined
  const endpoint = podMonitor.spec.podMetricsEndpoints[0]
  t.equal(sidecar?.ports?.find((p) => p.name === endpoint?.port)?.containerPort, 8080, `PodMonitor port "${endpoint?.port}" is the sidecar's 8080`)
  t.equal(sidecar?.readinessProbe?.httpGet?.path, '/readyz', 'sidecar readiness on /readyz')
  const so = await waitFor('ScaledObject', () => api.list('scaledobjects', ns, 'keda.sh')[0])
  t.equal((so.spec as { scaleTargetRef: { name: string } }).scaleTargetRef.name, deployName, 'ScaledObject targets the example Deployment')
  t.equal((so.spec as { maxReplicaCount: number }).maxReplicaCount, 10, 'asya.sh/max-replicas from the example patch')
  t.ok(await transport.queuesExist(actor), 'the controller declared the actor queue and its DLQ on the broker')
  const sidecarEnv = Object.fromEntries(((sidecar as { env?: Array<{ name: string; value?: string }> } | undefined)?.env ?? []).map((e) => [e.name, e.value ?? '<ref>']))
  checks(so, sidecarEnv, api)
  await checkEndActors(t, api, transport, overlay)
  await waitFor('asya.sh/status Ready', () => api.get('deployments', ns, deployName, 'apps')?.metadata.annotations?.['asya.sh/status'] === 'Ready')

  // The webhook's own namespace is excluded by the applied namespaceSelector.
  const podWindowStart = api.requestLog.length
  await kubectl(['apply', '--validate=false'], [
    { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'labelled', namespace: 'asya-system', labels: { 'asya.sh/actor': actor } }, spec: { containers: [{ name: 'c', image: 'busybox:1.36' }] } },
  ])
  const podWindowEnd = api.requestLog.length
  const excluded = api.get('pods', 'asya-system', 'labelled')
  const exSpec = excluded?.spec as { containers?: Array<{ name: string }>; initContainers?: Array<{ name: string }> } | undefined
  t.same([...(exSpec?.containers ?? []), ...(exSpec?.initContainers ?? [])].map((c) => c.name), ['c'], 'no injection in asya-system')

  await sys.stop()
  stopSystem = undefined
  // Every resource request since the system started, except the test's own kubectl calls (the
  // excluded pod and kubectl's namespace lookup for it; its get and patch of the Deployment are verbs the system holds anyway), must be allowed by the shipped ClusterRole or asya-system Role.
  let checked = 0
  for (const [i, entry] of api.requestLog.entries()) {
    if (i < mark) continue
    const a = requestAttributes(entry.method, entry.path)
    if (!a) continue
    const kubectlPodApply = i >= podWindowStart && i < podWindowEnd && ((a.resource === 'pods' && a.namespace === 'asya-system') || (a.resource === 'namespaces' && a.verb === 'get'))
    if (kubectlPodApply) continue
    const ok = allows(role, a) || (a.namespace === 'asya-system' && allows(nsRole, a))
    if (!ok) t.fail(`${entry.method} ${entry.path} (${a.verb} ${a.group || 'core'}/${a.resource}) is not allowed by deploy/base/rbac.yaml`)
    checked++
  }
  t.ok(checked > 10, `${checked} API requests of the system process checked against the shipped RBAC`)
}

t.test('dev overlay (RabbitMQ) applied with kubectl runs: injected pods, ScaledObject, RBAC sufficient', async (t) => {
  await runOverlay(t, 'overlays/dev', await rabbitmq(), (so, env) => {
    t.equal((so.spec as { triggers: Array<{ type: string }> }).triggers[0]?.type, 'rabbitmq', 'RabbitMQ trigger')
    t.equal(env.ASYA_TRANSPORT, 'rabbitmq', 'sidecar on RabbitMQ')
  })
})

t.test('rabbitmq overlay applied with kubectl runs: credentials only by Secret reference, TriggerAuthentication, RBAC sufficient', async (t) => {
  // The kubelet would resolve the Deployment's secretKeyRefs; the test broker's user stands in.
  const transport = await rabbitmq()
  transport.env.ASYA_RABBITMQ_USERNAME = 'guest'
  transport.env.ASYA_RABBITMQ_PASSWORD = 'guest'
  await runOverlay(t, 'overlays/rabbitmq', transport, (so, env) => {
    const trigger = (so.spec as { triggers: Array<{ type: string; authenticationRef?: { name: string } }> }).triggers[0]
    t.equal(trigger?.type, 'rabbitmq')
    t.ok(trigger?.authenticationRef?.name, 'trigger authenticates through a TriggerAuthentication')
    t.equal(env.ASYA_RABBITMQ_PASSWORD, '<ref>', 'sidecar password is a secretKeyRef, never a literal')
  })
})

t.test('sqs overlay applied with kubectl runs: SQS queues, aws-sqs-queue trigger with pod identity, RBAC sufficient', async (t) => {
  await runOverlay(t, 'overlays/sqs', await sqs(), (so, env) => {
    const trigger = (so.spec as { triggers: Array<{ type: string; metadata: Record<string, string>; authenticationRef?: { name: string } }> }).triggers[0]
    t.equal(trigger?.type, 'aws-sqs-queue', 'SQS trigger')
    t.equal(trigger?.metadata.awsRegion, 'eu-west-1', 'region from the overlay')
    t.match(trigger?.metadata.queueURL ?? '', /123456789012/, 'account from the overlay in the queue URL')
    t.equal(env.ASYA_TRANSPORT, 'sqs', 'sidecar on SQS')
    t.equal(env.ASYA_AWS_REGION, 'eu-west-1')
  })
})

t.test('gateway overlay applied with kubectl: gateway Deployment, Service, PDB, tools ConfigMap, PodMonitor; every injected sidecar reports to it', async (t) => {
  await runOverlay(t, 'overlays/gateway', await rabbitmq(), (_so, env, api) => {
    t.equal(env.ASYA_GATEWAY_URL, 'http://asya-gateway-internal.asya-system.svc:8081', 'the injected sidecar reports to the gateway\'s internal listener (security on)')
    const dep = api.get('deployments', 'asya-system', 'asya-gateway', 'apps') as (KObj & { spec: { replicas: number } }) | undefined
    t.ok(dep && dep.spec.replicas >= 2, 'gateway Deployment with ≥ 2 replicas')
    t.ok(api.get('services', 'asya-system', 'asya-gateway'), 'gateway Service')
    t.ok(api.get('poddisruptionbudgets', 'asya-system', 'asya-gateway', 'policy'), 'gateway PDB')
    t.ok(api.get('podmonitors', 'asya-system', 'asya-gateway', 'monitoring.coreos.com'), 'gateway PodMonitor')
    t.ok(api.get('networkpolicies', 'asya-system', 'asya-gateway', 'networking.k8s.io'), 'NetworkPolicy of the internal listener')
    t.ok(api.list('configmaps', 'asya-system').some((c) => c.metadata.name.startsWith('asya-gateway-tools-')), 'tools ConfigMap')
  })
})
