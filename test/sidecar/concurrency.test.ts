/**
 * SPEC §13 end to end: real asya_runtime.py processes, real sidecars, real RabbitMQ.
 * Concurrent calls overlap; a timeout in one of N calls sends that envelope to error-end while the
 * others still arrive; a batch with one failing slot retries that envelope alone; the batch wait
 * is honoured with a trickle; a drain with 16 in flight delivers everything exactly once.
 */
import t from 'tap'
import type { Delivery } from '../../src/transport/transport.js'
import type { SidecarEvent } from '../../sidecar/message-processor.js'
import { envelope, json, rabbitSuite, rand } from '../support/actor-harness.js'

type Payload = Record<string, any>

async function collect(inbox: { next(ms?: number): Promise<Delivery> }, n: number, timeoutMs = 30_000): Promise<Record<string, any>[]> {
  const out: Record<string, any>[] = []
  for (let i = 0; i < n; i++) out.push(json(await inbox.next(timeoutMs)))
  return out
}

function ids(envs: Record<string, any>[]): string[] {
  return envs.map((e) => String(e.id)).sort()
}

t.test('concurrency 8: sync handlers in the thread pool and async handlers really overlap', async (t) => {
  const s = await rabbitSuite(t)
  for (const handler of ['stamp', 'astamp']) {
    const name = `conc-${handler}-${rand()}`
    await s.actor({ name, handler, env: { ASYA_CONCURRENCY: '8' } })
    const sent = Array.from({ length: 8 }, (_, i) => `${handler}-${i}`)
    const t0 = Date.now()
    for (const id of sent) await s.client.publish(name, envelope(id, [name], { sleep: 1 }))
    const got = await collect(s.happy, 8)
    const elapsed = Date.now() - t0
    t.same(ids(got), [...sent].sort(), `${handler}: every envelope arrived once`)
    const starts = got.map((e) => (e.payload as Payload).start as number)
    const ends = got.map((e) => (e.payload as Payload).end as number)
    t.ok(Math.max(...starts) < Math.min(...ends), `${handler}: all 8 calls ran at the same time (last start before first end)`)
    t.ok(elapsed < 6000, `${handler}: 8 calls of 1 s took ${elapsed} ms, not 8 s`)
  }
})

t.test('a timeout in one of 4 calls: that envelope to error-end, the runtime is replaced, the others arrive once', async (t) => {
  const s = await rabbitSuite(t)
  const name = `conc-timeout-${rand()}`
  const events: SidecarEvent[] = []
  const a = await s.actor({ name, handler: 'stamp', env: { ASYA_CONCURRENCY: '4', ASYA_RUNTIME_TIMEOUT: '2s' }, onEvent: (e) => events.push(e) })
  await s.client.publish(name, envelope('hang', [name], { hang: true }))
  await new Promise((r) => setTimeout(r, 1000))
  // Still running when the hung call times out (t = 2 s): the runtime restart cuts them off.
  const others = ['o1', 'o2', 'o3']
  for (const id of others) await s.client.publish(name, envelope(id, [name], { sleep: 1.5 }))
  const err = json(await s.errors.next(30_000))
  t.equal(err.id, 'hang')
  t.equal(err.payload.details.reason, 'timeout')
  const got = await collect(s.happy, 3, 60_000)
  t.same(ids(got), others, 'the calls in flight beside the hung one all arrive')
  await new Promise((r) => setTimeout(r, 1500))
  t.equal(s.happy.pending, 0, 'no duplicate reached happy-end')
  t.equal(s.errors.pending, 0, 'only the hung envelope reached error-end')
  t.ok(a.runtime.restarts >= 1, 'the hung runtime was replaced')
  const cutOff = events.filter((e) => e.type === 'retry' && e.reason === 'runtime_unreachable').map((e) => e.id)
  t.ok(cutOff.every((id) => id !== undefined && others.includes(id)), `cut-off calls were retried (${cutOff.join(', ') || 'none: they finished first'})`)
})

t.test('a batch with one failing slot: only that envelope is retried, alone', async (t) => {
  const s = await rabbitSuite(t)
  const name = `batch-flaky-${rand()}`
  const events: SidecarEvent[] = []
  await s.actor({
    name,
    handler: 'batch_flaky',
    env: { ASYA_BATCH_SIZE: '8', ASYA_BATCH_WAIT: '300ms', ASYA_MAX_RETRIES: '2', ASYA_RETRY_BACKOFF: '100ms' },
    onEvent: (e) => events.push(e),
  })
  const keys = Array.from({ length: 8 }, (_, i) => `k${i}`)
  for (const key of keys) await s.client.publish(name, envelope(key, [name], { key, fail_once: key === 'k3' }))
  const got = await collect(s.happy, 8)
  t.same(ids(got), keys, 'all 8 arrive')
  const byId = new Map(got.map((e) => [String(e.id), e.payload as Payload]))
  const first = byId.get('k0')?.batch as string[]
  t.ok(first.includes('k3'), `k3 was in the first batch (${first.join(',')})`)
  t.same(byId.get('k3')?.batch, ['k3'], 'the retry carried k3 alone')
  t.same(
    events.filter((e) => e.type === 'retry').map((e) => e.id),
    ['k3'],
    'exactly one retry, for the failing slot',
  )
  await new Promise((r) => setTimeout(r, 500))
  t.equal(s.happy.pending, 0, 'no duplicates')
  t.equal(s.errors.pending, 0)
})

