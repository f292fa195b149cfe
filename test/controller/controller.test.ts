import t from 'tap'
import { Registry } from 'prom-client'
import { annotations, deployment, getCustom, rid, startEnv, waitFor, type Env } from './helpers.js'

let env: Env
t.before(async () => {
  env = await startEnv()
})
// A failed test must not leave its controller running into the next one.
t.afterEach(async () => {
  await env.stopControllers()
})
t.teardown(async () => {
  await env.close()
})

async function createDeployment(ns: string, name: string, actor: string | undefined, ann: Record<string, string> = {}, tpl: Record<string, string> = {}): Promise<void> {
  if (actor) env.created.add(`asya-${actor}`).add(`asya-${actor}-dlq`)
  await env.apis.apps.createNamespacedDeployment({ namespace: ns, body: deployment(ns, name, actor, ann, tpl) })
}

async function status(ns: string, name: string, want: string): Promise<Record<string, string>> {
  return waitFor(`status ${want} on ${ns}/${name}`, async () => {
    const a = await annotations(env.apis, ns, name)
    return a['asya.sh/status'] === want ? a : undefined
  })
}

async function patchDeployment(ns: string, name: string, body: object): Promise<void> {
  const { MERGE_PATCH } = await import('../../src/controller/kube.js')
  await env.apis.apps.patchNamespacedDeployment({ namespace: ns, name, body }, MERGE_PATCH)
}

t.test('labelled Deployment is wired: queue + DLQ, ConfigMap, ScaledObject, TriggerAuthentication; objects follow annotations; label removal cleans up', async (t) => {
  const ns = rid('ns')
  const actor = rid('a')
  const registry = new Registry()
  const c = env.makeController({ registry })
  c.start()
  await createDeployment(ns, 'echo', actor, { 'asya.sh/max-replicas': '7', 'asya.sh/queue-length': '3', 'asya.sh/queue-retention': 'delete' })
  const a = await status(ns, 'echo', 'Ready')
  t.equal(a['asya.sh/wired'], `rabbitmq:${actor}`)
  t.equal(await env.check(`asya-${actor}`), 0, 'queue exists')
  t.equal(await env.check(`asya-${actor}-dlq`), 0, 'DLQ exists')
  const cm = await env.apis.core.readNamespacedConfigMap({ name: 'asya-runtime', namespace: ns })
  t.equal(cm.data?.['asya_runtime.py'], '# asya runtime (test)\n')
  const so = await getCustom(env.apis, ns, 'scaledobjects', 'echo')
  t.equal(so?.spec.maxReplicaCount, 7)
  t.equal(so?.spec.triggers[0].metadata.value, '3')
  t.equal(so?.spec.triggers[0].metadata.queueName, `asya-${actor}`)
  t.equal(so?.metadata.ownerReferences[0].controller, true)
  const ta = await getCustom(env.apis, ns, 'triggerauthentications', 'echo-trigger-auth')
  t.equal(ta?.spec.secretTargetRef[0].name, 'asya-rabbitmq')
  const metrics = await registry.metrics()
  t.match(metrics, /asya_controller_reconcile_total\{result="ready"\} [1-9]/)
  t.match(metrics, /asya_controller_actors\{status="Ready"\} 1/)
  t.match(metrics, /asya_controller_reconcile_duration_seconds_count [1-9]/)
  const events = await env.apis.core.listNamespacedEvent({ namespace: ns })
  const ready = events.items.filter((e) => e.reason === 'ActorReady')
  t.equal(ready.length, 1, 'one ActorReady event')
  t.equal(ready[0]?.involvedObject.name, 'echo')
  t.equal(ready[0]?.count, 1)

  await patchDeployment(ns, 'echo', { metadata: { annotations: { 'asya.sh/max-replicas': '9', 'asya.sh/cooldown-period': '120' } } })
  const so2 = await waitFor('ScaledObject follows', async () => {
    const o = await getCustom(env.apis, ns, 'scaledobjects', 'echo')
    return o?.spec.maxReplicaCount === 9 ? o : undefined
  })
  t.equal(so2.spec.cooldownPeriod, 120)

  await patchDeployment(ns, 'echo', { metadata: { annotations: { 'asya.sh/scaling': 'off' } } })
  await waitFor('ScaledObject removed by scaling=off', async () => (await getCustom(env.apis, ns, 'scaledobjects', 'echo')) === undefined)
  t.pass('scaling off removes the ScaledObject')
  await patchDeployment(ns, 'echo', { metadata: { annotations: { 'asya.sh/scaling': 'keda' } } })
  await waitFor('ScaledObject back', async () => (await getCustom(env.apis, ns, 'scaledobjects', 'echo')) !== undefined)

  // remove the label: retention=delete → everything goes
  await patchDeployment(ns, 'echo', { spec: { template: { metadata: { labels: { 'asya.sh/actor': null } } } } })
  await waitFor('unwired', async () => (await annotations(env.apis, ns, 'echo'))['asya.sh/wired'] === undefined)
  t.equal(await getCustom(env.apis, ns, 'scaledobjects', 'echo'), undefined, 'ScaledObject removed')
  t.equal(await getCustom(env.apis, ns, 'triggerauthentications', 'echo-trigger-auth'), undefined, 'TriggerAuthentication removed')
  await waitFor('queue deleted', async () => (await env.check(`asya-${actor}`)) === undefined)
  t.pass('queue deleted per asya.sh/queue-retention=delete')
  await c.stop()
})

