/**
 * What the sidecar does with one delivery: the outcome table of SPEC §5. The input is acked only
 * after every output (next actors, happy-end or error-end) is confirmed by the broker; when a
 * publish fails the input is retried later, and dead-lettered after the delivery limit.
 */
import { AsyaError, errorMessage, isAsyaError } from '../src/errors.js'
import { currentActor, envelopeProblem, isPlainObject, type Envelope } from '../src/envelope.js'
import type { Logger } from '../src/logger.js'
import { backoffDelay } from '../src/backoff.js'
import type { RuntimeClient, RuntimeResponse } from '../src/runtime/runtime-client.js'
import type { Delivery, TransportHeaders, Transport } from '../src/transport/transport.js'
import type { SidecarConfig } from './config.js'
import { errorEnvelopeFor, errorEnvelopeForRaw, routeResults, type ErrorInfo, type FailureReason } from './envelopes.js'
import type { SidecarMetrics } from './metrics.js'
import type { RuntimeGate } from './runtime-gate.js'
import type { PrefetchWindow } from './prefetch-window.js'

/** Transport header: hops made so far (hop limit, SPEC §11.7). */
export const HOPS_HEADER = 'x-asya-hops'
/** Transport header: fan-out children already confirmed before a retry (SPEC §11.4). */
export const SENT_HEADER = 'x-asya-sent'

/** Observable steps, for the demo and tests (logs carry the same facts). */
export type SidecarEvent =
  | { type: 'received'; actor: string; id?: string; attempt: number }
  | { type: 'sent'; actor: string; id: string; destination: string; kind: 'routed' | 'happy_end' | 'error_end' }
  | { type: 'retry'; actor: string; id?: string; reason: string; delayMs: number; attempt: number }
  | { type: 'dead_letter'; actor: string; id?: string; reason: string }
  | { type: 'done'; actor: string; id?: string; status: string }

export interface ProcessorDeps {
  config: SidecarConfig
  transport: Transport
  runtime: RuntimeClient
  gate: RuntimeGate
  metrics: SidecarMetrics
  logger: Logger
  isDraining: () => boolean
  /** Adapts the delivery window to the runtime's call durations (see prefetch-window.ts). */
  window?: PrefetchWindow
  onEvent?: (e: SidecarEvent) => void
}

interface Outgoing {
  destination: string
  body: Buffer
  kind: 'routed' | 'happy_end' | 'error_end'
  id: string
}

const utf8 = new TextDecoder('utf-8', { fatal: true })

export class MessageProcessor {
  private readonly queue: string
  private readonly actor: string

  constructor(private readonly d: ProcessorDeps) {
    this.actor = d.config.actorName
    this.queue = `asya-${d.config.actorName}`
  }

  async handle(delivery: Delivery): Promise<void> {
    const started = process.hrtime.bigint()
    const { metrics } = this.d
    metrics.received.inc({ queue: this.queue, transport: this.d.transport.name })
    metrics.envelopeSize.observe({ direction: 'in' }, delivery.body.length)
    metrics.active.inc()
    try {
      await this.process(delivery, started)
    } finally {
      metrics.active.dec()
      metrics.processingDuration.observe({ queue: this.queue }, Number(process.hrtime.bigint() - started) / 1e9)
    }
  }

  private get deliveryLimit(): number {
    return this.d.config.maxRetries + this.d.config.deliveryLimit
  }

