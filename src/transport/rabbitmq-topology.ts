/**
 * The RabbitMQ topology of an actor, declared with exactly the same arguments by the sidecar and
 * the controller (a mismatch would be a PRECONDITION_FAILED on one side). Upstream-compatible:
 * durable topic exchange `asya`, durable queue `asya-<a>` bound with routing key `<a>`.
 * Our additions: the DLQ `asya-<a>-dlq` bound with `<a>-dlq`, and retry tier queues.
 */
import type { Channel } from 'amqplib'
import { dlqName, queueName } from '../envelope.js'

export async function declareExchange(ch: Channel, exchange: string): Promise<void> {
  await ch.assertExchange(exchange, 'topic', { durable: true })
}

/** Queue + binding of `actor` and, unless disabled, its DLQ + binding. */
export async function declareActorQueues(ch: Channel, actor: string, exchange: string, withDlq = true): Promise<void> {
  await ch.assertQueue(queueName(actor), { durable: true })
  await ch.bindQueue(queueName(actor), exchange, actor)
  if (withDlq) {
    await ch.assertQueue(dlqName(actor), { durable: true })
    await ch.bindQueue(dlqName(actor), exchange, `${actor}-dlq`)
  }
}

/** Exchange + actor queues, as one call for the controller. */
export async function declareActorTopology(ch: Channel, actor: string, exchange: string): Promise<void> {
  await declareExchange(ch, exchange)
  await declareActorQueues(ch, actor, exchange, true)
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

export function retryQueueName(actor: string, tierMs: number): string {
  return `${queueName(actor)}-retry-${tierMs}`
}

/**
 * Unused tier queues expire. RabbitMQ counts only consumers and re-declarations as "use", not
 * publishes, so the expiry is kept far above the TTL and publishers re-declare periodically.
 */
export function retryQueueExpiresMs(tierMs: number): number {
  return tierMs + 15 * 60_000
}

export async function declareRetryQueue(ch: Channel, actor: string, exchange: string, tierMs: number): Promise<string> {
  const name = retryQueueName(actor, tierMs)
  await ch.assertQueue(name, {
    durable: true,
    arguments: {
      'x-message-ttl': tierMs,
      'x-dead-letter-exchange': exchange,
      'x-dead-letter-routing-key': actor,
      'x-expires': retryQueueExpiresMs(tierMs),
    },
  })
  return name
}
