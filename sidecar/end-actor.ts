/**
 * What an end actor (`happy-end`, `error-end`; SPEC §10.3) does with a finished envelope: persist
 * it to object storage, then report the final status to the gateway. The decision functions are
 * pure; `EndActor.finish` performs the two side effects and says how the delivery must be settled
 * (ack, retry, dead-letter), which the message processor carries out. The input is acked only
 * after both steps succeeded (SPEC §11 #21): a failed step is retried with backoff, and the object
 * key written by an earlier attempt travels in a transport header so a retry never writes a
 * second object for the same envelope.
 */
import { errorMessage, isAsyaError } from '../src/errors.js'
import { isPlainObject, type Envelope, type Json } from '../src/envelope.js'
import type { Logger } from '../src/logger.js'
import { HEADER, queueName } from '../src/names.js'
import type { ObjectStore } from '../src/storage/object-store.js'
import { lastActor, resultKey, safeSegment } from '../src/storage/result-keys.js'
import type { TransportHeaders } from '../src/transport/transport.js'
import type { SidecarConfig } from './config.js'
import type { SidecarMetrics } from './metrics.js'
import { GatewayHttp } from './progress-sender.js'

/** Transport header: object key written by an earlier attempt of this delivery. */
export const END_KEY_HEADER = HEADER.endKey
/** Transport header: object key an earlier attempt failed to write; the retry writes that key again. */
export const END_PENDING_KEY_HEADER = HEADER.endPendingKey

export type EndKind = 'happy' | 'error'

/** Why an end actor retried or dead-lettered a delivery; documented in docs/end-actors.md. */
export type EndFailureReason = 'persist_failed' | 'report_failed' | 'report_rejected'

export type EndOutcome =
  | { kind: 'done'; key?: string; report: ReportResult }
  | { kind: 'retry'; reason: EndFailureReason; message: string; headers: TransportHeaders }
  | { kind: 'dead_letter'; reason: EndFailureReason; message: string }

/** ok: accepted; not_found: the gateway does not track this id; already_final: it was final before; skipped: no gateway. */
export type ReportResult = 'ok' | 'not_found' | 'already_final' | 'skipped'

/**
 * Final report body for `POST /envelopes/{id}/final`, upstream's shapes; `metadata.s3_uri` names
 * the persisted object (upstream's gateway puts it in the envelope's message).
 */
export function finalReport(env: Envelope, kind: EndKind, s3Uri?: string): Record<string, Json> {
  const metadata: Record<string, Json> = s3Uri !== undefined ? { metadata: { s3_uri: s3Uri } } : {}
  if (kind === 'happy') return { id: env.id, status: 'succeeded', result: env.payload, ...metadata }
  const p = isPlainObject(env.payload) ? env.payload : {}
  const idx = env.route.current
  const details = isPlainObject(p.details) ? p.details : {}
  const name = env.route.actors[idx] ?? (typeof details.actor === 'string' ? details.actor : null)
  return {
    id: env.id,
    status: 'failed',
    error: typeof p.error === 'string' ? p.error : p.error === undefined ? null : JSON.stringify(p.error),
    error_details: (p.details ?? null) as Json,
    actors: env.route.actors,
    current_actor_idx: idx,
    current_actor_name: name,
    ...metadata,
  }
}

/**
 * The envelope an end actor persists and reports: the input, or, when the user's end handler
 * returned a non-empty result (not null, {}, [] or ''), the input with that result's payload.
 */
export function endResult(input: Envelope, results: unknown[]): Envelope {
  const first = results[0]
  if (!isPlainObject(first) || !('payload' in first)) return input
  const payload = first.payload as Json
  const empty = payload === null || payload === '' || (Array.isArray(payload) && payload.length === 0) || (isPlainObject(payload) && Object.keys(payload).length === 0)
  return empty ? input : { ...input, payload }
}

export interface EndActorDeps {
  config: SidecarConfig
  kind: EndKind
  store?: ObjectStore
  metrics: SidecarMetrics
  /** @default 10000 */
  reportTimeoutMs?: number
  now?: () => Date
}

export class EndActor {
  private readonly queue: string
  private readonly prefix: string
  private http: GatewayHttp | undefined

  constructor(private readonly d: EndActorDeps) {
    this.queue = queueName(d.config.actorName)
    this.prefix = d.kind === 'happy' ? d.config.s3.resultsPrefix : d.config.s3.errorsPrefix
  }