  private async process(delivery: Delivery, receivedAt: bigint): Promise<void> {
    const { config, logger } = this.d
    // Parse first: every later log line carries the envelope id.
    let value: unknown
    let parseError: string | undefined
    try {
      value = JSON.parse(utf8.decode(delivery.body))
    } catch (err) {
      parseError = errorMessage(err)
    }
    const id = isPlainObject(value) && typeof value.id === 'string' ? value.id : undefined
    const log = logger.child({ envelope_id: id ?? null, attempt: delivery.attempt })
    this.emit({ type: 'received', actor: this.actor, ...(id !== undefined ? { id } : {}), attempt: delivery.attempt })

    if (delivery.attempt > this.deliveryLimit) {
      // Redelivered past every budget (crash loops, publish failures): park it, never hot-loop.
      await this.deadLetter(delivery, 'delivery_limit', `delivered ${delivery.attempt} times (limit ${this.deliveryLimit})`, log, id)
      return
    }

    if (parseError !== undefined || !isPlainObject(value)) {
      const message = parseError ?? 'envelope must be a JSON object'
      log.warn({ reason: 'parse_error', err: message }, 'message body is not a JSON object')
      if (config.isEndActor) return this.deadLetter(delivery, 'parse_error', message, log, id)
      const errEnv = errorEnvelopeForRaw(delivery.body, this.errorInfo('parse_error', 'parse_error', message, 'EnvelopeParseError', delivery))
      return this.finishWithError(delivery, errEnv, 'parse_error', log)
    }
    const problem = envelopeProblem(value)
    if (problem !== undefined) {
      log.warn({ reason: 'validation_error', err: problem }, 'invalid envelope')
      if (config.isEndActor) return this.deadLetter(delivery, 'validation_error', problem, log, id)
      const errEnv = errorEnvelopeFor(value, this.errorInfo('validation_error', 'validation_error', problem, 'EnvelopeValidationError', delivery))
      return this.finishWithError(delivery, errEnv, 'validation_error', log)
    }
    const env = value as Envelope

    if (!config.isEndActor) {
      const expected = currentActor(env)
      if (expected !== this.actor) {
        const message = `route.actors[${env.route.current}] is ${JSON.stringify(expected ?? null)}, this actor is ${this.actor}`
        log.warn({ reason: 'route_mismatch' }, message)
        return this.finishWithError(delivery, errorEnvelopeFor(env, this.errorInfo('route_mismatch', 'route_mismatch', message, 'RouteMismatchError', delivery)), 'route_mismatch', log)
      }
      const hops = Number(delivery.headers[HOPS_HEADER] ?? '0')
      if (Number.isFinite(hops) && hops >= config.maxHops) {
        const message = `envelope made ${hops} hops (ASYA_MAX_HOPS=${config.maxHops}); its route stopped advancing`
        log.warn({ reason: 'hop_limit' }, message)
        return this.finishWithError(delivery, errorEnvelopeFor(env, this.errorInfo('hop_limit', 'hop_limit', message, 'HopLimitError', delivery)), 'hop_limit', log)
      }
    }

    // Runtime call: one at a time, in arrival order; the publish + ack of the previous message
    // overlap with this call (the lock is released as soon as the runtime answers).
    const release = await this.d.gate.acquire()
    if (this.d.isDraining()) {
      // Prefetched but never started: give it back for another replica.
      release()
      await delivery.release().catch((err: unknown) => log.warn({ err: errorMessage(err) }, 'release failed; the broker will redeliver'))
      this.emit({ type: 'done', actor: this.actor, id: env.id, status: 'released' })
      return
    }
    this.d.metrics.receiveDuration.observe({ queue: this.queue, transport: this.d.transport.name }, Number(process.hrtime.bigint() - receivedAt) / 1e9)
    let response: RuntimeResponse
    const t0 = process.hrtime.bigint()
    try {
      response = await this.d.runtime.call(delivery.body, { timeoutMs: config.runtimeTimeoutMs })
    } catch (err) {
      this.d.metrics.runtimeDuration.observe({ queue: this.queue }, Number(process.hrtime.bigint() - t0) / 1e9)
      if (isAsyaError(err, 'ASYA_ERR_RUNTIME_TIMEOUT')) {
        this.d.metrics.runtimeErrors.inc({ queue: this.queue, error_type: 'timeout' })
        // Replace the hung runtime before anyone else may call it.
        this.d.gate.recover('handler timeout', true)
        release()
        const message = `runtime did not answer within ${config.runtimeTimeoutMs} ms`
        log.error({ reason: 'timeout' }, message)
        if (config.isEndActor) return this.deadLetter(delivery, 'timeout', message, log, env.id)
        return this.finishWithError(delivery, errorEnvelopeFor(env, this.errorInfo('timeout', 'timeout', message, 'TimeoutError', delivery)), 'timeout', log)
      }
      const type = isAsyaError(err, 'ASYA_ERR_RUNTIME_BAD_RESPONSE') ? 'bad_response' : 'unreachable'
      this.d.metrics.runtimeErrors.inc({ queue: this.queue, error_type: type })
      if (type === 'unreachable') this.d.gate.recover(errorMessage(err), false)
      release()
      log.warn({ err: errorMessage(err), code: isAsyaError(err) ? err.code : undefined }, 'runtime call failed')
      return this.retryOrFail(delivery, env, type === 'bad_response' ? 'runtime_error' : 'runtime_unreachable', errorMessage(err), 'RuntimeError', log, this.deliveryLimit)
    }
    release()
    const runtimeSeconds = Number(process.hrtime.bigint() - t0) / 1e9
    this.d.metrics.runtimeDuration.observe({ queue: this.queue }, runtimeSeconds)
    this.d.window?.observe(runtimeSeconds * 1000)

    if (response.kind === 'error') {
      const { error, details } = response.error
      this.d.metrics.runtimeErrors.inc({ queue: this.queue, error_type: error })
      log.warn({ runtime_error: error, err: details.message, type: details.type }, 'handler failed')
      const info = (reason: FailureReason): ErrorInfo => ({
        error,
        message: String(details.message ?? ''),
        type: String(details.type ?? ''),
        traceback: String(details.traceback ?? ''),
        reason,
        actor: this.actor,
        attempts: delivery.attempt,
        extra: details,
      })
      if (error === 'connection_error') {
        return this.retryOrFail(delivery, env, 'runtime_unreachable', String(details.message), String(details.type), log, this.deliveryLimit)
      }
      const reason: FailureReason = error === 'processing_error' ? 'processing_error' : error === 'msg_parsing_error' ? 'msg_parsing_error' : 'runtime_error'
      const retryable = error === 'processing_error' && details.retryable !== false
      if (retryable && delivery.attempt <= config.maxRetries) {
        return this.retry(delivery, reason, String(details.message), log, env.id)
      }
      if (config.isEndActor) return this.deadLetter(delivery, reason, String(details.message), log, env.id)
      return this.finishWithError(delivery, errorEnvelopeFor(env, info(reason)), reason, log)
    }

    if (config.isEndActor) {
      await this.reportToGateway(env, log)
      await this.ack(delivery, log)
      this.d.metrics.processed.inc({ queue: this.queue, status: 'success' })
      this.emit({ type: 'done', actor: this.actor, id: env.id, status: 'success' })
      return
    }

    const hops = String(Number(delivery.headers[HOPS_HEADER] ?? '0') + 1)
    let outgoing: Outgoing[]
    if (response.results.length === 0) {
      outgoing = [{ destination: config.happyEnd, body: delivery.body, kind: 'happy_end', id: env.id }]
    } else {
      const routed = routeResults(env, response.results, config.happyEnd)
      if (typeof routed === 'string') {
        log.error({ reason: 'invalid_result', err: routed }, 'handler returned an invalid envelope')
        return this.finishWithError(delivery, errorEnvelopeFor(env, this.errorInfo('invalid_result', 'invalid_result', routed, 'InvalidResultError', delivery)), 'invalid_result', log)
      }
      outgoing = routed.map((r) => ({ destination: r.destination, body: Buffer.from(JSON.stringify(r.envelope)), kind: r.kind, id: String(r.envelope.id) }))
    }
    const status = response.results.length === 0 ? 'empty' : 'success'
    await this.publishAndAck(delivery, outgoing, { [HOPS_HEADER]: hops }, status, log, env)
  }

