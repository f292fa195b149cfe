/**
 * In-memory envelope store: for local runs and the demo only (one process, nothing survives a
 * restart). Same invariants as the PostgreSQL store; the gateway warns when it uses it.
 */
import type { EnvelopeStore, StoreSubscription, UpdateListener } from './store.js'
import {
  completionRows,
  effectiveActors,
  isFinalStatus,
  progressRows,
  progressStep,
  withEarlierMessages,
  type ProgressRow,
  type EnvelopeRecord,
  type EnvelopeUpdate,
  type FinalReport,
  type NewEnvelope,
  type ProgressReport,
  type SequencedUpdate,
  type WriteResult,
} from './types.js'
import { UpdateHub } from './update-hub.js'

interface Entry {
  record: EnvelopeRecord
  deadlineMs?: number
  updates: SequencedUpdate[]
  /** Last progress step recorded (see progressRows); -1 before the first report. */
  step: number
}

export class MemoryEnvelopeStore implements EnvelopeStore {
  readonly kind = 'memory' as const
  private readonly entries = new Map<string, Entry>()
  private seq = 0
  private readonly hub = new UpdateHub(async (id, after) => this.since(id, after))

  async start(): Promise<void> {}

  async create(e: NewEnvelope): Promise<{ created: boolean; record: EnvelopeRecord }> {
    const existing = this.entries.get(e.id)
    if (existing) return { created: false, record: clone(existing.record) }
    const now = new Date()
    const deadlineMs = e.deadline ? e.deadline.getTime() : e.timeoutSec !== undefined && e.timeoutSec > 0 ? now.getTime() + e.timeoutSec * 1000 : undefined
    const record: EnvelopeRecord = {
      id: e.id,
      ...(e.parentId !== undefined ? { parent_id: e.parentId } : {}),
      status: 'pending',
      route: { actors: [...e.actors], current: e.current },
      payload: e.payload,
      ...(e.timeoutSec !== undefined ? { timeout_seconds: e.timeoutSec } : {}),
      ...(deadlineMs !== undefined ? { deadline: new Date(deadlineMs).toISOString() } : {}),
      progress_percent: 0,
      current_actor_idx: 0,
      actors_completed: 0,
      total_actors: e.actors.length,
      created_at: now.toISOString(),
      updated_at: now.toISOString(),
    }
    this.entries.set(e.id, { record, ...(deadlineMs !== undefined ? { deadlineMs } : {}), updates: [], step: -1 })
    return { created: true, record: clone(record) }
  }

  async get(id: string): Promise<EnvelopeRecord | undefined> {
    const e = this.entries.get(id)
    return e ? clone(e.record) : undefined
  }

  async updatesSince(id: string, afterSeq: number, limit = 10_000): Promise<SequencedUpdate[]> {
    return this.since(id, afterSeq).slice(0, limit)
  }

  async markRunning(id: string, message: string): Promise<WriteResult> {
    const e = this.entries.get(id)
    if (!e) return { outcome: 'not_found' }
    if (isFinalStatus(e.record.status)) return { outcome: 'final', status: e.record.status }
    if (e.record.status !== 'pending') return { outcome: 'unchanged' }
    e.record.status = 'running'
    e.record.message = message
    return { outcome: 'applied', update: this.append(e, { id, status: 'running', message }) }
  }

  async progress(id: string, report: ProgressReport): Promise<WriteResult> {
    const e = this.entries.get(id)
    if (!e) return { outcome: 'not_found' }
    const r = e.record
    if (isFinalStatus(r.status)) return { outcome: 'final', status: r.status }
    const actors = effectiveActors(r.route.actors, report.actors)
    r.route.actors = actors
    r.total_actors = actors.length
    const rows = withEarlierMessages(
      progressRows(e.step, r.progress_percent, actors.length, report.currentActorIdx, report.state, report.message, r.route.current, report.fromIdx),
      report.currentActorIdx,
      report.earlierMessages,
    )
    if (rows.length === 0) return { outcome: 'unchanged', progressPercent: r.progress_percent }
    e.step = progressStep(report.currentActorIdx, report.state)
    r.status = 'running'
    let last: SequencedUpdate | undefined
    for (const row of rows) last = this.applyRow(e, actors, row)
    return { outcome: 'applied', update: last as SequencedUpdate }
  }

