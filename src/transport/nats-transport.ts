/**
 * NATS JetStream transport (@nats-io/transport-node + @nats-io/jetstream), SPEC §3.
 *
 * Topology: one stream `ASYA` (subjects `asya.>`, file storage, work-queue retention), subject
 * `asya.<actor>` and a durable pull consumer `asya-<actor>` (explicit acks) per actor. Dead letters
 * of `a` go to subject `asya.a-dlq` with its own consumer `asya-a-dlq` in the same stream, so a DLQ
 * is addressable as the pseudo-actor `a-dlq` like on every transport (docs/nats.md says why not a
 * second stream).
 *
 * What JetStream gives natively is used natively: the attempt count is the broker's delivery
 * count, a delayed retry is a `nak` with the backoff delay (no TTL queues, no re-publish), and a
 * long call is kept alive with `working` acks every AckWait / 3. What JetStream cannot carry on a
 * nak (the retry reason, the sidecar's fan-out bookkeeping headers, and how many deliveries were
 * releases rather than attempts) is written to a *note* in the KV bucket `asya-notes` before the
 * nak, keyed by actor and stream sequence, read back when the message is delivered again and
 * removed when it is settled for good.
 *
 * The delivery window is per subscriber (per pod): each subscription pulls at most `prefetch`
 * unsettled messages (pull batches sized to the free slots). The consumer's `max_ack_pending` is
 * the bound over all pods of the actor (window × max replicas when the controller creates it).
 */
import { readFileSync } from 'node:fs'
import { setMaxListeners } from 'node:events'
import {
  connect as natsConnect,
  credsAuthenticator,
  headers as natsHeaders,
  nanos,
  nkeyAuthenticator,
  type Authenticator,
  type MsgHdrs,
  type NatsConnection,
  type NodeConnectionOptions,
} from '@nats-io/transport-node'
import {
  AckPolicy,
  DeliverPolicy,
  JetStreamApiError,
  jetstreamManager,
  RetentionPolicy,
  StorageType,
  type Consumer as JsConsumer,
  type ConsumerConfig,
  type ConsumerInfo,
  type ConsumerMessages,
  type JetStreamClient,
  type JetStreamManager,
  type JsMsg,
  type StreamConfig,
} from '@nats-io/jetstream'
import { Kvm, type KV } from '@nats-io/kv'
import { errorMessage, errors, isAsyaError, type AsyaError } from '../errors.js'
import { DEFAULT_EXCHANGE, HEADER, NATS_NOTES_BUCKET, NATS_STREAM, NATS_SUBJECT_PREFIX, dlqActor, natsSubject, queueName } from '../names.js'
import type { Logger } from '../logger.js'
import { backoffDelay, sleep, type BackoffOptions } from '../backoff.js'
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
import { SingleFlight } from '../single-flight.js'

/** How long a note outlives a message that is never settled (e.g. its consumer was deleted). */
const NOTE_TTL_MS = 7 * 24 * 3600_000
/** JetStream API error codes used here. */
const JS_CONSUMER_NOT_FOUND = 10014
const JS_STREAM_NOT_FOUND = 10059
/** A header value must be one line; long tracebacks are cut (the error envelope keeps the full text). */
const MAX_HEADER_VALUE = 4096

/** The stream ASYA as Asya creates it. */
export function desiredStreamConfig(replicas = 1): Partial<StreamConfig> & { name: string; subjects: string[] } {
  return {
    name: NATS_STREAM,
    subjects: [`${NATS_SUBJECT_PREFIX}.>`],
    storage: StorageType.File,
    retention: RetentionPolicy.Workqueue,
    num_replicas: replicas,
  }
}

/**
 * Differences between an existing stream and what Asya needs (empty = fine). Pure, shared with the
 * controller: a differing stream is reported, never changed (changing retention or storage of a
 * stream holding messages is not something to do behind an operator's back).
 */
export function streamConfigProblems(config: Partial<StreamConfig>): string[] {
  const problems: string[] = []
  const subjects = config.subjects ?? []
  if (!subjects.includes(`${NATS_SUBJECT_PREFIX}.>`)) problems.push(`subjects ${JSON.stringify(subjects)} do not include "${NATS_SUBJECT_PREFIX}.>"`)
  if (config.retention !== RetentionPolicy.Workqueue) problems.push(`retention is "${String(config.retention)}", not "workqueue"`)
  if (config.storage !== StorageType.File) problems.push(`storage is "${String(config.storage)}", not "file"`)
  return problems
}

