/**
 * What the sidecar does with one delivery, as named steps (SPEC §5):
 *
 *   receive      parse and validate the body, restore a claim-check payload, check the route
 *   callRuntime  through the runtime gate (concurrency, batching, deadline, recovery)
 *   decide       the outcome table, a pure function (outcomes.ts)
 *   settle       publish, then ack / retry / dead-letter / release (settle.ts)
 *
 * With batching (SPEC §13) every envelope of a batch runs these steps on its own: the gate splits a
 * batch's answer per envelope, so each gets its own outcome and its own settlement.
 */
import { errorMessage, errors, isAsyaError } from '../src/errors.js'
import type { Envelope } from '../src/envelope.js'
import { lazyChild, type Logger } from '../src/logger.js'
import { HEADER, queueName } from '../src/names.js'
import type { RuntimeClient } from '../src/runtime/runtime-client.js'
import type { Delivery, Transport } from '../src/transport/transport.js'
import { CLAIM_FIELD, claimRef, isClaimed, withoutClaim, type ClaimCheck } from '../src/storage/claim-check.js'
import type { SidecarConfig } from './config.js'
import type { EndActor } from './end-actor.js'
import type { HotMetrics, SidecarMetrics } from './metrics.js'
import { admit, checkRoute, claimFailed, decide, parseDelivery, receivedId, type ClaimFailure, type Outcome, type OutcomeContext, type Received, type RuntimeResult } from './outcomes.js'
import { NotStartedError, type RuntimeGate } from './runtime-gate.js'
import { progressReport, type ProgressReporter } from './progress-reporter.js'
import { Settler, type SettleScope, type SidecarEvent } from './settle.js'
import { endWithError, NOOP_SPAN, SpanKind, traceFields, Tracing, type Span } from '../src/tracing/tracing.js'

export type { SidecarEvent } from './settle.js'

export interface ProcessorDeps {
  config: SidecarConfig
  transport: Transport
  runtime: RuntimeClient
  gate: RuntimeGate
  metrics: SidecarMetrics
  logger: Logger
  isDraining: () => boolean
  /** Progress reports to the gateway (non-end actors with ASYA_GATEWAY_URL); never awaited. */
  progress?: ProgressReporter
  onEvent?: (e: SidecarEvent) => void
  /** End actors: persistence and the final report (end-actor.ts). */
  endActor?: EndActor
  /** Large payloads by reference (claim-check.ts). */
  claims?: ClaimCheck
  /** One span per hop (docs/tracing.md). @default off */
  tracing?: Tracing
}

/** The outcome table's settings, compiled once from the sidecar config. */
export function outcomeContext(config: SidecarConfig): OutcomeContext {
  return {
    actor: config.actorName,
    happyEnd: config.happyEnd,
    errorEnd: config.errorEnd,
    isEndActor: config.isEndActor,
    maxRetries: config.maxRetries,
    deliveryLimit: config.maxRetries + config.deliveryLimit,
    maxHops: config.maxHops,
    runtimeTimeoutMs: config.runtimeTimeoutMs,
  }
}

/** A received delivery: settled already (`outcome`), or an envelope ready for the runtime. */
type Receipt = { outcome: Outcome; scope: SettleScope } | { env: Envelope; body: Buffer; scope: SettleScope }

export class MessageProcessor {
  private readonly queue: string
  private readonly actor: string
  private readonly context: OutcomeContext
  private readonly settler: Settler
  private readonly tracing: Tracing
  private readonly hot: HotMetrics

  constructor(private readonly d: ProcessorDeps) {
    this.tracing = d.tracing ?? Tracing.off()
    this.actor = d.config.actorName
    this.queue = queueName(d.config.actorName)
    this.hot = d.metrics.hot(this.queue, d.transport.name)
    this.context = outcomeContext(d.config)
    this.settler = new Settler({
      config: d.config,
      context: this.context,
      transport: d.transport,
      metrics: d.metrics,
      ...(d.onEvent ? { emit: (e: SidecarEvent) => this.emit(e) } : {}),
      tracing: this.tracing,
      ...(d.endActor ? { endActor: d.endActor } : {}),
      ...(d.claims ? { claims: d.claims } : {}),
    })
  }

  async handle(delivery: Delivery): Promise<void> {
    const started = performance.now()
    const hot = this.hot
    hot.received.inc()
    hot.envelopeIn.observe(delivery.body.length)
    hot.active.inc()
    try {
      await this.process(delivery, started)
    } finally {
      hot.active.dec()
      hot.processingDuration.observe((performance.now() - started) / 1e3)
    }
  }

  private async process(delivery: Delivery, receivedAt: number): Promise<void> {
    const receipt = await this.receive(delivery)
    const span = receipt.scope.span
    try {
      await this.run(delivery, receipt, receivedAt)
    } catch (err) {
      if (span.isRecording()) endWithError(span, 'settle_failed', errorMessage(err))
      throw err
    }
    // The settle step set the outcome (and an error status with the reason when it failed).
    span.end()
  }