  private errorInfo(error: string, reason: FailureReason, message: string, type: string, delivery: Delivery): ErrorInfo {
    return { error, message, type, reason, actor: this.actor, attempts: delivery.attempt }
  }

  /** Publishes every output (skipping fan-out children confirmed before a retry), then acks. */
  private async publishAndAck(
    delivery: Delivery,
    outgoing: Outgoing[],
    headers: TransportHeaders,
    status: string,
    log: Logger,
    env: Envelope | undefined,
    reason?: FailureReason,
  ): Promise<void> {
    const alreadySent = new Set((delivery.headers[SENT_HEADER] ?? '').split(',').filter((s) => s !== '').map(Number))
    const transportName = this.d.transport.name
    const results = await Promise.allSettled(
      outgoing.map(async (o, i) => {
        if (alreadySent.has(i)) return
        const t0 = process.hrtime.bigint()
        await this.d.transport.publish(o.destination, o.body, { headers })
        const queue = `asya-${o.destination}`
        this.d.metrics.sendDuration.observe({ destination_queue: queue, transport: transportName }, Number(process.hrtime.bigint() - t0) / 1e9)
        this.d.metrics.sent.inc({ destination_queue: queue, message_type: o.kind })
        this.d.metrics.envelopeSize.observe({ direction: 'out' }, o.body.length)
        this.emit({ type: 'sent', actor: this.actor, id: o.id, destination: o.destination, kind: o.kind })
      }),
    )
    const failures = results.flatMap((r, i) => (r.status === 'rejected' ? [{ i, err: r.reason as unknown }] : []))
    if (failures.length === 0) {
      await this.ack(delivery, log)
      this.d.metrics.processed.inc({ queue: this.queue, status })
      if (reason !== undefined) this.d.metrics.failed.inc({ queue: this.queue, reason })
      this.emit({ type: 'done', actor: this.actor, ...(env ? { id: env.id } : {}), status })
      return
    }
    const first = failures[0]?.err
    const sent = results.flatMap((r, i) => (r.status === 'fulfilled' ? [i] : [])).concat([...alreadySent])
    log.warn({ err: errorMessage(first), failed: failures.length, of: outgoing.length }, 'publish failed; input not acked')
    this.d.metrics.failed.inc({ queue: this.queue, reason: 'publish_failed' })
    if (isAsyaError(first, 'ASYA_ERR_PAYLOAD_TOO_LARGE')) {
      // Retrying cannot shrink it; error-end gets the reason (or the DLQ if even that is too big).
      if (outgoing.some((o) => o.kind === 'error_end') || !env) return this.deadLetter(delivery, 'payload_too_large', errorMessage(first), log, env?.id)
      const errEnv = errorEnvelopeFor(env, this.errorInfo('payload_too_large', 'payload_too_large', errorMessage(first), 'PayloadTooLargeError', delivery))
      return this.finishWithError(delivery, errEnv, 'payload_too_large', log)
    }
    if (delivery.attempt >= this.deliveryLimit) return this.deadLetter(delivery, 'publish_failed', errorMessage(first), log, env?.id)
    const sentHeader = [...new Set(sent)].sort((a, b) => a - b).join(',')
    await this.retry(delivery, 'publish_failed', errorMessage(first), log, env?.id, sentHeader ? { [SENT_HEADER]: sentHeader } : undefined, true)
  }