export interface NatsConsumerSettings {
  /** AckWait: how long an unacknowledged delivery stays with a silent (dead) subscriber. */
  ackWaitMs: number
  /** Bound of unacknowledged deliveries over all subscribers of the consumer. */
  maxAckPending: number
}

/** The durable pull consumer of `actor` as Asya creates it. */
export function desiredConsumerConfig(actor: string, s: NatsConsumerSettings): Partial<ConsumerConfig> {
  return {
    durable_name: queueName(actor),
    filter_subject: natsSubject(actor),
    ack_policy: AckPolicy.Explicit,
    ack_wait: nanos(s.ackWaitMs),
    max_ack_pending: s.maxAckPending,
    // The sidecar applies the delivery limit itself (dead-letter with a reason); the broker never drops.
    max_deliver: -1,
    deliver_policy: DeliverPolicy.All,
  }
}

/** Differences between an existing consumer and what Asya needs (empty = fine). */
export function consumerConfigProblems(actor: string, config: Partial<ConsumerConfig>): string[] {
  const problems: string[] = []
  if (config.filter_subject !== natsSubject(actor)) problems.push(`filter_subject is "${String(config.filter_subject)}", not "${natsSubject(actor)}"`)
  if (config.ack_policy !== AckPolicy.Explicit) problems.push(`ack_policy is "${String(config.ack_policy)}", not "explicit"`)
  if (config.max_deliver !== undefined && config.max_deliver > 0) problems.push(`max_deliver is ${config.max_deliver}: the broker would drop messages the sidecar should dead-letter`)
  return problems
}

export interface NatsAuthOptions {
  user?: string
  password?: string
  token?: string
  /** A `.creds` file (JWT + NKEY seed), as issued by `nsc`. */
  credsFile?: string
  /** A file holding an NKEY user seed (`SU...`). */
  nkeySeedFile?: string
}

export interface NatsTlsOptions {
  caFile?: string
  certFile?: string
  keyFile?: string
}

export interface NatsTransportOptions extends NatsAuthOptions {
  /** Server URLs (`nats://host:4222`, `tls://host:4222`). @default ['nats://localhost:4222'] */
  servers?: string[]
  tls?: NatsTlsOptions
  /** AckWait of consumers this transport creates. @default 30000 */
  ackWaitMs?: number
  /** max_ack_pending of consumers this transport creates. @default 1000 */
  maxAckPending?: number
  /** Replicas of the stream and the notes bucket when this transport creates them. @default 1 */
  replicas?: number
  /** How often an unsettled delivery is kept alive with a `working` ack. @default ackWait / 3 */
  heartbeatIntervalMs?: number
  /** How long a publish waits for the JetStream ack (also across a reconnect). @default 10000 */
  publishTimeoutMs?: number
  /** How long one pull request waits on an empty consumer before it is renewed. @default 5000 */
  pullExpiresMs?: number
  /** Backoff of the first connection attempts. @default { initialMs: 200, maxMs: 10000 } */
  connectBackoff?: BackoffOptions
  /** Client name shown by the server (`/connz`). @default 'asya' */
  connectionName?: string
  logger?: Logger
}

/** What a note remembers about a message between a nak and its next delivery. */
interface Note {
  reason?: string
  error?: string
  headers?: TransportHeaders
  /** Deliveries given back by release(): not attempts. */
  released?: number
}

interface Pull {
  actor: string
  handler: DeliveryHandler
  consumer: JsConsumer
  window: number
  /** Handed to the handler, not settled. */
  outstanding: number
  /** Asked for in open pull requests, not yet received. */
  requested: number
  failures: number
  cancelled: boolean
  fetches: Set<ConsumerMessages>
}

interface Unsettled {
  msg: JsMsg
  timer: NodeJS.Timeout
  /** Set once the delivery is handed out (after its note was read). */
  open?: OpenDelivery
}

function apiCode(err: unknown): number | undefined {
  if (err instanceof JetStreamApiError) return err.code
  return undefined
}

function isNotFound(err: unknown): boolean {
  const c = apiCode(err)
  return c === JS_CONSUMER_NOT_FOUND || c === JS_STREAM_NOT_FOUND
}

