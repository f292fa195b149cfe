/**
 * RabbitMQ transport (amqplib). Safety settings follow SPEC §3: persistent messages, `mandatory`
 * publishes whose returns are errors, publisher confirms awaited before anything is acked, a
 * bounded prefetch, delayed retries through TTL tier queues (see rabbitmq-topology.ts) and
 * `asya-<a>-dlq` for dead letters. The transport owns reconnection: on a lost connection it
 * reconnects with backoff, re-declares what it declared before and resumes every consumer.
 */
import { setMaxListeners } from 'node:events'
import amqp, { type Channel, type ChannelModel, type ConfirmChannel, type ConsumeMessage, type Message } from 'amqplib'
import { AckCoalescer } from './ack-coalescer.js'
import { errorMessage, errors, isAsyaError } from '../errors.js'
import { DEFAULT_EXCHANGE, dlqActor, queueName, retryQueueName } from '../names.js'
import type { Logger } from '../logger.js'
import { backoffDelay, sleep, type BackoffOptions } from '../backoff.js'
import { attemptOf, openDelivery, runHandler } from './delivery.js'
import {
  type ConsumeOptions,
  type DeliveryHandler,
  type PublishOptions,
  type QueueStats,
  type Subscription,
  type Transport,
  type TransportHeaders,
} from './transport.js'
import { DEFAULT_QUEUE_TOPOLOGY, declareActorQueues, declareExchange, declareRetryQueue, retryTierMs, type QueueMismatch, type QueueTopology } from './rabbitmq-topology.js'
import { SingleFlight } from '../single-flight.js'

export interface RabbitMqConnectionParts {
  host: string
  /** @default 5672 (5671 with tls) */
  port?: number
  /** @default 'guest' */
  username?: string
  /** @default 'guest' */
  password?: string
  /** @default '/' */
  vhost?: string
  /** @default false */
  tls?: boolean
}

/** Builds an AMQP URL with every credential part percent-escaped (upstream defect SPEC §11.14). */
export function amqpUrl(p: RabbitMqConnectionParts): string {
  const tls = p.tls ?? false
  const port = p.port ?? (tls ? 5671 : 5672)
  const vhost = (p.vhost ?? '/') === '/' ? '%2F' : encodeURIComponent(p.vhost ?? '/')
  const user = encodeURIComponent(p.username ?? 'guest')
  const pass = encodeURIComponent(p.password ?? 'guest')
  return `${tls ? 'amqps' : 'amqp'}://${user}:${pass}@${p.host}:${port}/${vhost}`
}

/** URL with the password masked, for logs. */
export function redactUrl(url: string): string {
  return url.replace(/(\/\/[^:/@]*:)[^@]*@/, '$1***@')
}

export interface RabbitMqTransportOptions {
  /** amqp(s):// URL with escaped credentials (see {@link amqpUrl}). */
  url: string
  /** Topic exchange all actor queues are bound to. @default 'asya' */
  exchange?: string
  logger?: Logger
  /** Reconnect backoff. @default { initialMs: 200, maxMs: 10000 } */
  reconnectBackoff?: BackoffOptions
  /** AMQP heartbeat: how fast a dead TCP connection is noticed. @default 10 */
  heartbeatSeconds?: number
  /** How long a publish waits for a (re)connection plus the broker's confirm. @default 30000 */
  publishTimeoutMs?: number
  /** Shown in the management UI. @default 'asya' */
  connectionName?: string
  /**
   * Management API base URL (e.g. `http://rabbitmq:15672`), credentials taken from `url`. Only
   * inspectQueue uses it, for the unacked (in-flight) count that AMQP does not expose.
   * @default undefined (in-flight unknown)
   */
  managementUrl?: string
  /** Queue type and broker delivery limit of queues this transport declares. @default quorum, 5 */
  topology?: QueueTopology
}

