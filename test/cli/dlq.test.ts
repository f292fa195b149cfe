/**
 * `asya dlq list|replay` (formerly deploy/tools/replay-dlq.ts) on real RabbitMQ, SQS (fauxqs) and NATS,
 * and the transport-generic functions behind them on the memory transport. Dead letters are made
 * the way the sidecar makes them: Delivery.deadLetter().
 */
import amqp from 'amqplib'
import t, { type Test } from 'tap'
import { listDeadLetters, replayDeadLetters } from '../../src/cli/dead-letters.js'
import { MemoryBroker, MemoryTransport } from '../../src/transport/memory-transport.js'
import { NatsTransport } from '../../src/transport/nats-transport.js'
import { SqsTransport } from '../../src/transport/sqs-transport.js'
import { type Delivery, type Transport } from '../../src/transport/transport.js'
import { RABBITMQ_MANAGEMENT, RABBITMQ_URL, rabbitTransport, testExchange } from '../support/rabbitmq.js'
import { startPrivateNats } from '../support/private-nats.js'
import { SQS_TEST_CREDENTIALS, startSqsServer } from '../support/sqs-server.js'
import { Inbox, randomActor } from '../transport/conformance.js'
import { asya, rows } from './helpers.js'
import { HEADER } from '../../src/names.js'

const envelope = (i: number, actor: string): Buffer => Buffer.from(JSON.stringify({ id: `m${i}`, route: { actors: [actor], current: 0 }, payload: i }))

/** Publishes n envelopes and dead-letters each through a real consumer, as a sidecar would. */
async function deadLetter(tr: Transport, actor: string, n: number): Promise<void> {
  await tr.ensureQueue(actor)
  for (let i = 0; i < n; i++) await tr.publish(actor, envelope(i, actor), { headers: { 'x-asya-hops': '3', 'x-custom': 'kept' } })
  const inbox = new Inbox()
  const sub = await tr.consume(actor, inbox.push, { prefetch: 1 })
  for (let i = 0; i < n; i++) {
    const d: Delivery = await inbox.next()
    await d.deadLetter({ reason: i === 0 ? 'publish_failed' : 'delivery_limit', error: `boom ${i}\n  at handler.py:3`, attempts: 5 })
  }
  await sub.cancel()
}

async function drain(tr: Transport, actor: string, n: number): Promise<Delivery[]> {
  const inbox = new Inbox()
  const sub = await tr.consume(actor, inbox.push, { prefetch: n })
  const got: Delivery[] = []
  for (let i = 0; i < n; i++) got.push(await inbox.next())
  await sub.cancel()
  for (const d of got) await d.ack()
  return got
}

function checkReplayed(t: Test, got: Delivery[], ids: string[]): void {
  t.same(got.map((d) => JSON.parse(d.body.toString()).id), ids, 'bodies unchanged')
  got.forEach((d) => {
    for (const k of [HEADER.reason, HEADER.error, HEADER.attempts, HEADER.actor]) t.notOk(k in d.headers, `${k} dropped`)
    t.equal(d.attempt, 1, 'attempts counted afresh')
    t.equal(d.headers['x-asya-hops'], '3', 'hop count kept')
    t.equal(d.headers['x-custom'], 'kept', 'other headers kept')
  })
}

t.test('memory: list gives every dead letter back; replay is bounded and strips dead-letter headers', async (t) => {
  const tr = new MemoryTransport({ broker: new MemoryBroker() })
  const a = randomActor('dlq')
  await deadLetter(tr, a, 3)
  const listed = await listDeadLetters(tr, a)
  t.equal(listed.letters.length, 3)
  t.match(listed.letters[0], { id: 'm0', reason: 'publish_failed', attempts: 5, error: /^boom 0/ })
  t.equal((await tr.inspectQueue(`${a}-dlq`)).messages, 3, 'listing leaves them in place')
  const r = await replayDeadLetters(tr, a, { max: 2 })
  t.match(r, { replayed: 2, expected: 2 })
  t.equal((await tr.inspectQueue(`${a}-dlq`)).messages, 1)
  // The memory transport gives released messages back at the head, so listing reverses them.
  checkReplayed(t, await drain(tr, a, 2), ['m2', 'm1'])
  await tr.close()
})

