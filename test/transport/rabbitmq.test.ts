/** RabbitMQ-specific behaviour beyond the conformance suite: topology, escaping, reconnection. */
import { randomBytes } from 'node:crypto'
import t from 'tap'
import amqp from 'amqplib'
import { RabbitMqTransport, amqpUrl, redactUrl } from '../../src/transport/rabbitmq-transport.js'
import { retryTierMs } from '../../src/transport/rabbitmq-topology.js'
import { retryQueueName } from '../../src/names.js'
import { HEADER } from '../../src/names.js'
import { Inbox, randomActor } from './conformance.js'
import { RABBITMQ_URL, closeConnections, rabbitTransport, testExchange } from '../support/rabbitmq.js'

const exchange = testExchange()

async function waitFor(cond: () => boolean | Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const end = Date.now() + timeoutMs
  while (!(await cond())) {
    if (Date.now() > end) throw new Error('timed out')
    await new Promise((r) => setTimeout(r, 50))
  }
}

t.test('amqpUrl escapes every credential part (SPEC §11.14)', async (t) => {
  const url = amqpUrl({ host: 'mq', username: 'us@er', password: 'p:a/ss@w#rd?', vhost: 'v/h' })
  t.equal(url, 'amqp://us%40er:p%3Aa%2Fss%40w%23rd%3F@mq:5672/v%2Fh')
  const u = new URL(url)
  t.equal(decodeURIComponent(u.password), 'p:a/ss@w#rd?', 'round-trips through a URL parser')
  t.equal(amqpUrl({ host: 'mq', tls: true }), 'amqps://guest:guest@mq:5671/%2F')
  t.equal(redactUrl(url), 'amqp://us%40er:***@mq:5672/v%2Fh', 'password masked in logs')
})

t.test('retry tiers: few queues, close to the asked delay, never 0', async (t) => {
  const tiers = new Set<number>()
  for (let d = 1; d <= 120_000; d = Math.ceil(d * 1.07)) {
    const tier = retryTierMs(d)
    tiers.add(tier)
    t.ok(tier >= 1, 'never 0')
    t.ok(tier / d < 1.3 && d / tier < 1.3, `tier ${tier} close to ${d}`)
  }
  t.ok(tiers.size < 40, `bounded number of tier queues (${tiers.size})`)
  t.equal(retryTierMs(0), 1)
  t.equal(retryQueueName('a', 1000), 'asya-a-retry-1000')
})

t.test('topology: queue bound to the exchange with routing key <actor>, DLQ with <actor>-dlq', async (t) => {
  const tr = rabbitTransport({ exchange })
  t.teardown(() => tr.close())
  await tr.connect()
  const a = randomActor('topo')
  await tr.ensureQueue(a)
  // A plain amqplib publisher (an upstream component) reaches the queue by routing key alone.
  const conn = await amqp.connect(RABBITMQ_URL)
  t.teardown(() => conn.close())
  const ch = await conn.createConfirmChannel()
  ch.publish(exchange, a, Buffer.from('{"up":"stream"}'), { persistent: true })
  ch.publish(exchange, `${a}-dlq`, Buffer.from('{"dead":true}'), { persistent: true })
  await ch.waitForConfirms()
  await waitFor(async () => (await tr.messageCount(a)) === 1 && (await tr.messageCount(`${a}-dlq`)) === 1)
  const q = await ch.checkQueue(`asya-${a}`)
  t.equal(q.messageCount, 1, 'asya-<actor> got the upstream publish')
  t.pass('DLQ reachable with routing key <actor>-dlq')
  await tr.deleteQueue(a)
  await tr.deleteQueue(`${a}-dlq`)
})

t.test('connection cut: readiness drops, the transport reconnects, consuming resumes, nothing lost', async (t) => {
  const name = `asya-cut-${randomBytes(4).toString('hex')}`
  const tr = rabbitTransport({ exchange, connectionName: name })
  t.teardown(() => tr.close())
  await tr.connect()
  const a = randomActor('cut')
  await tr.ensureQueue(a)
  const inbox = new Inbox()
  await tr.consume(a, inbox.push, { prefetch: 1 })
  await tr.publish(a, Buffer.from('{"n":1}'))
  const inFlight = await inbox.next()
  t.equal(inFlight.attempt, 1)

  // Wait until the management API lists the connection, then force-close it.
  await waitFor(async () => (await closeConnections(name)) > 0)
  await waitFor(() => !tr.isReady(), 10_000)
  t.notOk(tr.isReady(), 'not ready while disconnected')
  const ackErr = await inFlight.ack().then(
    () => undefined,
    (e: unknown) => e,
  )
  t.ok(ackErr, 'ack on the dead channel reports an error instead of pretending')

  await waitFor(() => tr.isReady(), 30_000)
  t.ok(tr.isReady(), 'reconnected')
  const again = await inbox.next(30_000)
  t.same(again.body, Buffer.from('{"n":1}'), 'unacked message redelivered after the cut')
  t.equal(again.redelivered, true)
  t.equal(again.attempt, 2)
  await again.ack()
  await tr.publish(a, Buffer.from('{"n":2}'))
  const next = await inbox.next()
  t.same(next.body, Buffer.from('{"n":2}'), 'consumer resumed on the new connection')
  await next.ack()
  await tr.deleteQueue(a)
  await tr.deleteQueue(`${a}-dlq`)
})

