import { connect as natsConnect, type NatsConnection } from '@nats-io/transport-node'
import { JetStreamApiError, jetstreamManager, type JetStreamManager } from '@nats-io/jetstream'
import { errorMessage, errors } from '../errors.js'
import type { Logger } from '../logger.js'
import {
  consumerConfigProblems,
  desiredConsumerConfig,
  desiredStreamConfig,
  natsConnectionOptions,
  streamConfigProblems,
  type NatsTransportOptions,
} from '../transport/nats-transport.js'
import type { QueueWants, QueueProvisioner, QueueRemoval } from './queues.js'
import { NATS_STREAM, dlqActor, dlqName, natsSubject, queueName } from '../names.js'

export interface NatsQueuesOptions {
  /** Connection options (servers, credentials, TLS) as the sidecar takes them. */
  connection: Pick<NatsTransportOptions, 'servers' | 'user' | 'password' | 'token' | 'credsFile' | 'nkeySeedFile' | 'tls'>
  /** Replicas of the stream when the controller creates it. @default 1 */
  replicas?: number
  /** Widest delivery window of one pod (the sidecar's ASYA_PREFETCH_WIDE). @default 32 */
  podWindow?: number
  logger: Logger
}

const NOT_FOUND = new Set([10014, 10059])

/**
 * Stream and consumers on NATS JetStream (docs/nats.md). The stream `ASYA` is created when missing
 * and otherwise only checked: a stream with other subjects, retention or storage is reported
 * (ASYA_ERR_TRANSPORT_QUEUE_MISMATCH, workload status QueueError) and never changed. Each actor's
 * consumers `asya-<a>` and `asya-<a>-dlq` follow the workload's annotations: AckWait from
 * `asya.sh/timeout`, max_ack_pending = pod window × `asya.sh/max-replicas`; those two fields are
 * the controller's to keep in line (a consumer update, no message is touched).
 */
export class NatsQueues implements QueueProvisioner {
  readonly transport = 'nats' as const
  private conn: Promise<{ nc: NatsConnection; jsm: JetStreamManager }> | undefined

  constructor(private readonly o: NatsQueuesOptions) {}

  private manager(): Promise<JetStreamManager> {
    if (!this.conn) {
      const c = this.o.connection
      this.conn = (async () => {
        const nc = await natsConnect(natsConnectionOptions({ ...c, servers: c.servers ?? ['nats://localhost:4222'], name: 'asya-controller' }))
        return { nc, jsm: await jetstreamManager(nc) }
      })().catch((err: unknown) => {
        this.conn = undefined
        throw new errors.ASYA_ERR_TRANSPORT_CONNECTION(`NATS not reachable: ${errorMessage(err)}`, { cause: err })
      })
    }
    return this.conn.then((x) => x.jsm)
  }

  private async ensureStream(jsm: JetStreamManager): Promise<void> {
    let config
    try {
      config = (await jsm.streams.info(NATS_STREAM)).config
    } catch (err) {
      if (!(err instanceof JetStreamApiError && NOT_FOUND.has(err.code))) throw err
      config = (await jsm.streams.add(desiredStreamConfig(this.o.replicas ?? 1))).config
      this.o.logger.info({ stream: NATS_STREAM }, 'NATS stream created')
    }
    const problems = streamConfigProblems(config)
    if (problems.length > 0) {
      throw new errors.ASYA_ERR_TRANSPORT_QUEUE_MISMATCH(`NATS stream ${NATS_STREAM}`, `another configuration: ${problems.join('; ')}`, {
        details: { stream: NATS_STREAM, problems },
      })
    }
  }

  async ensure(actor: string, _namespace: string, hints: QueueWants = {}): Promise<void> {
    const jsm = await this.manager()
    await this.ensureStream(jsm)
    // The sidecar applies a minimum of 10 s to the AckWait it derives; the controller does the same.
    const ackWaitMs = Math.max(10, hints.timeoutSeconds ?? 300) * 1000
    const maxAckPending = (this.o.podWindow ?? 32) * (hints.maxReplicas ?? 50)
    for (const a of [actor, dlqActor(actor)]) {
      const desired = desiredConsumerConfig(a, { ackWaitMs, maxAckPending })
      let existing
      try {
        existing = await jsm.consumers.info(NATS_STREAM, queueName(a))
      } catch (err) {
        if (!(err instanceof JetStreamApiError && NOT_FOUND.has(err.code))) throw err
      }
      if (!existing) {
        await jsm.consumers.add(NATS_STREAM, desired)
        continue
      }
      const problems = consumerConfigProblems(a, existing.config)
      if (problems.length > 0) {
        throw new errors.ASYA_ERR_TRANSPORT_QUEUE_MISMATCH(`NATS consumer ${queueName(a)}`, `another configuration: ${problems.join('; ')}`, {
          details: { consumer: queueName(a), problems },
        })
      }
      if (existing.config.ack_wait !== desired.ack_wait || existing.config.max_ack_pending !== desired.max_ack_pending) {
        await jsm.consumers.update(NATS_STREAM, queueName(a), { ack_wait: desired.ack_wait, max_ack_pending: desired.max_ack_pending })
        this.o.logger.info({ consumer: queueName(a), ack_wait_ms: ackWaitMs, max_ack_pending: maxAckPending }, 'NATS consumer follows the annotations')
      }
    }
  }

  async remove(actor: string): Promise<QueueRemoval> {
    const jsm = await this.manager()
    const out: QueueRemoval = { deleted: [], kept: [] }
    const del = async (a: string): Promise<void> => {
      try {
        await jsm.consumers.delete(NATS_STREAM, queueName(a))
      } catch (err) {
        if (!(err instanceof JetStreamApiError && NOT_FOUND.has(err.code))) throw err
      }
      await jsm.streams.purge(NATS_STREAM, { filter: natsSubject(a) }).catch((err: unknown) => {
        if (!(err instanceof JetStreamApiError && NOT_FOUND.has(err.code))) throw err
      })
    }
    await del(actor)
    out.deleted.push(queueName(actor))
    let dead = 0
    try {
      const info = await jsm.consumers.info(NATS_STREAM, dlqName(actor))
      dead = info.num_pending + info.num_ack_pending
    } catch (err) {
      if (!(err instanceof JetStreamApiError && NOT_FOUND.has(err.code))) throw err
      return out
    }
    if (dead > 0) out.kept.push({ queue: dlqName(actor), reason: `holds ${dead} dead-lettered messages` })
    else {
      await del(dlqActor(actor))
      out.deleted.push(dlqName(actor))
    }
    return out
  }

  async close(): Promise<void> {
    const c = this.conn
    this.conn = undefined
    if (c) await c.then((x) => x.nc.close()).catch(() => undefined)
  }
}
