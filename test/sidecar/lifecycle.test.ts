/**
 * Sidecar lifecycle on real RabbitMQ with real runtimes: handler timeout and runtime replacement,
 * runtime killed mid-message, broker connection cut with many envelopes in flight, end actors.
 */
import { createServer } from 'node:http'
import { randomBytes } from 'node:crypto'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import type { AddressInfo } from 'node:net'
import { HEADER } from '../../src/names.js'
import { Inbox } from '../transport/conformance.js'
import { closeConnections } from '../support/rabbitmq.js'
import { envelope, json, rabbitSuite, rand, startActor } from '../support/actor-harness.js'
import { receiveAll } from '../support/delivery-ledger.js'

const suite = await rabbitSuite(t)
const { world, client, happy, errors, actors } = suite
const transport = suite.transport

t.test('handler hangs past the timeout: error-end once, runtime replaced, next message succeeds', async (t) => {
  const n = `hang-${rand()}`
  const a = await startActor({ name: n, handler: 'maybe_hang', world, transport: await transport(), env: { ASYA_RUNTIME_TIMEOUT: '1s' } })
  actors.push(a)
  const restarts = a.runtime.restarts
  await client.publish(n, envelope(`h1-${n}`, [n], { hang: true }))
  await client.publish(n, envelope(`h2-${n}`, [n], { hang: false }))
  const err = json(await errors.next(30_000))
  t.equal(err.id, `h1-${n}`)
  t.equal(err.payload.details.reason, 'timeout')
  const ok = json(await happy.next(60_000))
  t.equal(ok.id, `h2-${n}`, 'the next message is processed by the fresh runtime')
  t.ok(a.runtime.restarts > restarts, 'the hung runtime was replaced')
  await new Promise((r) => setTimeout(r, 500))
  t.equal(errors.pending, 0, 'timed-out message reported once')
  t.equal(await client.messageCount(n), 0, 'timed-out message acked, not redelivered')
})

t.test('runtime SIGKILLed mid-message: the message is retried and processed once the runtime is back', async (t) => {
  const n = `kill-${rand()}`
  const a = await startActor({ name: n, handler: 'crash_once', world, transport: await transport() })
  actors.push(a)
  const marker = join(tmpdir(), `asya-crash-${randomBytes(6).toString('hex')}`)
  await client.publish(n, envelope(`k-${n}`, [n], { marker }))
  const env = json(await happy.next(60_000))
  t.equal(env.id, `k-${n}`)
  t.ok(a.runtime.restarts >= 1, 'runtime was restarted (stale socket and ready file did not fool the sidecar)')
  await new Promise((r) => setTimeout(r, 300))
  t.equal(happy.pending, 0, 'processed once')
})

t.test('broker connection cut with 300 envelopes in flight through 2 actors: all reach happy-end', async (t) => {
  const id = rand()
  const names = [`cut1-${id}`, `cut2-${id}`]
  const connPrefix = `asya-cut-${id}`
  for (const n of names) {
    const a = await startActor({ name: n, handler: 'echo', world, transport: await transport(`${connPrefix}-${n}`) })
    actors.push(a)
  }
  const total = 300
  const ids = Array.from({ length: total }, (_, i) => `c-${i}`)
  for (let i = 0; i < total; i++) await client.publish(names[0] as string, envelope(`c-${i}`, names, { i }))
  // Cut both sidecars' connections while envelopes are moving.
  let cutDone = false
  while (!cutDone) {
    if ((await closeConnections(connPrefix)) >= 2) cutDone = true
    else await new Promise((r) => setTimeout(r, 50))
  }
  const ledger = await receiveAll(happy, ids, {
    deadlineMs: 90_000,
    settleMs: 2000,
    check: (e) => {
      const route = e.route as { current?: number }
      const i = Number(String(e.id).slice(2))
      if ((e.payload as { i?: number }).i !== i) return `payload ${JSON.stringify(e.payload)} is not the one sent`
      return route.current === names.length ? undefined : `route.current ${String(route.current)} ≠ ${names.length}: not through both actors`
    },
  })
  t.same(ledger.missing, [], 'nothing lost')
  t.same(ledger.unexpected, [], 'no envelope nobody sent')
  t.same(ledger.problems, [], 'every envelope intact and through both actors')
  // At-least-once: a duplicate is an envelope whose result was published but whose input was not
  // acked when the connection went, i.e. at most the delivery window of each sidecar at the cut,
  // and each envelope at most once more per hop.
  const window = 32
  t.ok(ledger.duplicates <= names.length * window, `duplicates (${ledger.duplicates}) within the in-flight windows (${names.length} × ${window})`)
  t.ok(ledger.repeated.every(([, c]) => c <= names.length + 1), `no envelope delivered more than once per hop (${JSON.stringify(ledger.repeated.slice(0, 5))})`)
  t.equal(errors.pending, 0, 'none went to error-end')
})

t.test('end actor: consumes and calls the runtime, never routes; malformed input and handler errors are dead-lettered', async (t) => {
  const id = rand()
  const endName = `end-${id}`
  const reports: Array<{ url: string; body: Record<string, unknown> }> = []
  const gw = createServer((req, res) => {
    let body = ''
    req.on('data', (c: Buffer) => (body += c.toString()))
    req.on('end', () => {
      reports.push({ url: req.url ?? '', body: JSON.parse(body) as Record<string, unknown> })
      res.writeHead(200).end('{}')
    })
  })
  await new Promise<void>((r) => gw.listen(0, '127.0.0.1', () => r()))
  t.teardown(() => new Promise<void>((r) => gw.close(() => r())))
  const port = (gw.address() as AddressInfo).port
  const a = await startActor({
    name: endName,
    handler: 'maybe_fail_end',
    world,
    transport: await transport(),
    env: { ASYA_IS_END_ACTOR: 'true', ASYA_ACTOR_HAPPY_END: endName, ASYA_GATEWAY_URL: `http://127.0.0.1:${port}` },
  })
  actors.push(a)
  const dlq = new Inbox()
  await client.consume(`${endName}-dlq`, dlq.push, { prefetch: 10 })
  // A finished envelope (current = len) as happy-end receives it.
  await client.publish(endName, Buffer.from(JSON.stringify({ id: `ok-${id}`, route: { actors: ['x'], current: 1 }, payload: { fine: true } })))
  await client.publish(endName, Buffer.from('garbage'))
  await client.publish(endName, Buffer.from(JSON.stringify({ id: `bad-${id}`, route: { actors: ['x'], current: 1 }, payload: { fail: true } })))
  const d1 = await dlq.next(30_000)
  const d2 = await dlq.next(30_000)
  const reasons = [d1.headers[HEADER.reason], d2.headers[HEADER.reason]].sort()
  t.same(reasons, ['parse_error', 'processing_error'], 'malformed input and handler error dead-lettered, not re-sent')
  await d1.ack()
  await d2.ack()
  const end = Date.now() + 10_000
  while (reports.length < 1 && Date.now() < end) await new Promise((r) => setTimeout(r, 50))
  t.equal(reports.length, 1, 'only the successful envelope is reported as final')
  t.equal(reports[0]?.url, `/envelopes/ok-${id}/final`)
  t.equal(reports[0]?.body.status, 'succeeded')
  t.equal(await client.messageCount(endName), 0, 'nothing re-sent to its own queue')
  t.notOk(
    happy.seen.some((d) => String(json(d).id).endsWith(id)),
    'an end actor never routes',
  )
})
