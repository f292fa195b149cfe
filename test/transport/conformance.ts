/**
 * The one Transport conformance suite: the semantics the sidecar relies on, run unchanged against
 * every implementation (memory, RabbitMQ, SQS). Each target's `create()` returns a new, connected
 * transport on the same broker; every test uses fresh random actor names.
 */
import { randomBytes } from 'node:crypto'
import t from 'tap'
import { isAsyaError } from '../../src/errors.js'
import type { Delivery, QueueStats, Transport } from '../../src/transport/transport.js'
import { HEADER } from '../../src/names.js'
import { startActor, type World } from '../support/actor-harness.js'

export interface ConformanceTarget {
  name: string
  create(): Promise<Transport>
  /** Called once after all tests (stop servers...). */
  teardown?(): Promise<void>
  /** Some brokers count a redelivery after a close differently; @default 2 */
  attemptAfterCloseRedelivery?: number
  /** Which QueueStats fields the transport knows (SQS has no consumers). @default both */
  queueStats?: { inFlight: boolean; consumers: boolean }
  /**
   * Sidecar env (ASYA_TRANSPORT and its settings) for the same broker: the sidecar cases run a real
   * Sidecar and runtime on a transport from `create()`. Called inside the test (servers are up).
   */
  sidecarEnv(): Record<string, string>
  /**
   * Makes the broker write behind the next `verb` of `tr` fail once (the retry copy or the dead
   * letter is not stored), as a broker outage would. Each target breaks its own broker call.
   */
  failNext(tr: Transport, verb: 'retry' | 'deadLetter'): void
}

/**
 * Makes the next call of `obj[method]` throw `err` (an awaited async method rejects the same way);
 * later calls are the real ones.
 */
export function failOnce(obj: object, method: string, err: Error = new Error('injected broker failure')): void {
  const o = obj as Record<string, unknown>
  if (typeof o[method] !== 'function') throw new Error(`failOnce: no method ${method}`)
  const own = Object.prototype.hasOwnProperty.call(o, method)
  const real = o[method]
  o[method] = (): never => {
    if (own) o[method] = real
    else delete o[method]
    throw err
  }
}

export function randomActor(prefix = 'conf'): string {
  return `${prefix}-${randomBytes(5).toString('hex')}`
}

/** Collects deliveries of one actor; `next()` awaits the next one. */
export class Inbox {
  private readonly items: Delivery[] = []
  private waiters: Array<(d: Delivery) => void> = []
  readonly seen: Delivery[] = []

  push = (d: Delivery): void => {
    this.seen.push(d)
    const w = this.waiters.shift()
    if (w) w(d)
    else this.items.push(d)
  }

  next(timeoutMs = 20_000): Promise<Delivery> {
    const d = this.items.shift()
    if (d) return Promise.resolve(d)
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters = this.waiters.filter((w) => w !== done)
        reject(new Error(`no delivery within ${timeoutMs} ms`))
      }, timeoutMs)
      const done = (x: Delivery): void => {
        clearTimeout(timer)
        resolve(x)
      }
      this.waiters.push(done)
    })
  }

  get pending(): number {
    return this.items.length
  }
}