  async finish(id: string, f: FinalReport): Promise<WriteResult> {
    const e = this.entries.get(id)
    if (!e) return { outcome: 'not_found' }
    const r = e.record
    if (isFinalStatus(r.status)) return { outcome: 'final', status: r.status }
    if (f.status === 'succeeded') for (const row of completionRows(e.step, r.progress_percent, r.total_actors)) this.applyRow(e, r.route.actors, row)
    r.status = f.status
    r.message = f.message
    if (f.result !== undefined) r.result = f.result
    if (f.error !== undefined) r.error = f.error
    if (f.status === 'succeeded') {
      r.progress_percent = 100
      r.actors_completed = r.total_actors
    }
    if (f.currentActorIdx !== undefined) r.current_actor_idx = f.currentActorIdx
    if (f.actor !== undefined) r.current_actor_name = f.actor
    const update: Omit<EnvelopeUpdate, 'timestamp'> = {
      id,
      status: f.status,
      message: f.message,
      ...(f.result !== undefined ? { result: f.result } : {}),
      ...(f.error !== undefined ? { error: f.error } : {}),
      ...(f.status === 'succeeded' ? { progress_percent: 100 } : {}),
      ...(f.actor !== undefined ? { actor: f.actor } : {}),
      ...(f.actors !== undefined ? { actors: f.actors } : {}),
      ...(f.currentActorIdx !== undefined ? { current_actor_idx: f.currentActorIdx } : {}),
    }
    return { outcome: 'applied', update: this.append(e, update) }
  }

  private applyRow(e: Entry, actors: string[], row: ProgressRow): SequencedUpdate {
    const r = e.record
    const actor = actors[row.idx]
    r.progress_percent = row.percent
    r.current_actor_idx = row.idx
    if (actor !== undefined) r.current_actor_name = actor
    if (row.message !== undefined) r.message = row.message
    if (row.state === 'completed') r.actors_completed = Math.max(r.actors_completed, row.idx + 1)
    return this.append(e, {
      id: r.id,
      status: 'running',
      ...(row.message !== undefined ? { message: row.message } : {}),
      progress_percent: row.percent,
      ...(actor !== undefined ? { actor } : {}),
      actors: [...actors],
      current_actor_idx: row.idx,
      envelope_state: row.state,
    })
  }

  async expireDue(limit = 1000): Promise<number> {
    const now = Date.now()
    let n = 0
    for (const [id, e] of this.entries) {
      if (n >= limit) break
      if (e.deadlineMs === undefined || e.deadlineMs > now || isFinalStatus(e.record.status)) continue
      await this.finish(id, { status: 'failed', error: 'envelope timed out', message: 'Envelope timed out' })
      n++
    }
    return n
  }

  async deleteFinalBefore(before: Date, limit = 1000): Promise<number> {
    let n = 0
    for (const [id, e] of this.entries) {
      if (n >= limit) break
      if (isFinalStatus(e.record.status) && Date.parse(e.record.updated_at) < before.getTime()) {
        this.entries.delete(id)
        n++
      }
    }
    return n
  }

  async isActive(id: string): Promise<boolean> {
    const e = this.entries.get(id)
    if (!e || isFinalStatus(e.record.status)) return false
    return e.deadlineMs === undefined || e.deadlineMs > Date.now()
  }

  subscribe(id: string, listener: UpdateListener): StoreSubscription {
    return this.hub.subscribe(id, listener)
  }

  isHealthy(): boolean {
    return true
  }

  async close(): Promise<void> {}

  private since(id: string, after: number): SequencedUpdate[] {
    const e = this.entries.get(id)
    if (!e) return []
    return e.updates.filter((u) => u.seq > after)
  }

  private append(e: Entry, u: Omit<EnvelopeUpdate, 'timestamp'>): SequencedUpdate {
    const timestamp = new Date().toISOString()
    e.record.updated_at = timestamp
    const row: SequencedUpdate = { seq: ++this.seq, update: { ...u, timestamp } }
    e.updates.push(row)
    const id = e.record.id
    queueMicrotask(() => this.hub.signal(id))
    return row
  }
}

function clone<T>(v: T): T {
  return structuredClone(v)
}
