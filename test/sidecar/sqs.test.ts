/** The sidecar on SQS (fauxqs), real runtimes: routing, fan-out, retries, error-end, DLQ, size limit. */
import t from 'tap'
import { SqsTransport } from '../../src/transport/sqs-transport.js'
import type { Transport } from '../../src/transport/transport.js'
import { HEADER } from '../../src/names.js'
import { Inbox } from '../transport/conformance.js'
import { receiveAll } from '../support/delivery-ledger.js'
import { SQS_TEST_CREDENTIALS, startSqsServer } from '../support/sqs-server.js'
import { envelope, json, rand, sqsWorld, startActor, type TestActor } from '../support/actor-harness.js'

const server = await startSqsServer()
const world = sqsWorld(server.endpoint, server.region)
const transports: Transport[] = []
const actors: TestActor[] = []
async function transport(): Promise<Transport> {
  const tr = new SqsTransport({ region: server.region, endpoint: server.endpoint, credentials: SQS_TEST_CREDENTIALS, waitTimeSeconds: 1, visibilityTimeoutSeconds: 40 })
  await tr.connect()
  transports.push(tr)
  return tr
}
const client = await transport()
await client.ensureQueue(world.happyEnd)
await client.ensureQueue(world.errorEnd)
const happy = new Inbox()
const errors = new Inbox()
await client.consume(world.happyEnd, happy.push, { prefetch: 10 })
await client.consume(world.errorEnd, errors.push, { prefetch: 10 })

t.teardown(async () => {
  for (const a of actors) await a.stop().catch(() => undefined)
  for (const tr of transports) await tr.close().catch(() => undefined)
  await server.stop()
})

async function actor(name: string, handler: string, env: Record<string, string> = {}): Promise<TestActor> {
  const a = await startActor({ name, handler, world, transport: await transport(), env })
  actors.push(a)
  return a
}

t.test('two actors, fan-out, headers: 20 envelopes reach happy-end', async (t) => {
  const id = rand()
  const names = [`s1-${id}`, `s2-${id}`]
  await actor(names[0] as string, 'tag')
  await actor(names[1] as string, 'fanout3')
  for (let i = 0; i < 20; i++) await client.publish(names[0] as string, envelope(`q${i}-${id}`, names, { i }, { headers: { trace: `T${i}` } }))
  const ids = new Set<string>()
  for (let i = 0; i < 60; i++) {
    const d = await happy.next(60_000)
    const e = json(d)
    ids.add(e.id)
    t.equal(e.headers.trace.startsWith('T'), true)
    await d.ack()
  }
  t.equal(ids.size, 60, '20 × 3 children, distinct ids')
})

t.test('handler error: retries then error-end; poison dead-lettered with attributes', async (t) => {
  const n = `sf-${rand()}`
  await actor(n, 'fail', { ASYA_MAX_RETRIES: '1', ASYA_RETRY_BACKOFF: '100ms' })
  await client.publish(n, envelope(`f-${n}`, [n], { v: 1 }))
  const e = json(await errors.next(60_000))
  t.equal(e.payload.details.reason, 'processing_error')
  t.equal(e.payload.details.attempts, 2, 'one retry (re-sent with a delay), then error-end')
  // A message redelivered past every budget (here: attempt header says so) goes to the DLQ.
  const p = `sp-${rand()}`
  await actor(p, 'echo', { ASYA_DELIVERY_LIMIT: '1' })
  await client.publish(p, envelope(`p-${p}`, [p], 1), { headers: { [HEADER.attempt]: '5' } })
  const dlq = new Inbox()
  await client.consume(`${p}-dlq`, dlq.push, { prefetch: 1 })
  const d = await dlq.next(60_000)
  t.equal(d.headers[HEADER.reason], 'delivery_limit')
  t.equal(d.headers[HEADER.actor], p)
  await d.ack()
})

t.test('a result over the SQS limit goes to error-end as payload_too_large, not truncated', async (t) => {
  const n = `sbig-${rand()}`
  await actor(n, 'inflate')
  await client.publish(n, envelope(`ok-${n}`, [n], { bytes: 200_000 }))
  const d = await happy.next(60_000)
  t.equal(json(d).payload.blob.length, 200_000, 'under the limit passes')
  await d.ack()
  await client.publish(n, envelope(`big-${n}`, [n], { bytes: 300_000 }))
  const e = json(await errors.next(60_000))
  t.equal(e.id, `big-${n}`)
  t.equal(e.payload.details.reason, 'payload_too_large')
  t.match(e.payload.details.message, /256 KiB/)
  t.same(e.payload.original_payload, { bytes: 300_000 })
})

t.test('SQS endpoint down mid-stream (connections reset, refused for 3 s), then back: nothing lost', async (t) => {
  const { startTcpProxy } = await import('../support/tcp-proxy.js')
  const proxy = await startTcpProxy('127.0.0.1', Number(new URL(server.endpoint).port))
  t.teardown(() => proxy.close())
  const endpoint = `http://127.0.0.1:${proxy.port}`
  const viaProxy = { ...world, env: { ...world.env, ASYA_SQS_ENDPOINT: endpoint } }
  const mk = async (): Promise<Transport> => {
    const tr = new SqsTransport({ region: server.region, endpoint, credentials: SQS_TEST_CREDENTIALS, waitTimeSeconds: 1, visibilityTimeoutSeconds: 20 })
    await tr.connect()
    transports.push(tr)
    return tr
  }
  const id = rand()
  const names = [`so1-${id}`, `so2-${id}`]
  for (const n of names) actors.push(await startActor({ name: n, handler: 'echo', world: viaProxy, transport: await mk() }))
  const total = 200
  for (let i = 0; i < total; i += 50) {
    await Promise.all(Array.from({ length: 50 }, (_, j) => client.publish(names[0] as string, envelope(`o${i + j}-${id}`, names, { i: i + j }))))
  }
  const ids = Array.from({ length: total }, (_, i) => `o${i}-${id}`)
  const before = await receiveAll(happy, ids, { deadlineMs: 120_000, settleMs: 0, stopAfter: 40 })
  await proxy.cut()
  await new Promise((r) => setTimeout(r, 3000))
  await proxy.restore()
  const ledger = await receiveAll(happy, ids, {
    deadlineMs: 120_000,
    settleMs: 2000,
    already: [...before.counts].flatMap(([k, c]) => Array.from({ length: c }, () => k)),
    check: (e) => ((e.payload as { i?: number }).i === Number(/^o(\d+)-/.exec(String(e.id))?.[1]) ? undefined : `payload ${JSON.stringify(e.payload)} is not the one sent`),
  })
  t.same(ledger.missing, [], 'all envelopes reached happy-end')
  t.same(ledger.unexpected, [], 'no envelope nobody sent')
  t.same(ledger.problems, [], 'every envelope intact')
  // At-least-once: only messages in flight at the cut may come twice: at most the two sidecars'
  // windows plus what the SQS client had received but not yet deleted (one batch of 10 each).
  t.ok(ledger.duplicates <= 64, `duplicates (${ledger.duplicates}) bounded by what was in flight at the cut`)
  t.comment(`duplicates: ${ledger.duplicates}`)
})
