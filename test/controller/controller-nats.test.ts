/**
 * The controller on NATS JetStream (a private nats-server -js) and the Kubernetes API test server:
 * stream and consumers from annotations, the KEDA nats-jetstream trigger (with a
 * TriggerAuthentication from a Secret), annotation changes followed, cleanup on label removal per
 * asya.sh/queue-retention, and a stream with another configuration reported, never changed.
 */
import t from 'tap'
import { connect, type NatsConnection } from '@nats-io/transport-node'
import { jetstreamManager, RetentionPolicy, StorageType, type JetStreamManager } from '@nats-io/jetstream'
import { NatsQueues } from '../../src/controller/nats-queues.js'
import { NATS_STREAM } from '../../src/names.js'
import { annotations, deployment, getCustom, rid, silentLogger, startEnv, waitFor, type Env } from './helpers.js'
import { startPrivateNats, type PrivateNats } from '../support/private-nats.js'

let env: Env
let server: PrivateNats
let nc: NatsConnection
let jsm: JetStreamManager
t.before(async () => {
  env = await startEnv()
  server = await startPrivateNats()
  nc = await connect({ servers: server.url })
// A failed test must not leave its controller running into the next one.
t.afterEach(async () => {
  await env.stopControllers()
})
  jsm = await jetstreamManager(nc)
})
t.teardown(async () => {
  await nc?.close()
  await env?.close()
  await server?.destroy()
})

const status = (ns: string, name: string, want: string) =>
  waitFor(`${ns}/${name} ${want}`, async () => {
    const a = await annotations(env.apis, ns, name)
    return a['asya.sh/status'] === want ? a : undefined
  })

async function consumer(name: string): Promise<Awaited<ReturnType<JetStreamManager['consumers']['info']>> | undefined> {
  return jsm.consumers.info(NATS_STREAM, name).catch(() => undefined)
}

const provisioners: NatsQueues[] = []
t.teardown(async () => {
  for (const p of provisioners) await p.close()
})

function natsController(url: string, monitoringSecret?: { name: string; endpointKey: string }) {
  const nats = new NatsQueues({ connection: { servers: [url] }, logger: silentLogger })
  provisioners.push(nats)
  return env.makeController({
    queues: { nats },
    defaultTransport: 'nats',
    scaler: () => ({
      transport: 'nats',
      nats: { monitoringEndpoint: 'nats.nats.svc:8222', account: '$G', useHttps: false, ...(monitoringSecret ? { credentialSecret: monitoringSecret } : {}) },
    }),
  })
}

async function patchDeployment(ns: string, name: string, body: object): Promise<void> {
  const { MERGE_PATCH } = await import('../../src/controller/kube.js')
  await env.apis.apps.patchNamespacedDeployment({ namespace: ns, name, body }, MERGE_PATCH)
}

