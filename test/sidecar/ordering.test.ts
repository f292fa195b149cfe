/**
 * Ordering per envelope while N calls overlap (issue 16; the promise is in docs/sidecar.md,
 * "Ordering"): real asya_runtime.py processes, real sidecars, real RabbitMQ.
 *
 * - a fan-out's children enter the next queue in the order the handler returned them, with their
 *   own parent's ids and payloads, while the parents' calls overlap and finish out of order
 *   (at concurrency 8, and at batch size 8: slot i's children are input i's);
 * - an envelope visits its route's actors in order, one hop after the other, at concurrency 8 on
 *   every actor.
 *
 * Across envelopes nothing is promised, and each test checks that its envelopes really did finish
 * out of publish order: otherwise it would not show that per-envelope order survives overlap.
 */
import t, { type Test } from 'tap'
import type { Delivery } from '../../src/transport/transport.js'
import { envelope, json, rabbitSuite, rand } from '../support/actor-harness.js'

type Env = Record<string, any>

async function collect(inbox: { next(ms?: number): Promise<Delivery> }, n: number, timeoutMs = 30_000): Promise<Env[]> {
  const out: Env[] = []
  for (let i = 0; i < n; i++) out.push(json(await inbox.next(timeoutMs)))
  return out
}

const key = (i: number): string => `e${String(i).padStart(2, '0')}`

/** Parents in the order their first child arrived. */
function parentOrder(children: Env[]): string[] {
  const seen: string[] = []
  for (const c of children) if (!seen.includes(c.payload.parent)) seen.push(c.payload.parent)
  return seen
}

/**
 * Per parent, the children's indexes in arrival order must be 0..k-1, and each child must carry
 * its own parent's id scheme (child 0 keeps the id; child i is `<id>-<i>` with parent_id = id).
 */
function checkFanOut(t: Test, children: Env[], parents: string[], k: number): void {
  const byParent = new Map<string, Env[]>()
  for (const c of children) byParent.set(c.payload.parent, [...(byParent.get(c.payload.parent) ?? []), c])
  t.same([...byParent.keys()].sort(), parents, 'every parent fanned out, none lost or invented')
  const misordered = parents.filter((p) => JSON.stringify((byParent.get(p) ?? []).map((c) => c.payload.i)) !== JSON.stringify([...Array(k).keys()]))
  t.same(misordered, [], `each parent's ${k} children arrived in index order`)
  const crossed = children.filter((c) => {
    const { parent, i } = c.payload
    return i === 0 ? c.id !== parent : c.id !== `${parent}-${i}` || c.parent_id !== parent
  })
  t.same(crossed.map((c) => c.id), [], 'every child carries its own parent id and index (no cross-talk between overlapping calls)')
}

t.test('fan-out at concurrency 8: children enter the next queue in index order, per parent, while parents finish out of order', async (t) => {
  const s = await rabbitSuite(t)
  const name = `order-fan-${rand()}`
  await s.actor({ name, handler: 'fan_stamp', env: { ASYA_CONCURRENCY: '8' } })
  const n = 24
  const k = 4
  const parents = Array.from({ length: n }, (_, i) => key(i))
  // Later envelopes sleep less: calls that overlap finish in the reverse of their start order.
  for (let i = 0; i < n; i++) await s.client.publish(name, envelope(key(i), [name], { key: key(i), k, sleep: (n - 1 - i) * 0.02 }))
  const children = await collect(s.happy, n * k)
  checkFanOut(t, children, parents, k)
  const calls = parents.map((p) => children.find((c) => c.payload.parent === p && c.payload.i === 0)?.payload as Env)
  const overlapping = calls.filter((a) => calls.some((b) => a !== b && a.start < b.end && b.start < a.end)).length
  t.ok(overlapping >= 8, `the calls overlapped (${overlapping} of ${n} ran beside another)`)
  t.not(parentOrder(children).join(','), parents.join(','), 'and the parents finished out of publish order (nothing is promised across envelopes)')
  await new Promise((r) => setTimeout(r, 500))
  t.equal(s.happy.pending, 0, 'no duplicate child')
  t.equal(s.errors.pending, 0)
})

