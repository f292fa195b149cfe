/**
 * Amazon SQS transport (@aws-sdk/client-sqs), SPEC §3. Queue `asya-<actor>`, long polling,
 * visibility extended on a heartbeat while a delivery is unsettled (a 30-minute GPU call is not
 * redelivered mid-run), ack = DeleteMessage, delayed retry = re-send with DelaySeconds (carrying the
 * attempt and reason attributes) + delete, dead letters to `asya-<actor>-dlq` with reason
 * attributes. Works against emulators and LocalStack through `endpoint`.
 */
import {
  ChangeMessageVisibilityCommand,
  CreateQueueCommand,
  DeleteMessageCommand,
  DeleteQueueCommand,
  GetQueueAttributesCommand,
  GetQueueUrlCommand,
  ListQueuesCommand,
  ReceiveMessageCommand,
  SendMessageCommand,
  SQSClient,
  type Message,
  type MessageAttributeValue,
  type SQSClientConfig,
} from '@aws-sdk/client-sqs'
import { errorMessage, errors, isAsyaError, type AsyaError } from '../errors.js'
import { HEADER, HEADER_PREFIX, QUEUE_PREFIX, dlqActor, queueName } from '../names.js'
import type { Logger } from '../logger.js'
import { backoffDelay, sleep } from '../backoff.js'
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

/** SQS limit on a message (body + attributes). */
export const SQS_MAX_MESSAGE_BYTES = 262_144
/** SQS limits: DelaySeconds ≤ 900, VisibilityTimeout ≤ 43200, ≤ 10 attributes per message. */
const MAX_DELAY_SECONDS = 900
const MAX_VISIBILITY_SECONDS = 43_200
const MAX_ATTRIBUTES = 10

export interface SqsTransportOptions {
  /** ASYA_AWS_REGION. */
  region: string
  /** ASYA_SQS_ENDPOINT: emulator / LocalStack URL; returned queue URLs are rewritten to it. */
  endpoint?: string
  /** Visibility timeout of received messages (≥ 2 × the runtime timeout). @default 60 */
  visibilityTimeoutSeconds?: number
  /** Long-poll wait. @default 20 */
  waitTimeSeconds?: number
  /** How often an unsettled delivery's visibility is extended. @default visibility / 3 */
  heartbeatIntervalMs?: number
  /** Explicit credentials (tests); otherwise the SDK default chain (env, IRSA web identity, ...). */
  credentials?: SQSClientConfig['credentials']
  logger?: Logger
}

interface Consumer {
  actor: string
  handler: DeliveryHandler
  prefetch: number
  inFlight: number
  cancelled: boolean
  abort: AbortController
  wake?: () => void
}

interface Unsettled {
  queueUrl: string
  receiptHandle: string
  timer: NodeJS.Timeout
}

function errName(err: unknown): string {
  const e = err as { name?: string; Code?: string; code?: string } | null
  return e?.name ?? e?.Code ?? e?.code ?? ''
}

function isMissingQueue(err: unknown): boolean {
  const n = errName(err)
  return n === 'QueueDoesNotExist' || n === 'AWS.SimpleQueueService.NonExistentQueue' || /NonExistentQueue|QueueDoesNotExist/.test(errorMessage(err))
}

function isCredentialsError(err: unknown): boolean {
  const n = errName(err)
  return /CredentialsProviderError|InvalidClientTokenId|UnrecognizedClientException|SignatureDoesNotMatch|AccessDenied|ExpiredToken/.test(n)
}

export class SqsTransport implements Transport {
  readonly name = 'sqs' as const
  private readonly client: SQSClient
  private readonly visibility: number
  private readonly waitTime: number
  private readonly heartbeatMs: number
  private readonly logger: Logger | undefined
  private readonly urls = new Map<string, string>()
  private readonly consumers = new Set<Consumer>()
  private readonly unsettled = new Set<Unsettled>()
  private ready = false
  private closed = false
  private readonly closeController = new AbortController()

  constructor(o: SqsTransportOptions) {
    this.visibility = Math.min(MAX_VISIBILITY_SECONDS, Math.max(1, Math.round(o.visibilityTimeoutSeconds ?? 60)))
    this.waitTime = Math.min(20, Math.max(0, Math.round(o.waitTimeSeconds ?? 20)))
    this.heartbeatMs = o.heartbeatIntervalMs ?? Math.max(500, (this.visibility * 1000) / 3)
    this.logger = o.logger
    this.client = new SQSClient({
      region: o.region,
      ...(o.endpoint ? { endpoint: o.endpoint } : {}),
      ...(o.credentials ? { credentials: o.credentials } : {}),
      // The SDK retries throttling, 5xx and network errors with its own backoff.
      maxAttempts: 4,
    })
  }

  isReady(): boolean {
    return this.ready && !this.closed
  }

