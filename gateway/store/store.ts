/**
 * The envelope store: status, history and live updates of every envelope the gateway tracks.
 * Implementations: PostgreSQL (production; every replica shares it) and memory (local runs only).
 *
 * Invariants every implementation keeps (tested against both):
 * - a final status (`succeeded`/`failed`) is final: later progress, final or timeout writes are refused;
 * - progress_percent never decreases, also under concurrent reports;
 * - each write that changes an envelope appends one update; per envelope, update sequence numbers
 *   increase in commit order, so "everything after seq N" is always a gap-free suffix;
 * - subscribers receive every update committed after they subscribed, on every replica.
 */
import type { EnvelopeRecord, FinalReport, NewEnvelope, ProgressReport, SequencedUpdate, WriteResult } from './types.js'

export type UpdateListener = (update: SequencedUpdate) => void

export interface StoreSubscription {
  /** Stops delivery to this listener. */
  close(): void
}

export interface EnvelopeStore {
  readonly kind: 'postgres' | 'memory'
  /** Connects and (PostgreSQL) applies migrations under an advisory lock. */
  start(): Promise<void>
  /** Creates a `pending` envelope. Returns false when the id exists already (nothing changed). */
  create(envelope: NewEnvelope): Promise<{ created: boolean; record: EnvelopeRecord }>
  get(id: string): Promise<EnvelopeRecord | undefined>
  /** Updates with seq > afterSeq, oldest first, at most `limit`. */
  updatesSince(id: string, afterSeq: number, limit?: number): Promise<SequencedUpdate[]>
  /** pending → running (no-op when it is running or final already). */
  markRunning(id: string, message: string): Promise<WriteResult>
  /** A sidecar's progress report (SPEC §10.2). */
  progress(id: string, report: ProgressReport): Promise<WriteResult>
  /** An end actor's (or the gateway's own) final status. */
  finish(id: string, report: FinalReport): Promise<WriteResult>
  /** Fails every non-final envelope whose deadline passed (`envelope timed out`); returns how many. */
  expireDue(limit?: number): Promise<number>
  /** Deletes final envelopes last updated before `before`; returns how many. */
  deleteFinalBefore(before: Date, limit?: number): Promise<number>
  /** True while the envelope exists, is not final and is before its deadline (GET /envelopes/{id}/active). */
  isActive(id: string): Promise<boolean>
  /** Live updates of one envelope (every update committed after this call). */
  subscribe(id: string, listener: UpdateListener): StoreSubscription
  /** Health of the store's connections (GET /health stays 200 either way; used in logs and metrics). */
  isHealthy(): boolean
  close(): Promise<void>
}

/** Seconds a store operation took, by operation name; set by the gateway to feed its metrics. */
export type StoreTimer = (operation: string, seconds: number, ok: boolean) => void