t.test('deleting a workload keeps its queue by default (retain) and removes KEDA objects; a vanished queue is re-created on resync', async (t) => {
  const ns = rid('ns')
  const actor = rid('a')
  const gone = rid('a')
  const c = env.makeController({ resyncMs: 300 })
  c.start()
  await createDeployment(ns, 'keep', actor)
  await createDeployment(ns, 'gone', gone)
  await status(ns, 'keep', 'Ready')
  await status(ns, 'gone', 'Ready')

  await env.deleteQueue(`asya-${actor}`)
  await waitFor('queue re-created by resync', async () => (await env.check(`asya-${actor}`)) !== undefined)
  t.pass('vanished queue re-created')

  await env.apis.apps.deleteNamespacedDeployment({ namespace: ns, name: 'gone' })
  await waitFor('KEDA objects of deleted workload removed', async () => (await getCustom(env.apis, ns, 'scaledobjects', 'gone')) === undefined)
  await waitFor('TriggerAuthentication removed', async () => (await getCustom(env.apis, ns, 'triggerauthentications', 'gone-trigger-auth')) === undefined)
  t.equal(await env.check(`asya-${gone}`), 0, 'queue retained by default')
  await c.stop()
})

t.test('two workloads claiming one actor: the later one is Conflict and not wired; it takes over when the first goes', async (t) => {
  const ns = rid('ns')
  const actor = rid('a')
  const c = env.makeController()
  c.start()
  await createDeployment(ns, 'first', actor)
  await status(ns, 'first', 'Ready')
  await createDeployment(ns, 'second', actor)
  const a = await status(ns, 'second', 'Conflict')
  t.match(a['asya.sh/status-message'], /first/)
  t.equal(await getCustom(env.apis, ns, 'scaledobjects', 'second'), undefined, 'loser not wired')
  await env.apis.apps.deleteNamespacedDeployment({ namespace: ns, name: 'first' })
  await status(ns, 'second', 'Ready')
  t.ok(await getCustom(env.apis, ns, 'scaledobjects', 'second'), 'second wired once the first is gone')
  await c.stop()
})

