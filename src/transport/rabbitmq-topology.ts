/**
 * The RabbitMQ topology of an actor, declared with exactly the same arguments by the sidecar and
 * the controller (a mismatch would be a PRECONDITION_FAILED on one side). Upstream-compatible:
 * durable topic exchange `asya`, durable queue `asya-<a>` bound with routing key `<a>`.
 * Our additions: the DLQ `asya-<a>-dlq` bound with `<a>-dlq`, and retry tier queues.
 *
 * Queue type (SPEC §3): quorum by default. The broker then counts deliveries
 * (`x-delivery-count`), so a message that kills its consumer every time is dead-lettered to
 * `asya-<a>-dlq` by the broker after `x-delivery-limit` returns (SPEC §11 #22), and retry tiers
 * dead-letter back at-least-once (`x-dead-letter-strategy: at-least-once`, which needs
 * `x-overflow: reject-publish`): a tier message whose target queue is missing stays in the tier
 * and is re-sent by the broker (every `dead_letter_worker_publisher_confirm_timeout`, 180 s by
 * default) instead of being dropped. `classic` keeps upstream's plain durable queues.
 *
 * An existing queue is never re-created: declared with other arguments (406), it is used as it
 * is and the mismatch is returned to the caller to report (`declareActorQueues`).
 */
import type { Channel } from 'amqplib'
import { errorMessage } from '../errors.js'
import { dlqActor, dlqName, queueName, retryQueueName } from '../names.js'

export type RabbitQueueType = 'quorum' | 'classic'

export interface QueueTopology {
  /** ASYA_RABBITMQ_QUEUE_TYPE. @default quorum */
  queueType: RabbitQueueType
  /**
   * ASYA_DELIVERY_LIMIT: quorum actor queues get `x-delivery-limit` = this. The sidecar
   * dead-letters a message itself (with its reason) on the next delivery; the broker's limit
   * is the backstop for a consumer that dies before it can. @default 5
   */
  deliveryLimit: number
}

export const DEFAULT_QUEUE_TOPOLOGY: QueueTopology = { queueType: 'quorum', deliveryLimit: 5 }

/** Opens (or returns) a channel; a failed declare closes its channel, so each step asks again. */
export type ChannelSource = () => Promise<Channel>

/** An existing queue declared with other arguments, used as it is. */
export interface QueueMismatch {
  queue: string
  /** The queue is exactly our topology of the other type (e.g. classic from before quorum). */
  existingType?: RabbitQueueType
  /** The broker's PRECONDITION_FAILED text. */
  message: string
}

const quorumBase = { 'x-queue-type': 'quorum' }

export function actorQueueArguments(actor: string, exchange: string, t: QueueTopology): Record<string, unknown> {
  if (t.queueType === 'classic') return {}
  return {
    ...quorumBase,
    'x-delivery-limit': t.deliveryLimit,
    'x-dead-letter-exchange': exchange,
    'x-dead-letter-routing-key': dlqActor(actor),
    'x-dead-letter-strategy': 'at-least-once',
    'x-overflow': 'reject-publish',
  }
}

/** DLQs have no delivery limit: with no dead-letter target of their own it would drop dead letters. */
export function dlqArguments(t: QueueTopology): Record<string, unknown> {
  return t.queueType === 'classic' ? {} : { ...quorumBase }
}

export async function declareExchange(ch: Channel, exchange: string): Promise<void> {
  await ch.assertExchange(exchange, 'topic', { durable: true })
}

function replyCode(err: unknown): number | undefined {
  const code = (err as { code?: unknown } | null)?.code
  return typeof code === 'number' ? code : undefined
}

/**
 * Declares `queue` with `args`; when it exists with other arguments, checks whether it is our
 * topology of the other type (`other` args), and returns the mismatch instead of failing.
 */
async function assertOrAdopt(open: ChannelSource, queue: string, args: Record<string, unknown>, other: { type: RabbitQueueType; args: Record<string, unknown> }): Promise<QueueMismatch | undefined> {
  try {
    await (await open()).assertQueue(queue, { durable: true, arguments: args })
    return undefined
  } catch (err) {
    if (replyCode(err) !== 406) throw err
    const message = errorMessage(err).replace(/^.*PRECONDITION_FAILED - /, '')
    try {
      await (await open()).assertQueue(queue, { durable: true, arguments: other.args })
      return { queue, existingType: other.type, message }
    } catch (probe) {
      if (replyCode(probe) !== 406) throw probe
      return { queue, message }
    }
  }
}

function otherType(t: QueueTopology): QueueTopology {
  return { ...t, queueType: t.queueType === 'quorum' ? 'classic' : 'quorum' }
}

/**
 * Queue + binding of `actor` and, unless disabled, its DLQ + binding. Existing queues with other
 * arguments are used as they are; the mismatches are returned (empty: all as configured).
 */
