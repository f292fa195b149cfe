/**
 * Sidecar metrics (SPEC §5), names compatible with upstream Asya under ASYA_METRICS_NAMESPACE
 * (default `asya_actor`). docs/metrics.md lists them with their labels.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'
import { BoundBy, BoundCounter, BoundGauge, BoundHistogram } from './hot-metrics.js'

const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800]
const SIZE_BUCKETS = [128, 512, 1024, 4096, 16_384, 65_536, 262_144, 1_048_576, 4_194_304, 16_777_216]

export type MessageType = 'routed' | 'happy_end' | 'error_end'

export class SidecarMetrics {
  readonly registry: Registry
  readonly received: Counter<'queue' | 'transport'>
  readonly processed: Counter<'queue' | 'status'>
  readonly sent: Counter<'destination_queue' | 'message_type'>
  readonly failed: Counter<'queue' | 'reason'>
  readonly processingDuration: Histogram<'queue'>
  readonly runtimeDuration: Histogram<'queue'>
  readonly receiveDuration: Histogram<'queue' | 'transport'>
  readonly sendDuration: Histogram<'destination_queue' | 'transport'>
  readonly envelopeSize: Histogram<'direction'>
  readonly active: Gauge
  readonly runtimeErrors: Counter<'queue' | 'error_type'>
  readonly retries: Counter<'queue' | 'reason'>
  readonly deadLettered: Counter<'queue' | 'reason'>
  readonly gatewayReports: Counter<'result'>
  readonly progressReports: Counter<'status' | 'result'>
  readonly progressPending: Gauge
  readonly progressDuration: Histogram
  readonly endPersisted: Counter<'queue'>
  readonly endPersistFailures: Counter<'queue'>
  readonly endPersistDuration: Histogram<'queue'>
  readonly endReports: Counter<'queue' | 'result'>
  readonly endReportFailures: Counter<'queue' | 'kind'>
  readonly endReportDuration: Histogram<'queue'>
  readonly claims: Counter<'queue' | 'operation'>
  readonly claimFailures: Counter<'queue' | 'reason'>
  readonly claimBytes: Counter<'queue' | 'operation'>
  readonly claimDuration: Histogram<'queue' | 'operation'>
  readonly deliveryWindow: Gauge
  readonly callsInFlight: Gauge
  readonly batchEnvelopes: Histogram
  readonly released: Counter<'queue' | 'reason'>
  private readonly hotByQueue = new Map<string, HotMetrics>()

  constructor(namespace = 'asya_actor', registry = new Registry(), options: { defaultMetrics?: boolean } = {}) {
    this.registry = registry
    if (options.defaultMetrics ?? true) collectDefaultMetrics({ register: registry, prefix: `${namespace}_process_` })
    const n = (s: string): string => `${namespace}_${s}`
    const registers = [registry]
    this.received = new Counter({ name: n('messages_received_total'), help: 'Messages received from the queue', labelNames: ['queue', 'transport'], registers })
    this.processed = new Counter({
      name: n('messages_processed_total'),
      help: 'Messages settled, by outcome (success, empty, error, retry, dead_lettered)',
      labelNames: ['queue', 'status'],
      registers,
    })
    this.sent = new Counter({
      name: n('messages_sent_total'),
      help: 'Envelopes published and confirmed, by destination and type (routed, happy_end, error_end)',
      labelNames: ['destination_queue', 'message_type'],
      registers,
    })
    this.failed = new Counter({ name: n('messages_failed_total'), help: 'Messages that failed, by reason', labelNames: ['queue', 'reason'], registers })
    this.processingDuration = new Histogram({
      name: n('processing_duration_seconds'),
      help: 'From delivery to settlement (runtime call, publishes, ack)',
      labelNames: ['queue'],
      buckets: LATENCY_BUCKETS,
      registers,
    })
    this.runtimeDuration = new Histogram({
      name: n('runtime_execution_duration_seconds'),
      help: 'Duration of one runtime call (socket round-trip including the handler)',
      labelNames: ['queue'],
      buckets: LATENCY_BUCKETS,
      registers,
    })
    this.receiveDuration = new Histogram({
      name: n('queue_receive_duration_seconds'),
      help: 'Time a delivered message waited in the sidecar before processing started',
      labelNames: ['queue', 'transport'],
      buckets: LATENCY_BUCKETS,
      registers,
    })
    this.sendDuration = new Histogram({
      name: n('queue_send_duration_seconds'),
      help: 'Publish until broker confirmation',
      labelNames: ['destination_queue', 'transport'],
      buckets: LATENCY_BUCKETS,
      registers,
    })
    this.envelopeSize = new Histogram({
      name: n('envelope_size_bytes'),
      help: 'Envelope sizes, by direction (in, out)',
      labelNames: ['direction'],
      buckets: SIZE_BUCKETS,
      registers,
    })
    this.active = new Gauge({ name: n('active_messages'), help: 'Messages being processed now', registers })
    this.runtimeErrors = new Counter({
      name: n('runtime_errors_total'),
      help: 'Runtime failures, by type (processing_error, msg_parsing_error, connection_error, timeout, unreachable, bad_response)',
      labelNames: ['queue', 'error_type'],
      registers,
    })
    this.retries = new Counter({ name: n('retries_total'), help: 'Delayed retries scheduled, by reason', labelNames: ['queue', 'reason'], registers })
    this.deadLettered = new Counter({ name: n('dead_lettered_total'), help: 'Messages moved to the DLQ, by reason', labelNames: ['queue', 'reason'], registers })
    this.gatewayReports = new Counter({ name: n('gateway_reports_total'), help: 'End-actor status reports to the gateway, by result', labelNames: ['result'], registers })
    this.progressReports = new Counter({
      name: n('progress_reports_total'),
      help: 'Progress reports to the gateway, by status (received, processing, completed) and result (ok, rejected, failed, dropped)',
      labelNames: ['status', 'result'],
      registers,
    })
    this.progressPending = new Gauge({ name: n('progress_reports_pending'), help: 'Progress reports waiting to be sent to the gateway', registers })
    this.progressDuration = new Histogram({
      name: n('progress_report_duration_seconds'),
      help: 'One progress report, request to answer (including its retry)',
      buckets: LATENCY_BUCKETS,
      registers,
    })
    this.endPersisted = new Counter({ name: n('end_persisted_total'), help: 'End actors: envelopes written to object storage', labelNames: ['queue'], registers })
    this.endPersistFailures = new Counter({ name: n('end_persist_failures_total'), help: 'End actors: failed object-storage writes (the input is retried)', labelNames: ['queue'], registers })
    this.endPersistDuration = new Histogram({
      name: n('end_persist_duration_seconds'),
      help: 'End actors: one object-storage write (PUT until confirmed)',
      labelNames: ['queue'],
      buckets: LATENCY_BUCKETS,
      registers,
    })
    this.endReports = new Counter({
      name: n('end_reports_total'),
      help: 'End actors: final reports settled by the gateway, by result (ok, not_found, already_final)',
      labelNames: ['queue', 'result'],
      registers,
    })
    this.endReportFailures = new Counter({
      name: n('end_report_failures_total'),
      help: 'End actors: failed final reports, by kind (transient: retried; rejected: dead-lettered)',
      labelNames: ['queue', 'kind'],
      registers,
    })
    this.claims = new Counter({
      name: n('claim_check_total'),
      help: 'Claim check: payloads parked (store), restored (restore) and claim objects deleted by end actors (delete)',
      labelNames: ['queue', 'operation'],
      registers,
    })
    this.claimFailures = new Counter({
      name: n('claim_check_failures_total'),
      help: 'Claim check failures, by reason (store_failed, claim_missing, claim_corrupt, claim_unavailable, delete_failed)',
      labelNames: ['queue', 'reason'],
      registers,
    })
    this.claimBytes = new Counter({ name: n('claim_check_bytes_total'), help: 'Claim check: payload bytes parked and restored', labelNames: ['queue', 'operation'], registers })
    this.claimDuration = new Histogram({
      name: n('claim_check_duration_seconds'),
      help: 'Claim check: one store (hash + PUT) or restore (GET + verify + parse)',
      labelNames: ['queue', 'operation'],
      buckets: LATENCY_BUCKETS,
      registers,
    })
    this.endReportDuration = new Histogram({
      name: n('end_report_duration_seconds'),
      help: 'End actors: one final report (POST until the gateway answered)',
      labelNames: ['queue'],
      buckets: LATENCY_BUCKETS,
      registers,
    })
    this.deliveryWindow = new Gauge({ name: n('delivery_window'), help: 'Deliveries the broker may hand this pod before it settles any (adapts to call durations)', registers })
    this.callsInFlight = new Gauge({ name: n('runtime_calls_in_flight'), help: 'Runtime calls in flight (at most ASYA_CONCURRENCY)', registers })
    this.batchEnvelopes = new Histogram({
      name: n('runtime_batch_envelopes'),
      help: 'Envelopes per runtime call (1 unless ASYA_BATCH_SIZE > 1)',
      buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000],
      registers,
    })
    this.released = new Counter({
      name: n('released_total'),
      help: 'Deliveries given back to the broker unstarted, by reason (drain, shed = the delivery window narrowed)',
      labelNames: ['queue', 'reason'],
      registers,
    })
  }

  /** The per-message instruments of one actor's queue, label values bound once (hot-metrics.ts). */
  hot(queue: string, transport: string): HotMetrics {
    const key = `${queue}\u0000${transport}`
    let h = this.hotByQueue.get(key)
    if (h === undefined) {
      h = new HotMetrics(this, queue, transport)
      this.hotByQueue.set(key, h)
    }
    return h
  }
}

