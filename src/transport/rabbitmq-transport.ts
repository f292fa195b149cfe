/**
 * RabbitMQ transport (amqplib). Safety settings follow SPEC §3: persistent messages, `mandatory`
 * publishes whose returns are errors, publisher confirms awaited before anything is acked, a
 * bounded prefetch, delayed retries through TTL tier queues (see rabbitmq-topology.ts) and
 * `asya-<a>-dlq` for dead letters. The transport owns reconnection: on a lost connection it
 * reconnects with backoff, re-declares what it declared before and resumes every consumer.
 */
import { setMaxListeners } from 'node:events'
import amqp, { type Channel, type ChannelModel, type ConfirmChannel, type ConsumeMessage, type Message } from 'amqplib'
import { AsyaError, errorMessage, isAsyaError } from '../errors.js'
import { queueName } from '../envelope.js'
import type { Logger } from '../logger.js'
import { backoffDelay, sleep, type BackoffOptions } from '../backoff.js'
import {
  TRANSPORT_HEADERS,
  type ConsumeOptions,
  type DeadLetterInfo,
  type Delivery,
  type DeliveryHandler,
  type PublishOptions,
  type RetryInfo,
  type Subscription,
  type Transport,
  type TransportHeaders,
} from './transport.js'
import { declareActorQueues, declareExchange, declareRetryQueue, retryTierMs } from './rabbitmq-topology.js'

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

export class RabbitMqTransport implements Transport {
  readonly name = 'rabbitmq' as const
  private readonly url: string
  private readonly exchange: string
  private readonly logger: Logger | undefined
  private readonly backoff: BackoffOptions
  private readonly heartbeat: number
  private readonly publishTimeoutMs: number
  private readonly connectionName: string

  private conn: ChannelModel | undefined
  private pubChannel: ConfirmChannel | undefined
  private topologyChannel: Channel | undefined
  private connected = false
  private closed = false
  private connecting: Promise<void> | undefined
  private readonly closeController = new AbortController()
  private connectedWaiters: Array<() => void> = []
  private readonly owned = new Map<string, boolean>() // actor -> with DLQ
  private readonly consumers = new Set<ConsumerRecord>()
  /** Consumer channels still open (also of cancelled subscriptions, whose deliveries may settle). */
  private readonly consumerChannels = new Set<Channel>()
  private readonly retryQueuesDeclaredAt = new Map<string, number>()
  private readonly returned = new Set<string>()
  private publishSeq = 0

  constructor(options: RabbitMqTransportOptions) {
    this.url = options.url
    this.exchange = options.exchange ?? 'asya'
    this.logger = options.logger
    this.backoff = options.reconnectBackoff ?? DEFAULT_BACKOFF
    this.heartbeat = options.heartbeatSeconds ?? 10
    this.publishTimeoutMs = options.publishTimeoutMs ?? 30_000
    this.connectionName = options.connectionName ?? 'asya'
    // Every pending backoff sleep listens on it; many consumers may be re-subscribing at once.
    setMaxListeners(0, this.closeController.signal)
  }

  isReady(): boolean {
    return this.connected && !this.closed
  }

  /** Resolves once connected; keeps retrying with backoff until then (or until close()). */
  connect(): Promise<void> {
    if (this.closed) return Promise.reject(new AsyaError('ASYA_ERR_TRANSPORT_CLOSED', 'transport is closed'))
    if (this.connected) return Promise.resolve()
    if (!this.connecting) {
      this.connecting = this.connectLoop().finally(() => {
        this.connecting = undefined
      })
    }
    return this.connecting
  }

  private async connectLoop(): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      if (this.closed) throw new AsyaError('ASYA_ERR_TRANSPORT_CLOSED', 'transport is closed')
      try {
        await this.establish()
        return
      } catch (err) {
        if (this.closed) throw new AsyaError('ASYA_ERR_TRANSPORT_CLOSED', 'transport is closed')
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
    if (this.closed) return Promise.reject(new AsyaError('ASYA_ERR_TRANSPORT_CLOSED', 'transport is closed'))
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.connectedWaiters = this.connectedWaiters.filter((w) => w !== done)
        reject(new AsyaError('ASYA_ERR_TRANSPORT_CONNECTION', `not connected to RabbitMQ within ${timeoutMs} ms`))
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
    if (!conn) throw new AsyaError('ASYA_ERR_TRANSPORT_CONNECTION', 'not connected to RabbitMQ')
    const ch = await conn.createChannel()
    ch.on('error', () => undefined) // surfaced through the failing operation
    ch.on('close', () => {
      if (this.topologyChannel === ch) this.topologyChannel = undefined
    })
    this.topologyChannel = ch
    return ch
  }

