/**
 * The Transport interface: what the sidecar, the controller, the prober and the demo need from a
 * message broker. Implementations: memory (local/dev/tests only), RabbitMQ, SQS, NATS JetStream. One conformance
 * suite (test/transport/conformance.ts) runs against every implementation.
 *
 * Addressing is by *actor name*: actor `a` owns queue `asya-a` (see queueName()). Dead letters of
 * `a` live in `asya-a-dlq`, which is addressable as the pseudo-actor `a-dlq` (queueName('a-dlq')
 * === dlqName('a')), so tools can consume a DLQ like any queue.
 */

import type { TransportName } from '../names.js'

/** Transport-level metadata (AMQP headers / SQS message attributes), never part of the envelope. */
export type TransportHeaders = Record<string, string>

export interface DeadLetterInfo {
  /** Machine-readable reason, e.g. `delivery_limit`, `parse_error`, `publish_failed`. */
  reason: string
  /** Last error message, if any. */
  error?: string
  /** Attempts made. @default the delivery's `attempt` */
  attempts?: number
}

export interface RetryInfo {
  reason: string
  error?: string
  /**
   * Extra transport headers for the retried copy (the sidecar records which fan-out children were
   * already confirmed, so a retry does not publish them twice). SQS: a retry with headers is a
   * re-send with DelaySeconds plus a delete, since attributes of a message cannot be changed.
   */
  headers?: TransportHeaders
}

/** One message handed to a consumer. Exactly one of ack/retry/deadLetter/release must be called. */
export interface Delivery {
  /** Actor whose queue this came from. */
  readonly actor: string
  readonly body: Buffer
  readonly headers: TransportHeaders
  /**
   * 1-based delivery attempt as counted by the transport (attempt header carried by retry(),
   * SQS ApproximateReceiveCount, broker redeliveries). Drives retry and delivery-limit decisions.
   */
  readonly attempt: number
  /** The broker says this message may have been delivered before (e.g. after a connection loss). */
  readonly redelivered: boolean
  /** Removes the message for good. */
  ack(): Promise<void>
  /**
   * Makes the message deliverable again after `delayMs` (> 0; never an immediate requeue), with
   * `attempt + 1`. The original is removed only once the delayed copy is safely stored.
   */
  retry(delayMs: number, info: RetryInfo): Promise<void>
  /** Moves the message to `asya-<actor>-dlq` (body unchanged, reason/error/attempts in headers). */
  deadLetter(info: DeadLetterInfo): Promise<void>
  /** Gives the message back at once without counting an attempt (prefetched but never started). */
  release(): Promise<void>
}

export type DeliveryHandler = (delivery: Delivery) => void | Promise<void>

export interface ConsumeOptions {
  /** Maximum deliveries handed out and not yet settled. */
  prefetch: number
}

export interface Subscription {
  /** Stops new deliveries. Deliveries already handed out can still be settled. */
  cancel(): Promise<void>
  /**
   * Changes the bound of unsettled deliveries of this running subscription. Resolves once new
   * deliveries follow the new bound. Deliveries handed out before the change may not count
   * against it (RabbitMQ binds a window to a consumer, so a change starts a new consumer): while
   * they are unsettled, up to old + new bound can be outstanding.
   */
  setPrefetch(prefetch: number): Promise<void>
}

export interface PublishOptions {
  headers?: TransportHeaders
}

/**
 * What a queue holds right now, as far as the broker can tell. A field the transport cannot
 * know is undefined (shown as `-` by `asya queues`), never a made-up 0.
 */
export interface QueueStats {
  /** Messages ready for delivery (not in flight). */
  messages: number
  /** Delivered and not yet settled (RabbitMQ: unacked, from the management API; SQS: not visible). */
  inFlight?: number
  /** Consumers attached to the queue (SQS has no such notion). */
  consumers?: number
}

export interface Transport {
  readonly name: TransportName
  /**
   * Connects (retrying with backoff until it succeeds or close() is called). After a connection
   * loss the transport reconnects by itself, re-declares what it owns and resumes consuming.
   */
  connect(): Promise<void>
  /** True while connected (drives /readyz). */
  isReady(): boolean
  /** Idempotently ensures `asya-<actor>` exists, and `asya-<actor>-dlq` unless `deadLetterQueue` is false. */
  ensureQueue(actor: string, options?: { deadLetterQueue?: boolean }): Promise<void>
  /**
   * Publishes to the queue of `actor`; resolves only when the broker has confirmed the message.
   * Rejects with an AsyaError: ASYA_ERR_TRANSPORT_UNROUTABLE (no such queue),
   * ASYA_ERR_TRANSPORT_PUBLISH, ASYA_ERR_TRANSPORT_CONNECTION, ASYA_ERR_PAYLOAD_TOO_LARGE.
   */
  publish(actor: string, body: Buffer, options?: PublishOptions): Promise<void>
  consume(actor: string, handler: DeliveryHandler, options: ConsumeOptions): Promise<Subscription>
  /** Messages ready in the queue of `actor` (not in flight). For tests, the prober and tools. */
  messageCount(actor: string): Promise<number>
  /**
   * Depth, in-flight and consumers of the queue of `actor` (`asya queues`, `asya actors`).
   * Rejects with ASYA_ERR_TRANSPORT_QUEUE_MISSING when there is no such queue.
   */
  inspectQueue(actor: string): Promise<QueueStats>
  /** Deletes the queue of `actor` (tests and queue-retention `delete`). */
  deleteQueue(actor: string): Promise<void>
  /** Stops consuming and closes connections. Unsettled deliveries return to their queue. */
  close(): Promise<void>
}