  async finish(env: Envelope, headers: TransportHeaders, log: Logger): Promise<EndOutcome> {
    const { metrics, store } = this.d
    // Keys from headers are trusted only when they name this envelope under this actor's prefix:
    // a crafted header must neither skip persistence nor write over another envelope's object.
    const own = (k: string | undefined): string | undefined => (k !== undefined && this.isKeyOf(k, env.id) ? k : undefined)
    let key = own(headers[END_KEY_HEADER])
    if (store && key === undefined) {
      // A retry after a failed write reuses the key that attempt chose: the write may have landed
      // although the client saw an error (connection reset after the upload), and an overwrite of
      // the same key keeps one object per envelope.
      key = own(headers[END_PENDING_KEY_HEADER]) ?? resultKey(this.prefix, (this.d.now ?? (() => new Date()))(), lastActor(env, this.d.kind), env.id)
      const t0 = process.hrtime.bigint()
      try {
        await store.put(key, Buffer.from(JSON.stringify(env)), { metadata: { 'asya-id': encodeURIComponent(env.id) } })
      } catch (err) {
        metrics.endPersistFailures.inc({ queue: this.queue })
        log.warn({ code: isAsyaError(err) ? err.code : undefined, err: errorMessage(err), key }, 'persisting the envelope failed; input not acked')
        return { kind: 'retry', reason: 'persist_failed', message: errorMessage(err), headers: { [END_PENDING_KEY_HEADER]: key } }
      } finally {
        metrics.endPersistDuration.observe({ queue: this.queue }, Number(process.hrtime.bigint() - t0) / 1e9)
      }
      metrics.endPersisted.inc({ queue: this.queue })
      log.debug({ key }, 'envelope persisted')
    }
    const keyHeaders: TransportHeaders = key !== undefined ? { [END_KEY_HEADER]: key } : {}
    const report = await this.report(env, key, log)
    if (report.kind === 'ok') return { kind: 'done', ...(key !== undefined ? { key } : {}), report: report.result }
    if (report.kind === 'rejected') return { kind: 'dead_letter', reason: 'report_rejected', message: report.message }
    return { kind: 'retry', reason: 'report_failed', message: report.message, headers: keyHeaders }
  }

  /** Closes the kept-alive connections to the gateway (drain, after the last message settled). */
  close(): void {
    this.http?.close()
    this.http = undefined
  }

  /** `{prefix}{timestamp}/{actor}/{id}.json` of this envelope, the shape resultKey builds. */
  private isKeyOf(key: string, id: string): boolean {
    if (!key.startsWith(this.prefix) || !key.endsWith(`/${safeSegment(id)}.json`)) return false
    const middle = key.slice(this.prefix.length, key.length - safeSegment(id).length - '.json'.length - 1)
    return /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z\/[^/]+$/.test(middle)
  }

  private async report(env: Envelope, key: string | undefined, log: Logger): Promise<{ kind: 'ok'; result: ReportResult } | { kind: 'transient' | 'rejected'; message: string }> {
    const base = this.d.config.gatewayUrl
    if (base === undefined) return { kind: 'ok', result: 'skipped' }
    const { metrics } = this.d
    const t0 = process.hrtime.bigint()
    const url = `${base}/envelopes/${encodeURIComponent(env.id)}/final`
    let status: number
    let text = ''
    try {
      // node:http on a keep-alive agent, not fetch: undici was half of a happy-end sidecar's CPU
      // under the gateway benchmark (docs/benchmarks.md "Gateway").
      this.http ??= new GatewayHttp(base, 8)
      const res = await this.http.post(
        url,
        { 'content-type': 'application/json', ...(this.d.config.gatewayToken !== undefined ? { authorization: `Bearer ${this.d.config.gatewayToken}` } : {}) },
        JSON.stringify(finalReport(env, this.d.kind, key !== undefined && this.d.store ? `s3://${this.d.store.bucket}/${key}` : undefined)),
        this.d.reportTimeoutMs ?? 10_000,
      )
      status = res.status
      text = res.text
    } catch (err) {
      metrics.endReportDuration.observe({ queue: this.queue }, Number(process.hrtime.bigint() - t0) / 1e9)
      return this.reportFailed('transient', `POST ${url}: ${errorMessage(err)}`, log)
    }
    metrics.endReportDuration.observe({ queue: this.queue }, Number(process.hrtime.bigint() - t0) / 1e9)
    const verdict = reportVerdict(status)
    if (verdict === 'ok' || verdict === 'not_found' || verdict === 'already_final') {
      metrics.endReports.inc({ queue: this.queue, result: verdict })
      metrics.gatewayReports.inc({ result: 'ok' })
      if (verdict !== 'ok') log.info({ status, result: verdict }, verdict === 'not_found' ? 'the gateway does not track this envelope; persisted only' : 'the envelope was already final at the gateway')
      return { kind: 'ok', result: verdict }
    }
    return this.reportFailed(verdict, `POST ${url}: HTTP ${status} ${text.slice(0, 200)}`, log)
  }

  private reportFailed(kind: 'transient' | 'rejected', message: string, log: Logger): { kind: 'transient' | 'rejected'; message: string } {
    this.d.metrics.endReportFailures.inc({ queue: this.queue, kind })
    this.d.metrics.gatewayReports.inc({ result: 'failed' })
    log.warn({ code: 'ASYA_ERR_GATEWAY', err: message, kind }, kind === 'rejected' ? 'the gateway rejected the final report' : 'final report failed; input not acked')
    return { kind, message }
  }
}

/**
 * How a final-report HTTP status settles the delivery. 2xx: done. 404: the gateway does not know
 * the id (an envelope not started through the gateway): persisted is enough. 409: already final
 * (a retry after an earlier report got through). 408/425/429/5xx: transient, retried. Any other
 * 4xx: our request is wrong and will stay wrong: dead-lettered, never reported as success.
 */
export function reportVerdict(status: number): 'ok' | 'not_found' | 'already_final' | 'transient' | 'rejected' {
  if (status >= 200 && status < 300) return 'ok'
  if (status === 404) return 'not_found'
  if (status === 409) return 'already_final'
  if (status === 408 || status === 425 || status === 429 || status >= 500) return 'transient'
  return 'rejected'
}
