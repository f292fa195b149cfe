/**
 * The sidecar's per-message outcome table (SPEC §5), every row through a real RabbitMQ broker and
 * real runtime processes.
 */
import t from 'tap'
import { HEADER } from '../../src/names.js'
import { Inbox } from '../transport/conformance.js'
import { envelope, json, rabbitSuite, rand, startActor, type TestActor } from '../support/actor-harness.js'

const suite = await rabbitSuite(t, 50)
const { world, client, happy, errors, actors } = suite
const transport = suite.transport

function actor(name: string, handler: string, env: Record<string, string> = {}, mode: 'payload' | 'envelope' = 'payload'): Promise<TestActor> {
  return suite.actor({ name, handler, mode, env })
}

t.test('results go to the next actor, then happy-end; headers and unknown fields ride along all 3 hops', async (t) => {
  const id = rand()
  const names = [`a1-${id}`, `a2-${id}`, `a3-${id}`]
  for (const n of names) await actor(n, 'tag')
  await client.publish(
    names[0] as string,
    envelope(`e-${id}`, names, { text: 'héllo wörld ✓ 你好 🚀' }, { headers: { trace_id: 'T-1', priority: 5 }, route: { actors: names, current: 0, metadata: { m: 1 } }, x_future: { keep: true } }),
  )
  const d = await happy.next(30_000)
  const env = json(d)
  t.equal(env.id, `e-${id}`)
  t.same(env.payload.seen, names, 'visited every actor in order')
  t.equal(env.payload.text, 'héllo wörld ✓ 你好 🚀', 'unicode intact')
  t.same(env.headers, { trace_id: 'T-1', priority: 5 }, 'headers carried unchanged')
  t.same(env.route.metadata, { m: 1 }, 'route metadata carried')
  t.equal(env.route.current, 3)
  t.same(env.x_future, { keep: true }, 'unknown top-level field preserved')
  t.equal(d.headers['x-asya-hops'], '3', 'hop counter in transport headers')
  await d.ack()
})

t.test('empty result ([] / None) sends the original envelope to happy-end', async (t) => {
  const n = `empty-${rand()}`
  await actor(n, 'empty')
  await client.publish(n, envelope(`e-${n}`, [n, 'never-reached'], { keep: 1 }, { headers: { h: 'x' } }))
  const env = json(await happy.next(30_000))
  t.equal(env.id, `e-${n}`)
  t.same(env.payload, { keep: 1 }, 'original payload')
  t.equal(env.route.current, 0, 'original route, unchanged')
  t.same(env.headers, { h: 'x' })
})

t.test('fan-out ×3: child 0 keeps the id, children i>0 get <id>-<i> and parent_id', async (t) => {
  const n = `fan-${rand()}`
  await actor(n, 'fanout3')
  await client.publish(n, envelope('p-1', [n], { x: 1 }, { headers: { trace_id: 'F' } }))
  const got = [json(await happy.next(30_000)), json(await happy.next(30_000)), json(await happy.next(30_000))]
  got.sort((a, b) => a.payload.part - b.payload.part)
  t.same(
    got.map((e) => [e.id, e.parent_id]),
    [
      ['p-1', undefined],
      ['p-1-1', 'p-1'],
      ['p-1-2', 'p-1'],
    ],
  )
  t.ok(got.every((e) => e.headers.trace_id === 'F'), 'every child keeps the headers')
  await new Promise((r) => setTimeout(r, 300))
  t.equal(happy.pending, 0, 'exactly three, no double publish')
})

t.test('envelope mode: the handler rewrites the future route; the envelope follows it', async (t) => {
  const id = rand()
  const judge = `judge-${id}`
  const extra = `extra-${id}`
  const last = `last-${id}`
  await actor(judge, 'rewrite', {}, 'envelope')
  await actor(extra, 'tag')
  await actor(last, 'tag')
  await client.publish(judge, envelope(`r-${id}`, [judge, last], { insert: extra }))
  const env = json(await happy.next(30_000))
  t.same(env.route.actors, [judge, extra, last], 'route rewritten at run time')
  t.same(env.payload.seen, [extra, last], 'the inserted actor ran')
})

t.test('parse and validation errors go to error-end with a reason; the runtime is not called', async (t) => {
  const n = `bad-${rand()}`
  const a = await actor(n, 'echo')
  const restartsBefore = a.runtime.restarts
  await client.publish(n, Buffer.from('this is not json {'))
  const e1 = json(await errors.next(30_000))
  t.equal(e1.payload.details.reason, 'parse_error')
  t.equal(e1.payload.original_body, 'this is not json {')
  t.equal(e1.payload.details.actor, n)
  await client.publish(n, Buffer.from([0xff, 0xfe, 0x7b]))
  const e2 = json(await errors.next(30_000))
  t.equal(e2.payload.details.reason, 'parse_error', 'invalid UTF-8')
  t.equal(e2.payload.original_body_encoding, 'base64')
  await client.publish(n, Buffer.from(JSON.stringify({ route: { actors: [n], current: 0 }, payload: 1, headers: { trace: 'v' } })))
  const e3 = json(await errors.next(30_000))
  t.equal(e3.payload.details.reason, 'validation_error', 'missing id')
  t.same(e3.headers, { trace: 'v' }, 'headers kept on the error hop')
  t.equal(e3.payload.original_payload, 1)
  t.equal(a.runtime.restarts, restartsBefore)
})