t.test('one actor name in two namespaces: the second is Conflict (one queue per name) unless ASYA_SHARED_ACTOR_NAMES', async (t) => {
  const [ns1, ns2] = [rid('ns'), rid('ns')]
  const actor = rid('a')
  const c = env.makeController()
  c.start()
  await createDeployment(ns1, 'one', actor)
  await status(ns1, 'one', 'Ready')
  await createDeployment(ns2, 'two', actor)
  const a = await status(ns2, 'two', 'Conflict')
  t.match(a['asya.sh/status-message'], new RegExp(`ASYA_ERR_ACTOR_CONFLICT: actor "${actor}" is already served by Deployment/one in namespace ${ns1}.*ASYA_SHARED_ACTOR_NAMES=true`))
  t.equal(await getCustom(env.apis, ns2, 'scaledobjects', 'two'), undefined, 'the second is not wired')
  t.equal((await annotations(env.apis, ns1, 'one'))['asya.sh/status'], 'Ready', 'the first keeps its actor')
  await env.apis.apps.deleteNamespacedDeployment({ namespace: ns1, name: 'one' })
  await status(ns2, 'two', 'Ready')
  t.pass('the second takes over when the first goes')
  await c.stop()

  const shared = rid('a')
  const s = env.makeController({ shareActorsAcrossNamespaces: true })
  s.start()
  await createDeployment(ns1, 'three', shared)
  await createDeployment(ns2, 'four', shared)
  await status(ns1, 'three', 'Ready')
  await status(ns2, 'four', 'Ready')
  t.pass('opted in: both serve the shared queue')
  await s.stop()
})

t.test('queue-retention delete never deletes a queue holding messages: kept, reported, retried; force-delete deletes it', async (t) => {
  const amqp = (await import('amqplib')).default
  const { AMQP_URL } = await import('./helpers.js')
  const conn = await amqp.connect(AMQP_URL)
  t.teardown(() => conn.close())
  const ns = rid('ns')
  const [held, forced] = [rid('a'), rid('a')]
  const c = env.makeController()
  c.start()
  await createDeployment(ns, 'held', held, { 'asya.sh/queue-retention': 'delete' })
  await createDeployment(ns, 'forced', forced, { 'asya.sh/queue-retention': 'force-delete' })
  await status(ns, 'held', 'Ready')
  await status(ns, 'forced', 'Ready')
  const ch = await conn.createConfirmChannel()
  for (const a of [held, forced]) ch.sendToQueue(`asya-${a}`, Buffer.from('{"still":"here"}'), { persistent: true })
  await ch.waitForConfirms()
  await env.apis.apps.deleteNamespacedDeployment({ namespace: ns, name: 'held' })
  await env.apis.apps.deleteNamespacedDeployment({ namespace: ns, name: 'forced' })
  await waitFor('QueueRetained Event', async () => (await env.apis.core.listNamespacedEvent({ namespace: ns })).items.some((e) => e.reason === 'QueueRetained' && e.type === 'Warning'))
  const ev = (await env.apis.core.listNamespacedEvent({ namespace: ns })).items.find((e) => e.reason === 'QueueRetained')
  t.match(ev?.message, new RegExp(`asya-${held} not deleted: holds 1 messages`))
  await waitFor('forced queue deleted', async () => (await env.check(`asya-${forced}`)) === undefined)
  t.pass('force-delete: deleted with its message')
  await new Promise((r) => setTimeout(r, 1000))
  t.equal(await env.check(`asya-${held}`), 1, 'delete: the queue and its message are kept across retries')
  await ch.purgeQueue(`asya-${held}`)
  await waitFor('held queue deleted once empty', async () => (await env.check(`asya-${held}`)) === undefined, 30_000)
  t.pass('deleted on a retry once empty')
  await ch.close()
  await c.stop()
})

t.test('invalid annotations: InvalidConfig naming the annotation, existing objects untouched, Warning event', async (t) => {
  const ns = rid('ns')
  const actor = rid('a')
  const c = env.makeController()
  c.start()
  await createDeployment(ns, 'w', actor, { 'asya.sh/max-replicas': '4' })
  await status(ns, 'w', 'Ready')
  await patchDeployment(ns, 'w', { metadata: { annotations: { 'asya.sh/max-replicas': 'lots' } } })
  const a = await status(ns, 'w', 'InvalidConfig')
  t.match(a['asya.sh/status-message'], /asya\.sh\/max-replicas/)
  const so = await getCustom(env.apis, ns, 'scaledobjects', 'w')
  t.equal(so?.spec.maxReplicaCount, 4, 'ScaledObject untouched')
  const events = await env.apis.core.listNamespacedEvent({ namespace: ns })
  const ev = events.items.find((e) => e.reason === 'InvalidConfig')
  t.equal(ev?.type, 'Warning')
  t.equal(ev?.involvedObject.name, 'w')
  t.equal(ev?.involvedObject.kind, 'Deployment')

  await createDeployment(ns, 'x'.repeat(64), rid('a'))
  const b = await status(ns, 'x'.repeat(64), 'InvalidConfig')
  t.match(b['asya.sh/status-message'], /ASYA_ERR_NAME_TOO_LONG/)
  await c.stop()
})