  private async run(delivery: Delivery, receipt: Receipt, receivedAt: number): Promise<void> {
    if ('outcome' in receipt) return this.settler.settle(delivery, receipt.outcome, receipt.scope)
    const { env, body, scope } = receipt
    const { config } = this.d
    if (config.isEndActor && !config.runtimeEnabled) {
      return this.settler.settle(delivery, this.d.isDraining() ? { kind: 'release' } : { kind: 'end', result: env }, scope)
    }
    const from = delivery.headers[HEADER.fromActor]
    const result = await this.callRuntime(body, env, receivedAt, scope, from)
    if (result.kind === 'response' && result.response.kind === 'results') {
      const durationMs = performance.now() - receivedAt
      this.d.progress?.report(env.id, progressReport(env, 'completed', { durationMs, sizeBytes: delivery.body.length, from }))
    }
    return this.settler.settle(delivery, decide(delivery, env, result, this.context), scope)
  }

  /** Parse, validate, restore a claimed payload, check the route: an envelope for the runtime, or an outcome. */
  private async receive(delivery: Delivery): Promise<Receipt> {
    // Past the delivery limit the body is not even parsed: one that kills the process while it is
    // parsed (a crash loop) is parked on this delivery by admit() instead of killing it once more.
    const received: Received = delivery.attempt > this.context.deliveryLimit ? { kind: 'unparseable', message: 'not parsed: past the delivery limit' } : parseDelivery(delivery.body)
    const id = receivedId(received)
    const span = this.startHop(delivery, received.kind === 'envelope' ? received.env : received.kind === 'invalid' ? received.value : undefined)
    // Every later log line carries the envelope id (and the hop's span, so logs and traces join).
    // Created when the first line is logged: most envelopes log nothing.
    const attempt = delivery.attempt
    const log = lazyChild(this.d.logger, () => ({ envelope_id: id ?? null, attempt, ...traceFields(span) }))
    if (this.d.onEvent) this.emit({ type: 'received', actor: this.actor, ...(id !== undefined ? { id } : {}), attempt })
    const refused = admit(delivery, received, this.context)
    if (refused !== undefined || received.kind !== 'envelope') {
      // admit refuses every body that is not a valid envelope.
      return { outcome: refused ?? { kind: 'release' }, scope: { id, env: undefined, claimed: false, log, span } }
    }
    let env = received.env
    let body = delivery.body
    const claimed = isClaimed(env)
    const scope = (e: Envelope): SettleScope => ({ id: e.id, env: e, claimed, log, span })
    if (claimed) {
      // Before anything reads the payload (route checks, error envelopes, the runtime, end actors).
      const restored = await this.restoreClaim(env, log)
      if ('failure' in restored) return { outcome: claimFailed(delivery, withoutClaim(env), restored.failure, this.context), scope: scope(env) }
      env = restored.env
      body = restored.body
    }
    const wrongRoute = checkRoute(delivery, env, this.context)
    if (wrongRoute !== undefined) return { outcome: wrongRoute, scope: scope(env) }
    // Every report names the actor that published the envelope (x-asya-from-actor): the gateway then
    // records that actor as having run even when its own reports arrive after these.
    if (!this.d.config.isEndActor) this.d.progress?.report(env.id, progressReport(env, 'received', { from: delivery.headers[HEADER.fromActor] }))
    return { env, body, scope: scope(env) }
  }

  /**
   * One envelope through the runtime gate: up to ASYA_CONCURRENCY in flight, in arrival order,
   * batched when ASYA_BATCH_SIZE > 1; the publish + ack of earlier messages overlap with it.
   */
  private async callRuntime(input: Buffer, env: Envelope, receivedAt: number, scope: SettleScope, from: string | undefined): Promise<RuntimeResult> {
    const { metrics } = this.d
    const log = scope.log
    let t0 = performance.now()
    const runtimeSeconds = (): number => (performance.now() - t0) / 1e3
    const rs = this.tracing.enabled ? this.tracing.startSpan('runtime call', scope.span, { kind: SpanKind.CLIENT, attributes: { 'asya.actor': this.actor } }) : NOOP_SPAN
    // The handler sees the runtime call's trace context (asya_runtime.current_trace()).
    const body = rs.isRecording() ? Buffer.from(JSON.stringify({ ...env, headers: this.tracing.inject(rs, env.headers ?? {}) })) : input
    const result = await this.gateCall(body, env, receivedAt, from, log, () => {
      t0 = performance.now()
      rs.addEvent('runtime started')
    }, runtimeSeconds)
    if (rs.isRecording()) {
      if (result.kind === 'failed') endWithError(rs, result.failure, result.message)
      else if (result.kind === 'response' && result.response.kind === 'error') endWithError(rs, result.response.error.error, result.response.error.details.message)
      else if (result.kind === 'not_started') endWithError(rs, 'not_started')
      else rs.end()
    }
    return result
  }

