/**
 * Carries out an {@link Outcome} (outcomes.ts) on its delivery: the side effects of the outcome
 * table, in one place. Outputs are published first and the input acked only once every one is
 * confirmed; an output the broker did not take is decided again by publishFailed (retry with the
 * confirmed fan-out children recorded, the DLQ past the delivery limit, payload_too_large).
 *
 * A settlement the broker refuses (the retry copy, the dead letter or the ack not stored) is
 * logged and thrown on: the delivery is still ours (src/transport/delivery.ts) and the transport
 * gives it back to the broker when the handler rejects, so it is never held for good.
 */
import { errorMessage, isAsyaError } from '../src/errors.js'
import type { Envelope } from '../src/envelope.js'
import type { Logger } from '../src/logger.js'
import { HEADER, queueName } from '../src/names.js'
import { backoffDelay } from '../src/backoff.js'
import type { ClaimCheck } from '../src/storage/claim-check.js'
import type { Delivery, Transport, TransportHeaders } from '../src/transport/transport.js'
import type { SidecarConfig } from './config.js'
import type { EndActor, EndOutcome } from './end-actor.js'
import type { HotMetrics, SidecarMetrics } from './metrics.js'
import { endWithError, NOOP_SPAN, SpanKind, SpanStatusCode, type Span, type Tracing } from '../src/tracing/tracing.js'
import { alreadySent, endFinished, outputHeaders, publishFailed, type Outcome, type OutcomeContext, type Outgoing } from './outcomes.js'

/** Observable steps, for the demo and tests (logs carry the same facts). */
export type SidecarEvent =
  | { type: 'received'; actor: string; id?: string; attempt: number }
  | { type: 'sent'; actor: string; id: string; destination: string; kind: 'routed' | 'happy_end' | 'error_end' }
  | { type: 'retry'; actor: string; id?: string; reason: string; delayMs: number; attempt: number }
  | { type: 'dead_letter'; actor: string; id?: string; reason: string }
  | { type: 'done'; actor: string; id?: string; status: string }

export interface SettleDeps {
  config: SidecarConfig
  context: OutcomeContext
  transport: Transport
  metrics: SidecarMetrics
  /** Observers of the steps; absent: no event objects are made at all. */
  emit?: (e: SidecarEvent) => void
  endActor?: EndActor
  claims?: ClaimCheck
  tracing: Tracing
}

/** What settling needs to know beyond the outcome. */
export interface SettleScope {
  /** Envelope id (logs, events), when the body had one. */
  id: string | undefined
  /** The input envelope, once it parsed and validated. */
  env: Envelope | undefined
  /** The input carried a claim-check payload (deleted once an end actor acked it). */
  claimed: boolean
  log: Logger
  /** The hop's span (non-recording when tracing is off): the outcome is written on it. */
  span: Span
}

const STATUS = { route: 'success', happy_end: 'empty', error_end: 'error' } as const
/** publishAndAck's results for one output that was confirmed (shared: never mutated). */
const ONE_PUBLISHED: PromiseSettledResult<void>[] = [{ status: 'fulfilled', value: undefined }]

export class Settler {
  private readonly queue: string
  private readonly hot: HotMetrics

  constructor(private readonly d: SettleDeps) {
    this.queue = queueName(d.config.actorName)
    this.hot = d.metrics.hot(this.queue, d.transport.name)
  }

  async settle(delivery: Delivery, outcome: Outcome, s: SettleScope): Promise<void> {
    if (s.span.isRecording()) markOutcome(s.span, outcome)
    switch (outcome.kind) {
      case 'route':
      case 'happy_end':
      case 'error_end':
        return this.publishAndAck(delivery, outcome, s)
      case 'retry':
        return this.retry(delivery, outcome, s)
      case 'dead_letter':
        return this.deadLetter(delivery, outcome, s)
      case 'release':
        return this.release(delivery, s)
      case 'end':
        return this.finishEnd(delivery, outcome.result, s)
    }
  }