t.test('an existing queue with other arguments is reported (QueueError, ASYA_ERR_TRANSPORT_QUEUE_MISMATCH), never deleted', async (t) => {
  const ns = rid('ns')
  const actor = rid('a')
  const amqp = (await import('amqplib')).default
  const { AMQP_URL } = await import('./helpers.js')
  const conn = await amqp.connect(AMQP_URL)
  const ch = await conn.createChannel()
  await ch.assertQueue(`asya-${actor}`, { durable: true, arguments: { 'x-max-length': 7 } })
  ch.sendToQueue(`asya-${actor}`, Buffer.from('{"keep":"me"}'))
  await ch.close()
  await conn.close()
  const c = env.makeController()
  c.start()
  await createDeployment(ns, 'mm', actor)
  const a = await status(ns, 'mm', 'QueueError')
  t.match(a['asya.sh/status-message'], /ASYA_ERR_TRANSPORT_QUEUE_MISMATCH/)
  t.equal(await waitFor('message count', () => env.check(`asya-${actor}`)), 1, 'queue and its message still there')
  t.equal(await getCustom(env.apis, ns, 'scaledobjects', 'mm'), undefined, 'not wired further')
  const events = await env.apis.core.listNamespacedEvent({ namespace: ns })
  t.ok(events.items.some((e) => e.reason === 'QueueError' && e.type === 'Warning'), 'Warning event')
  await c.stop()
})

t.test('quorum by default; an existing classic queue is used as it is, never re-created, reported once (status, Event, log)', async (t) => {
  const amqp = (await import('amqplib')).default
  const { AMQP_URL } = await import('./helpers.js')
  const conn = await amqp.connect(AMQP_URL)
  t.teardown(() => conn.close())
  const ns = rid('ns')
  const fresh = rid('a')
  const legacy = rid('a')
  for (const a of [fresh, legacy]) env.created.add(`asya-${a}`).add(`asya-${a}-dlq`)
  const ch = await conn.createChannel()
  // What an older Asya (or upstream) declared: classic, with a message waiting.
  await ch.assertQueue(`asya-${legacy}`, { durable: true })
  ch.sendToQueue(`asya-${legacy}`, Buffer.from('{"keep":"me"}'), { persistent: true })
  await ch.close()
  const c = env.makeController()
  c.start()
  await createDeployment(ns, 'fresh', fresh)
  await createDeployment(ns, 'legacy', legacy)
  await status(ns, 'fresh', 'Ready')
  const a = await status(ns, 'legacy', 'Ready')
  t.match(a['asya.sh/status-message'], new RegExp(`asya-${legacy} is a classic queue, ASYA_RABBITMQ_QUEUE_TYPE is quorum: used as it is, never re-created.*crash-loop detection off`), 'status says what it is and what is lost')
  t.ok(await getCustom(env.apis, ns, 'scaledobjects', 'legacy'), 'and the actor is wired')
  t.equal(await waitFor('message count', () => env.check(`asya-${legacy}`)), 1, 'the classic queue and its message are still there')
  // The broker says which type a queue is: a quorum declaration of the fresh one is accepted as
  // is, a classic one refused (406), and the other way round for the legacy queue.
  const probe = async (queue: string, args: Record<string, unknown>): Promise<boolean> => {
    const p = await conn.createChannel()
    p.on('error', () => undefined)
    try {
      await p.assertQueue(queue, { durable: true, arguments: args })
      await p.close()
      return true
    } catch {
      return false
    }
  }
  t.ok(await probe(`asya-${fresh}-dlq`, { 'x-queue-type': 'quorum' }), 'new DLQ is a quorum queue')
  t.notOk(await probe(`asya-${fresh}`, {}), 'new actor queue is not a plain classic queue')
  t.ok(await probe(`asya-${legacy}`, { 'x-queue-type': 'classic' }), 'legacy queue still classic')
  c.resyncNow()
  await new Promise((r) => setTimeout(r, 1500))
  const events = (await env.apis.core.listNamespacedEvent({ namespace: ns })).items.filter((e) => e.reason === 'QueueTypeMismatch')
  t.equal(events.length, 1, 'one QueueTypeMismatch Event, also after a resync')
  t.equal(events[0]?.type, 'Warning')
  t.equal(events[0]?.involvedObject.name, 'legacy')
  await c.stop()
})

