/**
 * The sidecar on NATS JetStream (a private `nats-server -js`), real runtimes: routing over three
 * hops, fan-out, retries by nak with backoff, error-end, publish failures into the DLQ, the
 * delivery limit from the broker's own delivery count, a call outliving AckWait (working acks),
 * a handler timeout, the server's size limit, and a broker restart under load.
 */
import t from 'tap'
import { connect } from '@nats-io/transport-node'
import { jetstream } from '@nats-io/jetstream'
import { NatsTransport } from '../../src/transport/nats-transport.js'
import { type Transport } from '../../src/transport/transport.js'
import { Inbox } from '../transport/conformance.js'
import { startPrivateNats } from '../support/private-nats.js'
import { envelope, json, natsWorld, rand, startActor, type TestActor } from '../support/actor-harness.js'
import { HEADER, NATS_STREAM } from '../../src/names.js'

const server = await startPrivateNats()
const world = natsWorld(server.url)
const transports: Transport[] = []
const actors: TestActor[] = []
async function transport(): Promise<Transport> {
  const tr = new NatsTransport({ servers: [server.url], ackWaitMs: 10_000, pullExpiresMs: 2000 })
  await tr.connect()
  transports.push(tr)
  return tr
}
const client = await transport()
await client.ensureQueue(world.happyEnd)
await client.ensureQueue(world.errorEnd)
const happy = new Inbox()
const errors = new Inbox()
await client.consume(world.happyEnd, happy.push, { prefetch: 64 })
await client.consume(world.errorEnd, errors.push, { prefetch: 64 })

t.teardown(async () => {
  for (const a of actors) await a.stop().catch(() => undefined)
  for (const tr of transports) await tr.close().catch(() => undefined)
  await server.destroy()
})

async function actor(name: string, handler: string, env: Record<string, string> = {}, onEvent?: Parameters<typeof startActor>[0]['onEvent']): Promise<TestActor> {
  const a = await startActor({ name, handler, world, transport: await transport(), env, ...(onEvent ? { onEvent } : {}) })
  actors.push(a)
  return a
}

t.test('three hops and fan-out: 20 envelopes × 3 children reach happy-end, headers carried', async (t) => {
  const id = rand()
  const names = [`n1-${id}`, `n2-${id}`, `n3-${id}`]
  await actor(names[0] as string, 'tag')
  await actor(names[1] as string, 'tag')
  await actor(names[2] as string, 'fanout3')
  for (let i = 0; i < 20; i++) await client.publish(names[0] as string, envelope(`q${i}-${id}`, names, { i }, { headers: { trace: `T${i}` } }))
  const ids = new Set<string>()
  for (let i = 0; i < 60; i++) {
    const d = await happy.next(60_000)
    const e = json(d)
    ids.add(e.id)
    t.ok(String(e.headers.trace).startsWith('T'))
    await d.ack()
  }
  t.equal(ids.size, 60, '20 × 3 children, distinct ids')
})

t.test('handler error: retried by nak with backoff, then error-end with attempts and traceback', async (t) => {
  const n = `nf-${rand()}`
  const events: string[] = []
  await actor(n, 'fail', { ASYA_MAX_RETRIES: '2', ASYA_RETRY_BACKOFF: '100ms' }, (e) => {
    if (e.type === 'retry') events.push(`${e.attempt}:${e.reason}`)
  })
  await client.publish(n, envelope(`f-${n}`, [n], { v: 1 }, { headers: { trace_id: 'R' } }))
  const env = json(await errors.next(60_000))
  t.same(events, ['1:processing_error', '2:processing_error'], 'two retries, then give up')
  t.equal(env.payload.details.reason, 'processing_error')
  t.equal(env.payload.details.attempts, 3, 'attempts = the broker delivery count')
  t.match(env.payload.details.traceback, /Traceback/)
  t.same(env.headers, { trace_id: 'R' })
})

t.test('parse error goes to error-end; the runtime is not called', async (t) => {
  const n = `np-${rand()}`
  const a = await actor(n, 'echo')
  await client.publish(n, Buffer.from('this is not json {'))
  const e = json(await errors.next(60_000))
  t.equal(e.payload.details.reason, 'parse_error')
  t.equal(e.payload.original_body, 'this is not json {')
  t.equal(a.runtime.restarts, 0)
})

