/**
 * Accounting for "every envelope arrives" tests. A loop `while (seen.size < total)` followed by
 * `t.equal(seen.size, total)` cannot fail: a loss shows up as a timeout with no word on which
 * envelopes, and duplicates, strangers and corrupted bodies pass unnoticed. `receiveAll` instead
 * collects until every expected id arrived or the deadline passed (it never throws), keeps
 * listening a little longer for late duplicates, and returns what each assertion needs.
 */
import type { Delivery } from '../../src/transport/transport.js'
import type { Inbox } from '../transport/conformance.js'

export interface Ledger {
  /** Deliveries per expected id (0 = missing). */
  counts: Map<string, number>
  missing: string[]
  /** Ids nobody sent (a routing or naming bug). */
  unexpected: string[]
  /** Deliveries beyond the first, summed over ids. */
  duplicates: number
  /** Ids delivered more than once, with their counts. */
  repeated: Array<[string, number]>
  /** What `check` said about delivered envelopes (wrong payload, route not finished, ...). */
  problems: string[]
}

export interface ReceiveOptions {
  /** Give up waiting for missing ids after this long. */
  deadlineMs: number
  /** After the last expected id, keep draining this long to see late duplicates. @default 500 */
  settleMs?: number
  /** Returns a problem for a delivered envelope, or undefined when it is right. */
  check?: (envelope: Record<string, unknown>) => string | undefined
  /** Ids already received before this call (e.g. consumed before a fault). */
  already?: Iterable<string>
  /** Stop after this many deliveries (to inject a fault mid-stream, then call again with `already`). */
  stopAfter?: number
}

export async function receiveAll(inbox: Inbox, expected: readonly string[], o: ReceiveOptions): Promise<Ledger> {
  const counts = new Map<string, number>(expected.map((id) => [id, 0]))
  const unexpected: string[] = []
  const problems: string[] = []
  let outstanding = expected.length
  const count = (id: string): void => {
    const c = counts.get(id)
    if (c === undefined) {
      unexpected.push(id)
      return
    }
    if (c === 0) outstanding--
    counts.set(id, c + 1)
  }
  for (const id of o.already ?? []) count(id)
  const take = async (d: Delivery): Promise<void> => {
    let env: Record<string, unknown>
    try {
      env = JSON.parse(d.body.toString('utf8')) as Record<string, unknown>
    } catch {
      problems.push(`a delivery is not JSON: ${d.body.toString('utf8').slice(0, 80)}`)
      await d.ack().catch(() => undefined)
      return
    }
    const id = String(env.id)
    count(id)
    const p = o.check?.(env)
    if (p !== undefined) problems.push(`${id}: ${p}`)
    await d.ack().catch(() => undefined)
  }
  const deadline = Date.now() + o.deadlineMs
  let taken = 0
  while (outstanding > 0 && Date.now() < deadline && taken < (o.stopAfter ?? Infinity)) {
    taken++
    let d: Delivery
    try {
      d = await inbox.next(Math.max(1, deadline - Date.now()))
    } catch {
      break
    }
    await take(d)
  }
  const settleEnd = Date.now() + (o.settleMs ?? 500)
  for (;;) {
    const left = settleEnd - Date.now()
    if (left <= 0) break
    try {
      await take(await inbox.next(left))
    } catch {
      break
    }
  }
  const repeated = [...counts].filter(([, c]) => c > 1)
  return {
    counts,
    missing: [...counts].filter(([, c]) => c === 0).map(([id]) => id),
    unexpected,
    duplicates: repeated.reduce((s, [, c]) => s + c - 1, 0),
    repeated,
    problems,
  }
}