  /** Publishes every output (skipping fan-out children confirmed before a retry), then acks. */
  private async publishAndAck(delivery: Delivery, outcome: Extract<Outcome, { outgoing: Outgoing[] }>, s: SettleScope): Promise<void> {
    const { metrics } = this.d
    if (outcome.kind === 'error_end') s.log.warn({ reason: outcome.failure.reason, err: outcome.failure.message }, 'envelope goes to error-end')
    const sentBefore = alreadySent(delivery)
    const tracing = s.span.isRecording()
    const inject = this.d.tracing.needsInject(s.span, s.env?.headers)
    const base = outputHeaders(delivery, this.d.config.actorName)
    const headers = tracing ? { ...base, [HEADER.sentAt]: String(Date.now()) } : base
    const outgoing = outcome.outgoing
    // One output (every routed hop without fan-out): no per-output array and closure.
    let results: PromiseSettledResult<void>[]
    if (outgoing.length === 1) {
      try {
        await this.publishOne(outgoing[0] as Outgoing, 0, sentBefore, s, headers, tracing, inject)
        results = ONE_PUBLISHED
      } catch (reason) {
        results = [{ status: 'rejected', reason }]
      }
    } else {
      results = await Promise.allSettled(outgoing.map((o, i) => this.publishOne(o, i, sentBefore, s, headers, tracing, inject)))
    }
    if (results === ONE_PUBLISHED) {
      await this.ack(delivery, s.log)
      this.acked(outcome, s)
      return
    }
    const failures = results.flatMap((r, i) => (r.status === 'rejected' ? [{ i, err: r.reason as unknown }] : []))
    if (failures.length === 0) {
      await this.ack(delivery, s.log)
      this.acked(outcome, s)
      return
    }
    const first = failures[0]?.err
    const sent = results.flatMap((r, i) => (r.status === 'fulfilled' ? [i] : [])).concat([...sentBefore])
    s.log.warn({ err: errorMessage(first), failed: failures.length, of: outcome.outgoing.length }, 'publish failed; input not acked')
    metrics.failed.inc({ queue: this.queue, reason: 'publish_failed' })
    const next = publishFailed(delivery, s.env, outcome, sent, errorMessage(first), isAsyaError(first, 'ASYA_ERR_PAYLOAD_TOO_LARGE'), this.d.context)
    return this.settle(delivery, next, s)
  }

  /** One output: offloaded when large, published, confirmed (skipped when an earlier attempt had it confirmed). */
  private async publishOne(o: Outgoing, i: number, sentBefore: ReadonlySet<number>, s: SettleScope, headers: TransportHeaders, tracing: boolean, inject: boolean): Promise<void> {
    if (sentBefore.has(i)) return
    const transport = this.d.transport
    const ps = tracing
      ? this.d.tracing.startSpan(`publish ${o.destination}`, s.span, {
          kind: SpanKind.PRODUCER,
          attributes: { 'messaging.system': transport.name, 'messaging.operation.type': 'send', 'messaging.destination.name': queueName(o.destination), 'messaging.message.id': o.id, 'asya.output': o.kind },
        })
      : NOOP_SPAN
    const out = await this.offload(inject ? this.withTrace(o.body, s.span) : o.body)
    const t0 = performance.now()
    try {
      await transport.publish(o.destination, out, { headers })
    } catch (err) {
      if (tracing) endWithError(ps, 'publish_failed', errorMessage(err))
      throw err
    }
    ps.end()
    const queue = queueName(o.destination)
    this.hot.sendDuration.get(queue).observe((performance.now() - t0) / 1e3)
    this.hot.sent.get(`${queue}\u0000${o.kind}`).inc()
    this.hot.envelopeOut.observe(out.length)
    this.d.emit?.({ type: 'sent', actor: this.d.config.actorName, id: o.id, destination: o.destination, kind: o.kind })
  }

  /** Every output confirmed and the input acked. */
  private acked(outcome: Extract<Outcome, { outgoing: Outgoing[] }>, s: SettleScope): void {
    const status = STATUS[outcome.kind]
    this.hot.processed.get(status).inc()
    if (outcome.kind === 'error_end') this.d.metrics.failed.inc({ queue: this.queue, reason: outcome.failure.reason })
    if (this.d.emit) {
      const id = outcome.kind === 'error_end' ? outcome.outgoing[0].id : s.env?.id
      this.d.emit({ type: 'done', actor: this.d.config.actorName, ...(id !== undefined ? { id } : {}), status })
    }
  }

  private async retry(delivery: Delivery, outcome: Extract<Outcome, { kind: 'retry' }>, s: SettleScope): Promise<void> {
    const { config, metrics } = this.d
    const { reason, message } = outcome.failure
    // Infrastructure problems back off from 1 s whatever the handler policy says.
    const delayMs = backoffDelay(delivery.attempt, { initialMs: outcome.infrastructure ? 1000 : config.retryBackoffMs, maxMs: config.retryBackoffMaxMs })
    try {
      await delivery.retry(delayMs, { reason, error: message, ...(outcome.headers ? { headers: outcome.headers } : {}) })
    } catch (err) {
      s.log.warn({ err: errorMessage(err), reason }, 'could not schedule the retry; the message goes back to the broker')
      throw err
    }
    metrics.retries.inc({ queue: this.queue, reason })
    metrics.processed.inc({ queue: this.queue, status: 'retry' })
    s.log.info({ reason, delay_ms: delayMs }, 'retry scheduled')
    this.d.emit?.({ type: 'retry', actor: config.actorName, ...(s.id !== undefined ? { id: s.id } : {}), reason, delayMs, attempt: delivery.attempt })
  }

  private async deadLetter(delivery: Delivery, outcome: Extract<Outcome, { kind: 'dead_letter' }>, s: SettleScope): Promise<void> {
    const { metrics } = this.d
    const { reason, message } = outcome.failure
    try {
      await delivery.deadLetter({ reason, error: message, attempts: delivery.attempt })
    } catch (err) {
      s.log.error({ err: errorMessage(err), reason }, 'dead-lettering failed; the message goes back to the broker')
      throw err
    }
    metrics.deadLettered.inc({ queue: this.queue, reason })
    metrics.failed.inc({ queue: this.queue, reason })
    metrics.processed.inc({ queue: this.queue, status: 'dead_lettered' })
    s.log.error({ reason, err: message }, 'message dead-lettered')
    this.d.emit?.({ type: 'dead_letter', actor: this.d.config.actorName, ...(s.id !== undefined ? { id: s.id } : {}), reason })
  }

