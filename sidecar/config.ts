/**
 * Sidecar configuration: every environment variable is read and validated here, once (SPEC §5).
 * A bad value is a startup error naming the variable, never a silent default.
 */
import { BATCH_SIZE_MAX, BATCH_WAIT_MAX_MS, CONCURRENCY_MAX } from '../src/annotations.js'
import { EnvReader } from '../src/config/env.js'
import { readTracingConfig, type TracingConfig } from '../src/tracing/tracing.js'
import { DNS1123_LABEL_RULE, ERROR_END, HAPPY_END, SIDECAR_METRICS_PORT, SOCKET_DIR, isValidActorName } from '../src/names.js'
import { isLogLevel } from '../src/logger.js'
import { readClaimCheckSettings, readS3Settings, type ClaimCheckSettings, type S3Settings } from '../src/storage/s3-settings.js'
import { readTransportSettings, type TransportSettings } from '../src/transport/create-transport.js'

export interface SidecarConfig {
  /** ASYA_ACTOR_NAME (required): the actor whose queue `asya-<name>` is consumed. */
  actorName: string
  /** The OpenTelemetry OTEL_* variables (docs/tracing.md). @default off (no endpoint set) */
  tracing: TracingConfig
  /** ASYA_TRANSPORT and the chosen transport's settings. @default rabbitmq */
  transport: TransportSettings
  /** ASYA_SOCKET_DIR. @default '/var/run/asya' */
  socketDir: string
  /** ASYA_RUNTIME_TIMEOUT: deadline of one runtime call. @default 5m */
  runtimeTimeoutMs: number
  /** ASYA_RUNTIME_READY_TIMEOUT: how long to wait for the runtime at start and after a recovery. @default 5m */
  runtimeReadyTimeoutMs: number
  /** ASYA_ACTOR_HAPPY_END. @default 'happy-end' */
  happyEnd: string
  /** ASYA_ACTOR_ERROR_END. @default 'error-end' */
  errorEnd: string
  /** ASYA_IS_END_ACTOR. @default true when the actor is named happy-end or error-end */
  isEndActor: boolean
  /**
   * ASYA_GATEWAY_URL: end actors report the final status there, every other actor reports
   * progress (SPEC §10.2). @default unset (no reports)
   */
  gatewayUrl?: string
  /**
   * ASYA_GATEWAY_TOKEN: bearer token sent with every report (the gateway's internal listener
   * requires it with security on; the webhook injects it from a Secret). @default unset
   */
  gatewayToken?: string
  /** ASYA_PROGRESS_TIMEOUT: deadline of one progress report request. @default 2s */
  progressTimeoutMs: number
  /** ASYA_PROGRESS_MAX_PENDING: progress reports allowed to wait before new ones are dropped. @default 1000 */
  progressMaxPending: number
  /**
   * ASYA_PROGRESS_BATCH: send progress in batches (`POST /envelopes/progress`) while the gateway
   * takes them (upstream's does not: then one report per request); false sends one report per
   * request from the start, as upstream's sidecar. @default true
   */
  progressBatch: boolean
  /**
   * ASYA_RUNTIME_ENABLED: false runs an end actor without a runtime (no socket wait, /readyz on
   * the broker alone); only end actors may turn it off. @default true
   */
  runtimeEnabled: boolean
  /** ASYA_S3_*: object storage of end actors (persistence when `bucket` is set). */
  s3: S3Settings
  /** ASYA_CLAIM_CHECK_*: large payloads by reference (SPEC §10.4); same endpoint and credentials as `s3`. @default off */
  claimCheck?: ClaimCheckSettings
  /** ASYA_MAX_RETRIES: handler-error retries before error-end (upstream: none). @default 0 */
  maxRetries: number
  /** ASYA_RETRY_BACKOFF: first retry delay, doubled per retry with jitter. @default 1s */
  retryBackoffMs: number
  /** ASYA_RETRY_BACKOFF_MAX: cap of any retry delay. @default 5m */
  retryBackoffMaxMs: number
  /**
   * ASYA_DELIVERY_LIMIT: attempts allowed for infrastructure failures (publish failed, runtime
   * unreachable, process died mid-message) on top of the handler retries; past it the message goes
   * to `asya-<actor>-dlq`. @default 5
   */
  deliveryLimit: number
  /** ASYA_MAX_HOPS: hops an envelope may make before it is stopped with `hop_limit`. @default 100 */
  maxHops: number
  /** ASYA_METRICS_ADDR: listener of /healthz, /readyz, /metrics. @default ':8080' */
  metricsHost: string
  metricsPort: number
  /** ASYA_METRICS_NAMESPACE: prefix of every metric. @default 'asya_actor' */
  metricsNamespace: string
  /** ASYA_LOG_LEVEL. @default 'info' */
  logLevel: string
  /** ASYA_SHUTDOWN_TIMEOUT: SIGTERM drain budget; keep below the pod's grace period. @default 25s */
  shutdownTimeoutMs: number
  /** Deliveries outstanding at once (ASYA_RABBITMQ_PREFETCH on RabbitMQ, ASYA_PREFETCH otherwise). @default 2 */
  prefetch: number
  /**
   * ASYA_PREFETCH_WIDE: window used while runtime calls are fast (≤ 50 ms, 20 in a row); the first
   * slow call restores `prefetch`. Set it equal to `prefetch` to turn adaptation off. @default 32
   */
  prefetchWide: number
  /** ASYA_CONCURRENCY: runtime calls in flight at once (SPEC §13). @default 1 */
  concurrency: number
  /** ASYA_BATCH_SIZE: envelopes per runtime call; above 1 the handler is a batch handler. @default 1 */
  batchSize: number
  /** ASYA_BATCH_WAIT: longest wait after the first envelope to fill a batch. @default 20ms */
  batchWaitMs: number
}

