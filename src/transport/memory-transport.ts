/**
 * In-process transport for the local demo and unit tests (SPEC §3: never for production). It keeps
 * the semantics the sidecar relies on: bounded prefetch, ack, delayed retry with an attempt
 * counter, dead letters with reason headers, unroutable publishes rejected, and unsettled
 * deliveries returned (marked redelivered) when a consumer's transport closes.
 */
import { errors } from '../errors.js'
import { actorOfQueue, dlqName, queueName } from '../names.js'
import { attemptOf, openDelivery, runHandler, type OpenDelivery } from './delivery.js'
import {
  type ConsumeOptions,
  type DeliveryHandler,
  type PublishOptions,
  type QueueStats,
  type Subscription,
  type Transport,
  type TransportHeaders,
} from './transport.js'

interface StoredMessage {
  body: Buffer
  headers: TransportHeaders
  /** Deliveries of this copy so far (counts broker redeliveries, like RabbitMQ's redelivered flag). */
  deliveries: number
}

interface Consumer {
  handler: DeliveryHandler
  prefetch: number
  inFlight: number
  owner: MemoryTransport
  cancelled: boolean
}

class MemoryQueue {
  readonly messages: StoredMessage[] = []
  readonly consumers: Consumer[] = []
  /** Delivered, not yet settled. */
  inFlight = 0
  private next = 0
  constructor(readonly name: string) {}

  /** Round-robin over consumers with free prefetch slots. */
  pickConsumer(): Consumer | undefined {
    const n = this.consumers.length
    for (let i = 0; i < n; i++) {
      const c = this.consumers[(this.next + i) % n]
      if (c && !c.cancelled && c.inFlight < c.prefetch) {
        this.next = (this.next + i + 1) % n
        return c
      }
    }
    return undefined
  }
}

/** The shared "broker": transports created on the same broker see the same queues. */
export class MemoryBroker {
  readonly queues = new Map<string, MemoryQueue>()
  private readonly timers = new Set<NodeJS.Timeout>()

  queue(name: string): MemoryQueue | undefined {
    return this.queues.get(name)
  }

  ensure(name: string): MemoryQueue {
    let q = this.queues.get(name)
    if (!q) {
      q = new MemoryQueue(name)
      this.queues.set(name, q)
    }
    return q
  }

  enqueue(name: string, msg: StoredMessage, front = false): void {
    const q = this.queues.get(name)
    // A queue deleted while a retry timer was pending: the message has nowhere to go. Recreating
    // the queue would hide the deletion, so the message is dropped exactly as a broker would.
    if (!q) return
    if (front) q.messages.unshift(msg)
    else q.messages.push(msg)
    this.dispatch(q)
  }

  later(ms: number, fn: () => void): void {
    const t = setTimeout(() => {
      this.timers.delete(t)
      fn()
    }, ms)
    this.timers.add(t)
  }

  dispatch(q: MemoryQueue): void {
    while (q.messages.length > 0) {
      const c = q.pickConsumer()
      if (!c) return
      const msg = q.messages.shift() as StoredMessage
      c.inFlight++
      q.inFlight++
      msg.deliveries++
      c.owner.deliver(q, c, msg)
    }
  }

  /** Cancels pending retry timers (test teardown). */
  shutdown(): void {
    for (const t of this.timers) clearTimeout(t)
    this.timers.clear()
  }
}

const defaultBroker = new MemoryBroker()

export interface MemoryTransportOptions {
  /** Broker shared by transports that must see each other's queues. @default a process-wide broker */
  broker?: MemoryBroker
  /** Create queues on first publish instead of rejecting as unroutable. @default false */
  autoCreateQueues?: boolean
}

export class MemoryTransport implements Transport {
  readonly name = 'memory' as const
  readonly broker: MemoryBroker
  private readonly autoCreate: boolean
  private closed = false
  private readonly unsettled = new Set<OpenDelivery>()
  private readonly consumers = new Set<{ q: MemoryQueue; c: Consumer }>()

  constructor(options: MemoryTransportOptions = {}) {
    this.broker = options.broker ?? defaultBroker
    this.autoCreate = options.autoCreateQueues ?? false
  }

  async connect(): Promise<void> {
    this.assertOpen()
  }

  isReady(): boolean {
    return !this.closed
  }

  async ensureQueue(actor: string, options: { deadLetterQueue?: boolean } = {}): Promise<void> {
    this.assertOpen()
    this.broker.ensure(queueName(actor))
    if (options.deadLetterQueue !== false) this.broker.ensure(dlqName(actor))
  }

