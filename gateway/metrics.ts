/**
 * Gateway metrics (GET /metrics). docs/metrics.md lists them with their labels.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'

const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]

export class GatewayMetrics {
  readonly registry: Registry
  readonly toolCalls: Counter<'tool' | 'outcome'>
  readonly envelopesFinal: Counter<'status' | 'source'>
  readonly sseClients: Gauge
  readonly storeDuration: Histogram<'operation' | 'result'>
  readonly progressReports: Counter<'result'>
  readonly publishDuration: Histogram<'result'>
  readonly sweepExpired: Counter
  readonly rejections: Counter<'listener' | 'reason'>

  constructor(registry = new Registry(), options: { defaultMetrics?: boolean } = {}) {
    this.registry = registry
    if (options.defaultMetrics ?? true) collectDefaultMetrics({ register: registry, prefix: 'asya_gateway_process_' })
    const registers = [registry]
    this.toolCalls = new Counter({
      name: 'asya_gateway_tool_calls_total',
      help: 'Tool calls, by tool and outcome (accepted, invalid_arguments, unknown_tool, too_large, publish_failed, error)',
      labelNames: ['tool', 'outcome'],
      registers,
    })
    this.envelopesFinal = new Counter({
      name: 'asya_gateway_envelopes_final_total',
      help: 'Envelopes that reached a final status on this replica, by status and source (end_actor, timeout, publish)',
      labelNames: ['status', 'source'],
      registers,
    })
    this.sseClients = new Gauge({ name: 'asya_gateway_sse_clients', help: 'SSE streams open on this replica', registers })
    this.storeDuration = new Histogram({
      name: 'asya_gateway_store_duration_seconds',
      help: 'Envelope store operation latency, by operation and result',
      labelNames: ['operation', 'result'],
      buckets: LATENCY_BUCKETS,
      registers,
    })
    this.progressReports = new Counter({
      name: 'asya_gateway_progress_reports_total',
      help: 'Progress reports received, by result (applied, stale, ignored_final, not_found, invalid)',
      labelNames: ['result'],
      registers,
    })
    this.publishDuration = new Histogram({
      name: 'asya_gateway_publish_duration_seconds',
      help: 'First-envelope publish until the broker confirmed, by result',
      labelNames: ['result'],
      buckets: LATENCY_BUCKETS,
      registers,
    })
    this.rejections = new Counter({
      name: 'asya_gateway_rejections_total',
      help: 'Requests refused by authentication or a limit, by listener (public, internal) and reason (docs/security.md)',
      labelNames: ['listener', 'reason'],
      registers,
    })
    this.sweepExpired = new Counter({ name: 'asya_gateway_envelopes_timed_out_total', help: 'Envelopes failed by the deadline sweep of this replica', registers })
  }
}