t.test('batch wait: a trickle is gathered for at most ASYA_BATCH_WAIT; a full batch goes at once', async (t) => {
  const s = await rabbitSuite(t)
  const name = `batch-wait-${rand()}`
  await s.actor({ name, handler: 'batch_flaky', env: { ASYA_BATCH_SIZE: '16', ASYA_BATCH_WAIT: '600ms' } })
  const trickle = Array.from({ length: 5 }, (_, i) => `t${i}`)
  const t0 = Date.now() / 1000
  for (const key of trickle) {
    await s.client.publish(name, envelope(key, [name], { key }))
    await new Promise((r) => setTimeout(r, 50))
  }
  const got = await collect(s.happy, 5)
  const batches = new Set(got.map((e) => JSON.stringify((e.payload as Payload).batch)))
  t.same([...batches], [JSON.stringify(trickle)], 'the trickle (over ~250 ms) became one batch of 5, in order')
  const waited = ((got[0]?.payload as Payload).called as number) - t0
  t.ok(waited >= 0.55, `the call waited for the batch (${waited.toFixed(3)} s after the first envelope, wait 0.6 s)`)
  t.ok(waited < 3, 'and not much longer than the wait')

  const full = Array.from({ length: 16 }, (_, i) => `f${String(i).padStart(2, '0')}`)
  const t1 = Date.now() / 1000
  await Promise.all(full.map((key) => s.client.publish(name, envelope(key, [name], { key }))))
  const fullGot = await collect(s.happy, 16)
  t.same(ids(fullGot), full)
  const sizes = new Set(fullGot.map((e) => ((e.payload as Payload).batch as string[]).length))
  const firstCall = Math.min(...fullGot.map((e) => (e.payload as Payload).called as number)) - t1
  t.ok(sizes.size >= 1 && Math.max(...sizes) > 1, `published together, they were batched (sizes ${[...sizes].join(',')})`)
  if (sizes.size === 1 && sizes.has(16)) t.ok(firstCall < 0.5, `a full batch did not wait (${firstCall.toFixed(3)} s)`)
})

t.test('drain with 16 in flight: all delivered, none twice; queued ones go back to the queue', async (t) => {
  const s = await rabbitSuite(t)
  const name = `conc-drain-${rand()}`
  const events: SidecarEvent[] = []
  const a = await s.actor({ name, handler: 'stamp', env: { ASYA_CONCURRENCY: '16', ASYA_RABBITMQ_PREFETCH: '24' }, onEvent: (e) => events.push(e) })
  const sent = Array.from({ length: 24 }, (_, i) => `d${String(i).padStart(2, '0')}`)
  for (const id of sent) await s.client.publish(name, envelope(id, [name], { sleep: 1.5 }))
  const deadline = Date.now() + 10_000
  while (events.filter((e) => e.type === 'received').length < 24 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20))
  await new Promise((r) => setTimeout(r, 300))
  const clean = await a.sidecar.stop()
  t.equal(clean, true, 'the drain finished within ASYA_SHUTDOWN_TIMEOUT')
  const released = events.filter((e) => e.type === 'done' && e.status === 'released').map((e) => e.id as string)
  t.equal(released.length, 8, '16 calls were in flight; the 8 queued behind them were given back')
  t.equal(s.happy.pending, 16, 'every call in flight finished, published and acked before the sidecar stopped')
  // A second replica takes what was given back.
  await s.actor({ name, handler: 'stamp', env: { ASYA_CONCURRENCY: '16' } })
  const got = await collect(s.happy, 24)
  t.same(ids(got), sent, 'all 24 delivered')
  await new Promise((r) => setTimeout(r, 1000))
  t.equal(s.happy.pending, 0, 'no duplicate')
})

t.test('no hoarding: after a fast run widened the window, slow calls give the queued envelopes back to idle replicas', async (t) => {
  const s = await rabbitSuite(t)
  const name = `hoard-${rand()}`
  const events: SidecarEvent[] = []
  const a = await s.actor({ name, handler: 'stamp', onEvent: (e) => events.push(e) })
  const windowOf = async (): Promise<number> => (await a.sidecar.metrics.deliveryWindow.get()).values[0]?.value ?? 0
  t.equal(await windowOf(), 1, 'a starting sidecar is on probation: one message at a time until a first-time delivery')
  // Runs of fast calls until the window of the first replica widens (20 in a row at <= 50 ms).
  for (let round = 0; round < 10 && (await windowOf()) < 8; round++) {
    for (let i = 0; i < 30; i++) await s.client.publish(name, envelope(`fast-${round}-${i}`, [name], { sleep: 0 }))
    await collect(s.happy, 30)
  }
  const wide = await windowOf()
  t.ok(wide >= 8, `fast calls widened the window to ${wide}`)
  await s.actor({ name, handler: 'stamp' })
  const slow = Array.from({ length: 24 }, (_, i) => `slow-${String(i).padStart(2, '0')}`)
  await Promise.all(slow.map((id) => s.client.publish(name, envelope(id, [name], { sleep: 0.3 }))))
  const got = await collect(s.happy, 24, 60_000)
  t.same(ids(got), slow, 'every slow envelope arrived once')
  t.equal(await windowOf(), 2, 'the first slow call restored the base window')
  const released = events.filter((e) => e.type === 'done' && e.status === 'released').length
  t.ok(released >= 1, `the first replica gave back ${released} queued slow envelopes at its first slow call`)
  const shed = (await a.sidecar.metrics.released.get()).values.find((v) => v.labels.reason === 'shed')?.value ?? 0
  t.equal(shed, released, 'counted as asya_actor_released_total{reason="shed"}')
  const first = new Set(events.filter((e) => e.type === 'done' && e.status === 'success' && String(e.id).startsWith('slow-')).map((e) => e.id))
  t.ok(first.size < 24, `the first replica ran ${first.size} of 24 slow calls, the second the rest`)
  await new Promise((r) => setTimeout(r, 500))
  t.equal(s.happy.pending, 0, 'no duplicate')
})