  private async declareQueues(actor: string, withDlq: boolean): Promise<void> {
    try {
      await declareActorQueues(await this.topology(), actor, this.exchange, withDlq)
    } catch (err) {
      const code = (err as { code?: unknown }).code
      if (code === 406) {
        throw new AsyaError('ASYA_ERR_TRANSPORT_QUEUE_MISMATCH', `queue ${queueName(actor)} exists with other arguments: ${errorMessage(err)}`, {
          cause: err,
          details: { queue: queueName(actor) },
        })
      }
      throw err
    }
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
    if (!ch) throw new AsyaError('ASYA_ERR_TRANSPORT_CONNECTION', 'not connected to RabbitMQ')
    const messageId = `p${process.pid}-${++this.publishSeq}`
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => {
          this.returned.delete(messageId)
          reject(new AsyaError('ASYA_ERR_TRANSPORT_PUBLISH', `no publisher confirm for ${queueName(actorForErrors)} within ${this.publishTimeoutMs} ms`))
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
              reject(new AsyaError('ASYA_ERR_TRANSPORT_PUBLISH', `publish to ${queueName(actorForErrors)} not confirmed: ${errorMessage(err)}`, { cause: err }))
            } else if (wasReturned) {
              reject(
                new AsyaError('ASYA_ERR_TRANSPORT_UNROUTABLE', `no queue bound for routing key ${routingKey} (queue ${queueName(actorForErrors)} missing)`, {
                  details: { queue: queueName(actorForErrors), routingKey },
                }),
              )
            } else resolve()
          },
        )
      } catch (err) {
        clearTimeout(timer)
        reject(new AsyaError('ASYA_ERR_TRANSPORT_CONNECTION', `publish failed: ${errorMessage(err)}`, { cause: err }))
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
    const headerAttempt = Number(headers[TRANSPORT_HEADERS.attempt] ?? '1')
    const base = Number.isInteger(headerAttempt) && headerAttempt > 0 ? headerAttempt : 1
    const attempt = base + (msg.fields.redelivered ? 1 : 0)
    let settled = false
    const settleOnce = (): void => {
      if (settled) throw new AsyaError('ASYA_ERR_TRANSPORT_PUBLISH', 'delivery already settled')
      settled = true
    }
    const ackOriginal = (): void => {
      try {
        ch.ack(msg)
      } catch (err) {
        // The channel died: the broker requeues the message; the caller learns it may see it again.
        throw new AsyaError('ASYA_ERR_TRANSPORT_CONNECTION', `ack failed (message will be redelivered): ${errorMessage(err)}`, { cause: err })
      }
    }
    const actor = record.actor
    const delivery: Delivery = {
      actor,
      body: msg.content,
      headers,
      attempt,
      redelivered: msg.fields.redelivered,
      ack: async () => {
        settleOnce()
        ackOriginal()
      },
      retry: async (delayMs: number, info: RetryInfo) => {
        if (!(delayMs > 0)) throw new AsyaError('ASYA_ERR_CONFIG_INVALID', `retry delay must be > 0 ms, got ${delayMs}`)
        settleOnce()
        const out: TransportHeaders = { ...headers, ...(info.headers ?? {}), [TRANSPORT_HEADERS.attempt]: String(attempt + 1), [TRANSPORT_HEADERS.reason]: info.reason }
        if (info.error !== undefined) out[TRANSPORT_HEADERS.error] = info.error.slice(0, 1024)
        try {
          const tier = retryTierMs(delayMs)
          const queue = await this.retryQueue(actor, tier)
          await this.publishTo('', queue, msg.content, out, actor)
        } catch (err) {
          settled = false // the original is still ours to settle (or to lose with the channel)
          throw err
        }
        ackOriginal()
      },
      deadLetter: async (info: DeadLetterInfo) => {
        settleOnce()
        const out: TransportHeaders = {
          ...headers,
          [TRANSPORT_HEADERS.reason]: info.reason,
          [TRANSPORT_HEADERS.attempts]: String(info.attempts ?? attempt),
          [TRANSPORT_HEADERS.actor]: actor,
        }
        if (info.error !== undefined) out[TRANSPORT_HEADERS.error] = info.error.slice(0, 1024)
        try {
          await this.publishOwned(actor, `${actor}-dlq`, msg.content, out)
        } catch (err) {
          settled = false
          throw err
        }
        ackOriginal()
      },
      release: async () => {
        settleOnce()
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
    }
    Promise.resolve()
      .then(() => record.handler(delivery))
      .catch((err: unknown) => {
        this.logger?.error({ err: errorMessage(err), actor }, 'delivery handler threw; message returned to the queue')
        if (!settled) {
          settled = true
          try {
            ch.nack(msg, false, true)
          } catch {
            /* channel gone */
          }
        }
      })
  }

  private async retryQueue(actor: string, tierMs: number): Promise<string> {
    const key = `${actor}/${tierMs}`
    const at = this.retryQueuesDeclaredAt.get(key)
    const now = Date.now()
    // Re-declared every minute: declarations count as "use" for the queue's x-expires.
    if (at === undefined || now - at > 60_000) {
      await this.waitConnected(this.publishTimeoutMs)
      const name = await declareRetryQueue(await this.topology(), actor, this.exchange, tierMs)
      this.retryQueuesDeclaredAt.set(key, now)
      return name
    }
    return `${queueName(actor)}-retry-${tierMs}`
  }

  private async withTempChannel<T>(fn: (ch: Channel) => Promise<T>): Promise<T> {
    await this.waitConnected(this.publishTimeoutMs)
    const conn = this.conn
    if (!conn) throw new AsyaError('ASYA_ERR_TRANSPORT_CONNECTION', 'not connected to RabbitMQ')
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
        throw new AsyaError('ASYA_ERR_TRANSPORT_QUEUE_MISSING', `no queue ${queueName(actor)}`, { cause: err })
      }
      throw err
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
    for (const ch of channels) await ch.close().catch(() => undefined)
    if (pub) await pub.close().catch(() => undefined)
    for (const w of this.connectedWaiters) w()
    this.connectedWaiters = []
    // Closing the connection returns every unacked delivery to its queue.
    if (conn) await conn.close().catch(() => undefined)
  }
}
