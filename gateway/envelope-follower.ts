/**
 * Follows one envelope from its first update to its final one: history first, then live, with no
 * gap and no duplicate between the two (live updates are subscribed *before* history is read and
 * de-duplicated by sequence number), and no silent drop for a slow consumer: while the consumer
 * is backed up nothing is buffered, and `resume()` catches up from the store.
 *
 * Used by the SSE endpoint and by {@link ToolService.waitForFinal} (MCP progress and `wait`).
 */
import type { EnvelopeStore, StoreSubscription } from './store/store.js'
import { isFinalStatus, type EnvelopeRecord, type SequencedUpdate } from './store/types.js'

/** Returns false when the consumer is backed up; the follower then stops pushing until resume(). */
export type UpdateSink = (update: SequencedUpdate) => boolean

export type FollowEnd = { reason: 'final'; update: SequencedUpdate } | { reason: 'closed' } | { reason: 'error'; error: unknown }

export class EnvelopeFollower {
  private sub: StoreSubscription | undefined
  private lastSeq = 0
  private loading = true
  private readonly pending: SequencedUpdate[] = []
  private paused = false
  /** A live update arrived while paused: read the store on resume. */
  private behind = false
  private catchingUp = false
  private ended = false

  constructor(
    private readonly store: EnvelopeStore,
    readonly envelopeId: string,
    private readonly sink: UpdateSink,
    private readonly onEnd: (end: FollowEnd) => void,
  ) {}

  private record: EnvelopeRecord | undefined

  /** Starts following. Resolves false (and ends nothing) when the envelope does not exist. */
  async start(): Promise<boolean> {
    return (await this.open()) !== undefined && (await this.run())
  }

  /**
   * First half of start(): subscribes, then reads the envelope (so a caller can answer 404 before
   * committing to a stream, without a read of its own). Undefined: no such envelope (nothing to close).
   */
  async open(): Promise<EnvelopeRecord | undefined> {
    this.sub = this.store.subscribe(this.envelopeId, (u) => this.live(u))
    try {
      this.record = await this.store.get(this.envelopeId)
    } catch (err) {
      this.finish({ reason: 'error', error: err })
      throw err
    }
    if (!this.record) {
      this.sub.close()
      this.ended = true
    }
    return this.record
  }

  /** Second half of start(), after open() found the envelope: history, then live. */
  async run(): Promise<boolean> {
    const record = this.record
    if (!record) return false
    if (this.ended) return true
    let history: SequencedUpdate[]
    try {
      history = await this.store.updatesSince(this.envelopeId, 0)
    } catch (err) {
      this.finish({ reason: 'error', error: err })
      throw err
    }
    for (const u of history) {
      this.deliver(u)
      if (this.ended) return true
    }
    if (isFinalStatus(record.status) && !this.ended) {
      // Final but no final update row (rows deleted by retention, or written by another tool):
      // the record itself is the last word.
      this.deliver({
        seq: this.lastSeq,
        update: {
          id: record.id,
          status: record.status,
          ...(record.message !== undefined ? { message: record.message } : {}),
          ...(record.result !== undefined ? { result: record.result } : {}),
          ...(record.error !== undefined ? { error: record.error } : {}),
          progress_percent: record.progress_percent,
          timestamp: record.updated_at,
        },
      }, true)
      return true
    }
    this.loading = false
    const queued = this.pending.splice(0)
    for (const u of queued) {
      if (this.ended) break
      if (this.paused) {
        this.behind = true
        break
      }
      this.deliver(u)
    }
    return true
  }

  /** The consumer drained: continue, reading what was missed from the store. */
  resume(): void {
    if (this.ended || !this.paused) return
    this.paused = false
    if (this.behind) void this.catchUp()
  }

  close(): void {
    this.finish({ reason: 'closed' })
  }

  get isEnded(): boolean {
    return this.ended
  }

  private live(u: SequencedUpdate): void {
    if (this.ended) return
    if (this.loading) {
      this.pending.push(u)
      return
    }
    if (this.paused || this.catchingUp) {
      this.behind = true
      return
    }
    this.deliver(u)
  }

  private async catchUp(): Promise<void> {
    if (this.catchingUp) return
    this.catchingUp = true
    try {
      while (this.behind && !this.paused && !this.ended) {
        this.behind = false
        const rows = await this.store.updatesSince(this.envelopeId, this.lastSeq, 256)
        if (rows.length === 256) this.behind = true
        for (const u of rows) {
          if (this.ended) return
          this.deliver(u)
          if (this.paused) {
            this.behind = true
            return
          }
        }
      }
    } catch (err) {
      this.finish({ reason: 'error', error: err })
    } finally {
      this.catchingUp = false
    }
  }

  private deliver(u: SequencedUpdate, force = false): void {
    if (this.ended) return
    if (!force && u.seq <= this.lastSeq) return
    this.lastSeq = Math.max(this.lastSeq, u.seq)
    const ok = this.sink(u)
    if (isFinalStatus(u.update.status)) {
      this.finish({ reason: 'final', update: u })
      return
    }
    if (!ok) this.paused = true
  }

  private finish(end: FollowEnd): void {
    if (this.ended) return
    this.ended = true
    this.sub?.close()
    this.onEnd(end)
  }
}
