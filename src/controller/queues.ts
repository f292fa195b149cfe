import type { ClusterTransportName } from '../names.js'

export interface QueueRemoval {
  /** Queues actually deleted. */
  deleted: string[]
  /** Queues kept, with why (e.g. a DLQ still holding dead letters). */
  kept: Array<{ queue: string; reason: string }>
}

/** What a workload's annotations ask of its queue. */
export interface QueueWants {
  /** asya.sh/timeout: SQS queues get VisibilityTimeout = 2 × this (30 s – 12 h). */
  timeoutSeconds?: number
  /** asya.sh/max-replicas: NATS consumers get max_ack_pending = pod window × this. */
  maxReplicas?: number
}

/** Something about an actor's queues worth an Event and a status note, though the actor works. */
export interface QueueNotice {
  /** Event reason (CamelCase). */
  reason: 'QueueTypeMismatch'
  message: string
}

/**
 * Creates and removes an actor's queue and DLQ on one transport. `ensure` is idempotent and never
 * deletes and re-creates a queue (that would lose messages, SPEC §11.12): it changes an existing
 * queue's settings only where the broker allows it without loss (SQS attributes), and reports the
 * rest as ASYA_ERR_TRANSPORT_QUEUE_MISMATCH.
 */
export interface QueueProvisioner {
  readonly transport: ClusterTransportName
  /** Resolves with notices to report (an existing queue used as it is); empty when all is as configured. */
  ensure(actor: string, namespace: string, want?: QueueWants): Promise<QueueNotice[] | void>
  /**
   * Deletes the actor's queue (the caller decided retention allows it). A queue still holding
   * messages (or, on RabbitMQ, with consumers) is kept unless `force`; a DLQ holding messages is
   * always kept.
   */
  remove(actor: string, options?: { force?: boolean }): Promise<QueueRemoval>
  close(): Promise<void>
}