interface ConsumerRecord {
  actor: string
  handler: DeliveryHandler
  prefetch: number
  cancelled: boolean
  channel?: Channel
  consumerTag?: string
  /** Prefetch the current consumer was started with (basic.qos binds at basic.consume). */
  consumerPrefetch?: number
  /** Serialises prefetch changes. */
  resizing?: Promise<void>
}

const DEFAULT_BACKOFF: BackoffOptions = { initialMs: 200, maxMs: 10_000 }
/** Set by quorum queues on every delivery: earlier deliveries of this message copy. */
const DELIVERY_COUNT_HEADER = 'x-delivery-count'

export class RabbitMqTransport implements Transport {
  readonly name = 'rabbitmq' as const
  private readonly url: string
  private readonly exchange: string
  private readonly logger: Logger | undefined
  private readonly backoff: BackoffOptions
  private readonly heartbeat: number
  private readonly publishTimeoutMs: number
  private readonly connectionName: string
  private readonly managementUrl: string | undefined
  private readonly queueTopology: QueueTopology
  /** Queues already reported as existing with other arguments (reported once per process). */
  private readonly mismatchReported = new Set<string>()

  private conn: ChannelModel | undefined
  private pubChannel: ConfirmChannel | undefined
  private topologyChannel: Channel | undefined
  private connected = false
  private closed = false
  private readonly connecting = new SingleFlight(() => this.connectLoop())
  private readonly closeController = new AbortController()
  private connectedWaiters: Array<() => void> = []
  private readonly owned = new Map<string, boolean>() // actor -> with DLQ
  private readonly consumers = new Set<ConsumerRecord>()
  /** Consumer channels still open (also of cancelled subscriptions, whose deliveries may settle). */
  private readonly consumerChannels = new Set<Channel>()
  /** Coalesced acks of each consumer channel. */
  private readonly ackers = new WeakMap<Channel, AckCoalescer>()
  private readonly retryQueuesDeclaredAt = new Map<string, number>()
  private readonly returned = new Set<string>()
  private publishSeq = 0

  constructor(options: RabbitMqTransportOptions) {
    this.url = options.url
    this.exchange = options.exchange ?? DEFAULT_EXCHANGE
    this.logger = options.logger
    this.backoff = options.reconnectBackoff ?? DEFAULT_BACKOFF
    this.heartbeat = options.heartbeatSeconds ?? 10
    this.publishTimeoutMs = options.publishTimeoutMs ?? 30_000
    this.connectionName = options.connectionName ?? DEFAULT_EXCHANGE
    this.managementUrl = options.managementUrl?.replace(/\/+$/, '')
    this.queueTopology = options.topology ?? DEFAULT_QUEUE_TOPOLOGY
    // Every pending backoff sleep listens on it; many consumers may be re-subscribing at once.
    setMaxListeners(0, this.closeController.signal)
  }

  isReady(): boolean {
    return this.connected && !this.closed
  }

  /** Resolves once connected; keeps retrying with backoff until then (or until close()). */
  connect(): Promise<void> {
    if (this.closed) return Promise.reject(new errors.ASYA_ERR_TRANSPORT_CLOSED('RabbitMQ transport'))
    if (this.connected) return Promise.resolve()
    return this.connecting.run()
  }