/**
 * What every envelope updates, bound to this actor's label values: the same series as the
 * SidecarMetrics fields, so the exposition does not change (docs/metrics.md).
 */
export class HotMetrics {
  readonly received: BoundCounter
  readonly envelopeIn: BoundHistogram
  readonly envelopeOut: BoundHistogram
  readonly active: BoundGauge
  readonly processingDuration: BoundHistogram
  readonly runtimeDuration: BoundHistogram
  readonly receiveDuration: BoundHistogram
  readonly callsInFlight: BoundGauge
  readonly deliveryWindow: BoundGauge
  readonly batchEnvelopes: BoundHistogram
  /** By destination queue. */
  readonly sendDuration: BoundBy<BoundHistogram>
  /** By destination queue + NUL + message type. */
  readonly sent: BoundBy<BoundCounter>
  /** By status. */
  readonly processed: BoundBy<BoundCounter>

  constructor(m: SidecarMetrics, queue: string, transport: string) {
    this.received = new BoundCounter(m.received, { queue, transport })
    this.envelopeIn = new BoundHistogram(m.envelopeSize, { direction: 'in' })
    this.envelopeOut = new BoundHistogram(m.envelopeSize, { direction: 'out' })
    this.active = new BoundGauge(m.active)
    this.processingDuration = new BoundHistogram(m.processingDuration, { queue })
    this.runtimeDuration = new BoundHistogram(m.runtimeDuration, { queue })
    this.receiveDuration = new BoundHistogram(m.receiveDuration, { queue, transport })
    this.callsInFlight = new BoundGauge(m.callsInFlight)
    this.deliveryWindow = new BoundGauge(m.deliveryWindow)
    this.batchEnvelopes = new BoundHistogram(m.batchEnvelopes)
    this.sendDuration = new BoundBy((destination) => new BoundHistogram(m.sendDuration, { destination_queue: destination, transport }))
    this.sent = new BoundBy((key) => {
      const [destination, type] = key.split('\u0000') as [string, string]
      return new BoundCounter(m.sent, { destination_queue: destination, message_type: type })
    })
    this.processed = new BoundBy((status) => new BoundCounter(m.processed, { queue, status }))
  }
}