export function readSidecarConfig(env: NodeJS.ProcessEnv = process.env): SidecarConfig {
  const r = new EnvReader(env)
  const actorName = r.required('ASYA_ACTOR_NAME')
  if (actorName !== '' && !isValidActorName(actorName)) r.fail('ASYA_ACTOR_NAME', `"${actorName}" is not ${DNS1123_LABEL_RULE}`)
  const transport = readTransportSettings(r)
  const happyEnd = r.string('ASYA_ACTOR_HAPPY_END', HAPPY_END)
  const errorEnd = r.string('ASYA_ACTOR_ERROR_END', ERROR_END)
  for (const [name, v] of [
    ['ASYA_ACTOR_HAPPY_END', happyEnd],
    ['ASYA_ACTOR_ERROR_END', errorEnd],
  ] as const) {
    if (!isValidActorName(v)) r.fail(name, `"${v}" is not a DNS-1123 label`)
  }
  const runtimeTimeoutMs = r.duration('ASYA_RUNTIME_TIMEOUT', 300_000, { minMs: 1 })
  const listen = r.listenAddr('ASYA_METRICS_ADDR', `:${SIDECAR_METRICS_PORT}`)
  const logLevel = r.string('ASYA_LOG_LEVEL', 'info').toLowerCase()
  if (!isLogLevel(logLevel)) r.fail('ASYA_LOG_LEVEL', `"${logLevel}" is not one of fatal, error, warn, info, debug, trace, silent`)
  const gatewayUrl = r.string('ASYA_GATEWAY_URL')
  if (gatewayUrl !== undefined && !/^https?:\/\//.test(gatewayUrl)) r.fail('ASYA_GATEWAY_URL', 'must be an http(s):// URL')
  const metricsNamespace = r.string('ASYA_METRICS_NAMESPACE', 'asya_actor')
  if (!/^[a-zA-Z_][a-zA-Z0-9_]*$/.test(metricsNamespace)) r.fail('ASYA_METRICS_NAMESPACE', 'must be a Prometheus name prefix ([a-zA-Z_][a-zA-Z0-9_]*)')
  const retryBackoffMs = r.duration('ASYA_RETRY_BACKOFF', 1000, { minMs: 1 })
  const retryBackoffMaxMs = r.duration('ASYA_RETRY_BACKOFF_MAX', 300_000, { minMs: 1 })
  const prefetch = transport.rabbitmq?.prefetch ?? r.int('ASYA_PREFETCH', 2, { min: 1, max: 10_000 })
  if (transport.sqs && transport.sqs.visibilityTimeoutSeconds === undefined) {
    // SPEC §3: at least twice the processing timeout (the heartbeat extends it further).
    transport.sqs.visibilityTimeoutSeconds = Math.min(43_200, Math.max(30, Math.ceil((2 * runtimeTimeoutMs) / 1000)))
  }
  if (transport.nats && transport.nats.ackWaitMs === undefined) {
    // Redelivery after a dead sidecar within one processing timeout; `working` acks every
    // AckWait / 3 keep a longer call (or a retry backoff) alive (docs/nats.md).
    transport.nats.ackWaitMs = Math.min(12 * 3600_000, Math.max(10_000, runtimeTimeoutMs))
  }
  const isEndActor = r.bool('ASYA_IS_END_ACTOR', actorName === happyEnd || actorName === errorEnd)
  const runtimeEnabled = r.bool('ASYA_RUNTIME_ENABLED', true)
  if (!runtimeEnabled && !isEndActor) r.fail('ASYA_RUNTIME_ENABLED', 'false is only allowed for end actors (ASYA_IS_END_ACTOR=true); every other actor calls a runtime')
  const s3 = readS3Settings(r)
  const claimCheck = readClaimCheckSettings(r, transport.name)
  const cfg: SidecarConfig = {
    actorName,
    transport,
    socketDir: r.string('ASYA_SOCKET_DIR', SOCKET_DIR),
    runtimeTimeoutMs,
    runtimeReadyTimeoutMs: r.duration('ASYA_RUNTIME_READY_TIMEOUT', 300_000, { minMs: 1 }),
    happyEnd,
    errorEnd,
    isEndActor,
    ...(gatewayUrl !== undefined ? { gatewayUrl: gatewayUrl.replace(/\/+$/, '') } : {}),
    ...(r.raw('ASYA_GATEWAY_TOKEN') !== undefined ? { gatewayToken: r.raw('ASYA_GATEWAY_TOKEN') as string } : {}),
    progressTimeoutMs: r.duration('ASYA_PROGRESS_TIMEOUT', 2000, { minMs: 1 }),
    progressMaxPending: r.int('ASYA_PROGRESS_MAX_PENDING', 1000, { min: 1, max: 1_000_000 }),
    progressBatch: r.bool('ASYA_PROGRESS_BATCH', true),
    runtimeEnabled,
    s3,
    ...(claimCheck ? { claimCheck } : {}),
    maxRetries: r.int('ASYA_MAX_RETRIES', 0, { min: 0, max: 1000 }),
    retryBackoffMs,
    retryBackoffMaxMs: Math.max(retryBackoffMs, retryBackoffMaxMs),
    deliveryLimit: r.int('ASYA_DELIVERY_LIMIT', 5, { min: 1, max: 1000 }),
    maxHops: r.int('ASYA_MAX_HOPS', 100, { min: 1, max: 100_000 }),
    metricsHost: listen.host,
    metricsPort: listen.port,
    metricsNamespace,
    logLevel,
    shutdownTimeoutMs: r.duration('ASYA_SHUTDOWN_TIMEOUT', 25_000, { minMs: 100 }),
    prefetch,
    prefetchWide: Math.max(prefetch, r.int('ASYA_PREFETCH_WIDE', 32, { min: 1, max: 10_000 })),
    concurrency: r.int('ASYA_CONCURRENCY', 1, { min: 1, max: CONCURRENCY_MAX }),
    batchSize: r.int('ASYA_BATCH_SIZE', 1, { min: 1, max: BATCH_SIZE_MAX }),
    batchWaitMs: r.duration('ASYA_BATCH_WAIT', 20, { minMs: 0, maxMs: BATCH_WAIT_MAX_MS }),
    tracing: readTracingConfig(r, 'asya-sidecar'),
  }
  r.finish()
  return cfg
}