export async function declareActorQueues(open: ChannelSource, actor: string, exchange: string, withDlq = true, t: QueueTopology = DEFAULT_QUEUE_TOPOLOGY): Promise<QueueMismatch[]> {
  const out: QueueMismatch[] = []
  const o = otherType(t)
  const main = await assertOrAdopt(open, queueName(actor), actorQueueArguments(actor, exchange, t), { type: o.queueType, args: actorQueueArguments(actor, exchange, o) })
  if (main) out.push(main)
  await (await open()).bindQueue(queueName(actor), exchange, actor)
  if (withDlq) {
    const dlq = await assertOrAdopt(open, dlqName(actor), dlqArguments(t), { type: o.queueType, args: dlqArguments(o) })
    if (dlq) out.push(dlq)
    await (await open()).bindQueue(dlqName(actor), exchange, dlqActor(actor))
  }
  return out
}

/** Exchange + actor queues, as one call for the controller. */
export async function declareActorTopology(open: ChannelSource, actor: string, exchange: string, t: QueueTopology = DEFAULT_QUEUE_TOPOLOGY): Promise<QueueMismatch[]> {
  await declareExchange(await open(), exchange)
  return declareActorQueues(open, actor, exchange, true, t)
}

/** A channel source over one channel that re-opens it after a failed declare closed it. */
export function reopening(create: () => Promise<Channel>): ChannelSource {
  let ch: Channel | undefined
  let closed = false
  return async () => {
    if (ch && !closed) return ch
    const c = await create()
    closed = false
    c.on('error', () => undefined) // surfaced through the failing operation
    c.on('close', () => {
      if (ch === c) closed = true
    })
    ch = c
    return c
  }
}

/**
 * Delayed retries without a hot loop: a message to be retried after `d` ms is parked in the tier
 * queue `asya-<a>-retry-<tier>` whose `x-message-ttl` is the tier; on expiry RabbitMQ
 * dead-letters it back to the exchange with routing key `<a>`. One TTL per queue keeps expiry
 * FIFO-correct (per-message TTLs only expire at the head of a queue). Delays are rounded to a
 * small set of tiers so an actor never owns more than a handful of retry queues.
 */
const TIER_STEPS = [1, 1.5, 2, 3, 5, 7.5]

export function retryTierMs(delayMs: number): number {
  const d = Math.max(1, delayMs)
  const exp = Math.floor(Math.log10(d))
  let best = 1
  let bestErr = Infinity
  for (const e of [exp - 1, exp, exp + 1]) {
    for (const s of TIER_STEPS) {
      const v = Math.round(s * 10 ** e)
      if (v < 1) continue
      const err = Math.abs(Math.log(v / d))
      if (err < bestErr) {
        bestErr = err
        best = v
      }
    }
  }
  return best
}

/**
 * Unused tier queues expire. RabbitMQ counts only consumers and re-declarations as "use", not
 * publishes, so the expiry is kept far above the TTL and publishers re-declare periodically.
 * An hour also outlasts a missing actor queue: the controller re-creates it within one resync
 * (5 min) and the broker re-sends the held messages within 3 min of that; a tier that expired
 * with messages held in it would take them along.
 */
export function retryQueueExpiresMs(tierMs: number): number {
  return tierMs + 60 * 60_000
}

/**
 * A retry tier queue. On quorum it dead-letters back at-least-once; an existing tier of the other
 * type (from before a queue-type change) is used as it is: tiers are short-lived, and the
 * messages in it still reach the actor.
 */
export async function declareRetryQueue(open: ChannelSource, actor: string, exchange: string, tierMs: number, t: QueueTopology = DEFAULT_QUEUE_TOPOLOGY): Promise<{ queue: string; mismatch?: QueueMismatch }> {
  const name = retryQueueName(actor, tierMs)
  const mismatch = await assertOrAdopt(open, name, retryQueueArguments(actor, exchange, tierMs, t), { type: otherType(t).queueType, args: retryQueueArguments(actor, exchange, tierMs, otherType(t)) })
  return mismatch ? { queue: name, mismatch } : { queue: name }
}

export function retryQueueArguments(actor: string, exchange: string, tierMs: number, t: QueueTopology = DEFAULT_QUEUE_TOPOLOGY): Record<string, unknown> {
  return {
    ...(t.queueType === 'quorum' ? { ...quorumBase, 'x-dead-letter-strategy': 'at-least-once', 'x-overflow': 'reject-publish' } : {}),
    'x-message-ttl': tierMs,
    'x-dead-letter-exchange': exchange,
    'x-dead-letter-routing-key': actor,
    'x-expires': retryQueueExpiresMs(tierMs),
  }
}