  /** Verifies the endpoint and credentials (retrying with backoff until it works or close()). */
  async connect(): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      if (this.closed) throw new errors.ASYA_ERR_TRANSPORT_CLOSED('SQS transport')
      try {
        await this.client.send(new ListQueuesCommand({ MaxResults: 1, QueueNamePrefix: QUEUE_PREFIX }))
        this.ready = true
        return
      } catch (err) {
        this.ready = false
        const delay = backoffDelay(attempt, { initialMs: 500, maxMs: 15_000 })
        if (isCredentialsError(err)) {
          this.logger?.error({ code: 'ASYA_ERR_TRANSPORT_CREDENTIALS', err: errorMessage(err), retryInMs: delay }, 'SQS rejected the credentials (check IRSA / AWS_* env)')
        } else {
          this.logger?.warn({ err: errorMessage(err), retryInMs: delay }, 'SQS not reachable; retrying')
        }
        await sleep(delay, this.closeController.signal).catch(() => undefined)
      }
    }
  }

  /**
   * Queue URLs are used verbatim: emulators (fauxqs, LocalStack) identify a queue by its URL. With
   * `endpoint` set, the SDK sends every request to the endpoint whatever host the URL names
   * (it only routes by the URL's host when no endpoint is configured), so an unreachable host in
   * a returned URL (localhost.localstack.cloud, sqs.us-east-1.127.0.0.1) does no harm.
   */
  private rewrite(url: string): string {
    return url
  }

  private async queueUrl(actor: string, refresh = false): Promise<string> {
    const cached = this.urls.get(actor)
    if (cached && !refresh) return cached
    try {
      const r = await this.client.send(new GetQueueUrlCommand({ QueueName: queueName(actor) }))
      const url = this.rewrite(r.QueueUrl ?? '')
      this.urls.set(actor, url)
      return url
    } catch (err) {
      this.urls.delete(actor)
      if (isMissingQueue(err)) {
        throw new errors.ASYA_ERR_TRANSPORT_UNROUTABLE(queueName(actor), 'SQS', { cause: err, details: { queue: queueName(actor) } })
      }
      throw this.wrap(err, 'GetQueueUrl')
    }
  }

  private wrap(err: unknown, op: string): AsyaError {
    if (isAsyaError(err)) return err
    if (isCredentialsError(err)) {
      this.ready = false
      return new errors.ASYA_ERR_TRANSPORT_CREDENTIALS(`SQS ${op}`, errorMessage(err), { cause: err })
    }
    return new errors.ASYA_ERR_TRANSPORT_PUBLISH(`SQS ${op} failed: ${errorMessage(err)}`, { cause: err })
  }

  /** Creates the queue (and DLQ) only when missing: existing queues keep the controller's attributes. */
  async ensureQueue(actor: string, options: { deadLetterQueue?: boolean } = {}): Promise<void> {
    const names = [actor, ...(options.deadLetterQueue === false ? [] : [dlqActor(actor)])]
    for (const a of names) {
      try {
        await this.queueUrl(a, true)
      } catch (err) {
        if (!isAsyaError(err, 'ASYA_ERR_TRANSPORT_UNROUTABLE')) throw err
        const r = await this.client.send(new CreateQueueCommand({ QueueName: queueName(a), Attributes: { VisibilityTimeout: String(this.visibility) } }))
        this.urls.set(a, this.rewrite(r.QueueUrl ?? ''))
      }
    }
  }

  private attributes(headers: TransportHeaders): Record<string, MessageAttributeValue> {
    const out: Record<string, MessageAttributeValue> = {}
    // Ours first: they must survive the 10-attribute limit.
    const keys = Object.keys(headers).sort((a, b) => Number(!a.startsWith(HEADER_PREFIX)) - Number(!b.startsWith(HEADER_PREFIX)))
    for (const k of keys) {
      const v = headers[k]
      if (v === undefined || v === '') continue // SQS rejects empty string values
      if (Object.keys(out).length >= MAX_ATTRIBUTES) {
        this.logger?.warn({ dropped: k }, 'more than 10 transport headers: SQS keeps 10')
        break
      }
      out[k.replace(/[^A-Za-z0-9_.-]/g, '_')] = { DataType: 'String', StringValue: v }
    }
    return out
  }

  private static size(body: Buffer, attrs: Record<string, MessageAttributeValue>): number {
    let n = body.length
    for (const [k, v] of Object.entries(attrs)) n += Buffer.byteLength(k) + Buffer.byteLength(v.DataType ?? '') + Buffer.byteLength(v.StringValue ?? '')
    return n
  }

  private async send(actor: string, body: Buffer, headers: TransportHeaders, delaySeconds = 0): Promise<void> {
    if (this.closed) throw new errors.ASYA_ERR_TRANSPORT_CLOSED('SQS transport')
    const attrs = this.attributes(headers)
    const size = SqsTransport.size(body, attrs)
    if (size > SQS_MAX_MESSAGE_BYTES) {
      throw new errors.ASYA_ERR_PAYLOAD_TOO_LARGE(size, 'SQS', `${SQS_MAX_MESSAGE_BYTES} bytes (256 KiB)`, {
        details: { size, limit: SQS_MAX_MESSAGE_BYTES, queue: queueName(actor) },
      })
    }
    const cmd = (url: string): SendMessageCommand =>
      new SendMessageCommand({
        QueueUrl: url,
        MessageBody: body.toString('utf8'),
        ...(Object.keys(attrs).length > 0 ? { MessageAttributes: attrs } : {}),
        ...(delaySeconds > 0 ? { DelaySeconds: delaySeconds } : {}),
      })
    try {
      await this.client.send(cmd(await this.queueUrl(actor)))
    } catch (err) {
      if (!isMissingQueue(err)) throw this.wrap(err, 'SendMessage')
      // A cached URL of a deleted queue: resolve again once (throws UNROUTABLE if really gone).
      try {
        await this.client.send(cmd(await this.queueUrl(actor, true)))
      } catch (err2) {
        if (isMissingQueue(err2)) throw new errors.ASYA_ERR_TRANSPORT_UNROUTABLE(queueName(actor), 'SQS', { cause: err2 })
        throw this.wrap(err2, 'SendMessage')
      }
    }
  }

  async publish(actor: string, body: Buffer, options: PublishOptions = {}): Promise<void> {
    await this.send(actor, body, options.headers ?? {})
  }

  async consume(actor: string, handler: DeliveryHandler, options: ConsumeOptions): Promise<Subscription> {
    const c: Consumer = { actor, handler, prefetch: Math.max(1, options.prefetch), inFlight: 0, cancelled: false, abort: new AbortController() }
    const url = await this.queueUrl(actor).catch((err: unknown) => {
      if (isAsyaError(err, 'ASYA_ERR_TRANSPORT_UNROUTABLE')) throw new errors.ASYA_ERR_TRANSPORT_QUEUE_MISSING(`SQS queue ${queueName(actor)}`, { cause: err })
      throw err
    })
    this.consumers.add(c)
    void this.pollLoop(c, url)
    return {
      cancel: async () => {
        c.cancelled = true
        c.abort.abort()
        c.wake?.()
        this.consumers.delete(c)
      },
      setPrefetch: async (n: number) => {
        // Takes effect at the next receive: a long poll in progress asks for the old count at most.
        c.prefetch = Math.max(1, n)
        c.wake?.()
      },
    }
  }

  private async pollLoop(c: Consumer, initialUrl: string): Promise<void> {
    let url = initialUrl
    let failures = 0
    while (!c.cancelled && !this.closed) {
      if (c.inFlight >= c.prefetch) {
        await new Promise<void>((r) => (c.wake = r))
        c.wake = undefined
        continue
      }
      let messages: Message[] = []
      try {
        const r = await this.client.send(
          new ReceiveMessageCommand({
            QueueUrl: url,
            MaxNumberOfMessages: Math.min(10, c.prefetch - c.inFlight),
            WaitTimeSeconds: this.waitTime,
            VisibilityTimeout: this.visibility,
            MessageSystemAttributeNames: ['ApproximateReceiveCount'],
            MessageAttributeNames: ['All'],
          }),
          { abortSignal: c.abort.signal },
        )
        messages = r.Messages ?? []
        failures = 0
        this.ready = true
      } catch (err) {
        if (c.cancelled || this.closed) break
        failures++
        if (isMissingQueue(err)) {
          this.logger?.warn({ actor: c.actor }, 'SQS queue is gone; waiting for it to be re-created')
          url = await this.queueUrl(c.actor, true).catch(() => url)
        } else {
          if (isCredentialsError(err)) this.ready = false
          this.logger?.warn({ err: errorMessage(err), actor: c.actor }, 'SQS receive failed; retrying')
        }
        await sleep(backoffDelay(failures, { initialMs: 200, maxMs: 10_000 }), this.closeController.signal).catch(() => undefined)
        continue
      }
      for (const m of messages) this.dispatch(c, url, m)
    }
  }

  private dispatch(c: Consumer, url: string, m: Message): void {
    const receiptHandle = m.ReceiptHandle ?? ''
    const headers: TransportHeaders = {}
    for (const [k, v] of Object.entries(m.MessageAttributes ?? {})) if (v.StringValue !== undefined) headers[k] = v.StringValue
    const receives = Number(m.Attributes?.ApproximateReceiveCount ?? '1') || 1
    const attempt = attemptOf(headers, receives - 1)
    const body = Buffer.from(m.Body ?? '', 'utf8')
    c.inFlight++
    // Heartbeat: keep the message invisible while it is being processed (until settled or given back).
    const entry: Unsettled = {
      queueUrl: url,
      receiptHandle,
      timer: setInterval(() => {
        this.client
          .send(new ChangeMessageVisibilityCommand({ QueueUrl: url, ReceiptHandle: receiptHandle, VisibilityTimeout: this.visibility }))
          .catch((err: unknown) => this.logger?.warn({ err: errorMessage(err), actor: c.actor }, 'visibility heartbeat failed'))
      }, this.heartbeatMs),
    }
    entry.timer.unref()
    this.unsettled.add(entry)
    const del = async (): Promise<void> => {
      await this.client.send(new DeleteMessageCommand({ QueueUrl: url, ReceiptHandle: receiptHandle })).catch((err: unknown) => {
        throw new errors.ASYA_ERR_TRANSPORT_CONNECTION(`DeleteMessage failed (the message will be delivered again): ${errorMessage(err)}`, { cause: err })
      })
    }
    const actor = c.actor
    const open = openDelivery(
      { actor, body, headers, attempt, redelivered: receives > 1 },
      {
        ack: del,
        retry: async (delayMs, out, info) => {
          const seconds = Math.max(1, Math.ceil(delayMs / 1000))
          if (seconds > MAX_DELAY_SECONDS && info.headers === undefined) {
            // Longer than SQS can delay a send: keep the message invisible instead.
            await this.client.send(
              new ChangeMessageVisibilityCommand({ QueueUrl: url, ReceiptHandle: receiptHandle, VisibilityTimeout: Math.min(MAX_VISIBILITY_SECONDS, seconds) }),
            )
            return
          }
          // Attributes cannot change on an SQS message: the retry is a delayed copy, then a delete.
          await this.send(actor, body, out, Math.min(MAX_DELAY_SECONDS, seconds))
          await del()
        },
        deadLetter: async (out) => {
          await this.send(dlqActor(actor), body, out)
          await del()
        },
        release: async () => {
          // A re-sent copy keeps the attempt number (a visibility reset would count a receive).
          await this.send(actor, body, { ...headers, [HEADER.attempt]: String(attempt) })
          await del()
        },
        giveBack: () => {
          void this.client.send(new ChangeMessageVisibilityCommand({ QueueUrl: url, ReceiptHandle: receiptHandle, VisibilityTimeout: 0 })).catch(() => undefined)
        },
        done: () => {
          clearInterval(entry.timer)
          this.unsettled.delete(entry)
          c.inFlight--
          c.wake?.()
        },
      },
    )
    runHandler(c.handler, open, this.logger)
  }

  async messageCount(actor: string): Promise<number> {
    return (await this.inspectQueue(actor)).messages
  }

  async inspectQueue(actor: string): Promise<QueueStats> {
    let url: string
    try {
      url = await this.queueUrl(actor, true)
    } catch (err) {
      if (isAsyaError(err, 'ASYA_ERR_TRANSPORT_UNROUTABLE')) throw new errors.ASYA_ERR_TRANSPORT_QUEUE_MISSING(`SQS queue ${queueName(actor)}`, { cause: err })
      throw err
    }
    const r = await this.client.send(new GetQueueAttributesCommand({ QueueUrl: url, AttributeNames: ['ApproximateNumberOfMessages', 'ApproximateNumberOfMessagesNotVisible'] }))
    const notVisible = r.Attributes?.ApproximateNumberOfMessagesNotVisible
    // SQS knows no consumers: long pollers are not registered anywhere.
    return { messages: Number(r.Attributes?.ApproximateNumberOfMessages ?? '0'), ...(notVisible !== undefined ? { inFlight: Number(notVisible) } : {}) }
  }

  async deleteQueue(actor: string): Promise<void> {
    try {
      const url = await this.queueUrl(actor, true)
      await this.client.send(new DeleteQueueCommand({ QueueUrl: url }))
    } catch (err) {
      if (!isAsyaError(err, 'ASYA_ERR_TRANSPORT_UNROUTABLE') && !isMissingQueue(err)) throw err
    } finally {
      this.urls.delete(actor)
    }
  }

  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    this.ready = false
    this.closeController.abort()
    for (const c of this.consumers) {
      c.cancelled = true
      c.abort.abort()
      c.wake?.()
    }
    this.consumers.clear()
    // Unsettled deliveries become visible again at once, as a broker returns unacked messages.
    await Promise.all(
      [...this.unsettled].map(async (u) => {
        clearInterval(u.timer)
        await this.client.send(new ChangeMessageVisibilityCommand({ QueueUrl: u.queueUrl, ReceiptHandle: u.receiptHandle, VisibilityTimeout: 0 })).catch(() => undefined)
      }),
    )
    this.unsettled.clear()
    this.client.destroy()
  }
}