  private async gateCall(body: Buffer, env: Envelope, receivedAt: number, from: string | undefined, log: Logger, started: () => void, runtimeSeconds: () => number): Promise<RuntimeResult> {
    const { metrics } = this.d
    try {
      const response = await this.d.gate.call(body, {
        onStart: () => {
          started()
          this.hot.receiveDuration.observe((performance.now() - receivedAt) / 1e3)
          this.d.progress?.report(env.id, progressReport(env, 'processing', { from }))
        },
      })
      this.hot.runtimeDuration.observe(runtimeSeconds())
      if (response.kind === 'error') {
        const { error, details } = response.error
        metrics.runtimeErrors.inc({ queue: this.queue, error_type: error })
        log.warn({ runtime_error: error, err: details.message, type: details.type }, 'handler failed')
      }
      return { kind: 'response', response }
    } catch (err) {
      if (err instanceof NotStartedError) {
        // Prefetched but never started (drain, or the window shed it): give it back for another replica.
        metrics.released.inc({ queue: this.queue, reason: err.reason })
        return { kind: 'not_started' }
      }
      this.hot.runtimeDuration.observe(runtimeSeconds())
      if (isAsyaError(err, 'ASYA_ERR_RUNTIME_TIMEOUT')) {
        // The gate has already started replacing the hung runtime.
        metrics.runtimeErrors.inc({ queue: this.queue, error_type: 'timeout' })
        log.error({ reason: 'timeout' }, `runtime did not answer within ${this.d.config.runtimeTimeoutMs} ms`)
        return { kind: 'failed', failure: 'timeout', message: errorMessage(err) }
      }
      const failure = isAsyaError(err, 'ASYA_ERR_RUNTIME_BAD_RESPONSE') ? 'bad_response' : 'unreachable'
      metrics.runtimeErrors.inc({ queue: this.queue, error_type: failure })
      log.warn({ err: errorMessage(err), code: isAsyaError(err) ? err.code : undefined }, 'runtime call failed')
      return { kind: 'failed', failure, message: errorMessage(err) }
    }
  }

  /** Restores a claimed payload, or says why it cannot be (the outcome table decides what follows). */
  private async restoreClaim(env: Envelope, log: Logger): Promise<{ env: Envelope; body: Buffer } | { failure: ClaimFailure }> {
    const { claims, metrics } = this.d
    const t0 = process.hrtime.bigint()
    let failure: ClaimFailure
    try {
      if (!claims) throw new errors.ASYA_ERR_CLAIM_MISSING('the envelope carries a claim-check reference but ASYA_CLAIM_CHECK_BUCKET is not set on this actor')
      const r = await claims.restore(env)
      metrics.claims.inc({ queue: this.queue, operation: 'restore' })
      metrics.claimBytes.inc({ queue: this.queue, operation: 'restore' }, r.ref.size)
      return { env: r.env, body: r.body }
    } catch (err) {
      const code = isAsyaError(err) ? err.code : undefined
      const reason = code === 'ASYA_ERR_CLAIM_MISSING' ? 'claim_missing' : code === 'ASYA_ERR_CLAIM_CORRUPT' ? 'claim_corrupt' : 'claim_unavailable'
      const ref = claimRef(env)
      failure = { reason, message: errorMessage(err), type: code ?? 'StorageError', claim: typeof ref === 'string' ? env[CLAIM_FIELD] ?? null : ref }
    } finally {
      metrics.claimDuration.observe({ queue: this.queue, operation: 'restore' }, Number(process.hrtime.bigint() - t0) / 1e9)
    }
    metrics.claimFailures.inc({ queue: this.queue, reason: failure.reason })
    log.warn({ reason: failure.reason, err: failure.message }, 'claim-check payload could not be restored')
    return { failure }
  }

  /**
   * The hop's span, under the context the envelope's headers carry (a new trace when none): a
   * `queue wait` child covers the time since the previous sidecar published it.
   */
  private startHop(delivery: Delivery, value: Record<string, unknown> | undefined): Span {
    if (!this.tracing.enabled) return NOOP_SPAN
    const route = value?.route as { current?: unknown } | undefined
    const span = this.tracing.startSpan(`${this.actor} process`, this.tracing.extract(value?.headers), {
      kind: SpanKind.CONSUMER,
      attributes: {
        'messaging.system': this.d.transport.name,
        'messaging.operation.type': 'process',
        'messaging.destination.name': this.queue,
        ...(typeof value?.id === 'string' ? { 'messaging.message.id': value.id } : {}),
        'asya.actor': this.actor,
        ...(typeof route?.current === 'number' ? { 'asya.route.current': route.current } : {}),
        'asya.attempt': delivery.attempt,
      },
    })
    const sentAt = Number(delivery.headers[HEADER.sentAt])
    if (Number.isFinite(sentAt) && sentAt > 0 && sentAt <= Date.now()) this.tracing.startSpan('queue wait', span, { startTime: sentAt, attributes: { 'messaging.destination.name': this.queue } }).end()
    return span
  }

  private emit(e: SidecarEvent): void {
    try {
      this.d.onEvent?.(e)
    } catch {
      /* observers never break processing */
    }
  }
}