t.test('StatefulSets are actors too; a repeated event is aggregated (count 2)', async (t) => {
  const ns = rid('ns')
  const actor = rid('a')
  env.created.add(`asya-${actor}`).add(`asya-${actor}-dlq`)
  const c = env.makeController()
  c.start()
  const d = deployment(ns, 'ss', actor)
  await env.apis.apps.createNamespacedStatefulSet({
    namespace: ns,
    body: { apiVersion: 'apps/v1', kind: 'StatefulSet', metadata: d.metadata, spec: { serviceName: 'ss', selector: d.spec!.selector, template: d.spec!.template } },
  })
  const ssStatus = async (want: string) =>
    waitFor(`StatefulSet ${want}`, async () => {
      const s = await env.apis.apps.readNamespacedStatefulSet({ name: 'ss', namespace: ns })
      return s.metadata?.annotations?.['asya.sh/status'] === want ? s : undefined
    })
  await ssStatus('Ready')
  const so = await getCustom(env.apis, ns, 'scaledobjects', 'ss')
  t.same(so?.spec.scaleTargetRef, { apiVersion: 'apps/v1', kind: 'StatefulSet', name: 'ss' })
  const { MERGE_PATCH } = await import('../../src/controller/kube.js')
  const patch = (v: string) => env.apis.apps.patchNamespacedStatefulSet({ name: 'ss', namespace: ns, body: { metadata: { annotations: { 'asya.sh/min-replicas': v } } } }, MERGE_PATCH)
  await patch('x')
  await ssStatus('InvalidConfig')
  await patch('1')
  await ssStatus('Ready')
  await patch('x')
  await ssStatus('InvalidConfig')
  const ev = await waitFor('aggregated event', async () => {
    const list = await env.apis.core.listNamespacedEvent({ namespace: ns })
    return list.items.find((e) => e.reason === 'InvalidConfig' && e.count === 2)
  })
  t.equal(ev.involvedObject.kind, 'StatefulSet')
  await c.stop()
})

t.test('end-actor queues exist with no end actor labelled, come back on resync, and survive queue-retention=delete', async (t) => {
  const ns = rid('ns')
  const happy = rid('happy')
  const error = rid('error')
  for (const a of [happy, error]) env.created.add(`asya-${a}`).add(`asya-${a}-dlq`)
  const c = env.makeController({ endActors: [happy, error], resyncMs: 300 })
  c.start()
  for (const q of [happy, error]) {
    await waitFor(`asya-${q} + DLQ`, async () => (await env.check(`asya-${q}`)) !== undefined && (await env.check(`asya-${q}-dlq`)) !== undefined)
  }
  t.pass('asya-<happy-end>, asya-<error-end> and their DLQs exist before any end actor is labelled')
  await env.deleteQueue(`asya-${happy}`)
  await waitFor('re-created on resync', async () => (await env.check(`asya-${happy}`)) !== undefined)
  t.pass('a vanished end-actor queue is re-created on resync')

  await createDeployment(ns, 'happy', happy, { 'asya.sh/queue-retention': 'delete' })
  await status(ns, 'happy', 'Ready')
  await env.apis.apps.deleteNamespacedDeployment({ namespace: ns, name: 'happy' })
  await waitFor('ScaledObject removed', async () => (await getCustom(env.apis, ns, 'scaledobjects', 'happy')) === undefined)
  await new Promise((r) => setTimeout(r, 500))
  t.equal(await env.check(`asya-${happy}`), 0, 'end-actor queue kept despite queue-retention=delete')
  await c.stop()
})
