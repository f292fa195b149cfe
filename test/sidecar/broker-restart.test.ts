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
import { receiveAll } from '../support/delivery-ledger.js'

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
  const seen: string[] = []
  for (let i = 0; i < 50; i++) {
    const d = await happy.next(60_000)
    seen.push(json(d).id as string)
    await d.ack().catch(() => undefined)
  }
  await broker.restart()
  t.comment('broker restarted')
  const ids = Array.from({ length: total }, (_, i) => `b-${i}`)
  const ledger = await receiveAll(happy, ids, {
    deadlineMs: 240_000,
    settleMs: 2000,
    already: seen,
    check: (e) => ((e.payload as { i?: number }).i === Number(String(e.id).slice(2)) ? undefined : `payload ${JSON.stringify(e.payload)} is not the one sent`),
  })
  t.same(ledger.missing, [], 'all 1,000 envelopes reached happy-end')
  t.same(ledger.unexpected, [], 'no envelope nobody sent')
  t.same(ledger.problems, [], 'every envelope intact')
  const errors = await client.messageCount(world.errorEnd)
  t.equal(errors, 0, 'none went to error-end')
  // At-least-once: only envelopes in flight at the restart come twice: at most the delivery
  // windows of the two sidecars plus the 200 the test's own consumer held unacked.
  const bound = names.length * 32 + 200
  t.ok(ledger.duplicates <= bound, `duplicates (${ledger.duplicates}) within what was in flight (${bound})`)
  t.ok(ledger.repeated.every(([, c]) => c <= names.length + 2), `no envelope looping (${JSON.stringify(ledger.repeated.slice(0, 5))})`)
})