  private async finishWithError(delivery: Delivery, errEnv: Record<string, unknown>, reason: FailureReason, log: Logger): Promise<void> {
    const hops = String(Number(delivery.headers[HOPS_HEADER] ?? '0') + 1)
    const out: Outgoing = { destination: this.d.config.errorEnd, body: Buffer.from(JSON.stringify(errEnv)), kind: 'error_end', id: String(errEnv.id) }
    await this.publishAndAck(delivery, [out], { [HOPS_HEADER]: hops }, 'error', log, errEnv as Envelope, reason)
  }

  /** Runtime-side failures: retried with backoff up to `limit` attempts, then error-end. */
  private async retryOrFail(delivery: Delivery, env: Envelope, reason: FailureReason, message: string, type: string, log: Logger, limit: number): Promise<void> {
    if (delivery.attempt < limit) return this.retry(delivery, reason, message, log, env.id, undefined, true)
    if (this.d.config.isEndActor) return this.deadLetter(delivery, reason, message, log, env.id)
    return this.finishWithError(delivery, errorEnvelopeFor(env, this.errorInfo(reason, reason, message, type, delivery)), reason, log)
  }

  private async retry(
    delivery: Delivery,
    reason: FailureReason,
    message: string,
    log: Logger,
    id: string | undefined,
    headers?: TransportHeaders,
    infrastructure = false,
  ): Promise<void> {
    const { config } = this.d
    // Infrastructure problems back off from 1 s whatever the handler policy says.
    const delayMs = backoffDelay(delivery.attempt, { initialMs: infrastructure ? 1000 : config.retryBackoffMs, maxMs: config.retryBackoffMaxMs })
    try {
      await delivery.retry(delayMs, { reason, error: message, ...(headers ? { headers } : {}) })
    } catch (err) {
      // Broker gone: the unacked message returns to the queue by itself when the channel closes.
      log.warn({ err: errorMessage(err), reason }, 'could not schedule the retry; the broker will redeliver')
      return
    }
    this.d.metrics.retries.inc({ queue: this.queue, reason })
    this.d.metrics.processed.inc({ queue: this.queue, status: 'retry' })
    log.info({ reason, delay_ms: delayMs }, 'retry scheduled')
    this.emit({ type: 'retry', actor: this.actor, ...(id !== undefined ? { id } : {}), reason, delayMs, attempt: delivery.attempt })
  }