t.test('fan-out at batch size 8: slot i fans out input i, its children in index order', async (t) => {
  const s = await rabbitSuite(t)
  const name = `order-bfan-${rand()}`
  await s.actor({ name, handler: 'batch_fan', env: { ASYA_BATCH_SIZE: '8', ASYA_BATCH_WAIT: '100ms', ASYA_CONCURRENCY: '2' } })
  const n = 24
  const k = 3
  const parents = Array.from({ length: n }, (_, i) => key(i))
  // Publish order and sleeps alternate so the two concurrent batches end in either order.
  await Promise.all(parents.map((p, i) => s.client.publish(name, envelope(p, [name], { key: p, k, sleep: i % 2 === 0 ? 0.3 : 0.05 }))))
  const children = await collect(s.happy, n * k)
  checkFanOut(t, children, parents, k)
  const batches = new Set(children.map((c) => JSON.stringify(c.payload.batch)))
  t.ok([...batches].some((b) => (JSON.parse(b) as string[]).length > 1), `the parents were batched (${batches.size} batches)`)
  for (const c of children) {
    if (!(c.payload.batch as string[]).includes(c.payload.parent)) {
      t.fail(`child ${c.id} came out of a batch without its parent ${c.payload.parent}`)
      break
    }
  }
  await new Promise((r) => setTimeout(r, 500))
  t.equal(s.happy.pending, 0, 'no duplicate child')
  t.equal(s.errors.pending, 0)
})

t.test("a route's hops at concurrency 8 on every actor: each envelope visits a, b, c in order, one hop after the other", async (t) => {
  const s = await rabbitSuite(t)
  const id = rand()
  const actors = ['a', 'b', 'c'].map((x) => `order-${x}-${id}`)
  for (const name of actors) await s.actor({ name, handler: 'trail', env: { ASYA_CONCURRENCY: '8' } })
  const n = 24
  const sent = Array.from({ length: n }, (_, i) => key(i))
  for (let i = 0; i < n; i++) await s.client.publish(actors[0] as string, envelope(key(i), actors, { key: key(i), sleep: ((n - 1 - i) % 8) * 0.04 }))
  const got = await collect(s.happy, n)
  t.same(got.map((e) => e.id).sort(), sent, 'every envelope arrived once')
  const wrong: string[] = []
  for (const e of got) {
    const trail = e.payload.trail as Array<{ actor: string; start: number; end: number }>
    if (e.payload.key !== e.id) wrong.push(`${e.id}: carries the payload of ${e.payload.key}`)
    if (JSON.stringify(trail.map((h) => h.actor)) !== JSON.stringify(actors)) wrong.push(`${e.id}: visited ${trail.map((h) => h.actor).join(' → ')}`)
    for (let h = 1; h < trail.length; h++) {
      const prev = trail[h - 1] as { end: number }
      if ((trail[h] as { start: number }).start < prev.end) wrong.push(`${e.id}: hop ${h} started before hop ${h - 1} ended`)
    }
    if (e.route.current !== actors.length) wrong.push(`${e.id}: route.current ${e.route.current}`)
  }
  t.same(wrong, [], 'each envelope: its own payload, the route in order, hops one after the other')
  const atB = got.map((e) => (e.payload.trail as Env[])[1] as Env)
  const overlapping = atB.filter((a) => atB.some((b) => a !== b && a.start < b.end && b.start < a.end)).length
  t.ok(overlapping >= 8, `calls overlapped on the middle actor (${overlapping} of ${n} ran beside another)`)
  t.not(got.map((e) => e.id).join(','), sent.join(','), 'and envelopes reached happy-end out of publish order (nothing is promised across envelopes)')
  await new Promise((r) => setTimeout(r, 500))
  t.equal(s.happy.pending, 0, 'no duplicate')
  t.equal(s.errors.pending, 0)
})