t.test('NATS: stream, consumers from annotations, nats-jetstream ScaledObject; label removal with retention delete cleans up', async (t) => {
  const ns = rid('ns')
  const actor = rid('a')
  const c = natsController(server.url)
  c.start()
  await env.apis.apps.createNamespacedDeployment({
    namespace: ns,
    body: deployment(ns, 'nw', actor, { 'asya.sh/queue-retention': 'delete', 'asya.sh/max-replicas': '4', 'asya.sh/queue-length': '7' }, { 'asya.sh/timeout': '120' }),
  })
  const a = await status(ns, 'nw', 'Ready')
  t.equal(a['asya.sh/wired'], `nats:${actor}`)
  const s = await jsm.streams.info(NATS_STREAM)
  t.same(s.config.subjects, ['asya.>'])
  t.equal(s.config.retention, RetentionPolicy.Workqueue)
  t.equal(s.config.storage, StorageType.File)
  const ci = await consumer(`asya-${actor}`)
  t.equal(ci?.config.filter_subject, `asya.${actor}`)
  t.equal(ci?.config.ack_policy, 'explicit')
  t.equal(ci?.config.ack_wait, 120_000_000_000, 'AckWait = asya.sh/timeout')
  t.equal(ci?.config.max_ack_pending, 32 * 4, 'max_ack_pending = pod window × max replicas')
  t.ok(await consumer(`asya-${actor}-dlq`), 'DLQ consumer')
  const so = await getCustom(env.apis, ns, 'scaledobjects', 'nw')
  t.same(so?.spec.triggers[0], {
    type: 'nats-jetstream',
    metadata: { natsServerMonitoringEndpoint: 'nats.nats.svc:8222', account: '$G', stream: 'ASYA', consumer: `asya-${actor}`, lagThreshold: '7', useHttps: 'false' },
  })
  t.equal(so?.spec.maxReplicaCount, 4)
  t.equal(await getCustom(env.apis, ns, 'triggerauthentications', 'nw-trigger-auth'), undefined, 'no Secret: no TriggerAuthentication')

  // Annotations change: the consumer follows (a consumer update, no message touched).
  await jsm.jetstream().publish(`asya.${actor}`, '{"keep":1}')
  await patchDeployment(ns, 'nw', { metadata: { annotations: { 'asya.sh/max-replicas': '10' } }, spec: { template: { metadata: { annotations: { 'asya.sh/timeout': '30' } } } } })
  await waitFor('consumer updated', async () => {
    const x = await consumer(`asya-${actor}`)
    return x?.config.ack_wait === 30_000_000_000 && x.config.max_ack_pending === 320
  })
  t.equal((await consumer(`asya-${actor}`))?.num_pending, 1, 'the waiting message is still there')

  // A dead letter keeps the DLQ when the queue goes.
  await jsm.jetstream().publish(`asya.${actor}-dlq`, '{"dead":1}')
  await patchDeployment(ns, 'nw', { spec: { template: { metadata: { labels: { 'asya.sh/actor': null } } } } })
  await waitFor('consumer deleted', async () => (await consumer(`asya-${actor}`)) === undefined)
  t.pass('label removed with retention=delete: consumer deleted')
  t.ok(await consumer(`asya-${actor}-dlq`), 'the DLQ holding a dead letter is kept')
  await waitFor('ScaledObject removed', async () => (await getCustom(env.apis, ns, 'scaledobjects', 'nw')) === undefined)
  await c.stop()
})

t.test('NATS: retention retain keeps the consumer; a monitoring Secret makes a TriggerAuthentication', async (t) => {
  const ns = rid('ns')
  const actor = rid('a')
  const c = natsController(server.url, { name: 'nats-monitoring', endpointKey: 'natsServerMonitoringEndpoint' })
  c.start()
  await env.apis.apps.createNamespacedDeployment({ namespace: ns, body: deployment(ns, 'nr', actor) })
  await status(ns, 'nr', 'Ready')
  const so = await getCustom(env.apis, ns, 'scaledobjects', 'nr')
  t.same(so?.spec.triggers[0].authenticationRef, { name: 'nr-trigger-auth' })
  t.equal(so?.spec.triggers[0].metadata.natsServerMonitoringEndpoint, undefined, 'endpoint comes from the Secret')
  const ta = await getCustom(env.apis, ns, 'triggerauthentications', 'nr-trigger-auth')
  t.same(ta?.spec, { secretTargetRef: [{ parameter: 'natsServerMonitoringEndpoint', name: 'nats-monitoring', key: 'natsServerMonitoringEndpoint' }] })
  t.equal((await consumer(`asya-${actor}`))?.config.ack_wait, 300_000_000_000, 'default timeout 300 s')
  await env.apis.apps.deleteNamespacedDeployment({ namespace: ns, name: 'nr' })
  await waitFor('ScaledObject removed', async () => (await getCustom(env.apis, ns, 'scaledobjects', 'nr')) === undefined)
  t.ok(await consumer(`asya-${actor}`), 'retention retain (default): consumer kept')
  await c.stop()
})

t.test('NATS: a stream with another configuration is a QueueError, left as is', async (t) => {
  const own = await startPrivateNats()
  t.teardown(() => own.destroy())
  const nc2 = await connect({ servers: own.url })
  t.teardown(() => nc2.close())
  const jsm2 = await jetstreamManager(nc2)
  await jsm2.streams.add({ name: NATS_STREAM, subjects: ['asya.>'], storage: StorageType.File, retention: RetentionPolicy.Limits })
  const ns = rid('ns')
  const c = natsController(own.url)
  c.start()
  await env.apis.apps.createNamespacedDeployment({ namespace: ns, body: deployment(ns, 'nm', rid('a')) })
  const a = await status(ns, 'nm', 'QueueError')
  t.match(a['asya.sh/status-message'] ?? JSON.stringify(a), /ASYA_ERR_TRANSPORT_QUEUE_MISMATCH.*retention/)
  t.equal((await jsm2.streams.info(NATS_STREAM)).config.retention, RetentionPolicy.Limits, 'stream untouched')
  await c.stop()
  await provisioners.pop()?.close()
})