  private async release(delivery: Delivery, s: SettleScope): Promise<void> {
    try {
      await delivery.release()
    } catch (err) {
      s.log.warn({ err: errorMessage(err) }, 'release failed; the message goes back to the broker')
      throw err
    }
    this.d.emit?.({ type: 'done', actor: this.d.config.actorName, ...(s.id !== undefined ? { id: s.id } : {}), status: 'released' })
  }

  private async ack(delivery: Delivery, log: Logger): Promise<void> {
    try {
      await delivery.ack()
    } catch (err) {
      log.warn({ err: errorMessage(err) }, 'ack failed after the outputs were confirmed; the message goes back to the broker and may be delivered again')
      throw err
    }
  }

  /**
   * End actors: persist `result` and report it (end-actor.ts), then settle: ack only after both
   * succeeded; a failed step is retried with backoff and dead-lettered past the delivery limit.
   */
  private async finishEnd(delivery: Delivery, result: Envelope, s: SettleScope): Promise<void> {
    const end = this.d.endActor
    const finished: EndOutcome = end ? await end.finish(result, delivery.headers, s.log) : { kind: 'done', report: 'skipped' }
    const next = endFinished(delivery, finished, this.d.context)
    if (next !== 'ack') return this.settle(delivery, next, s)
    await this.ack(delivery, s.log)
    if (s.claimed && this.d.claims && s.env) await this.deleteClaims(s.env.id, s.log)
    this.hot.processed.get('success').inc()
    if (finished.kind === 'done') s.log.debug({ key: finished.key ?? null, report: finished.report }, 'envelope finished')
    this.d.emit?.({ type: 'done', actor: this.d.config.actorName, ...(s.id !== undefined ? { id: s.id } : {}), status: 'success' })
  }

  /** After the ack (never before: a redelivery must still find its payload); lifecycle rules catch what fails. */
  private async deleteClaims(id: string, log: Logger): Promise<void> {
    try {
      const n = (await this.d.claims?.deleteFor(id)) ?? 0
      this.d.metrics.claims.inc({ queue: this.queue, operation: 'delete' }, n)
    } catch (err) {
      this.d.metrics.claimFailures.inc({ queue: this.queue, reason: 'delete_failed' })
      log.warn({ err: errorMessage(err) }, 'claim objects not deleted; the bucket lifecycle rule removes them')
    }
  }

  /**
   * An output envelope carrying the hop's trace context in its headers (fan-out children, error
   * envelopes and happy-end included), so the next hop continues this trace. Tracing on only: it
   * costs one parse and one serialisation per output.
   */
  private withTrace(body: Buffer, span: Span): Buffer {
    const env = JSON.parse(body.toString('utf8')) as { headers?: Record<string, unknown> }
    env.headers = this.d.tracing.inject(span, env.headers && typeof env.headers === 'object' && !Array.isArray(env.headers) ? env.headers : {})
    return Buffer.from(JSON.stringify(env))
  }

  /** The body to publish: with its payload parked when it is over ASYA_CLAIM_CHECK_THRESHOLD. */
  private async offload(body: Buffer): Promise<Buffer> {
    const claims = this.d.claims
    if (!claims || body.length <= claims.thresholdBytes) return body
    const t0 = process.hrtime.bigint()
    try {
      const parked = await claims.offload(body)
      if (parked.ref) {
        this.d.metrics.claims.inc({ queue: this.queue, operation: 'store' })
        this.d.metrics.claimBytes.inc({ queue: this.queue, operation: 'store' }, parked.ref.size)
      }
      return parked.body
    } catch (err) {
      this.d.metrics.claimFailures.inc({ queue: this.queue, reason: 'store_failed' })
      throw err
    } finally {
      this.d.metrics.claimDuration.observe({ queue: this.queue, operation: 'store' }, Number(process.hrtime.bigint() - t0) / 1e9)
    }
  }
}

/** The outcome on the hop's span: `asya.outcome`, and an error status with the reason when the hop failed. */
function markOutcome(span: Span, outcome: Outcome): void {
  span.setAttribute('asya.outcome', outcome.kind)
  if (outcome.kind === 'error_end' || outcome.kind === 'retry' || outcome.kind === 'dead_letter') {
    span.setAttribute('asya.error.reason', outcome.failure.reason)
    span.setStatus({ code: SpanStatusCode.ERROR, message: `${outcome.failure.reason}: ${outcome.failure.message}` })
  } else if (outcome.kind === 'route' || outcome.kind === 'happy_end' || outcome.kind === 'end') {
    span.setStatus({ code: SpanStatusCode.UNSET })
  }
}