function isAuthError(err: unknown): boolean {
  return /authorization violation|authentication|permissions violation|user authentication expired/i.test(errorMessage(err))
}

function oneLine(v: string): string {
  const s = v.replace(/[\r\n]+/g, ' ')
  return s.length > MAX_HEADER_VALUE ? `${s.slice(0, MAX_HEADER_VALUE - 1)}…` : s
}

function toNatsHeaders(h: TransportHeaders): MsgHdrs | undefined {
  const keys = Object.keys(h)
  if (keys.length === 0) return undefined
  const out = natsHeaders()
  for (const k of keys) {
    const v = h[k]
    if (v !== undefined) out.set(k, oneLine(v))
  }
  return out
}

function fromNatsHeaders(h: MsgHdrs | undefined): TransportHeaders {
  const out: TransportHeaders = {}
  if (!h) return out
  for (const k of h.keys()) out[k] = h.get(k)
  return out
}

/**
 * Client options from Asya's settings (shared by the transport and the controller): credentials
 * (user/password, token, `.creds` file, NKEY seed file, read at each (re)connection so rotated
 * files are picked up), TLS files, and reconnection forever.
 */
export function natsConnectionOptions(o: NatsAuthOptions & { servers: string[]; tls?: NatsTlsOptions; name: string }): NodeConnectionOptions {
  const authenticators: Authenticator[] = []
  if (o.credsFile) {
    const file = o.credsFile
    authenticators.push(credsAuthenticator(() => readFileSync(file)))
  }
  if (o.nkeySeedFile) {
    const file = o.nkeySeedFile
    authenticators.push(nkeyAuthenticator(() => new TextEncoder().encode(readFileSync(file, 'utf8').trim())))
  }
  const tls = o.tls
  return {
    servers: o.servers,
    name: o.name,
    // The client owns reconnection after the first connection: forever, resubscribing as it goes.
    maxReconnectAttempts: -1,
    reconnectTimeWait: 500,
    pingInterval: 10_000,
    maxPingOut: 2,
    ...(o.user !== undefined ? { user: o.user } : {}),
    ...(o.password !== undefined ? { pass: o.password } : {}),
    ...(o.token !== undefined ? { token: o.token } : {}),
    ...(authenticators.length > 0 ? { authenticator: authenticators } : {}),
    ...(tls && (tls.caFile || tls.certFile || tls.keyFile)
      ? { tls: { ...(tls.caFile ? { caFile: tls.caFile } : {}), ...(tls.certFile ? { certFile: tls.certFile } : {}), ...(tls.keyFile ? { keyFile: tls.keyFile } : {}) } }
      : {}),
  }
}

const DEFAULT_BACKOFF: BackoffOptions = { initialMs: 200, maxMs: 10_000 }

export class NatsTransport implements Transport {
  readonly name = 'nats' as const
  private readonly o: NatsTransportOptions
  private readonly servers: string[]
  private readonly ackWaitMs: number
  private readonly maxAckPending: number
  private readonly replicas: number
  private readonly heartbeatMs: number
  private readonly publishTimeoutMs: number
  private readonly pullExpiresMs: number
  private readonly logger: Logger | undefined

  private nc: NatsConnection | undefined
  private jsm: JetStreamManager | undefined
  private js: JetStreamClient | undefined
  private notesBucket: Promise<KV> | undefined
  private streamChecked: Promise<void> | undefined
  private connected = false
  private closed = false
  private readonly connecting = new SingleFlight(() => this.connectLoop())
  private readonly closeController = new AbortController()
  private readonly pulls = new Set<Pull>()
  private readonly unsettled = new Set<Unsettled>()
  /** actor -> time until which its consumer is known to exist (publish routability). */
  private readonly routable = new Map<string, number>()
  private readonly reported = new Set<string>()

  constructor(options: NatsTransportOptions = {}) {
    this.o = options
    this.servers = options.servers && options.servers.length > 0 ? options.servers : ['nats://localhost:4222']
    this.ackWaitMs = options.ackWaitMs ?? 30_000
    this.maxAckPending = options.maxAckPending ?? 1000
    this.replicas = options.replicas ?? 1
    this.heartbeatMs = options.heartbeatIntervalMs ?? Math.max(200, Math.floor(this.ackWaitMs / 3))
    this.publishTimeoutMs = options.publishTimeoutMs ?? 10_000
    this.pullExpiresMs = Math.max(1000, options.pullExpiresMs ?? 5000)
    this.logger = options.logger
    setMaxListeners(0, this.closeController.signal)
  }

