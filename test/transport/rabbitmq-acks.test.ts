/**
 * Coalesced acks on RabbitMQ (src/transport/ack-coalescer.ts), against the real broker: acks of
 * one turn go out as one `multiple` ack for the run of consecutive ready tags, and a delivery that
 * is not settled, or is given back, is never acked by a neighbour's `multiple`.
 */
import t from 'tap'
import type { Delivery } from '../../src/transport/transport.js'
import { rabbitTransport, testExchange } from '../support/rabbitmq.js'

async function drainQueue(tr: ReturnType<typeof rabbitTransport>, actor: string, expect: number, ms = 3000): Promise<string[]> {
  const got: string[] = []
  const sub = await tr.consume(actor, async (d) => {
    got.push(d.body.toString())
    await d.ack()
  }, { prefetch: 100 })
  const end = Date.now() + ms
  while (Date.now() < end && got.length < expect) await new Promise((r) => setTimeout(r, 20))
  await new Promise((r) => setTimeout(r, 300)) // anything extra would show up here
  await sub.cancel()
  return got.sort()
}

t.test('acks of one turn: one multiple ack for the ready run; unsettled and released deliveries come back', async (t) => {
  const exchange = testExchange()
  const actor = `acks-${Math.random().toString(16).slice(2, 10)}`
  const a = rabbitTransport({ exchange })
  await a.connect()
  await a.ensureQueue(actor)
  t.teardown(async () => {
    await a.deleteQueue(actor).catch(() => undefined)
    await a.close()
  })
  for (let i = 0; i < 10; i++) await a.publish(actor, Buffer.from(`m${i}`))
  const consumer = rabbitTransport({ exchange })
  await consumer.connect()
  const got: Delivery[] = []
  await consumer.consume(actor, (d) => void got.push(d), { prefetch: 100 })
  const end = Date.now() + 5000
  while (got.length < 10 && Date.now() < end) await new Promise((r) => setTimeout(r, 20))
  t.equal(got.length, 10)
  const byBody = new Map(got.map((d) => [d.body.toString(), d]))
  // Same turn: m0..m3 acked, m4 left unsettled, m5 given back, m6..m9 acked.
  await Promise.all(['m0', 'm1', 'm2', 'm3', 'm6', 'm7', 'm8', 'm9'].map((b) => (byBody.get(b) as Delivery).ack()))
  await (byBody.get('m5') as Delivery).release()
  await new Promise((r) => setTimeout(r, 300))
  await consumer.close() // m4 (never settled) returns to the queue
  const again = await drainQueue(a, actor, 2)
  t.same(again, ['m4', 'm5'], 'only the unsettled and the released message are delivered again')
})

t.test('a burst of acks in one turn is written as few frames', async (t) => {
  const { AckCoalescer } = await import('../../src/transport/ack-coalescer.js')
  const amqp = (await import('amqplib')).default
  const { RABBITMQ_URL } = await import('../support/rabbitmq.js')
  const conn = await amqp.connect(RABBITMQ_URL)
  const ch = await conn.createChannel()
  const q = (await ch.assertQueue('', { exclusive: true })).queue
  for (let i = 0; i < 32; i++) ch.sendToQueue(q, Buffer.from(String(i)))
  const acks = new AckCoalescer(ch)
  const msgs: import('amqplib').Message[] = []
  await ch.prefetch(100)
  await ch.consume(q, (m) => {
    if (!m) return
    acks.track(m)
    msgs.push(m)
  })
  const end = Date.now() + 5000
  while (msgs.length < 32 && Date.now() < end) await new Promise((r) => setTimeout(r, 10))
  for (const m of msgs) acks.ack(m)
  await new Promise((r) => setImmediate(r))
  t.equal(acks.acked, 32)
  t.equal(acks.frames, 1, '32 in-order acks in one turn: one basic.ack with multiple')
  // The broker agrees: nothing is unacked any more (a closing channel would requeue it).
  await ch.close()
  const ch2 = await conn.createChannel()
  const left = await ch2.checkQueue(q)
  t.equal(left.messageCount, 0, 'the queue is empty: all 32 were acked')
  await conn.close()
})