  private async deadLetter(delivery: Delivery, reason: FailureReason, message: string, log: Logger, id: string | undefined): Promise<void> {
    try {
      await delivery.deadLetter({ reason, error: message, attempts: delivery.attempt })
    } catch (err) {
      log.error({ err: errorMessage(err), reason }, 'dead-lettering failed; the broker will redeliver')
      return
    }
    this.d.metrics.deadLettered.inc({ queue: this.queue, reason })
    this.d.metrics.failed.inc({ queue: this.queue, reason })
    this.d.metrics.processed.inc({ queue: this.queue, status: 'dead_lettered' })
    log.error({ reason, err: message }, 'message dead-lettered')
    this.emit({ type: 'dead_letter', actor: this.actor, ...(id !== undefined ? { id } : {}), reason })
  }

  private async ack(delivery: Delivery, log: Logger): Promise<void> {
    try {
      await delivery.ack()
    } catch (err) {
      log.warn({ err: errorMessage(err) }, 'ack failed after the outputs were confirmed; the message may be delivered again')
    }
  }

  /** End actors: final status to the gateway (best effort, bounded; never blocks the queue long). */
  private async reportToGateway(env: Envelope, log: Logger): Promise<void> {
    const base = this.d.config.gatewayUrl
    if (!base) return
    const failed = this.actor === this.d.config.errorEnd
    const payload = env.payload as Record<string, unknown> | null
    const body = JSON.stringify({
      id: env.id,
      status: failed ? 'failed' : 'succeeded',
      ...(failed ? { error: isPlainObject(payload) ? payload.error ?? null : null, details: isPlainObject(payload) ? payload.details ?? null : null } : { result: env.payload }),
    })
    for (let attempt = 1; attempt <= 3; attempt++) {
      try {
        const res = await fetch(`${base}/envelopes/${encodeURIComponent(env.id)}/final`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body,
          signal: AbortSignal.timeout(5000),
        })
        if (res.ok) {
          this.d.metrics.gatewayReports.inc({ result: 'ok' })
          return
        }
        if (res.status < 500) throw new AsyaError('ASYA_ERR_GATEWAY', `gateway answered ${res.status}`)
      } catch (err) {
        if (isAsyaError(err, 'ASYA_ERR_GATEWAY') || attempt === 3) {
          this.d.metrics.gatewayReports.inc({ result: 'failed' })
          log.warn({ err: errorMessage(err) }, 'final status not reported to the gateway')
          return
        }
      }
      await new Promise((r) => setTimeout(r, 200 * attempt))
    }
    this.d.metrics.gatewayReports.inc({ result: 'failed' })
  }

  private emit(e: SidecarEvent): void {
    try {
      this.d.onEvent?.(e)
    } catch {
      /* observers never break processing */
    }
  }
}