  isReady(): boolean {
    return this.connected && !this.closed
  }

  connect(): Promise<void> {
    if (this.closed) return Promise.reject(new errors.ASYA_ERR_TRANSPORT_CLOSED('NATS transport'))
    if (this.connected) return Promise.resolve()
    return this.connecting.run()
  }

  private connectionOptions(): NodeConnectionOptions {
    return natsConnectionOptions({ ...this.o, servers: this.servers, name: this.o.connectionName ?? DEFAULT_EXCHANGE })
  }

  private async connectLoop(): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      if (this.closed) throw new errors.ASYA_ERR_TRANSPORT_CLOSED('NATS transport')
      try {
        const nc = await natsConnect(this.connectionOptions())
        if (this.closed) {
          await nc.close().catch(() => undefined)
          throw new errors.ASYA_ERR_TRANSPORT_CLOSED('NATS transport')
        }
        this.nc = nc
        this.jsm = await jetstreamManager(nc, { timeout: this.publishTimeoutMs })
        this.js = this.jsm.jetstream()
        this.notesBucket = undefined
        this.streamChecked = undefined
        this.connected = true
        this.watch(nc)
        this.logger?.info({ servers: this.servers }, 'connected to NATS')
        for (const p of this.pulls) this.pump(p)
        return
      } catch (err) {
        if (isAsyaError(err, 'ASYA_ERR_TRANSPORT_CLOSED')) throw err
        this.connected = false
        const delay = backoffDelay(attempt, this.o.connectBackoff ?? DEFAULT_BACKOFF)
        if (isAuthError(err)) {
          this.logger?.error({ code: 'ASYA_ERR_TRANSPORT_CREDENTIALS', err: errorMessage(err), retryInMs: delay }, 'NATS rejected the credentials')
        } else {
          this.logger?.warn({ code: 'ASYA_ERR_TRANSPORT_CONNECTION', err: errorMessage(err), retryInMs: delay }, 'NATS not reachable; retrying')
        }
        await sleep(delay, this.closeController.signal).catch(() => undefined)
      }
    }
  }

  /** Follows the connection: not ready while disconnected; pulls renewed after a reconnect. */
  private watch(nc: NatsConnection): void {
    void (async () => {
      for await (const s of nc.status()) {
        if (this.nc !== nc) return
        if (s.type === 'disconnect') {
          this.connected = false
          this.logger?.warn({ code: 'ASYA_ERR_TRANSPORT_CONNECTION', server: s.server }, 'NATS connection lost; reconnecting')
        } else if (s.type === 'reconnect') {
          this.connected = true
          this.logger?.info({ server: s.server }, 'reconnected to NATS')
          // Pull requests open at the disconnect may be gone on the server: ask again where short.
          for (const p of this.pulls) this.pump(p)
        } else if (s.type === 'error' && isAuthError(s.error)) {
          this.logger?.error({ code: 'ASYA_ERR_TRANSPORT_CREDENTIALS', err: errorMessage(s.error) }, 'NATS rejected the credentials')
        }
      }
    })().catch(() => undefined)
    void nc.closed().then((err) => {
      if (this.nc !== nc || this.closed) return
      this.connected = false
      this.nc = undefined
      this.logger?.error({ code: 'ASYA_ERR_TRANSPORT_CONNECTION', err: err ? errorMessage(err) : 'closed' }, 'NATS connection closed; connecting again')
      void this.connect().catch(() => undefined)
    })
  }

  private async ready(): Promise<{ nc: NatsConnection; js: JetStreamClient; jsm: JetStreamManager }> {
    if (this.closed) throw new errors.ASYA_ERR_TRANSPORT_CLOSED('NATS transport')
    if (!this.nc || !this.js || !this.jsm) {
      const timeout = new Promise<never>((_, reject) =>
        setTimeout(() => reject(new errors.ASYA_ERR_TRANSPORT_CONNECTION(`not connected to NATS within ${this.publishTimeoutMs} ms`)), this.publishTimeoutMs).unref(),
      )
      await Promise.race([this.connect(), timeout])
    }
    if (!this.nc || !this.js || !this.jsm) throw new errors.ASYA_ERR_TRANSPORT_CONNECTION('not connected to NATS')
    return { nc: this.nc, js: this.js, jsm: this.jsm }
  }

  private report(key: string, code: string, message: string, details: Record<string, unknown>): void {
    if (this.reported.has(key)) return
    this.reported.add(key)
    this.logger?.error({ code, ...details }, message)
  }

  /** Creates the stream when missing; an existing one is checked and reported, never changed. */
  private ensureStream(): Promise<void> {
    if (!this.streamChecked) {
      this.streamChecked = (async () => {
        const { jsm } = await this.ready()
        let config: Partial<StreamConfig>
        try {
          config = (await jsm.streams.info(NATS_STREAM)).config
        } catch (err) {
          if (apiCode(err) !== JS_STREAM_NOT_FOUND) throw this.wrap(err, 'stream info')
          try {
            config = (await jsm.streams.add(desiredStreamConfig(this.replicas))).config
          } catch (err2) {
            // Created concurrently by another process: use what is there.
            config = (await jsm.streams.info(NATS_STREAM).catch(() => Promise.reject(this.wrap(err2, 'stream create')))).config
          }
        }
        const problems = streamConfigProblems(config)
        if (problems.length > 0) {
          this.report(`stream:${NATS_STREAM}`, 'ASYA_ERR_TRANSPORT_QUEUE_MISMATCH', `NATS stream ${NATS_STREAM} exists with another configuration; used as it is`, { stream: NATS_STREAM, problems })
        }
      })().catch((err: unknown) => {
        this.streamChecked = undefined
        throw err
      })
    }
    return this.streamChecked
  }

  private wrap(err: unknown, op: string): AsyaError {
    if (isAsyaError(err)) return err
    if (isAuthError(err)) return new errors.ASYA_ERR_TRANSPORT_CREDENTIALS(`NATS ${op}`, errorMessage(err), { cause: err })
    if (/disconnect|closed|timeout|no responders|connection/i.test(errorMessage(err))) {
      return new errors.ASYA_ERR_TRANSPORT_CONNECTION(`NATS ${op} failed: ${errorMessage(err)}`, { cause: err })
    }
    return new errors.ASYA_ERR_TRANSPORT_PUBLISH(`NATS ${op} failed: ${errorMessage(err)}`, { cause: err })
  }

  private async consumerInfo(actor: string): Promise<ConsumerInfo | undefined> {
    const { jsm } = await this.ready()
    try {
      return await jsm.consumers.info(NATS_STREAM, queueName(actor))
    } catch (err) {
      if (isNotFound(err)) return undefined
      throw this.wrap(err, 'consumer info')
    }
  }

  async ensureQueue(actor: string, options: { deadLetterQueue?: boolean } = {}): Promise<void> {
    await this.ensureStream()
    const { jsm } = await this.ready()
    for (const a of [actor, ...(options.deadLetterQueue === false ? [] : [dlqActor(actor)])]) {
      const existing = await this.consumerInfo(a)
      if (existing) {
        const problems = consumerConfigProblems(a, existing.config)
        if (problems.length > 0) {
          this.report(`consumer:${a}`, 'ASYA_ERR_TRANSPORT_QUEUE_MISMATCH', `NATS consumer ${queueName(a)} exists with another configuration; used as it is`, { consumer: queueName(a), problems })
        }
      } else {
        try {
          await jsm.consumers.add(NATS_STREAM, desiredConsumerConfig(a, { ackWaitMs: this.ackWaitMs, maxAckPending: this.maxAckPending }))
        } catch (err) {
          // Created concurrently (possibly with other settings): fine if it exists now.
          if (!(await this.consumerInfo(a))) throw this.wrap(err, `create consumer ${queueName(a)}`)
        }
      }
      this.routable.set(a, Date.now() + 30_000)
    }
  }

  /** A subject without its consumer would keep messages nobody reads: such a publish is UNROUTABLE. */
  private async checkRoutable(actor: string): Promise<void> {
    const until = this.routable.get(actor)
    if (until !== undefined && until > Date.now()) return
    if (!(await this.consumerInfo(actor))) {
      this.routable.delete(actor)
      throw new errors.ASYA_ERR_TRANSPORT_UNROUTABLE(queueName(actor), `no NATS consumer on stream ${NATS_STREAM}`, {
        details: { queue: queueName(actor), subject: natsSubject(actor) },
      })
    }
    this.routable.set(actor, Date.now() + 30_000)
  }

  private async send(actor: string, body: Buffer, headers: TransportHeaders): Promise<void> {
    const { nc, js } = await this.ready()
    const limit = nc.info?.max_payload
    if (limit !== undefined && body.length > limit) {
      throw new errors.ASYA_ERR_PAYLOAD_TOO_LARGE(body.length, "NATS server's max_payload", `${limit} bytes`, {
        details: { size: body.length, limit, queue: queueName(actor) },
      })
    }
    const h = toNatsHeaders(headers)
    try {
      await js.publish(natsSubject(actor), body, { timeout: this.publishTimeoutMs, ...(h ? { headers: h } : {}) })
    } catch (err) {
      if (/no responders/i.test(errorMessage(err)) || apiCode(err) === JS_STREAM_NOT_FOUND) {
        throw new errors.ASYA_ERR_TRANSPORT_UNROUTABLE(`for subject ${natsSubject(actor)}`, 'no NATS stream captures it', { cause: err, details: { subject: natsSubject(actor) } })
      }
      throw this.wrap(err, `publish to ${natsSubject(actor)}`)
    }
  }

  async publish(actor: string, body: Buffer, options: PublishOptions = {}): Promise<void> {
    await this.checkRoutable(actor)
    await this.send(actor, body, options.headers ?? {})
  }

  private notes(): Promise<KV> {
    if (!this.notesBucket) {
      this.notesBucket = (async () => {
        const { js } = await this.ready()
        return new Kvm(js).create(NATS_NOTES_BUCKET, { history: 1, ttl: NOTE_TTL_MS, storage: StorageType.File, replicas: this.replicas })
      })().catch((err: unknown) => {
        this.notesBucket = undefined
        throw this.wrap(err, `open KV bucket ${NATS_NOTES_BUCKET}`)
      })
    }
    return this.notesBucket
  }

  private static noteKey(actor: string, seq: number): string {
    return `${actor}.${seq}`
  }

  private async readNote(actor: string, seq: number): Promise<Note | undefined> {
    try {
      const e = await (await this.notes()).get(NatsTransport.noteKey(actor, seq))
      if (!e || e.operation !== 'PUT') return undefined
      return e.json<Note>()
    } catch (err) {
      this.logger?.warn({ actor, seq, err: errorMessage(err) }, 'retry note unreadable; attempt counted from the delivery count alone')
      return undefined
    }
  }

  private async writeNote(actor: string, seq: number, note: Note): Promise<void> {
    await (await this.notes()).put(NatsTransport.noteKey(actor, seq), JSON.stringify(note))
  }

  private dropNote(actor: string, seq: number): void {
    void this.notes()
      .then((kv) => kv.purge(NatsTransport.noteKey(actor, seq)))
      .catch(() => undefined) // the bucket's TTL removes it anyway
  }

  async consume(actor: string, handler: DeliveryHandler, options: ConsumeOptions): Promise<Subscription> {
    const { js } = await this.ready()
    if (!(await this.consumerInfo(actor))) {
      throw new errors.ASYA_ERR_TRANSPORT_QUEUE_MISSING(`NATS consumer ${queueName(actor)} on stream ${NATS_STREAM}`, { details: { queue: queueName(actor) } })
    }
    const consumer = await js.consumers.get(NATS_STREAM, queueName(actor))
    const p: Pull = { actor, handler, consumer, window: Math.max(1, options.prefetch), outstanding: 0, requested: 0, failures: 0, cancelled: false, fetches: new Set() }
    this.pulls.add(p)
    this.pump(p)
    return {
      cancel: async () => {
        p.cancelled = true
        this.pulls.delete(p)
      },
      setPrefetch: async (n: number) => {
        // Open pull requests keep their size; the next ones follow the new window.
        p.window = Math.max(1, n)
        this.pump(p)
      },
    }
  }

  /** Opens a pull request for the free slots of the window not already asked for. */
  private pump(p: Pull): void {
    if (p.cancelled || this.closed || !this.connected) return
    const free = p.window - p.outstanding - p.requested
    if (free <= 0) return
    // Refill in batches: each pull request costs a round trip, an inbox subscription and a waiting
    // request on the server, so with deliveries still outstanding wait until half the window is
    // free (a window of 1 or 2 still refills slot by slot).
    if (free < Math.ceil(p.window / 2) && (p.requested > 0 || p.outstanding > 0)) return
    p.requested += free
    void this.pullLoop(p, free)
  }

  private async pullLoop(p: Pull, n: number): Promise<void> {
    let received = 0
    let msgs: ConsumerMessages | undefined
    let failed = false
    try {
      msgs = await p.consumer.fetch({ max_messages: n, expires: this.pullExpiresMs })
      p.fetches.add(msgs)
      for await (const m of msgs) {
        received++
        p.requested--
        if (p.cancelled || this.closed) {
          // Arrived for a request made before cancel(): give it back uncounted.
          this.giveBack(p.actor, m)
          continue
        }
        p.failures = 0
        this.dispatch(p, m)
      }
    } catch (err) {
      failed = true
      if (!p.cancelled && !this.closed) {
        p.failures++
        this.logger?.warn({ actor: p.actor, err: errorMessage(err) }, 'NATS pull failed; pulling again')
      }
    } finally {
      if (msgs) p.fetches.delete(msgs)
      p.requested -= n - received
    }
    if (failed && !p.cancelled && !this.closed) {
      await sleep(backoffDelay(p.failures, { initialMs: 200, maxMs: 5000 }), this.closeController.signal).catch(() => undefined)
    }
    this.pump(p)
  }

  /** Releases a message this process will not handle (after cancel): a note keeps the count honest. */
  private giveBack(actor: string, m: JsMsg): void {
    void (async () => {
      // Restart AckWait first: the note round trips must not let the broker redeliver meanwhile.
      m.working()
      const note = m.info.deliveryCount > 1 ? await this.readNote(actor, m.seq) : undefined
      await this.writeNote(actor, m.seq, { ...note, released: (note?.released ?? 0) + 1 }).catch(() => undefined)
      m.nak()
    })()
  }

  private dispatch(p: Pull, m: JsMsg): void {
    p.outstanding++
    const entry: Unsettled = { msg: m, timer: setInterval(() => m.working(), this.heartbeatMs) }
    entry.timer.unref()
    this.unsettled.add(entry)
    const deliveryCount = m.info.deliveryCount
    const start = async (): Promise<void> => {
      const note = deliveryCount > 1 ? await this.readNote(p.actor, m.seq) : undefined
      // Closed while the note was read: close() has given it back already.
      if (this.closed) return
      entry.open = this.openDelivery(p, m, entry, note)
      runHandler(p.handler, entry.open, this.logger)
    }
    void start()
  }

  private openDelivery(p: Pull, m: JsMsg, entry: Unsettled, note: Note | undefined): OpenDelivery {
    const actor = p.actor
    const headers = fromNatsHeaders(m.headers)
    if (note?.headers) Object.assign(headers, note.headers)
    if (note?.reason !== undefined) headers[HEADER.reason] = note.reason
    if (note?.error !== undefined) headers[HEADER.error] = note.error
    // The broker's delivery count is the attempt count, less the deliveries that were releases.
    const attempt = attemptOf({}, m.info.deliveryCount - 1 - (note?.released ?? 0))
    headers[HEADER.attempt] = String(attempt)
    const body = Buffer.from(m.data.buffer, m.data.byteOffset, m.data.byteLength)
    const assertOpen = (): void => {
      if (this.closed) throw new errors.ASYA_ERR_TRANSPORT_CLOSED('NATS transport')
    }
    const ackConfirmed = async (): Promise<void> => {
      try {
        const ok = await m.ackAck({ timeout: this.publishTimeoutMs })
        if (!ok) throw new Error('no ack confirmation')
      } catch (err) {
        // At-least-once: an unconfirmed ack may mean one more delivery, never a lost message.
        this.logger?.warn({ actor, seq: m.seq, err: errorMessage(err) }, 'NATS ack not confirmed; the message may be delivered again')
      }
      if (note) this.dropNote(actor, m.seq)
    }
    return openDelivery(
      { actor, body, headers, attempt, redelivered: m.redelivered },
      {
        ack: async () => {
          assertOpen()
          await ackConfirmed()
        },
        retry: async (delayMs, out, info) => {
          assertOpen()
          // A nak cannot carry headers: what the next delivery must see goes to the note.
          const error = out[HEADER.error]
          const next: Note = {
            reason: info.reason,
            ...(error !== undefined ? { error: oneLine(error) } : {}),
            ...(note?.headers || info.headers ? { headers: { ...note?.headers, ...info.headers } } : {}),
            ...(note?.released ? { released: note.released } : {}),
          }
          try {
            await this.writeNote(actor, m.seq, next)
          } catch (err) {
            throw this.wrap(err, 'write retry note')
          }
          m.nak(Math.ceil(delayMs))
        },
        deadLetter: async (out) => {
          assertOpen()
          await this.send(dlqActor(actor), body, out)
          await ackConfirmed()
        },
        release: async () => {
          assertOpen()
          try {
            await this.writeNote(actor, m.seq, { ...note, released: (note?.released ?? 0) + 1 })
          } catch (err) {
            this.logger?.warn({ actor, seq: m.seq, err: errorMessage(err) }, 'release note not written; the next delivery counts one attempt more')
          }
          m.nak()
        },
        giveBack: () => m.nak(),
        done: () => {
          clearInterval(entry.timer)
          this.unsettled.delete(entry)
          p.outstanding--
          this.pump(p)
        },
      },
    )
  }

  async messageCount(actor: string): Promise<number> {
    const info = await this.consumerInfo(actor)
    if (!info) throw new errors.ASYA_ERR_TRANSPORT_QUEUE_MISSING(`NATS consumer ${queueName(actor)} on stream ${NATS_STREAM}`, { details: { queue: queueName(actor) } })
    return info.num_pending
  }

  async inspectQueue(actor: string): Promise<QueueStats> {
    const info = await this.consumerInfo(actor)
    if (!info) throw new errors.ASYA_ERR_TRANSPORT_QUEUE_MISSING(`NATS consumer ${queueName(actor)} on stream ${NATS_STREAM}`, { details: { queue: queueName(actor) } })
    // Work-queue retention keeps a message in the stream until it is acked, so the subject's
    // stored count is everything not yet done; num_pending alone misses messages given back by
    // nak (release, retries), which wait for redelivery outside it.
    const { jsm } = await this.ready()
    const subject = natsSubject(actor)
    let stored: number | undefined
    try {
      stored = (await jsm.streams.info(NATS_STREAM, { subjects_filter: subject })).state.subjects?.[subject] ?? 0
    } catch (err) {
      this.logger?.debug({ actor, err: errorMessage(err) }, 'stream subject count unavailable; using num_pending')
    }
    const inFlight = info.num_ack_pending
    // A durable pull consumer is shared by every client that pulls from it; JetStream does not
    // count those clients (num_waiting counts open pull requests), so consumers stays unknown.
    return { messages: stored === undefined ? info.num_pending : Math.max(0, stored - inFlight), inFlight }
  }

  /** Deletes the consumer and purges its subject (a work-queue stream would keep them otherwise). */
  async deleteQueue(actor: string): Promise<void> {
    const { jsm } = await this.ready()
    this.routable.delete(actor)
    try {
      await jsm.consumers.delete(NATS_STREAM, queueName(actor))
    } catch (err) {
      if (!isNotFound(err)) throw this.wrap(err, `delete consumer ${queueName(actor)}`)
    }
    try {
      await jsm.streams.purge(NATS_STREAM, { filter: natsSubject(actor) })
    } catch (err) {
      if (!isNotFound(err)) throw this.wrap(err, `purge ${natsSubject(actor)}`)
    }
  }

  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    this.connected = false
    this.closeController.abort(new errors.ASYA_ERR_TRANSPORT_CLOSED('NATS transport'))
    for (const p of this.pulls) p.cancelled = true
    this.pulls.clear()
    // Unsettled deliveries go back at once (counted as an attempt, as a lost delivery would be).
    for (const u of [...this.unsettled]) {
      // A settlement in progress cannot finish on a closed connection: its message goes back too.
      if (!(u.open?.giveBack() ?? false)) u.msg.nak()
      clearInterval(u.timer)
    }
    this.unsettled.clear()
    const nc = this.nc
    this.nc = undefined
    if (nc) {
      await nc.flush().catch(() => undefined)
      await nc.close().catch(() => undefined)
    }
  }
}