async function waitFor(cond: () => Promise<boolean> | boolean, timeoutMs = 20_000, what = 'condition'): Promise<void> {
  const end = Date.now() + timeoutMs
  for (;;) {
    if (await cond()) return
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

export function runTransportConformance(target: ConformanceTarget): void {
  const open: Transport[] = []
  const make = async (): Promise<Transport> => {
    const tr = await target.create()
    open.push(tr)
    return tr
  }
  t.teardown(async () => {
    for (const tr of open) await tr.close().catch(() => undefined)
    await target.teardown?.()
  })

  t.test(`${target.name}: publish, consume, ack`, async (t) => {
    const tr = await make()
    const a = randomActor()
    await tr.ensureQueue(a)
    const body = Buffer.from(JSON.stringify({ hello: 'wörld ✓' }))
    await tr.publish(a, body, { headers: { 'x-trace': 'abc' } })
    const inbox = new Inbox()
    const sub = await tr.consume(a, inbox.push, { prefetch: 1 })
    const d = await inbox.next()
    t.same(d.body, body, 'body unchanged, byte for byte')
    t.equal(d.headers['x-trace'], 'abc', 'publish headers delivered')
    t.equal(d.actor, a)
    t.equal(d.attempt, 1, 'first attempt')
    t.equal(d.redelivered, false)
    await d.ack()
    await sub.cancel()
    await waitFor(async () => (await tr.messageCount(a)) === 0, 20_000, 'empty queue')
    t.equal(await tr.messageCount(a), 0, 'acked message is gone')
    await tr.deleteQueue(a)
    await tr.deleteQueue(`${a}-dlq`)
  })

  t.test(`${target.name}: publish to a missing queue is an error, never a silent drop`, async (t) => {
    const tr = await make()
    const err = await tr.publish(randomActor('missing'), Buffer.from('{}')).then(
      () => undefined,
      (e: unknown) => e,
    )
    t.ok(isAsyaError(err, 'ASYA_ERR_TRANSPORT_UNROUTABLE'), `UNROUTABLE, got ${String(err)}`)
  })

  t.test(`${target.name}: prefetch bounds unsettled deliveries`, async (t) => {
    const tr = await make()
    const a = randomActor()
    await tr.ensureQueue(a)
    for (let i = 0; i < 5; i++) await tr.publish(a, Buffer.from(JSON.stringify({ i })))
    const inbox = new Inbox()
    const sub = await tr.consume(a, inbox.push, { prefetch: 2 })
    const first = await inbox.next()
    await inbox.next()
    // Proving an absence needs a pause; long enough for a third delivery to show up if it could.
    await new Promise((r) => setTimeout(r, 500))
    t.equal(inbox.seen.length, 2, 'only `prefetch` deliveries outstanding')
    await first.ack()
    const third = await inbox.next()
    t.ok(third, 'settling one frees a slot')
    t.equal(inbox.seen.length, 3)
    for (const d of inbox.seen.slice(1)) await d.ack()
    for (let i = 0; i < 2; i++) await (await inbox.next()).ack()
    t.equal(inbox.seen.length, 5, 'all five delivered once')
    await sub.cancel()
    await tr.deleteQueue(a)
    await tr.deleteQueue(`${a}-dlq`)
  })

  t.test(`${target.name}: setPrefetch widens and narrows a running subscription`, async (t) => {
    const tr = await make()
    const a = randomActor()
    await tr.ensureQueue(a)
    for (let i = 0; i < 12; i++) await tr.publish(a, Buffer.from(JSON.stringify({ i })))
    const inbox = new Inbox()
    const sub = await tr.consume(a, inbox.push, { prefetch: 2 })
    await inbox.next()
    await inbox.next()
    await new Promise((r) => setTimeout(r, 400))
    t.equal(inbox.seen.length, 2, 'window of 2 before the change')
    await sub.setPrefetch(5)
    // Nothing is settled: only the wider window can hand out more.
    await waitFor(() => inbox.seen.length >= 5, 20_000, 'the wider window to fill')
    await new Promise((r) => setTimeout(r, 400))
    t.ok(inbox.seen.length >= 5 && inbox.seen.length <= 7, `widened: ${inbox.seen.length} outstanding (5, or up to 2 + 5 during the change)`)
    await sub.setPrefetch(1)
    let settled = 0
    while (settled < inbox.seen.length) await (inbox.seen[settled++] as Delivery).ack()
    await new Promise((r) => setTimeout(r, 500))
    t.ok(inbox.seen.length - settled <= 1, `narrowed: ${inbox.seen.length - settled} outstanding after settling the earlier ones`)
    while (settled < 12) {
      await waitFor(() => inbox.seen.length > settled, 20_000, 'the next delivery')
      t.ok(inbox.seen.length - settled <= 1, 'never more than one outstanding')
      await (inbox.seen[settled++] as Delivery).ack()
    }
    t.equal(inbox.seen.length, 12, 'every message delivered once')
    await sub.cancel()
    await tr.deleteQueue(a)
    await tr.deleteQueue(`${a}-dlq`)
  })

  t.test(`${target.name}: retry redelivers later with attempt + 1 and the reason`, async (t) => {
    const tr = await make()
    const a = randomActor()
    await tr.ensureQueue(a)
    await tr.publish(a, Buffer.from('{"x":1}'), { headers: { 'x-keep': 'me' } })
    const inbox = new Inbox()
    const sub = await tr.consume(a, inbox.push, { prefetch: 1 })
    const d1 = await inbox.next()
    t.equal(d1.attempt, 1)
    const err = await d1.retry(0, { reason: 'x' }).then(
      () => undefined,
      (e: unknown) => e,
    )
    t.ok(err, 'a zero delay (hot loop) is refused')
    await d1.retry(200, { reason: 'runtime_error', error: 'boom' })
    const d2 = await inbox.next()
    t.equal(d2.attempt, 2, 'attempt counted')
    t.equal(d2.headers[HEADER.reason], 'runtime_error')
    t.equal(d2.headers[HEADER.error], 'boom')
    t.equal(d2.headers['x-keep'], 'me', 'publisher headers survive a retry')
    t.same(d2.body, Buffer.from('{"x":1}'))
    await d2.retry(100, { reason: 'publish_failed', headers: { 'x-asya-sent': '0,2' } })
    const d3 = await inbox.next()
    t.equal(d3.attempt, 3)
    t.equal(d3.headers['x-asya-sent'], '0,2', 'retry headers are carried')
    t.equal(d3.headers[HEADER.reason], 'publish_failed')
    await d3.ack()
    await sub.cancel()
    await tr.deleteQueue(a)
    await tr.deleteQueue(`${a}-dlq`)
  })

  t.test(`${target.name}: deadLetter moves the body to <actor>-dlq with reason, error, attempts`, async (t) => {
    const tr = await make()
    const a = randomActor()
    await tr.ensureQueue(a)
    const body = Buffer.from('not json at all ✗ {')
    await tr.publish(a, body, { headers: { 'x-trace': 't1' } })
    const inbox = new Inbox()
    const sub = await tr.consume(a, inbox.push, { prefetch: 1 })
    const d = await inbox.next()
    await d.deadLetter({ reason: 'parse_error', error: 'Unexpected token', attempts: 1 })
    await sub.cancel()
    const dlq = new Inbox()
    const dsub = await tr.consume(`${a}-dlq`, dlq.push, { prefetch: 1 })
    const dl = await dlq.next()
    t.same(dl.body, body, 'body unchanged')
    t.equal(dl.headers[HEADER.reason], 'parse_error')
    t.equal(dl.headers[HEADER.error], 'Unexpected token')
    t.equal(dl.headers[HEADER.attempts], '1')
    t.equal(dl.headers[HEADER.actor], a)
    t.equal(dl.headers['x-trace'], 't1', 'original headers kept')
    await dl.ack()
    await dsub.cancel()
    t.equal(await tr.messageCount(a), 0, 'nothing left in the source queue')
    await tr.deleteQueue(a)
    await tr.deleteQueue(`${a}-dlq`)
  })

  // The cases where the transports' own settle code used to disagree (src/transport/delivery.ts).
  t.test(`${target.name}: a second settle rejects with ASYA_ERR_DELIVERY_SETTLED and changes nothing`, async (t) => {
    const tr = await make()
    const a = randomActor()
    await tr.ensureQueue(a)
    await tr.publish(a, Buffer.from('{"twice":1}'))
    await tr.publish(a, Buffer.from('{"twice":2}'))
    const inbox = new Inbox()
    const sub = await tr.consume(a, inbox.push, { prefetch: 2 })
    const d1 = await inbox.next()
    const d2 = await inbox.next()
    await d1.ack()
    for (const [name, again] of [
      ['ack', () => d1.ack()],
      ['retry', () => d1.retry(100, { reason: 'x' })],
      ['deadLetter', () => d1.deadLetter({ reason: 'x' })],
      ['release', () => d1.release()],
    ] as const) {
      const err = await again().then(
        () => undefined,
        (e: unknown) => e,
      )
      t.ok(isAsyaError(err, 'ASYA_ERR_DELIVERY_SETTLED'), `${name} after ack: DELIVERY_SETTLED, got ${String(err)}`)
    }
    // Two settlements at once: the first stands, the second is refused before it does anything.
    const [first, second] = await Promise.allSettled([d2.deadLetter({ reason: 'parse_error', error: 'first' }), d2.retry(100, { reason: 'second' })])
    t.equal(first.status, 'fulfilled', 'the first settlement stands')
    t.ok(second.status === 'rejected' && isAsyaError(second.reason, 'ASYA_ERR_DELIVERY_SETTLED'), 'a concurrent second settlement is refused')
    const dlq = new Inbox()
    const dsub = await tr.consume(`${a}-dlq`, dlq.push, { prefetch: 1 })
    const dl = await dlq.next()
    t.equal(dl.headers[HEADER.error], 'first')
    await dl.ack()
    // Proving an absence needs a pause: neither the acked message nor a retried copy comes back.
    await new Promise((r) => setTimeout(r, 1500))
    t.equal(inbox.seen.length, 2, 'no redelivery, no retried copy')
    await sub.cancel()
    await dsub.cancel()
    await tr.deleteQueue(a)
    await tr.deleteQueue(`${a}-dlq`)
  })

  t.test(`${target.name}: a failed retry or dead letter re-opens the delivery; it can be settled again`, async (t) => {
    const tr = await make()
    const a = randomActor()
    await tr.ensureQueue(a)
    await tr.publish(a, Buffer.from('{"again":1}'))
    const inbox = new Inbox()
    const sub = await tr.consume(a, inbox.push, { prefetch: 1 })
    const d = await inbox.next()
    target.failNext(tr, 'retry')
    const retryErr = await d.retry(100, { reason: 'runtime_error', error: 'e1' }).then(
      () => undefined,
      (e: unknown) => e,
    )
    t.ok(retryErr instanceof Error, `the failed retry rejects: ${String(retryErr)}`)
    target.failNext(tr, 'deadLetter')
    const dlErr = await d.deadLetter({ reason: 'publish_failed' }).then(
      () => undefined,
      (e: unknown) => e,
    )
    t.ok(dlErr instanceof Error && !isAsyaError(dlErr, 'ASYA_ERR_DELIVERY_SETTLED'), `a settle after the failed retry is tried (and fails here too): ${String(dlErr)}`)
    await d.retry(100, { reason: 'publish_failed', error: 'e2' })
    const d2 = await inbox.next()
    t.equal(d2.attempt, 2, 'exactly one retry was stored')
    t.equal(d2.headers[HEADER.reason], 'publish_failed')
    t.equal(d2.headers[HEADER.error], 'e2')
    await d2.ack()
    await new Promise((r) => setTimeout(r, 1000))
    t.equal(inbox.seen.length, 2, 'no copy of the failed attempts')
    await sub.cancel()
    await tr.deleteQueue(a)
    await tr.deleteQueue(`${a}-dlq`)
  })

  t.test(`${target.name}: a handler that throws after a failed retry gives the message back (never held for good)`, async (t) => {
    const tr = await make()
    const a = randomActor()
    await tr.ensureQueue(a)
    await tr.publish(a, Buffer.from('{"back":1}'))
    const inbox = new Inbox()
    let first = true
    const sub = await tr.consume(
      a,
      async (d) => {
        inbox.push(d)
        if (!first) return
        first = false
        target.failNext(tr, 'retry')
        await d.retry(100, { reason: 'runtime_error' }) // rejects: the handler throws with it
      },
      { prefetch: 1 },
    )
    const d1 = await inbox.next()
    const d2 = await inbox.next(60_000)
    t.same(d2.body, d1.body, 'given back and delivered again')
    t.equal(d2.attempt, 2, 'counted as an attempt (a delivery limit still ends a loop)')
    const late = await d1.ack().then(
      () => undefined,
      (e: unknown) => e,
    )
    t.ok(isAsyaError(late, 'ASYA_ERR_DELIVERY_SETTLED'), 'the given-back delivery cannot be settled any more')
    await d2.ack()
    await sub.cancel()
    await tr.deleteQueue(a)
    await tr.deleteQueue(`${a}-dlq`)
  })

  t.test(`${target.name}: dead-letter headers: reason, attempts, actor, last error (1 KiB), no retry bookkeeping`, async (t) => {
    const tr = await make()
    const a = randomActor()
    await tr.ensureQueue(a)
    await tr.publish(a, Buffer.from('{"dl":1}'), { headers: { 'x-trace': 't2' } })
    const inbox = new Inbox()
    const sub = await tr.consume(a, inbox.push, { prefetch: 1 })
    const d1 = await inbox.next()
    await d1.retry(100, { reason: 'runtime_error', error: 'boom' })
    const d2 = await inbox.next()
    await d2.retry(100, { reason: 'publish_failed' })
    const d3 = await inbox.next()
    t.equal(d3.headers[HEADER.error], undefined, 'a retry without an error does not carry the previous one')
    await d3.deadLetter({ reason: 'delivery_limit', error: 'é'.repeat(3000) })
    await sub.cancel()
    const dlq = new Inbox()
    const dsub = await tr.consume(`${a}-dlq`, dlq.push, { prefetch: 1 })
    const dl = await dlq.next()
    t.equal(dl.headers[HEADER.reason], 'delivery_limit')
    t.equal(dl.headers[HEADER.attempts], '3', 'attempts default to the delivery\'s attempt')
    t.equal(dl.headers[HEADER.actor], a)
    t.equal(dl.headers[HEADER.error], 'é'.repeat(1024), 'the last error, cut at 1024 characters')
    t.equal(dl.headers['x-trace'], 't2', 'publisher headers kept')
    t.equal(dl.attempt, 1, 'no x-asya-attempt: a replay counts afresh')
    await dl.ack()
    await dsub.cancel()
    await tr.deleteQueue(a)
    await tr.deleteQueue(`${a}-dlq`)
  })

  t.test(`${target.name}: close returns unsettled deliveries (redelivered, attempt counted)`, async (t) => {
    const tr1 = await make()
    const a = randomActor()
    await tr1.ensureQueue(a)
    await tr1.publish(a, Buffer.from('{"n":1}'))
    const inbox1 = new Inbox()
    await tr1.consume(a, inbox1.push, { prefetch: 1 })
    await inbox1.next()
    await tr1.close()
    const tr2 = await make()
    const inbox2 = new Inbox()
    const sub = await tr2.consume(a, inbox2.push, { prefetch: 1 })
    const d = await inbox2.next(60_000)
    t.same(d.body, Buffer.from('{"n":1}'), 'message not lost')
    t.equal(d.redelivered, true, 'marked redelivered')
    t.equal(d.attempt, target.attemptAfterCloseRedelivery ?? 2, 'attempt counts the lost delivery')
    await d.ack()
    await sub.cancel()
    await tr2.deleteQueue(a)
    await tr2.deleteQueue(`${a}-dlq`)
  })

  t.test(`${target.name}: deliveries settled right before close stay settled`, async (t) => {
    const tr1 = await make()
    const a = randomActor()
    await tr1.ensureQueue(a)
    await tr1.publish(a, Buffer.from('{"s":1}'))
    await tr1.publish(a, Buffer.from('{"s":2}'))
    const inbox = new Inbox()
    const sub = await tr1.consume(a, inbox.push, { prefetch: 2 })
    const d1 = await inbox.next()
    const d2 = await inbox.next()
    await sub.cancel()
    await d1.ack()
    await d2.release()
    await tr1.close()
    const tr2 = await make()
    const inbox2 = new Inbox()
    const sub2 = await tr2.consume(a, inbox2.push, { prefetch: 5 })
    const d = await inbox2.next(60_000)
    t.same(d.body, Buffer.from('{"s":2}'), 'only the released message comes back')
    await d.ack()
    await new Promise((r) => setTimeout(r, 500))
    t.equal(inbox2.seen.length, 1, 'the acked one is not redelivered, the released one not duplicated')
    await sub2.cancel()
    await tr2.deleteQueue(a)
    await tr2.deleteQueue(`${a}-dlq`)
  })

  t.test(`${target.name}: release gives the message back without counting an attempt`, async (t) => {
    const tr = await make()
    const a = randomActor()
    await tr.ensureQueue(a)
    await tr.publish(a, Buffer.from('{"r":1}'))
    const inbox = new Inbox()
    const sub = await tr.consume(a, inbox.push, { prefetch: 1 })
    const d1 = await inbox.next()
    await d1.release()
    const d2 = await inbox.next()
    t.same(d2.body, Buffer.from('{"r":1}'))
    t.equal(d2.attempt, 1, 'release is not an attempt')
    await d2.ack()
    await sub.cancel()
    await tr.deleteQueue(a)
    await tr.deleteQueue(`${a}-dlq`)
  })

  t.test(`${target.name}: ensureQueue is idempotent; messageCount; deleteQueue`, async (t) => {
    const tr = await make()
    const a = randomActor()
    await tr.ensureQueue(a)
    await tr.ensureQueue(a)
    for (let i = 0; i < 3; i++) await tr.publish(a, Buffer.from(`{"i":${i}}`))
    await waitFor(async () => (await tr.messageCount(a)) === 3, 20_000, '3 ready messages')
    t.equal(await tr.messageCount(a), 3)
    await tr.deleteQueue(a)
    await tr.deleteQueue(`${a}-dlq`)
    const err = await tr.publish(a, Buffer.from('{}')).then(
      () => undefined,
      (e: unknown) => e,
    )
    t.ok(isAsyaError(err, 'ASYA_ERR_TRANSPORT_UNROUTABLE'), 'deleted queue is unroutable')
  })

  t.test(`${target.name}: inspectQueue reports depth, in-flight and consumers`, async (t) => {
    const knows = target.queueStats ?? { inFlight: true, consumers: true }
    const tr = await make()
    const a = randomActor()
    await tr.ensureQueue(a)
    const missing = await tr.inspectQueue(randomActor('missing')).then(
      () => undefined,
      (e: unknown) => e,
    )
    t.ok(isAsyaError(missing, 'ASYA_ERR_TRANSPORT_QUEUE_MISSING'), 'a missing queue is reported, not shown as empty')
    for (let i = 0; i < 3; i++) await tr.publish(a, Buffer.from(`{"i":${i}}`))
    const matches = (s: QueueStats, messages: number, inFlight: number, consumers: number): boolean =>
      s.messages === messages && (knows.inFlight ? s.inFlight === inFlight : s.inFlight === undefined || s.inFlight === inFlight) && (knows.consumers ? s.consumers === consumers : s.consumers === undefined)
    await waitFor(async () => matches(await tr.inspectQueue(a), 3, 0, 0), 30_000, '3 ready, none in flight, no consumer')
    const inbox = new Inbox()
    const sub = await tr.consume(a, inbox.push, { prefetch: 1 })
    const d = await inbox.next()
    // RabbitMQ's management API refreshes its counters every few seconds.
    let last: QueueStats | undefined
    await waitFor(async () => matches((last = await tr.inspectQueue(a)), 2, 1, 1), 30_000, 'one in flight').catch((err: unknown) => {
      throw new Error(`${String(err)}; last ${JSON.stringify(last)}`)
    })
    t.pass(`while one is unsettled: ${JSON.stringify(last)}`)
    await d.ack()
    await sub.cancel()
    await waitFor(async () => {
      const s = await tr.inspectQueue(a)
      return (s.consumers === undefined || s.consumers === 0) && s.messages + (s.inFlight ?? 0) === 2
    }, 30_000, 'consumer gone, two left')
    t.pass('after ack and cancel')
  })

  t.test(`${target.name}: large binary-safe bodies (200 KB) and many messages in order of arrival`, async (t) => {
    const tr = await make()
    const a = randomActor()
    await tr.ensureQueue(a)
    const big = Buffer.from(JSON.stringify({ blob: randomBytes(100_000).toString('hex') }))
    await tr.publish(a, big)
    const n = 50
    await Promise.all(Array.from({ length: n }, (_, i) => tr.publish(a, Buffer.from(`{"i":${i}}`))))
    const inbox = new Inbox()
    const sub = await tr.consume(a, inbox.push, { prefetch: 10 })
    const got = new Set<string>()
    let sawBig = false
    for (let i = 0; i < n + 1; i++) {
      const d = await inbox.next()
      if (d.body.length === big.length) {
        t.ok(d.body.equals(big), 'big body intact')
        sawBig = true
      } else got.add(d.body.toString())
      await d.ack()
    }
    t.ok(sawBig)
    t.equal(got.size, n, 'every message exactly once')
    await sub.cancel()
    await tr.deleteQueue(a)
    await tr.deleteQueue(`${a}-dlq`)
  })

  t.test(`${target.name}: two consumers share a queue; each message goes to one`, async (t) => {
    const tr1 = await make()
    const tr2 = await make()
    const a = randomActor()
    await tr1.ensureQueue(a)
    const inbox = new Inbox()
    const s1 = await tr1.consume(a, inbox.push, { prefetch: 2 })
    const s2 = await tr2.consume(a, inbox.push, { prefetch: 2 })
    const n = 20
    for (let i = 0; i < n; i++) await tr1.publish(a, Buffer.from(`{"i":${i}}`))
    const got = new Set<string>()
    for (let i = 0; i < n; i++) {
      const d = await inbox.next()
      got.add(d.body.toString())
      await d.ack()
    }
    t.equal(got.size, n)
    await new Promise((r) => setTimeout(r, 300))
    t.equal(inbox.seen.length, n, 'no duplicates')
    await s1.cancel()
    await s2.cancel()
    await tr1.deleteQueue(a)
    await tr1.deleteQueue(`${a}-dlq`)
  })
  // Sidecar behaviour that depends on the transport underneath: one case per transport.
  t.test(`${target.name}: sidecar sends a result whose route.current is past the end to happy-end, current unchanged (SPEC §2)`, async (t) => {
    const client = await make()
    const a = randomActor('past')
    const happyEnd = randomActor('happy')
    const errorEnd = randomActor('error')
    for (const q of [a, happyEnd, errorEnd]) await client.ensureQueue(q)
    const world: World = {
      transport: target.name as World['transport'],
      exchange: '',
      happyEnd,
      errorEnd,
      env: { ...target.sidecarEnv(), ASYA_ACTOR_HAPPY_END: happyEnd, ASYA_ACTOR_ERROR_END: errorEnd },
    }
    // Upstream's invalid_route_current_handler: envelope mode, validation off, current = len + 5.
    const actor = await startActor({ name: a, handler: 'past_the_end', mode: 'envelope', world, transport: await target.create(), env: { ASYA_ENABLE_VALIDATION: 'false' } })
    const happy = new Inbox()
    const errors = new Inbox()
    const subs = [await client.consume(happyEnd, happy.push, { prefetch: 5 }), await client.consume(errorEnd, errors.push, { prefetch: 5 })]
    try {
      const route = { actors: [a, 'never-reached'], current: 0 }
      await client.publish(a, Buffer.from(JSON.stringify({ id: `past-${a}`, route, headers: { trace_id: 'P' }, payload: { k: 1 }, x_future: 1 })))
      const d = await happy.next(60_000)
      const env = JSON.parse(d.body.toString('utf8')) as Record<string, unknown>
      await d.ack()
      t.equal(env.id, `past-${a}`)
      t.same(env.route, { actors: [a, 'never-reached'], current: 7 }, 'route.current unchanged (len(actors) + 5), as upstream')
      t.same(env.payload, { k: 1 }, 'payload as the handler returned it, not an error envelope')
      t.same(env.headers, { trace_id: 'P' }, 'headers carried')
      t.equal(env.x_future, 1, 'unknown field carried')
      t.equal(errors.seen.length, 0, 'not sent to error-end')
    } finally {
      for (const s of subs) await s.cancel().catch(() => undefined)
      await actor.stop()
      for (const q of [a, happyEnd, errorEnd]) {
        await client.deleteQueue(q).catch(() => undefined)
        await client.deleteQueue(`${q}-dlq`).catch(() => undefined)
      }
    }
  })
}
