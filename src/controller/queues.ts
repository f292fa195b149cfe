import type { TransportName } from '../transport/transport.js'

export type QueueTransport = Exclude<TransportName, 'memory'>

export interface QueueRemoval {
  /** Queues actually deleted. */
  deleted: string[]
  /** Queues kept, with why (e.g. a DLQ still holding dead letters). */
  kept: Array<{ queue: string; reason: string }>
}

/**
 * Creates and removes an actor's queue and DLQ on one transport. `ensure` is idempotent and
 * never changes an existing queue: arguments that differ are reported as
 * ASYA_ERR_TRANSPORT_QUEUE_MISMATCH (deleting and re-creating would lose messages, SPEC §11.12).
 */
export interface QueueProvisioner {
  readonly transport: QueueTransport
  ensure(actor: string, namespace: string): Promise<void>
  /** Deletes the actor's queue (the caller decided retention allows it); a DLQ holding messages is kept. */
  remove(actor: string): Promise<QueueRemoval>
  close(): Promise<void>
}