t.test('rabbitmq: asya dlq list, replay --dry-run, confirmation, --max, unroutable', async (t) => {
  const exchange = testExchange('asya-dlq')
  const tr = rabbitTransport({ exchange })
  await tr.connect()
  const a = randomActor('dlq')
  t.teardown(async () => {
    await tr.deleteQueue(a).catch(() => undefined)
    await tr.deleteQueue(`${a}-dlq`).catch(() => undefined)
    await tr.close()
  })
  await deadLetter(tr, a, 3)
  const env = { ASYA_TRANSPORT: 'rabbitmq', ASYA_RABBITMQ_URL: RABBITMQ_URL, ASYA_RABBITMQ_EXCHANGE: exchange, ASYA_RABBITMQ_MANAGEMENT_URL: RABBITMQ_MANAGEMENT }

  const list = await asya(['dlq', 'list', a], env)
  t.equal(list.code, 0, list.stderr)
  t.same(rows(list.stdout), [
    ['ID', 'REASON', 'ATTEMPTS', 'ERROR'],
    ['m0', 'publish_failed', '5', 'boom 0'],
    ['m1', 'delivery_limit', '5', 'boom 1'],
    ['m2', 'delivery_limit', '5', 'boom 2'],
  ])
  const json = JSON.parse((await asya(['dlq', 'list', a, '-o', 'json', '--max', '1'], env)).stdout) as { items: Array<{ headers: Record<string, string>; body: string }> }
  t.equal(json.items.length, 1, '--max bounds the listing')
  t.equal(json.items[0]?.headers[HEADER.actor], a)

  const dry = await asya(['dlq', 'replay', a, '--dry-run'], env)
  t.equal(dry.code, 0)
  t.match(dry.stderr, /dry run: would replay 3 dead letters .*nothing changed/)
  t.equal((await tr.inspectQueue(`${a}-dlq`)).messages, 3, 'dry run changes nothing')

  const unconfirmed = await asya(['dlq', 'replay', a], env)
  t.equal(unconfirmed.code, 2, 'no terminal, no --yes: refused')
  t.match(unconfirmed.stderr, /needs confirmation: run it on a terminal or pass --yes/)
  let asked = ''
  const declined = await asya(['dlq', 'replay', a, '--max', '2'], env, { confirm: async (q) => ((asked = q), false) })
  t.equal(declined.code, 1)
  t.match(asked, new RegExp(`Replay 2 dead letters from asya-${a}-dlq to asya-${a} on RabbitMQ at amqp://guest:\\*\\*\\*@`))
  t.equal((await tr.inspectQueue(`${a}-dlq`)).messages, 3, 'declined: nothing changed')

  const r = await asya(['dlq', 'replay', a, '--max', '2'], env, { confirm: async () => true })
  t.equal(r.code, 0, r.stderr)
  t.match(r.stderr, /replayed 2 of 2 dead letters/)
  t.equal((await tr.inspectQueue(`${a}-dlq`)).messages, 1, 'bounded by --max')
  // Listing gives messages back to the tail of the DLQ: the `--max 1` listing moved m0 last.
  checkReplayed(t, await drain(tr, a, 2), ['m1', 'm2'])

  // Nothing bound to the routing key: the replay fails and the dead letter stays.
  const conn = await amqp.connect(RABBITMQ_URL)
  const ch = await conn.createChannel()
  await ch.unbindQueue(`asya-${a}`, exchange, a)
  await conn.close()
  const unroutable = await asya(['dlq', 'replay', a, '--yes'], env)
  t.equal(unroutable.code, 1)
  t.match(unroutable.stderr, /refused the replayed message m0; it stays in the DLQ: no queue bound .*the actor's queue is missing or unbound/)
  t.equal((await tr.inspectQueue(`${a}-dlq`)).messages, 1, 'an unroutable replay loses nothing')
  t.equal((await tr.inspectQueue(a)).messages, 0)

  const badName = await asya(['dlq', 'replay', 'Bad_Name'], env)
  t.equal(badName.code, 2)
  t.match(badName.stderr, /not a valid actor name/)
  t.equal((await asya(['dlq', 'list', a, '--max', '0'], env)).code, 2)
})

t.test('sqs: asya dlq list and replay', async (t) => {
  const server = await startSqsServer()
  const tr = new SqsTransport({ region: server.region, endpoint: server.endpoint, credentials: SQS_TEST_CREDENTIALS, waitTimeSeconds: 1, visibilityTimeoutSeconds: 30 })
  await tr.connect()
  t.teardown(async () => {
    await tr.close()
    await server.stop()
  })
  const a = randomActor('dlq')
  await deadLetter(tr, a, 2)
  // The cancelled consumer's last long poll (1 s) is still open on the server: let it end, or it
  // takes the first replayed message for the visibility timeout (SQS semantics, not a loss).
  await new Promise((r) => setTimeout(r, 1500))
  const env = { ASYA_TRANSPORT: 'sqs', ASYA_SQS_ENDPOINT: server.endpoint, ASYA_AWS_REGION: server.region, AWS_ACCESS_KEY_ID: 'test', AWS_SECRET_ACCESS_KEY: 'test' }
  const list = await asya(['dlq', 'list', a], env)
  t.equal(list.code, 0, list.stderr)
  t.same(rows(list.stdout).slice(1).map((r) => r.slice(0, 3)).sort(), [['m0', 'publish_failed', '5'], ['m1', 'delivery_limit', '5']])
  const r = await asya(['dlq', 'replay', a, '--yes'], env)
  t.equal(r.code, 0, r.stderr)
  t.match(r.stderr, /replayed 2 of 2/)
  const got = await drain(tr, a, 2)
  got.sort((x, y) => x.body.toString().localeCompare(y.body.toString()))
  checkReplayed(t, got, ['m0', 'm1'])
  t.equal((await tr.inspectQueue(`${a}-dlq`)).messages, 0)
  const missing = await asya(['dlq', 'list', 'no-such-actor'], env)
  t.equal(missing.code, 1)
  t.match(missing.stderr, /no SQS queue asya-no-such-actor-dlq.*the controller creates it/)
})

t.test('nats: asya dlq list and replay, asya queues', async (t) => {
  const server = await startPrivateNats()
  const tr = new NatsTransport({ servers: [server.url], ackWaitMs: 30_000, pullExpiresMs: 2000 })
  await tr.connect()
  t.teardown(async () => {
    await tr.close()
    await server.destroy()
  })
  const a = randomActor('dlq')
  // Dead-lettered by a transport that is then closed: its last pull request ends with it (an
  // open pull request would take a replayed message until AckWait, as JetStream does).
  const sidecarSide = new NatsTransport({ servers: [server.url], ackWaitMs: 30_000, pullExpiresMs: 2000 })
  await sidecarSide.connect()
  await deadLetter(sidecarSide, a, 2)
  await sidecarSide.close()
  const env = { ASYA_TRANSPORT: 'nats', ASYA_NATS_URL: server.url }
  const list = await asya(['dlq', 'list', a], env)
  t.equal(list.code, 0, list.stderr)
  t.same(rows(list.stdout).slice(1).map((r) => r.slice(0, 3)), [['m0', 'publish_failed', '5'], ['m1', 'delivery_limit', '5']])
  const r = await asya(['dlq', 'replay', a, '--yes'], env)
  t.equal(r.code, 0, r.stderr)
  t.match(r.stderr, /replayed 2 of 2/)
  const q = await asya(['queues', a, '-o', 'json'], env)
  t.match(JSON.parse(q.stdout), { items: [{ queue: `asya-${a}`, transport: 'nats', messages: 2, inFlight: 0, dlq: { messages: 0 } }] })
  checkReplayed(t, await drain(tr, a, 2), ['m0', 'm1'])
})
