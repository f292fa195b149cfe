import amqp, { type Channel, type ChannelModel } from 'amqplib'
import { AsyaError, errorMessage } from '../errors.js'
import { dlqName, queueName } from '../envelope.js'
import type { Logger } from '../logger.js'
import type { QueueProvisioner, QueueRemoval } from './queues.js'

export interface RabbitQueuesOptions {
  /** amqp(s):// URL; credentials must already be percent-encoded (transport/rabbitmq-transport amqpUrl). */
  url: string
  exchange: string
  /** Declares the actor's queue, DLQ and binding with the sidecars' exact arguments. */
  declare: (ch: Channel, actor: string, exchange: string) => Promise<void>
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
    if (this.closed) return Promise.reject(new AsyaError('ASYA_ERR_TRANSPORT_CLOSED', 'queue provisioner is closed'))
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
      throw new AsyaError('ASYA_ERR_TRANSPORT_CONNECTION', `cannot connect to RabbitMQ: ${errorMessage(err)}`, { cause: err })
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

  async ensure(actor: string): Promise<void> {
    await this.withChannel(async (ch) => {
      try {
        await this.o.declare(ch, actor, this.o.exchange)
      } catch (err) {
        if (replyCode(err) === 406) {
          throw new AsyaError(
            'ASYA_ERR_TRANSPORT_QUEUE_MISMATCH',
            `queue ${queueName(actor)} or ${dlqName(actor)} exists with other arguments; it is left as is (deleting it would lose messages): ${errorMessage(err)}`,
            { cause: err, details: { queue: queueName(actor) } },
          )
        }
        throw err
      }
    })
  }

  async remove(actor: string): Promise<QueueRemoval> {
    const out: QueueRemoval = { deleted: [], kept: [] }
    await this.withChannel(async (ch) => {
      await ch.deleteQueue(queueName(actor))
      out.deleted.push(queueName(actor))
    })
    // Dead letters are evidence an operator may still need: the DLQ goes only when empty.
    try {
      await this.withChannel(async (ch) => {
        await ch.deleteQueue(dlqName(actor), { ifEmpty: true })
        out.deleted.push(dlqName(actor))
      })
    } catch (err) {
      if (replyCode(err) !== 406) throw err
      out.kept.push({ queue: dlqName(actor), reason: 'holds dead-lettered messages' })
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
