import amqp, { type Channel, type ChannelModel } from 'amqplib'
import { reopening, type ChannelSource, type QueueMismatch, type RabbitQueueType } from '../transport/rabbitmq-topology.js'
import { errorMessage, errors } from '../errors.js'
import { dlqName, queueName } from '../names.js'
import type { Logger } from '../logger.js'
import type { QueueNotice, QueueProvisioner, QueueRemoval } from './queues.js'

export interface RabbitQueuesOptions {
  /** amqp(s):// URL; credentials must already be percent-encoded (transport/rabbitmq-transport amqpUrl). */
  url: string
  exchange: string
  /**
   * Declares the actor's queue, DLQ and binding with the sidecars' exact arguments; returns the
   * existing queues it used as they are (other type or other arguments).
   */
  declare: (open: ChannelSource, actor: string, exchange: string) => Promise<QueueMismatch[]>
  /** The configured queue type, for the report on a queue of the other type. @default quorum */
  queueType?: RabbitQueueType
  logger: Logger
}

/** AMQP reply code of a channel error (406 PRECONDITION_FAILED, 404 NOT_FOUND, ...). */
function replyCode(err: unknown): number | undefined {
  const code = (err as { code?: unknown } | null)?.code
  return typeof code === 'number' ? code : undefined
}

/**
 * Queue provisioning on RabbitMQ. One connection, a short-lived channel per operation: a
 * PRECONDITION_FAILED closes its channel, and must not take other actors' declares down with it.
 */
export class RabbitQueues implements QueueProvisioner {
  readonly transport = 'rabbitmq' as const
  private conn: Promise<ChannelModel> | undefined
  private closed = false

  constructor(private readonly o: RabbitQueuesOptions) {}

  private connection(): Promise<ChannelModel> {
    if (this.closed) return Promise.reject(new errors.ASYA_ERR_TRANSPORT_CLOSED('queue provisioner'))
    if (!this.conn) {
      const p = amqp.connect(this.o.url).then((c) => {
        c.on('error', (err: Error) => this.o.logger.warn({ err: err.message }, 'RabbitMQ connection error'))
        c.on('close', () => {
          if (this.conn === p) this.conn = undefined
        })
        return c
      })
      p.catch(() => {
        if (this.conn === p) this.conn = undefined
      })
      this.conn = p
    }
    return this.conn
  }

  private async withChannel<T>(fn: (ch: Channel) => Promise<T>): Promise<T> {
    let conn: ChannelModel
    try {
      conn = await this.connection()
    } catch (err) {
      throw new errors.ASYA_ERR_TRANSPORT_CONNECTION(`cannot connect to RabbitMQ: ${errorMessage(err)}`, { cause: err })
    }
    const ch = await conn.createChannel()
    let broken = false
    ch.on('error', () => {
      broken = true // reported through the rejected operation
    })
    ch.on('close', () => {
      broken = true
    })
    try {
      return await fn(ch)
    } finally {
      if (!broken) await ch.close().catch(() => undefined)
    }
  }

  async ensure(actor: string): Promise<QueueNotice[]> {
    let conn: ChannelModel
    try {
      conn = await this.connection()
    } catch (err) {
      throw new errors.ASYA_ERR_TRANSPORT_CONNECTION(`cannot connect to RabbitMQ: ${errorMessage(err)}`, { cause: err })
    }
    // A PRECONDITION_FAILED closes its channel: the source opens a fresh one for the next step.
    const opened: Channel[] = []
    const open = reopening(async () => {
      const ch = await conn.createChannel()
      opened.push(ch)
      return ch
    })
    let mismatches: QueueMismatch[]
    try {
      mismatches = await this.o.declare(open, actor, this.o.exchange)
    } finally {
      for (const ch of opened) await ch.close().catch(() => undefined)
    }
    const wanted = this.o.queueType ?? 'quorum'
    const other = mismatches.filter((m) => m.existingType === undefined)
    if (other.length > 0) {
      throw new errors.ASYA_ERR_TRANSPORT_QUEUE_MISMATCH(other.map((m) => m.queue).join(', '), other.map((m) => m.message).join('; '), {
        details: { queue: queueName(actor), mismatches: other },
      })
    }
    return mismatches.map((m) => ({
      reason: 'QueueTypeMismatch',
      message:
        `${m.queue} is a ${m.existingType ?? '?'} queue, ASYA_RABBITMQ_QUEUE_TYPE is ${wanted}: used as it is, never re-created` +
        (m.existingType === 'classic' ? '; on a classic queue the broker does not count deliveries, so a message that kills its consumer every time is redelivered without end (crash-loop detection off)' : '') +
        '; to migrate: docs/operations.md#queue-type-quorum-or-classic',
    }))
  }

  async remove(actor: string, options: { force?: boolean } = {}): Promise<QueueRemoval> {
    const out: QueueRemoval = { deleted: [], kept: [] }
    // Counted first, then deleted: quorum queues refuse queue.delete if-empty (and the broker
    // answers it by closing the connection). A message arriving between the two is the window
    // `force-delete` accepts anyway; without force, a queue that holds messages or still has
    // consumers is kept and the caller retries later.
    const inspect = async (queue: string): Promise<{ messages: number; consumers: number } | undefined> => {
      try {
        return await this.withChannel(async (ch) => {
          const q = await ch.checkQueue(queue)
          return { messages: q.messageCount, consumers: q.consumerCount }
        })
      } catch (err) {
        if (replyCode(err) === 404) return undefined
        throw err
      }
    }
    const main = await inspect(queueName(actor))
    if (main) {
      if (!options.force && (main.messages > 0 || main.consumers > 0)) {
        out.kept.push({ queue: queueName(actor), reason: `holds ${main.messages} messages and has ${main.consumers} consumers; deleted once empty and unused (asya.sh/queue-retention: force-delete deletes it anyway)` })
      } else {
        await this.withChannel(async (ch) => ch.deleteQueue(queueName(actor)))
        out.deleted.push(queueName(actor))
      }
    }
    // Dead letters are evidence an operator may still need: the DLQ goes only when empty, forced or not.
    const dlq = await inspect(dlqName(actor))
    if (dlq) {
      if (dlq.messages > 0) out.kept.push({ queue: dlqName(actor), reason: `holds ${dlq.messages} dead-lettered messages` })
      else {
        await this.withChannel(async (ch) => ch.deleteQueue(dlqName(actor)))
        out.deleted.push(dlqName(actor))
      }
    }
    return out
  }

  /** Test/diagnostic helper: message count of a queue, or undefined when it does not exist. */
  async messageCount(queue: string): Promise<number | undefined> {
    try {
      return await this.withChannel(async (ch) => (await ch.checkQueue(queue)).messageCount)
    } catch (err) {
      if (replyCode(err) === 404) return undefined
      throw err
    }
  }

  async close(): Promise<void> {
    this.closed = true
    const c = this.conn
    this.conn = undefined
    if (c) await (await c.catch(() => undefined))?.close().catch(() => undefined)
  }
}