  private async connectLoop(): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      if (this.closed) throw new errors.ASYA_ERR_TRANSPORT_CLOSED('RabbitMQ transport')
      try {
        await this.establish()
        return
      } catch (err) {
        if (this.closed) throw new errors.ASYA_ERR_TRANSPORT_CLOSED('RabbitMQ transport')
        const delay = backoffDelay(attempt, this.backoff)
        this.logger?.warn({ err: errorMessage(err), url: redactUrl(this.url), retryInMs: Math.round(delay) }, 'RabbitMQ connection failed; retrying')
        await sleep(delay, this.closeController.signal).catch(() => undefined)
      }
    }
  }

  private async establish(): Promise<void> {
    const sep = this.url.includes('?') ? '&' : '?'
    const url = /[?&]heartbeat=/.test(this.url) ? this.url : `${this.url}${sep}heartbeat=${this.heartbeat}`
    // noDelay: amqplib leaves Nagle on, and a small publish written after another small frame then
    // waits for the broker's delayed ACK (~40 ms per hop).
    const conn = await amqp.connect(url, { noDelay: true, clientProperties: { connection_name: this.connectionName } })
    let lost = false
    const onLost = (err?: Error): void => {
      if (lost) return
      lost = true
      if (this.conn === conn) this.handleLost(err)
    }
    conn.on('error', (err: Error) => this.logger?.warn({ err: err.message }, 'RabbitMQ connection error'))
    conn.on('close', (err?: Error) => onLost(err))
    conn.on('blocked', (reason: string) => this.logger?.warn({ reason }, 'RabbitMQ blocked publishing (resource alarm)'))
    try {
      const pub = await conn.createConfirmChannel()
      pub.on('error', (err: Error) => this.logger?.warn({ err: err.message }, 'RabbitMQ publish channel error'))
      pub.on('return', (msg: Message) => {
        const id = msg.properties.messageId as string | undefined
        if (id) this.returned.add(id)
      })
      // A channel-level error (e.g. 404 on a deleted exchange) closes only the channel: reconnect
      // the whole thing so publishing never silently stops.
      pub.on('close', () => {
        if (this.pubChannel === pub && !lost) conn.close().catch(() => undefined)
      })
      await declareExchange(pub, this.exchange)
      this.conn = conn
      this.pubChannel = pub
      this.topologyChannel = undefined
      this.retryQueuesDeclaredAt.clear()
      for (const [actor, withDlq] of this.owned) await this.declareQueues(actor, withDlq)
      for (const c of this.consumers) if (!c.cancelled) await this.subscribe(c)
    } catch (err) {
      lost = true
      await conn.close().catch(() => undefined)
      throw err
    }
    this.connected = true
    this.logger?.info({ url: redactUrl(this.url) }, 'RabbitMQ connected')
    const waiters = this.connectedWaiters
    this.connectedWaiters = []
    for (const w of waiters) w()
  }

  private handleLost(err?: Error): void {
    this.connected = false
    this.conn = undefined
    this.pubChannel = undefined
    this.topologyChannel = undefined
    for (const c of this.consumers) {
      c.channel = undefined
      c.consumerTag = undefined
    }
    if (this.closed) return
    this.logger?.warn({ err: err?.message }, 'RabbitMQ connection lost; reconnecting')
    this.connect().catch(() => undefined)
  }

  private waitConnected(timeoutMs: number): Promise<void> {
    if (this.connected) return Promise.resolve()
    if (this.closed) return Promise.reject(new errors.ASYA_ERR_TRANSPORT_CLOSED('RabbitMQ transport'))
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.connectedWaiters = this.connectedWaiters.filter((w) => w !== done)
        reject(new errors.ASYA_ERR_TRANSPORT_CONNECTION(`not connected to RabbitMQ within ${timeoutMs} ms`))
      }, timeoutMs)
      const done = (): void => {
        clearTimeout(timer)
        resolve()
      }
      this.connectedWaiters.push(done)
    })
  }

  /** A plain channel for declares; a failed declare closes it, so it is re-created on demand. */
  private async topology(): Promise<Channel> {
    if (this.topologyChannel) return this.topologyChannel
    const conn = this.conn
    if (!conn) throw new errors.ASYA_ERR_TRANSPORT_CONNECTION('not connected to RabbitMQ')
    const ch = await conn.createChannel()
    ch.on('error', () => undefined) // surfaced through the failing operation
    ch.on('close', () => {
      if (this.topologyChannel === ch) this.topologyChannel = undefined
    })
    this.topologyChannel = ch
    return ch
  }

  private async declareQueues(actor: string, withDlq: boolean): Promise<void> {
    const mismatches = await declareActorQueues(() => this.topology(), actor, this.exchange, withDlq, this.queueTopology)
    for (const m of mismatches) this.reportMismatch(m)
  }

  /** An existing queue with other arguments is used as it is (never re-created) and said so once. */
  private reportMismatch(m: QueueMismatch): void {
    if (this.mismatchReported.has(m.queue)) return
    this.mismatchReported.add(m.queue)
    const wanted = this.queueTopology.queueType
    this.logger?.warn(
      {
        code: 'ASYA_ERR_TRANSPORT_QUEUE_MISMATCH',
        queue: m.queue,
        wanted,
        existing: m.existingType ?? 'other arguments',
        broker: m.message,
        ...(m.existingType === 'classic' ? { lost: 'crash-loop detection: the broker does not count deliveries on a classic queue, so a message that kills the sidecar every time is redelivered without end' } : {}),
      },
      m.existingType !== undefined
        ? `queue ${m.queue} is a ${m.existingType} queue (ASYA_RABBITMQ_QUEUE_TYPE=${wanted}); used as it is, never re-created (docs/operations.md: queue type migration)`
        : `queue ${m.queue} exists with other arguments; used as it is, never re-created`,
    )
  }

  async ensureQueue(actor: string, options: { deadLetterQueue?: boolean } = {}): Promise<void> {
    const withDlq = options.deadLetterQueue !== false
    this.owned.set(actor, withDlq || (this.owned.get(actor) ?? false))
    await this.waitConnected(this.publishTimeoutMs)
    await this.declareQueues(actor, withDlq)
  }

  publish(actor: string, body: Buffer, options: PublishOptions = {}): Promise<void> {
    return this.publishTo(this.exchange, actor, body, options.headers ?? {}, actor)
  }

  /**
   * One confirmed, persistent, mandatory publish. A basic.return (no queue bound) arrives before
   * the broker's ack for the same message, so it is recorded by messageId and turns the ack into
   * an UNROUTABLE error.
   */
  private async publishTo(exchange: string, routingKey: string, body: Buffer, headers: TransportHeaders, actorForErrors: string): Promise<void> {
    const deadline = Date.now() + this.publishTimeoutMs
    await this.waitConnected(this.publishTimeoutMs)
    const ch = this.pubChannel
    if (!ch) throw new errors.ASYA_ERR_TRANSPORT_CONNECTION('not connected to RabbitMQ')
    const messageId = `p${process.pid}-${++this.publishSeq}`
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => {
          this.returned.delete(messageId)
          reject(new errors.ASYA_ERR_TRANSPORT_PUBLISH(`no publisher confirm for ${queueName(actorForErrors)} within ${this.publishTimeoutMs} ms`))
        },
        Math.max(1, deadline - Date.now()),
      )
      try {
        ch.publish(
          exchange,
          routingKey,
          body,
          { persistent: true, mandatory: true, contentType: 'application/json', messageId, headers },
          (err: unknown) => {
            clearTimeout(timer)
            const wasReturned = this.returned.delete(messageId)
            if (err) {
              reject(new errors.ASYA_ERR_TRANSPORT_PUBLISH(`publish to ${queueName(actorForErrors)} not confirmed: ${errorMessage(err)}`, { cause: err }))
            } else if (wasReturned) {
              reject(
                new errors.ASYA_ERR_TRANSPORT_UNROUTABLE(`bound for routing key ${routingKey}`, `queue ${queueName(actorForErrors)} missing`, {
                  details: { queue: queueName(actorForErrors), routingKey },
                }),
              )
            } else resolve()
          },
        )
      } catch (err) {
        clearTimeout(timer)
        reject(new errors.ASYA_ERR_TRANSPORT_CONNECTION(`publish failed: ${errorMessage(err)}`, { cause: err }))
      }
    })
  }

  /** Publish; if our own queue vanished (deleted), re-declare it once and publish again. */
  private async publishOwned(actor: string, routingKey: string, body: Buffer, headers: TransportHeaders): Promise<void> {
    try {
      await this.publishTo(this.exchange, routingKey, body, headers, routingKey)
    } catch (err) {
      if (!isAsyaError(err, 'ASYA_ERR_TRANSPORT_UNROUTABLE') || !this.owned.has(actor)) throw err
      await this.declareQueues(actor, this.owned.get(actor) ?? true)
      await this.publishTo(this.exchange, routingKey, body, headers, routingKey)
    }
  }

  async consume(actor: string, handler: DeliveryHandler, options: ConsumeOptions): Promise<Subscription> {
    const record: ConsumerRecord = { actor, handler, prefetch: Math.max(1, options.prefetch), cancelled: false }
    this.consumers.add(record)
    await this.waitConnected(this.publishTimeoutMs)
    await this.subscribe(record)
    return {
      cancel: async () => {
        record.cancelled = true
        this.consumers.delete(record)
        await record.resizing // a consumer swap in progress finishes first (it sees `cancelled`)
        const { channel, consumerTag } = record
        if (channel && consumerTag) await channel.cancel(consumerTag).catch(() => undefined)
      },
      setPrefetch: (n: number) => {
        record.prefetch = Math.max(1, n)
        record.resizing = (record.resizing ?? Promise.resolve()).then(() => this.resize(record)).catch((err: unknown) => {
          this.logger?.warn({ err: errorMessage(err), actor: record.actor }, 'prefetch change failed; keeping the previous window')
        })
        return record.resizing
      },
    }
  }

  private async subscribe(record: ConsumerRecord): Promise<void> {
    const conn = this.conn
    if (!conn || record.cancelled) return
    if (this.owned.has(record.actor)) await this.declareQueues(record.actor, this.owned.get(record.actor) ?? true)
    const ch = await conn.createChannel()
    this.consumerChannels.add(ch)
    this.ackers.set(ch, new AckCoalescer(ch, this.logger))
    ch.on('error', (err: Error) => this.logger?.warn({ err: err.message, actor: record.actor }, 'RabbitMQ consumer channel error'))
    ch.on('close', () => {
      this.consumerChannels.delete(ch)
      // Channel closed while the connection lives (queue deleted, consumer-side error):
      // subscribe again after a pause. A lost connection is handled by the reconnect loop.
      if (record.channel !== ch) return
      record.channel = undefined
      record.consumerTag = undefined
      if (!record.cancelled && this.conn === conn && !this.closed) this.resubscribeLater(record, conn)
    })
    record.channel = ch
    await this.startConsumer(record, ch)
  }

  /** basic.qos + basic.consume on `ch` with the record's current prefetch. */
  private async startConsumer(record: ConsumerRecord, ch: Channel): Promise<void> {
    const prefetch = record.prefetch
    await ch.prefetch(prefetch)
    const { consumerTag } = await ch.consume(queueName(record.actor), (msg: ConsumeMessage | null) => {
      if (msg === null) {
        // Server-side cancel (queue deleted): close this channel and subscribe again later.
        this.logger?.warn({ actor: record.actor }, 'consumer cancelled by the broker (queue deleted?); re-subscribing')
        ch.close().catch(() => undefined)
        return
      }
      this.dispatch(record, ch, msg)
    })
    record.consumerTag = consumerTag
    record.consumerPrefetch = prefetch
  }

  /**
   * RabbitMQ binds a (non-global) prefetch to a consumer when it starts: a later basic.qos does not
   * change consumers that already exist. So a new window means a new consumer on the same channel,
   * started before the old one is cancelled; unacked deliveries of the old consumer stay ours to
   * settle on that channel. Rare by design (the window changes with the workload's regime).
   */
  private async resize(record: ConsumerRecord): Promise<void> {
    const ch = record.channel
    const oldTag = record.consumerTag
    if (!ch || !oldTag || record.cancelled || record.consumerPrefetch === record.prefetch) return
    await this.startConsumer(record, ch)
    await ch.cancel(oldTag)
  }

  private resubscribeLater(record: ConsumerRecord, conn: ChannelModel, attempt = 0): void {
    const delay = backoffDelay(attempt, this.backoff)
    sleep(delay, this.closeController.signal)
      .then(async () => {
        if (record.cancelled || this.conn !== conn || record.channel) return
        try {
          await this.subscribe(record)
        } catch (err) {
          this.logger?.warn({ err: errorMessage(err), actor: record.actor }, 're-subscribe failed; retrying')
          if (this.conn === conn) this.resubscribeLater(record, conn, attempt + 1)
        }
      })
      .catch(() => undefined)
  }

  private dispatch(record: ConsumerRecord, ch: Channel, msg: ConsumeMessage): void {
    const rawHeaders = (msg.properties.headers ?? {}) as Record<string, unknown>
    const headers: TransportHeaders = {}
    for (const [k, v] of Object.entries(rawHeaders)) {
      if (typeof v === 'string') headers[k] = v
      else if (typeof v === 'number' || typeof v === 'boolean') headers[k] = String(v)
      else if (Buffer.isBuffer(v)) headers[k] = v.toString('utf8')
      // x-death and other broker tables are not part of our header model
    }
    // Quorum queues count deliveries of this copy (x-delivery-count, 0 on the first); a classic
    // queue only says whether it was delivered before. The broker sets it on every delivery, so
    // it never travels on in the copies we publish (retries carry x-asya-attempt instead).
    const brokerCount = Number(headers[DELIVERY_COUNT_HEADER])
    delete headers[DELIVERY_COUNT_HEADER]
    const earlier = Number.isInteger(brokerCount) && brokerCount >= 0 ? brokerCount : msg.fields.redelivered ? 1 : 0
    const acks = this.ackers.get(ch) as AckCoalescer
    acks.track(msg)
    const ackOriginal = (): void => {
      acks.forget(msg)
      try {
        ch.ack(msg)
      } catch (err) {
        // The channel died: the broker requeues the message; the caller learns it may see it again.
        throw new errors.ASYA_ERR_TRANSPORT_CONNECTION(`ack failed (message will be redelivered): ${errorMessage(err)}`, { cause: err })
      }
    }
    const actor = record.actor
    const open = openDelivery(
      { actor, body: msg.content, headers, attempt: attemptOf(headers, earlier), redelivered: msg.fields.redelivered },
      {
        // Coalesced with the acks of this turn (a batch, confirms read together): `multiple`.
        ack: async () => acks.ack(msg),
        retry: async (delayMs, out) => {
          const queue = await this.retryQueue(actor, retryTierMs(delayMs))
          await this.publishTo('', queue, msg.content, out, actor)
          ackOriginal()
        },
        deadLetter: async (out) => {
          await this.publishOwned(actor, dlqActor(actor), msg.content, out)
          ackOriginal()
        },
        release: async () => {
          acks.forget(msg)
          // Re-published with the same headers rather than nacked, so the redelivered flag does not
          // count an attempt for a message that never started.
          try {
            await this.publishOwned(actor, actor, msg.content, headers)
          } catch {
            try {
              ch.nack(msg, false, true)
            } catch {
              /* channel gone: the broker requeues it */
            }
            return
          }
          try {
            ch.ack(msg)
          } catch {
            /* channel gone: the broker requeues it (a duplicate of the copy we just published) */
          }
        },
        giveBack: () => {
          acks.forget(msg)
          try {
            ch.nack(msg, false, true)
          } catch {
            /* channel gone: the broker requeues it */
          }
        },
        done: () => undefined,
      },
    )
    runHandler(record.handler, open, this.logger)
  }

  private async retryQueue(actor: string, tierMs: number): Promise<string> {
    const key = `${actor}/${tierMs}`
    const at = this.retryQueuesDeclaredAt.get(key)
    const now = Date.now()
    // Re-declared every minute: declarations count as "use" for the queue's x-expires.
    if (at === undefined || now - at > 60_000) {
      await this.waitConnected(this.publishTimeoutMs)
      const { queue: name, mismatch } = await declareRetryQueue(() => this.topology(), actor, this.exchange, tierMs, this.queueTopology)
      if (mismatch) this.reportMismatch(mismatch)
      this.retryQueuesDeclaredAt.set(key, now)
      return name
    }
    return retryQueueName(actor, tierMs)
  }

  private async withTempChannel<T>(fn: (ch: Channel) => Promise<T>): Promise<T> {
    await this.waitConnected(this.publishTimeoutMs)
    const conn = this.conn
    if (!conn) throw new errors.ASYA_ERR_TRANSPORT_CONNECTION('not connected to RabbitMQ')
    const ch = await conn.createChannel()
    let open = true
    ch.on('error', () => undefined)
    ch.on('close', () => {
      open = false
    })
    try {
      return await fn(ch)
    } finally {
      if (open) await ch.close().catch(() => undefined)
    }
  }

  async messageCount(actor: string): Promise<number> {
    try {
      return await this.withTempChannel(async (ch) => (await ch.checkQueue(queueName(actor))).messageCount)
    } catch (err) {
      if ((err as { code?: unknown }).code === 404) {
        throw new errors.ASYA_ERR_TRANSPORT_QUEUE_MISSING(`queue ${queueName(actor)}`, { cause: err })
      }
      throw err
    }
  }

  async inspectQueue(actor: string): Promise<QueueStats> {
    let ok: { messageCount: number; consumerCount: number }
    try {
      ok = await this.withTempChannel(async (ch) => ch.checkQueue(queueName(actor)))
    } catch (err) {
      if ((err as { code?: unknown }).code === 404) {
        throw new errors.ASYA_ERR_TRANSPORT_QUEUE_MISSING(`queue ${queueName(actor)}`, { cause: err })
      }
      throw err
    }
    const inFlight = await this.unackedCount(queueName(actor))
    return { messages: ok.messageCount, consumers: ok.consumerCount, ...(inFlight !== undefined ? { inFlight } : {}) }
  }

  /** messages_unacknowledged from the management API; undefined when it is not configured or not answering. */
  private async unackedCount(queue: string): Promise<number | undefined> {
    if (this.managementUrl === undefined) return undefined
    const u = new URL(this.url)
    const vhost = u.pathname.length > 1 ? decodeURIComponent(u.pathname.slice(1)) : '/'
    const auth = 'Basic ' + Buffer.from(`${decodeURIComponent(u.username || 'guest')}:${decodeURIComponent(u.password || 'guest')}`).toString('base64')
    try {
      const res = await fetch(`${this.managementUrl}/api/queues/${encodeURIComponent(vhost)}/${encodeURIComponent(queue)}`, { headers: { authorization: auth }, signal: AbortSignal.timeout(5000) })
      if (!res.ok) return undefined
      const body = (await res.json()) as { messages_unacknowledged?: unknown }
      return typeof body.messages_unacknowledged === 'number' ? body.messages_unacknowledged : undefined
    } catch (err) {
      this.logger?.debug({ err: errorMessage(err) }, 'management API not answering: in-flight unknown')
      return undefined
    }
  }

  async deleteQueue(actor: string): Promise<void> {
    this.owned.delete(actor)
    await this.withTempChannel(async (ch) => {
      await ch.deleteQueue(queueName(actor))
    })
  }

  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    this.closeController.abort()
    this.connected = false
    for (const c of this.consumers) c.cancelled = true
    const channels = [...this.consumerChannels]
    this.consumerChannels.clear()
    this.consumers.clear()
    const conn = this.conn
    this.conn = undefined
    const pub = this.pubChannel
    this.pubChannel = undefined
    // Close channels first: amqplib writes connection-level frames ahead of queued channel
    // frames, so a bare connection close can overtake acks still in the buffer (and the broker
    // would requeue messages we settled). Channel close-ok comes after everything sent before it.
    for (const ch of channels) {
      this.ackers.get(ch)?.flush()
      await ch.close().catch(() => undefined)
    }
    if (pub) await pub.close().catch(() => undefined)
    for (const w of this.connectedWaiters) w()
    this.connectedWaiters = []
    // Closing the connection returns every unacked delivery to its queue.
    if (conn) await conn.close().catch(() => undefined)
  }
}
