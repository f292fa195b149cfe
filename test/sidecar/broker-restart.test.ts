/**
 * Broker restart mid-stream (a private RabbitMQ node, so other tests keep their broker): 1,000
 * envelopes in flight through 2 actors, the broker stops and starts, every envelope reaches
 * happy-end. Durable queues + persistent messages + ack-after-confirm make that hold.
 */
import t from 'tap'
import { RabbitMqTransport } from '../../src/transport/rabbitmq-transport.js'
import type { Transport } from '../../src/transport/transport.js'
import { startPrivateRabbit } from '../support/private-rabbitmq.js'
import { envelope, json, rand, startActor, type TestActor, type World } from '../support/actor-harness.js'
import { Inbox } from '../transport/conformance.js'

t.test('broker restart with 1,000 envelopes in flight: all reach happy-end', async (t) => {
  const broker = await startPrivateRabbit()
  t.teardown(() => broker.destroy())
  const id = rand()
  const world: World = {
    transport: 'rabbitmq',
    exchange: 'asya',
    happyEnd: `happy-${id}`,
    errorEnd: `error-${id}`,
    env: { ASYA_TRANSPORT: 'rabbitmq', ASYA_RABBITMQ_URL: broker.url, ASYA_ACTOR_HAPPY_END: `happy-${id}`, ASYA_ACTOR_ERROR_END: `error-${id}` },
  }
  const mk = async (): Promise<Transport> => {
    const tr = new RabbitMqTransport({ url: broker.url, reconnectBackoff: { initialMs: 200, maxMs: 2000 }, publishTimeoutMs: 120_000 })
    await tr.connect()
    return tr
  }
  const client = await mk()
  const actors: TestActor[] = []
  t.teardown(async () => {
    for (const a of actors) await a.stop().catch(() => undefined)
    await client.close()
  })
  await client.ensureQueue(world.happyEnd)
  await client.ensureQueue(world.errorEnd)
  const names = [`br1-${id}`, `br2-${id}`]
  for (const n of names) actors.push(await startActor({ name: n, handler: 'echo', world, transport: await mk() }))
  const total = 1000
  for (let i = 0; i < total; i += 100) {
    await Promise.all(Array.from({ length: 100 }, (_, j) => client.publish(names[0] as string, envelope(`b-${i + j}`, names, { i: i + j }))))
  }
  const happy = new Inbox()
  await client.consume(world.happyEnd, happy.push, { prefetch: 200 })
  // Let some flow, then restart the broker under load.
  for (let i = 0; i < 50; i++) await (await happy.next(60_000)).ack().catch(() => undefined)
  const seen = new Set<string>(happy.seen.map((d) => json(d).id as string))
  await broker.restart()
  t.comment('broker restarted')
  let dups = 0
  while (seen.size < total) {
    const d = await happy.next(120_000)
    const e = json(d)
    if (seen.has(e.id)) dups++
    seen.add(e.id)
    await d.ack().catch(() => undefined)
  }
  t.equal(seen.size, total, 'all 1,000 envelopes reached happy-end')
  const errors = await client.messageCount(world.errorEnd)
  t.equal(errors, 0, 'none went to error-end')
  t.comment(`duplicates: ${dups} (at-least-once: only messages in flight at the restart)`)
})