t.test('route mismatch goes to error-end without calling the runtime', async (t) => {
  const n = `mis-${rand()}`
  await actor(n, 'fail') // would produce processing_error if it were called
  await client.publish(n, envelope(`m-${n}`, ['someone-else', n], { v: 1 }, { headers: { trace_id: 'M' } }))
  const env = json(await errors.next(30_000))
  t.equal(env.id, `m-${n}`)
  t.equal(env.payload.details.reason, 'route_mismatch')
  t.same(env.payload.original_payload, { v: 1 })
  t.same(env.headers, { trace_id: 'M' })
})

t.test('handler error: retried per ASYA_MAX_RETRIES with backoff, then error-end with the traceback', async (t) => {
  const n = `retry-${rand()}`
  const events: string[] = []
  const a = await startActor({
    name: n,
    handler: 'fail',
    world,
    transport: await transport(),
    env: { ASYA_MAX_RETRIES: '2', ASYA_RETRY_BACKOFF: '100ms' },
    onEvent: (e) => {
      if (e.type === 'retry') events.push(`${e.attempt}:${e.reason}`)
    },
  })
  actors.push(a)
  await client.publish(n, envelope(`f-${n}`, [n], { v: 1 }, { headers: { trace_id: 'R' } }))
  const env = json(await errors.next(30_000))
  t.same(events, ['1:processing_error', '2:processing_error'], 'two retries, then give up')
  t.equal(env.payload.error, 'processing_error')
  t.equal(env.payload.details.reason, 'processing_error')
  t.equal(env.payload.details.attempts, 3)
  t.equal(env.payload.details.type, 'RuntimeError')
  t.match(env.payload.details.message, /boom/)
  t.match(env.payload.details.traceback, /Traceback/)
  t.same(env.payload.original_payload, { v: 1 })
  t.same(env.headers, { trace_id: 'R' }, 'headers onto error-end')
})

t.test('non-retryable handler error skips retries', async (t) => {
  const n = `perm-${rand()}`
  let retries = 0
  const a = await startActor({
    name: n,
    handler: 'fail_permanently',
    world,
    transport: await transport(),
    env: { ASYA_MAX_RETRIES: '5', ASYA_RETRY_BACKOFF: '100ms' },
    onEvent: (e) => {
      if (e.type === 'retry') retries++
    },
  })
  actors.push(a)
  await client.publish(n, envelope(`np-${n}`, [n], null))
  const env = json(await errors.next(30_000))
  t.equal(retries, 0)
  t.equal(env.payload.details.retryable, false)
  t.equal(env.payload.details.attempts, 1)
})

t.test('hop limit stops an envelope whose route never advances', async (t) => {
  const n = `stuck-${rand()}`
  await actor(n, 'stuck', { ASYA_MAX_HOPS: '5' }, 'envelope')
  await client.publish(n, envelope(`s-${n}`, [n], { v: 1 }))
  const env = json(await errors.next(30_000))
  t.equal(env.payload.details.reason, 'hop_limit')
  t.equal(env.id, `s-${n}`)
})

t.test('publish fails (next queue missing): input never acked, retried with backoff, then DLQ', async (t) => {
  const n = `pub-${rand()}`
  const reasons: string[] = []
  const a = await startActor({
    name: n,
    handler: 'echo',
    world,
    transport: await transport(),
    env: { ASYA_DELIVERY_LIMIT: '3' },
    onEvent: (e) => {
      if (e.type === 'retry' || e.type === 'dead_letter') reasons.push(`${e.type}:${e.reason}`)
    },
  })
  actors.push(a)
  const body = envelope(`pf-${n}`, [n, `nobody-${rand()}`], { v: 1 })
  await client.publish(n, body)
  const dlq = new Inbox()
  const sub = await client.consume(`${n}-dlq`, dlq.push, { prefetch: 1 })
  const d = await dlq.next(60_000)
  // The event fires after the DLQ publish is confirmed, which can be after the DLQ consumer saw it.
  for (let i = 0; i < 100 && reasons.length < 3; i++) await new Promise((r) => setTimeout(r, 50))
  t.same(reasons, ['retry:publish_failed', 'retry:publish_failed', 'dead_letter:publish_failed'], 'bounded attempts, no hot loop')
  t.same(d.body, body, 'body unchanged in the DLQ')
  t.equal(d.headers[HEADER.reason], 'publish_failed')
  t.equal(d.headers[HEADER.attempts], '3')
  t.match(d.headers[HEADER.error] ?? '', /no queue bound/)
  await d.ack()
  await sub.cancel()
})

t.test('10 MB payload through two actors', async (t) => {
  const id = rand()
  const names = [`big1-${id}`, `big2-${id}`]
  for (const n of names) await actor(n, 'echo')
  const blob = 'x'.repeat(10 * 1024 * 1024)
  await client.publish(names[0] as string, envelope(`big-${id}`, names, { blob }))
  const env = json(await happy.next(60_000))
  t.equal(env.payload.blob.length, blob.length, '10 MB intact')
})

t.test('no hoarding: with long handler calls at most one message waits behind the one in the runtime', async (t) => {
  const n = `hoard-${rand()}`
  let sent = 0
  let resolveFirst!: () => void
  const first = new Promise<void>((r) => (resolveFirst = r))
  const a = await startActor({
    name: n,
    handler: 'slow',
    world,
    transport: await transport(),
    onEvent: (e) => {
      if (e.type === 'sent' && ++sent === 1) resolveFirst()
    },
  })
  actors.push(a)
  for (let i = 0; i < 6; i++) await client.publish(n, envelope(`h${i}-${n}`, [n], { sleep: 1 }))
  await first
  // The window widened while message 0 was publishing and must have shrunk again before its ack:
  // now one message is in the runtime and one waits, so 6 - 1 done - 2 held = 3 stay in the queue.
  await new Promise((r) => setTimeout(r, 400))
  t.equal(await client.messageCount(n), 3, 'the other replicas can still take the rest')
})
