/**
 * Progress reports to the gateway (SPEC §10.2): `{actors, current_actor_idx, status, message,
 * duration_ms?, message_size_kb?}` for an envelope, upstream's body.
 *
 * Reporting must never delay or fail message processing, so `report()` only enqueues and returns.
 * Reports of one envelope are sent in the order they were queued (the gateway sees received →
 * processing → completed per actor), in one of two ways:
 * - **batches** (our gateway, `POST /envelopes/progress`): one request in flight per sidecar; what
 *   queued meanwhile goes in the next one, so at low load each report leaves at once and under
 *   load a request carries many (the gateway folds an actor's states into one store write). The
 *   first batch finds out whether the gateway takes them; if it does not (upstream's gateway, or
 *   a batch over its body limit), the sidecar sends
 * - **one report per request** (upstream's `POST /envelopes/{id}/progress`) from then on: up to
 *   `concurrency` requests in flight for different envelopes, one at a time per envelope.
 * Nothing is dropped or merged on the way: the gateway receives every report, in order.
 *
 * Overload policy (gateway slow or down): at most `maxPending` reports wait. When the queue is full,
 * a new report replaces the newest unsent report of the same envelope if it is not behind it (same
 * or later actor, same or later state: it carries at least as much progress, so a retried
 * message's `received` never displaces a `completed`), otherwise it is dropped. Either way
 * `progress_reports_total{result="dropped"}` counts it. Requests time out and are retried once on
 * a network error or 5xx (progress-sender.ts). Lost progress is cosmetic: the final status comes
 * from the end actors' `/final` report, which is retried and gates their ack, and never passes here.
 */
import type { Logger } from '../src/logger.js'
import type { SidecarMetrics } from './metrics.js'
import { ProgressSender, type SendResult, type SendVerdict } from './progress-sender.js'

export type ProgressStatus = 'received' | 'processing' | 'completed'

/** Body of one report, upstream's field names. */
export interface ProgressReport {
  actors: string[]
  /** Index of the actor that did the work (not the advanced index: SPEC §11 #16). */
  current_actor_idx: number
  status: ProgressStatus
  message: string
  duration_ms?: number
  message_size_kb?: number
  /**
   * Ours (upstream's gateway ignores it): index in `actors` of the actor whose sidecar published
   * this envelope to the reporting one (its `x-asya-from-actor` header), so the gateway records that
   * actor as having run even when its own reports arrive after this one.
   */
  from_actor_idx?: number
}

export interface ProgressReporterOptions {
  /** Gateway base URL, without a trailing slash. */
  gatewayUrl: string
  /** ASYA_GATEWAY_TOKEN: sent as `Authorization: Bearer` (the gateway's internal listener). @default none */
  token?: string
  /** ASYA_PROGRESS_TIMEOUT: deadline of one request. @default 2000 */
  timeoutMs?: number
  /** ASYA_PROGRESS_MAX_PENDING: reports allowed to wait; beyond it the policy above applies. @default 1000 */
  maxPending?: number
  /** ASYA_PROGRESS_BATCH: try batches first (false: one report per request from the start). @default true */
  batch?: boolean
  /** Requests in flight at once when sending one report per request (different envelopes). @default 8 */
  concurrency?: number
  /** Largest batch body, bytes (below the gateway's ASYA_GATEWAY_REPORT_BODY_LIMIT, 64 KiB by default). @default 32768 */
  maxBatchBytes?: number
  /** Most reports in one batch (the gateway takes up to 1000). @default 256 */
  maxBatchReports?: number
  /** Delay before the single retry of a failed request. @default 100 */
  retryDelayMs?: number
  metrics?: SidecarMetrics
  logger?: Logger
}

interface Pending {
  id: string
  report: ProgressReport
}

export type ReportResult = SendVerdict | 'dropped'

const RANK: Record<ProgressStatus, number> = { received: 0, processing: 1, completed: 2 }
/** Position of a report in the envelope's walk (the gateway's progress step). */
const stepOf = (r: ProgressReport): number => r.current_actor_idx * 3 + RANK[r.status]

export class ProgressReporter {
  private readonly maxPending: number
  private readonly concurrency: number
  private readonly maxBatchBytes: number
  private readonly maxBatchReports: number
  private readonly sender: ProgressSender
  /** batch until the gateway shows it takes no batches, then single for good. */
  private mode: 'batch' | 'single'
  /** Unsent reports per envelope, in order. */
  private readonly queues = new Map<string, ProgressReport[]>()
  /** Envelopes with queued reports and no request in flight, oldest first. */
  private readonly ready = new Set<string>()
  /** Envelopes with a single-report request in flight. */
  private readonly busy = new Set<string>()
  /** Reports in the batch in flight (0: none). */
  private inBatch = 0
  private pending = 0
  private closed = false
  private idleWaiters: Array<() => void> = []
  private consecutiveFailures = 0