t.test('publish fails (next actor has no consumer): retried with backoff, then the DLQ', async (t) => {
  const n = `npf-${rand()}`
  const reasons: string[] = []
  await actor(n, 'echo', { ASYA_DELIVERY_LIMIT: '3' }, (e) => {
    if (e.type === 'retry' || e.type === 'dead_letter') reasons.push(`${e.type}:${e.reason}`)
  })
  const body = envelope(`pf-${n}`, [n, `nobody-${rand()}`], { v: 1 })
  await client.publish(n, body)
  const dlq = new Inbox()
  const sub = await client.consume(`${n}-dlq`, dlq.push, { prefetch: 1 })
  const d = await dlq.next(60_000)
  for (let i = 0; i < 100 && reasons.length < 3; i++) await new Promise((r) => setTimeout(r, 50))
  t.same(reasons, ['retry:publish_failed', 'retry:publish_failed', 'dead_letter:publish_failed'], 'bounded attempts, no hot loop')
  t.same(d.body, body, 'body unchanged in the DLQ')
  t.equal(d.headers[HEADER.reason], 'publish_failed')
  t.equal(d.headers[HEADER.attempts], '3')
  t.match(d.headers[HEADER.error] ?? '', /no NATS consumer/)
  await d.ack()
  await sub.cancel()
})

t.test('delivery limit from the broker count: a message delivered 4 times before goes to the DLQ', async (t) => {
  const n = `ndl-${rand()}`
  await client.ensureQueue(n)
  const body = envelope(`dl-${n}`, [n], { v: 1 })
  await client.publish(n, body)
  // Four deliveries that never complete (like sidecars killed mid-message), counted by the broker.
  const nc = await connect({ servers: server.url })
  t.teardown(() => nc.close())
  const c = await jetstream(nc).consumers.get(NATS_STREAM, `asya-${n}`)
  for (let i = 0; i < 4; i++) {
    const m = await c.next({ expires: 5000 })
    if (!m) throw new Error('no delivery')
    m.nak()
  }
  await nc.flush()
  const dlq = new Inbox()
  const sub = await client.consume(`${n}-dlq`, dlq.push, { prefetch: 1 })
  await actor(n, 'echo', { ASYA_DELIVERY_LIMIT: '3' })
  const d = await dlq.next(60_000)
  t.equal(d.headers[HEADER.reason], 'delivery_limit')
  t.equal(d.headers[HEADER.attempts], '5', 'the fifth delivery, counted by JetStream')
  t.same(d.body, body)
  await d.ack()
  await sub.cancel()
})

t.test('a call longer than AckWait is kept alive by working acks: delivered once', async (t) => {
  const n = `nlong-${rand()}`
  await actor(n, 'slow', { ASYA_NATS_ACK_WAIT: '1s' })
  // A second pod of the same actor would receive the message if AckWait expired mid-call.
  await actor(n, 'slow', { ASYA_NATS_ACK_WAIT: '1s' })
  await client.publish(n, envelope(`long-${n}`, [n], { sleep: 3.5 }))
  const d = await happy.next(60_000)
  t.equal(json(d).id, `long-${n}`)
  await d.ack()
  await new Promise((r) => setTimeout(r, 1500))
  t.equal(happy.pending, 0, 'no second copy from a redelivery')
})

t.test('handler timeout: error-end with reason timeout, runtime recovered', async (t) => {
  const n = `nto-${rand()}`
  await actor(n, 'maybe_hang', { ASYA_RUNTIME_TIMEOUT: '1s', ASYA_RUNTIME_READY_TIMEOUT: '30s' })
  await client.publish(n, envelope(`h-${n}`, [n], { hang: true }))
  const e = json(await errors.next(60_000))
  t.equal(e.payload.details.reason, 'timeout')
  await client.publish(n, envelope(`ok-${n}`, [n], { hang: false }))
  t.equal(json(await happy.next(60_000)).id, `ok-${n}`, 'the next envelope is processed after the recovery')
})

t.test('a result over the server max_payload goes to error-end as payload_too_large', async (t) => {
  const n = `nbig-${rand()}`
  await actor(n, 'inflate')
  await client.publish(n, envelope(`big-${n}`, [n], { bytes: 1_200_000 }))
  const e = json(await errors.next(60_000))
  t.equal(e.payload.details.reason, 'payload_too_large')
})