t.test('own queue deleted while consuming: re-declared, consuming resumes', async (t) => {
  const tr = rabbitTransport({ exchange })
  const admin = rabbitTransport({ exchange })
  t.teardown(async () => {
    await tr.close()
    await admin.close()
  })
  await tr.connect()
  await admin.connect()
  const a = randomActor('del')
  await tr.ensureQueue(a)
  const inbox = new Inbox()
  await tr.consume(a, inbox.push, { prefetch: 1 })
  await admin.deleteQueue(a)
  // The consumer is cancelled by the broker; the transport re-declares its own queue.
  await waitFor(async () => {
    try {
      await admin.messageCount(a)
      return true
    } catch {
      return false
    }
  })
  await waitFor(async () => {
    try {
      await admin.publish(a, Buffer.from('{"after":"delete"}'))
      return true
    } catch {
      return false
    }
  })
  const d = await inbox.next(30_000)
  t.same(d.body, Buffer.from('{"after":"delete"}'))
  await d.ack()
  await tr.deleteQueue(a)
  await tr.deleteQueue(`${a}-dlq`)
})

t.test('retry through a tier queue carries attempt and reason headers as AMQP headers', async (t) => {
  const tr = rabbitTransport({ exchange })
  t.teardown(() => tr.close())
  await tr.connect()
  const a = randomActor('tier')
  await tr.ensureQueue(a)
  await tr.publish(a, Buffer.from('{}'))
  const inbox = new Inbox()
  await tr.consume(a, inbox.push, { prefetch: 1 })
  const d1 = await inbox.next()
  await d1.retry(150, { reason: 'runtime_error', error: 'x'.repeat(5000) })
  const d2 = await inbox.next()
  t.equal(d2.attempt, 2)
  t.equal(d2.headers[HEADER.error]?.length, 1024, 'error header bounded')
  await d2.ack()
  await tr.deleteQueue(a)
  await tr.deleteQueue(`${a}-dlq`)
})

t.test('quorum queues: a consumer that dies on every delivery sees the attempt grow (x-delivery-count), and the broker dead-letters after the limit (SPEC §11 #22)', async (t) => {
  const actor = randomActor('crash')
  const deliveryLimit = 2
  const mk = (): RabbitMqTransport =>
    new RabbitMqTransport({ url: RABBITMQ_URL, exchange, connectionName: `asya-test-${randomBytes(4).toString('hex')}`, reconnectBackoff: { initialMs: 100, maxMs: 2000 }, topology: { queueType: 'quorum', deliveryLimit } })
  const client = mk()
  await client.connect()
  t.teardown(async () => {
    for (const q of [actor, `${actor}-dlq`]) await client.deleteQueue(q).catch(() => undefined)
    await client.close()
  })
  await client.ensureQueue(actor)
  await client.publish(actor, Buffer.from('{"id":"poison"}'))
  const attempts: number[] = []
  // Each "sidecar" takes the message and dies before settling it (its connection closes).
  for (let i = 0; i <= deliveryLimit; i++) {
    const crashing = mk()
    await crashing.connect()
    const got = new Inbox()
    await crashing.consume(actor, got.push, { prefetch: 1 })
    const d = await got.next(20_000)
    attempts.push(d.attempt)
    t.notOk('x-delivery-count' in d.headers, 'the broker counter is not passed on as a header')
    await closeConnections((crashing as unknown as { connectionName: string }).connectionName)
    await crashing.close().catch(() => undefined)
  }
  t.same(attempts, [1, 2, 3], 'attempt = 1 + earlier deliveries, although no copy carried a header')
  const dead = new Inbox()
  await client.consume(`${actor}-dlq`, dead.push, { prefetch: 1 })
  const d = await dead.next(20_000)
  t.equal(d.body.toString(), '{"id":"poison"}', 'after the limit the broker moved it to the DLQ')
  t.equal(d.headers['x-first-death-reason'], 'delivery_limit')
  await d.ack()
  t.equal(await client.messageCount(actor), 0, 'and it is not redelivered again')
})
