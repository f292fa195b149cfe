/**
 * Dead-letter inspection and replay on any Transport (memory, RabbitMQ, SQS, and every transport
 * that implements the interface). Both are bounded by what the DLQ holds when they start, so a
 * message that fails again during a replay and returns to the DLQ is not picked up twice.
 *
 * Replay moves one message at a time: publish to the actor's queue (confirmed by the broker),
 * then ack the dead letter — a crash in between duplicates at most one message and never loses
 * one. The dead-letter headers (reason, error, attempts, actor, attempt) are dropped so the actor
 * counts attempts afresh; every other header (x-asya-hops: the loop guard) is kept.
 */
import { errorMessage } from '../errors.js'
import { type Delivery, type Transport, type TransportHeaders } from '../transport/transport.js'
import { dlqActor, HEADER } from '../names.js'

/** Headers a replay drops: the DLQ's own bookkeeping and the broker's. */
const DROPPED = new Set<string>([
  HEADER.reason,
  HEADER.error,
  HEADER.attempts,
  HEADER.actor,
  HEADER.attempt,
  'x-death',
  'x-delivery-count',
  'x-first-death-exchange',
  'x-first-death-queue',
  'x-first-death-reason',
  'x-last-death-exchange',
  'x-last-death-queue',
  'x-last-death-reason',
])

export interface DeadLetter {
  /** Envelope id, when the body is an envelope. */
  id?: string
  reason: string
  attempts?: number
  /** Full last error as recorded by the transport. */
  error?: string
  headers: TransportHeaders
  /** The body as text (dead letters may not be JSON: parse errors end here too). */
  body: string
}

export interface DeadLetterOptions {
  /** At most this many. @default all the DLQ holds when the command starts */
  max?: number
  /** Give up waiting for the expected deliveries after this long. @default 30000 */
  timeoutMs?: number
}

function describe(d: Delivery): DeadLetter {
  const body = d.body.toString('utf8')
  let id: string | undefined
  try {
    const parsed = JSON.parse(body) as { id?: unknown }
    if (typeof parsed.id === 'string') id = parsed.id
  } catch {
    // not JSON: shown as it is
  }
  const attempts = Number(d.headers[HEADER.attempts])
  const error = d.headers[HEADER.error]
  return {
    ...(id !== undefined ? { id } : {}),
    reason: d.headers[HEADER.reason] ?? 'unknown',
    ...(Number.isFinite(attempts) && d.headers[HEADER.attempts] !== undefined ? { attempts } : {}),
    ...(error !== undefined ? { error } : {}),
    headers: d.headers,
    body,
  }
}

/**
 * How many dead letters there are: ready plus in flight. Nothing normally consumes a DLQ, but a
 * transport may count given-back messages as in flight until they are delivered again (JetStream
 * keeps a nak'd message ack-pending), and those are dead letters too.
 */
export async function deadLetterCount(transport: Transport, actor: string): Promise<number> {
  const s = await transport.inspectQueue(dlqActor(actor))
  return s.messages + (s.inFlight ?? 0)
}

async function target(transport: Transport, actor: string, max: number | undefined): Promise<number> {
  const n = await deadLetterCount(transport, actor)
  return Math.min(n, max ?? n)
}

/**
 * Reads up to `max` dead letters of `actor` and gives every one back untouched. While they are
 * held no other consumer sees them; on RabbitMQ a released message goes back to the tail of the
 * DLQ (so listing fewer than all rotates the order).
 */
export async function listDeadLetters(transport: Transport, actor: string, o: DeadLetterOptions = {}): Promise<{ letters: DeadLetter[]; expected: number }> {
  const expected = await target(transport, actor, o.max)
  if (expected === 0) return { letters: [], expected }
  const held: Delivery[] = []
  let done!: () => void
  const all = new Promise<void>((r) => (done = r))
  const extra: Delivery[] = []
  const sub = await transport.consume(
    dlqActor(actor),
    (d) => {
      if (held.length >= expected) extra.push(d)
      else held.push(d)
      if (held.length >= expected) done()
    },
    { prefetch: expected },
  )
  let timer: NodeJS.Timeout | undefined
  await Promise.race([all, new Promise<void>((r) => (timer = setTimeout(r, o.timeoutMs ?? 30_000)))])
  clearTimeout(timer)
  await sub.cancel()
  const letters = held.map(describe)
  for (const d of [...held, ...extra]) await d.release()
  return { letters, expected }
}

export interface ReplayResult {
  replayed: number
  /** How many the DLQ held (bounded by max) when the replay started. */
  expected: number
  reasons: Record<string, number>
}

/** Moves up to `max` dead letters of `actor` back to its queue, one confirmed publish at a time. */
export async function replayDeadLetters(transport: Transport, actor: string, o: DeadLetterOptions & { onReplayed?: (l: DeadLetter) => void } = {}): Promise<ReplayResult> {
  const expected = await target(transport, actor, o.max)
  const result: ReplayResult = { replayed: 0, expected, reasons: {} }
  if (expected === 0) return result
  let failure: Error | undefined
  let finish!: () => void
  const finished = new Promise<void>((r) => (finish = r))
  let chain = Promise.resolve()
  let taken = 0
  const sub = await transport.consume(
    dlqActor(actor),
    (d) => {
      // Deliveries beyond the bound (or after a failure) are given back untouched.
      if (taken >= expected || failure !== undefined) {
        chain = chain.then(() => d.release().catch(() => undefined))
        return
      }
      taken++
      chain = chain.then(async () => {
        const letter = describe(d)
        const headers: TransportHeaders = {}
        for (const [k, v] of Object.entries(d.headers)) if (!DROPPED.has(k)) headers[k] = v
        try {
          await transport.publish(actor, d.body, { headers })
        } catch (err) {
          failure = new Error(`the broker refused the replayed message${letter.id ? ` ${letter.id}` : ''}; it stays in the DLQ: ${errorMessage(err)}`, { cause: err })
          await d.release().catch(() => undefined)
          finish()
          return
        }
        await d.ack()
        result.replayed++
        result.reasons[letter.reason] = (result.reasons[letter.reason] ?? 0) + 1
        o.onReplayed?.(letter)
        if (result.replayed >= expected) finish()
      })
    },
    { prefetch: 1 },
  )
  let timer: NodeJS.Timeout | undefined
  await Promise.race([finished, new Promise<void>((r) => (timer = setTimeout(r, o.timeoutMs ?? 60_000)))])
  clearTimeout(timer)
  await sub.cancel()
  await chain
  if (failure) throw Object.assign(failure, { result })
  return result
}