  constructor(private readonly o: ProgressReporterOptions) {
    this.maxPending = o.maxPending ?? 1000
    this.concurrency = o.concurrency ?? 8
    this.maxBatchBytes = o.maxBatchBytes ?? 32 * 1024
    this.maxBatchReports = o.maxBatchReports ?? 256
    this.mode = o.batch === false ? 'single' : 'batch'
    this.sender = new ProgressSender({
      base: o.gatewayUrl.replace(/\/+$/, ''),
      headers: { 'content-type': 'application/json', ...(o.token !== undefined ? { authorization: `Bearer ${o.token}` } : {}) },
      timeoutMs: o.timeoutMs ?? 2000,
      retryDelayMs: o.retryDelayMs ?? 100,
      maxSockets: this.concurrency,
    })
  }

  /** Reports waiting or in flight. */
  get size(): number {
    return this.pending + this.busy.size + this.inBatch
  }

  /** How reports are being sent now (batches until the gateway shows it takes none). */
  get sending(): 'batch' | 'single' {
    return this.mode
  }

  /** Enqueues a report; never throws, never waits. */
  report(id: string, report: ProgressReport): void {
    if (this.closed || id === '') return
    let q = this.queues.get(id)
    if (this.pending >= this.maxPending) {
      const newest = q?.[q.length - 1]
      if (q && newest && stepOf(report) >= stepOf(newest)) q[q.length - 1] = report
      this.count(report.status, 'dropped')
      return
    }
    if (!q) {
      q = []
      this.queues.set(id, q)
    }
    q.push(report)
    this.pending++
    this.o.metrics?.progressPending.set(this.pending)
    if (!this.busy.has(id)) this.ready.add(id)
    this.pump()
  }

  /**
   * Waits until every queued report was sent (or given up), at most `timeoutMs`; then stops taking
   * new reports. Used by the SIGTERM drain after the last message settled.
   */
  async close(timeoutMs = 2000): Promise<void> {
    if (this.size > 0) {
      await Promise.race([
        new Promise<void>((r) => this.idleWaiters.push(r)),
        new Promise<void>((r) => setTimeout(r, timeoutMs).unref()),
      ])
    }
    this.closed = true
    this.sender.close()
  }

  /** Resolves when nothing is queued or in flight (tests, drain). */
  idle(): Promise<void> {
    if (this.size === 0) return Promise.resolve()
    return new Promise<void>((r) => this.idleWaiters.push(r))
  }

  private pump(): void {
    if (this.mode === 'batch') this.pumpBatch()
    else this.pumpSingle()
  }

  private pumpBatch(): void {
    if (this.inBatch > 0 || this.ready.size === 0) return
    const items = this.takeBatch()
    if (items.length === 0) return
    this.inBatch = items.length
    void this.sendBatch(items).finally(() => {
      this.inBatch = 0
      this.pump()
      this.notifyIdle()
    })
  }

  /** Every queued report, envelope by envelope in order, up to the batch limits (at least one). */
  private takeBatch(): Array<Pending & { json: string }> {
    const items: Array<Pending & { json: string }> = []
    let bytes = 16
    for (const id of this.ready) {
      const q = this.queues.get(id) ?? []
      while (q.length > 0 && items.length < this.maxBatchReports) {
        const report = q[0] as ProgressReport
        const json = JSON.stringify({ id, ...report })
        const size = Buffer.byteLength(json) + 1
        if (items.length > 0 && bytes + size > this.maxBatchBytes) break
        q.shift()
        items.push({ id, report, json })
        bytes += size
      }
      if (q.length > 0) break
      this.ready.delete(id)
      this.queues.delete(id)
    }
    this.pending -= items.length
    this.o.metrics?.progressPending.set(this.pending)
    return items
  }

  private async sendBatch(items: Array<Pending & { json: string }>): Promise<void> {
    const t0 = process.hrtime.bigint()
    const r = await this.sender.batch(items.map((i) => i.json))
    this.observe(t0)
    if (r.kind === 'unsupported') {
      // Upstream's gateway (or a batch over the gateway's body limit): one report per request from
      // now on; these go first, in their order, ahead of anything queued behind them.
      this.mode = 'single'
      this.o.logger?.info({ http_status: r.httpStatus }, 'the gateway takes no progress batches; sending one report per request')
      this.requeue(items)
      return
    }
    items.forEach((it, i) => this.settle(it, r.kind === 'results' ? { verdict: r.verdicts[i] ?? 'failed' } : r.result))
  }

