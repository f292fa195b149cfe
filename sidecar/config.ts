/**
 * Sidecar configuration: every environment variable is read and validated here, once (SPEC §5).
 * A bad value is a startup error naming the variable, never a silent default.
 */
import { EnvReader } from '../src/config/env.js'
import { ERROR_END, HAPPY_END, isValidActorName } from '../src/envelope.js'
import { isLogLevel } from '../src/logger.js'
import { readTransportSettings, type TransportSettings } from '../src/transport/create-transport.js'

export interface SidecarConfig {
  /** ASYA_ACTOR_NAME (required): the actor whose queue `asya-<name>` is consumed. */
  actorName: string
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
  /** ASYA_GATEWAY_URL: end actors report final status there. @default unset */
  gatewayUrl?: string
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
}

export function parseListenAddr(addr: string): { host: string; port: number } | undefined {
  const m = /^(.*):(\d{1,5})$/.exec(addr.trim())
  if (!m) return undefined
  const port = Number(m[2])
  if (port > 65535) return undefined
  const host = (m[1] ?? '').replace(/^\[(.*)\]$/, '$1')
  return { host: host === '' ? '0.0.0.0' : host, port }
}

export function readSidecarConfig(env: NodeJS.ProcessEnv = process.env): SidecarConfig {
  const r = new EnvReader(env)
  const actorName = r.required('ASYA_ACTOR_NAME')
  if (actorName !== '' && !isValidActorName(actorName)) r.fail('ASYA_ACTOR_NAME', `"${actorName}" is not a DNS-1123 label (lowercase letters, digits, '-', ≤ 63 chars)`)
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
  const metricsAddr = r.string('ASYA_METRICS_ADDR', ':8080')
  const listen = parseListenAddr(metricsAddr)
  if (!listen) r.fail('ASYA_METRICS_ADDR', `"${metricsAddr}" is not host:port or :port`)
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
  const cfg: SidecarConfig = {
    actorName,
    transport,
    socketDir: r.string('ASYA_SOCKET_DIR', '/var/run/asya'),
    runtimeTimeoutMs,
    runtimeReadyTimeoutMs: r.duration('ASYA_RUNTIME_READY_TIMEOUT', 300_000, { minMs: 1 }),
    happyEnd,
    errorEnd,
    isEndActor: r.bool('ASYA_IS_END_ACTOR', actorName === happyEnd || actorName === errorEnd),
    ...(gatewayUrl !== undefined ? { gatewayUrl: gatewayUrl.replace(/\/+$/, '') } : {}),
    maxRetries: r.int('ASYA_MAX_RETRIES', 0, { min: 0, max: 1000 }),
    retryBackoffMs,
    retryBackoffMaxMs: Math.max(retryBackoffMs, retryBackoffMaxMs),
    deliveryLimit: r.int('ASYA_DELIVERY_LIMIT', 5, { min: 1, max: 1000 }),
    maxHops: r.int('ASYA_MAX_HOPS', 100, { min: 1, max: 100_000 }),
    metricsHost: listen?.host ?? '0.0.0.0',
    metricsPort: listen?.port ?? 8080,
    metricsNamespace,
    logLevel,
    shutdownTimeoutMs: r.duration('ASYA_SHUTDOWN_TIMEOUT', 25_000, { minMs: 100 }),
    prefetch,
    prefetchWide: Math.max(prefetch, r.int('ASYA_PREFETCH_WIDE', 32, { min: 1, max: 10_000 })),
  }
  r.finish()
  return cfg
}