  async publish(actor: string, body: Buffer, options: PublishOptions = {}): Promise<void> {
    this.assertOpen()
    const name = queueName(actor)
    if (!this.broker.queue(name)) {
      if (!this.autoCreate) {
        throw new errors.ASYA_ERR_TRANSPORT_UNROUTABLE(name, `for actor ${actor}`, { details: { queue: name } })
      }
      this.broker.ensure(name)
    }
    // Copy: the caller may reuse its buffer, a broker never shares memory with a publisher.
    this.broker.enqueue(name, { body: Buffer.from(body), headers: { ...(options.headers ?? {}) }, deliveries: 0 })
  }

  async consume(actor: string, handler: DeliveryHandler, options: ConsumeOptions): Promise<Subscription> {
    this.assertOpen()
    const q = this.broker.queue(queueName(actor))
    if (!q) throw new errors.ASYA_ERR_TRANSPORT_QUEUE_MISSING(`queue ${queueName(actor)}`)
    const c: Consumer = { handler, prefetch: Math.max(1, options.prefetch), inFlight: 0, owner: this, cancelled: false }
    q.consumers.push(c)
    const entry = { q, c }
    this.consumers.add(entry)
    queueMicrotask(() => this.broker.dispatch(q))
    return {
      cancel: async () => {
        this.removeConsumer(entry)
      },
      setPrefetch: async (n: number) => {
        c.prefetch = Math.max(1, n)
        queueMicrotask(() => this.broker.dispatch(q))
      },
    }
  }

  private removeConsumer(entry: { q: MemoryQueue; c: Consumer }): void {
    entry.c.cancelled = true
    const i = entry.q.consumers.indexOf(entry.c)
    if (i >= 0) entry.q.consumers.splice(i, 1)
    this.consumers.delete(entry)
  }

  /** Called by the broker: hands one message to a consumer of this transport. */
  deliver(q: MemoryQueue, c: Consumer, msg: StoredMessage): void {
    const actor = actorOfQueue(q.name) ?? q.name
    const broker = this.broker
    const open = openDelivery(
      { actor, body: msg.body, headers: msg.headers, attempt: attemptOf(msg.headers, msg.deliveries - 1), redelivered: msg.deliveries > 1 },
      {
        ack: async () => undefined,
        retry: async (delayMs, headers) => broker.later(delayMs, () => broker.enqueue(q.name, { body: msg.body, headers, deliveries: 0 })),
        deadLetter: async (headers) => {
          // Like the RabbitMQ transport, which re-declares a DLQ it owns: a dead letter is never dropped.
          broker.ensure(dlqName(actor))
          broker.enqueue(dlqName(actor), { body: msg.body, headers, deliveries: 0 })
        },
        release: async () => {
          msg.deliveries-- // not an attempt
          broker.enqueue(q.name, msg, true)
        },
        giveBack: () => broker.enqueue(q.name, msg, true),
        done: () => {
          this.unsettled.delete(open)
          c.inFlight--
          q.inFlight--
          // Free slot: the next message may go to this or another consumer.
          queueMicrotask(() => broker.dispatch(q))
        },
      },
    )
    this.unsettled.add(open)
    runHandler(c.handler, open, undefined)
  }

  async messageCount(actor: string): Promise<number> {
    const q = this.broker.queue(queueName(actor))
    if (!q) throw new errors.ASYA_ERR_TRANSPORT_QUEUE_MISSING(`queue ${queueName(actor)}`)
    return q.messages.length
  }

  async inspectQueue(actor: string): Promise<QueueStats> {
    const q = this.broker.queue(queueName(actor))
    if (!q) throw new errors.ASYA_ERR_TRANSPORT_QUEUE_MISSING(`queue ${queueName(actor)}`)
    return { messages: q.messages.length, inFlight: q.inFlight, consumers: q.consumers.filter((c) => !c.cancelled).length }
  }

  async deleteQueue(actor: string): Promise<void> {
    const name = queueName(actor)
    const q = this.broker.queue(name)
    if (!q) return
    for (const c of q.consumers) c.cancelled = true
    this.broker.queues.delete(name)
  }

  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    for (const entry of [...this.consumers]) this.removeConsumer(entry)
    // Unsettled deliveries go back to their queue, as a broker does when a channel closes.
    for (const open of [...this.unsettled]) open.giveBack()
    this.unsettled.clear()
  }

  private assertOpen(): void {
    if (this.closed) throw new errors.ASYA_ERR_TRANSPORT_CLOSED('memory transport')
  }
}