  private requeue(items: Pending[]): void {
    const byId = new Map<string, ProgressReport[]>()
    for (const it of items) byId.set(it.id, [...(byId.get(it.id) ?? []), it.report])
    for (const [id, reports] of byId) {
      const q = this.queues.get(id) ?? []
      q.unshift(...reports)
      this.queues.set(id, q)
      this.ready.add(id)
      this.pending += reports.length
    }
    this.o.metrics?.progressPending.set(this.pending)
  }

  private pumpSingle(): void {
    while (this.busy.size < this.concurrency && this.ready.size > 0) {
      const id = this.ready.values().next().value as string
      this.ready.delete(id)
      const q = this.queues.get(id)
      const report = q?.shift()
      if (!q || report === undefined) continue
      this.pending--
      this.o.metrics?.progressPending.set(this.pending)
      this.busy.add(id)
      const t0 = process.hrtime.bigint()
      void this.sender
        .one(id, JSON.stringify(report))
        .then((r) => {
          this.observe(t0)
          this.settle({ id, report }, r)
        })
        .finally(() => {
          this.busy.delete(id)
          if (q.length > 0) this.ready.add(id)
          else this.queues.delete(id)
          this.pump()
          this.notifyIdle()
        })
    }
  }

  private settle(p: Pending, r: SendResult): void {
    this.count(p.report.status, r.verdict)
    if (r.verdict === 'ok') {
      this.consecutiveFailures = 0
    } else if (r.verdict === 'rejected') {
      this.o.logger?.debug({ envelope_id: p.id, http_status: r.httpStatus, status: p.report.status }, 'gateway rejected a progress report')
    } else if (this.consecutiveFailures++ === 0) {
      // One line per outage, not one per report.
      this.o.logger?.warn({ code: 'ASYA_ERR_GATEWAY', err: r.error ?? 'failed', envelope_id: p.id }, 'progress report not delivered to the gateway; processing continues')
    }
  }

  private notifyIdle(): void {
    if (this.size !== 0) return
    const waiters = this.idleWaiters
    this.idleWaiters = []
    for (const w of waiters) w()
  }

  private observe(t0: bigint): void {
    this.o.metrics?.progressDuration.observe(Number(process.hrtime.bigint() - t0) / 1e9)
  }

  private count(status: ProgressStatus, result: ReportResult): void {
    this.o.metrics?.progressReports.inc({ status, result })
  }
}

const MESSAGES: Record<ProgressStatus, (actor: string) => string> = {
  received: (a) => `received by ${a}`,
  processing: (a) => `processing in ${a}`,
  completed: (a) => `completed by ${a}`,
}

/**
 * The report for the actor at `route.current` of the input envelope: the one doing the work, also
 * on `completed` (the handler's result may already point at the next actor). `extra.from`: the
 * actor that published the envelope (the `x-asya-from-actor` header), reported as its index.
 */
export function progressReport(
  env: { route: { actors: string[]; current: number } },
  status: ProgressStatus,
  extra: { durationMs?: number; sizeBytes?: number; from?: string | undefined } = {},
): ProgressReport {
  const idx = env.route.current
  const actor = env.route.actors[idx] ?? ''
  const fromIdx = extra.from !== undefined ? publisherIndex(env.route.actors, idx, extra.from) : undefined
  return {
    actors: env.route.actors,
    current_actor_idx: idx,
    status,
    message: MESSAGES[status](actor),
    ...(extra.durationMs !== undefined ? { duration_ms: Math.round(extra.durationMs) } : {}),
    ...(extra.sizeBytes !== undefined ? { message_size_kb: Math.round((extra.sizeBytes / 1024) * 100) / 100 } : {}),
    ...(fromIdx !== undefined ? { from_actor_idx: fromIdx } : {}),
  }
}

/**
 * Where the publishing actor `from` sits on the route the reporting actor (at `idx`) received: the
 * last position before `idx` with that name (a route may name an actor twice; an envelope-mode
 * handler may have skipped actors in between). Undefined when it is not there (a rewritten route,
 * a DLQ replay, the gateway's first publish carries no header at all).
 */
export function publisherIndex(actors: readonly string[], idx: number, from: string): number | undefined {
  for (let i = Math.min(idx, actors.length) - 1; i >= 0; i--) if (actors[i] === from) return i
  return undefined
}
