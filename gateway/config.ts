/**
 * Gateway configuration: every environment variable is read and validated here, once (SPEC §10.1,
 * upstream's names). Every problem is reported at once, naming the variable.
 */
import { EnvReader } from '../src/config/env.js'
import { readTracingConfig, type TracingConfig } from '../src/tracing/tracing.js'
import { isLogLevel } from '../src/logger.js'
import { readTransportSettings, type TransportSettings } from '../src/transport/create-transport.js'

export interface GatewayConfig {
  /** ASYA_GATEWAY_PORT. @default 8080 */
  port: number
  /** ASYA_GATEWAY_HOST: listen address. @default '0.0.0.0' */
  host: string
  /** ASYA_DATABASE_URL: PostgreSQL URL. Unset → in-memory store (local runs only). @default unset */
  databaseUrl?: string
  /** ASYA_DB_MAX_CONNS: PostgreSQL pool size (one more connection is used for LISTEN). @default 10 */
  dbMaxConns: number
  /** ASYA_CONFIG_PATH: tool config, a YAML file or a directory of them. @default unset (no tools) */
  configPath?: string
  /** ASYA_TRANSPORT and the chosen transport's settings. @default inferred from upstream's variables, else rabbitmq */
  transport: TransportSettings
  /** ASYA_LOG_LEVEL. @default 'info' */
  logLevel: string
  /** The OpenTelemetry OTEL_* variables (docs/tracing.md). @default off (no endpoint set) */
  tracing: TracingConfig
  /** ASYA_GATEWAY_SWEEP_INTERVAL: how often the store is swept for envelopes past their deadline. @default 1s */
  sweepIntervalMs: number
  /** ASYA_GATEWAY_KEEPALIVE_INTERVAL: SSE `: keepalive` comment interval. @default 15s */
  keepaliveIntervalMs: number
  /** ASYA_GATEWAY_BODY_LIMIT: largest accepted request body in bytes. @default 64 MiB */
  bodyLimit: number
  /** ASYA_GATEWAY_RETENTION: final envelopes (and their updates) older than this are deleted; 0 keeps them. @default 7 days */
  retentionMs: number
  /** ASYA_SHUTDOWN_TIMEOUT: budget for in-flight requests at SIGTERM; SSE streams are closed at once. @default 25s */
  shutdownTimeoutMs: number
  /** ASYA_GATEWAY_PUBLIC_URL: prefix of status_url/stream_url in tool results (upstream: relative). @default '' */
  publicUrl: string
  /**
   * ASYA_MCP_SESSION_SECRET: key that signs MCP session ids, the same on every replica (≥ 16
   * characters). @default derived from ASYA_DATABASE_URL; random per process without a database
   */
  mcpSessionSecret?: string
  /** Limits applied in both modes (docs/security.md#limits). */
  limits: GatewayLimits
  /** Authentication and the internal listener (docs/security.md). */
  security: SecurityConfig
}

export interface GatewayLimits {
  /** ASYA_GATEWAY_REPORT_BODY_LIMIT: largest body of `POST /envelopes/{id}/progress` and `POST /envelopes` (sidecar reports). @default 64 KiB */
  reportBodyLimit: number
  /** ASYA_GATEWAY_MAX_JSON_DEPTH: deepest nesting of a JSON body; deeper bodies are refused before they reach code that recurses. @default 256 */
  maxJsonDepth: number
  /** ASYA_GATEWAY_MAX_ARGUMENTS_SIZE: largest tool `arguments` (bytes of JSON), on /tools/call and MCP tools/call. @default 16 MiB */
  maxArgumentsBytes: number
  /** ASYA_GATEWAY_RATE_LIMIT: requests per caller per ASYA_GATEWAY_RATE_LIMIT_WINDOW on the public endpoints; 0 = none. @default 600 with security on, 0 with it off */
  rateLimit: number
  /** ASYA_GATEWAY_RATE_LIMIT_WINDOW. @default 1m */
  rateLimitWindowMs: number
  /** ASYA_GATEWAY_MAX_SSE_PER_CALLER: SSE streams one caller may hold open at once; 0 = no cap. @default 32 with security on, 0 with it off */
  maxSsePerCaller: number
  /** ASYA_GATEWAY_REQUEST_TIMEOUT: time allowed to receive a whole request (headers and body); 0 = none. @default 60s */
  requestTimeoutMs: number
  /** ASYA_GATEWAY_CORS_ORIGINS: comma-separated origins allowed by CORS (`*` = any); unset = no CORS headers. @default unset */
  corsOrigins: string[]
}

export interface OidcConfig {
  /** ASYA_GATEWAY_OIDC_ISSUER: the `iss` every JWT must carry; also advertised as the authorization server. */
  issuer: string
  /** ASYA_GATEWAY_OIDC_AUDIENCE: comma-separated; a JWT's `aud` must contain one. Required with the issuer. */
  audience: string[]
  /** ASYA_GATEWAY_OIDC_JWKS_URL. @default the issuer's discovery document's `jwks_uri` */
  jwksUrl?: string
  /** ASYA_GATEWAY_OIDC_ALGORITHMS: accepted `alg`s. @default RS256,ES256,PS256,EdDSA */
  algorithms: string[]
  /** ASYA_GATEWAY_OIDC_CLOCK_TOLERANCE: leeway on exp/nbf/iat. @default 30s */
  clockToleranceMs: number
  /** ASYA_GATEWAY_OIDC_JWKS_COOLDOWN: least time between two JWKS fetches (an unknown `kid` triggers one). @default 30s */
  jwksCooldownMs: number
  /** ASYA_GATEWAY_OIDC_JWKS_MAX_AGE: cached keys are re-fetched after this. @default 10m */
  jwksMaxAgeMs: number
  /** ASYA_GATEWAY_OIDC_SCOPES: scopes advertised in the protected-resource metadata. @default none */
  scopes: string[]
}

export interface SecurityConfig {
  /** ASYA_GATEWAY_SECURITY: `on` = authenticated callers, internal listener for sidecars; `off` = upstream-compatible (one open listener, a warning at start). @default off */
  enabled: boolean
  /** ASYA_GATEWAY_INTERNAL_PORT: the sidecars' listener (progress, final, POST /envelopes). @default 8081 */
  internalPort: number
  /** ASYA_GATEWAY_SIDECAR_TOKEN_FILE: file with the sidecars' token(s), one per line (progress, POST /envelopes). Required with security on. */
  sidecarTokenFile?: string
  /** ASYA_GATEWAY_END_ACTOR_TOKEN_FILE: file with the end actors' token(s), one per line; only these may post `final`. Required with security on. */
  endActorTokenFile?: string
  /** ASYA_GATEWAY_API_KEYS_FILE: YAML list of named, SHA-256-hashed API keys (docs/security.md#api-keys). */
  apiKeysFile?: string
  /** OIDC/JWT callers; unset = API keys only. */
  oidc?: OidcConfig
  /** ASYA_GATEWAY_SECRETS_RELOAD_INTERVAL: how often the mounted token and key files are checked for changes; 0 = on every request. @default 5s */
  reloadIntervalMs: number
}

/** Reads the security and limits variables into `r` (problems are collected there). */
function readSecurity(r: EnvReader): { security: SecurityConfig; limits: GatewayLimits } {
  const enabled = r.oneOf('ASYA_GATEWAY_SECURITY', ['on', 'off'] as const, 'off') === 'on'
  const list = (name: string): string[] => (r.string(name) ?? '').split(',').map((s) => s.trim()).filter((s) => s !== '')
  const sidecarTokenFile = r.string('ASYA_GATEWAY_SIDECAR_TOKEN_FILE')
  const endActorTokenFile = r.string('ASYA_GATEWAY_END_ACTOR_TOKEN_FILE')
  const apiKeysFile = r.string('ASYA_GATEWAY_API_KEYS_FILE')
  const issuer = r.string('ASYA_GATEWAY_OIDC_ISSUER')
  const audience = list('ASYA_GATEWAY_OIDC_AUDIENCE')
  const jwksUrl = r.string('ASYA_GATEWAY_OIDC_JWKS_URL')
  if (issuer !== undefined && !/^https?:\/\//.test(issuer)) r.fail('ASYA_GATEWAY_OIDC_ISSUER', 'must be an http(s):// URL')
  if (jwksUrl !== undefined && !/^https?:\/\//.test(jwksUrl)) r.fail('ASYA_GATEWAY_OIDC_JWKS_URL', 'must be an http(s):// URL')
  if (issuer !== undefined && audience.length === 0) r.fail('ASYA_GATEWAY_OIDC_AUDIENCE', 'is required with ASYA_GATEWAY_OIDC_ISSUER (a token for another service must not be accepted)')
  if (issuer === undefined && (audience.length > 0 || jwksUrl !== undefined)) r.fail('ASYA_GATEWAY_OIDC_ISSUER', 'is required when ASYA_GATEWAY_OIDC_AUDIENCE or ASYA_GATEWAY_OIDC_JWKS_URL is set')
  const algorithms = list('ASYA_GATEWAY_OIDC_ALGORITHMS')
  const badAlg = algorithms.filter((a) => a === 'none' || a.startsWith('HS'))
  if (badAlg.length > 0) r.fail('ASYA_GATEWAY_OIDC_ALGORITHMS', `${badAlg.join(', ')} not accepted (only asymmetric algorithms: keys come from a public JWKS)`)
  const oidc: OidcConfig | undefined =
    issuer === undefined
      ? undefined
      : {
          issuer,
          audience,
          ...(jwksUrl !== undefined ? { jwksUrl } : {}),
          algorithms: algorithms.length > 0 ? algorithms : ['RS256', 'ES256', 'PS256', 'EdDSA'],
          clockToleranceMs: r.duration('ASYA_GATEWAY_OIDC_CLOCK_TOLERANCE', 30_000, { minMs: 0, maxMs: 600_000 }),
          jwksCooldownMs: r.duration('ASYA_GATEWAY_OIDC_JWKS_COOLDOWN', 30_000, { minMs: 0, maxMs: 3_600_000 }),
          jwksMaxAgeMs: r.duration('ASYA_GATEWAY_OIDC_JWKS_MAX_AGE', 600_000, { minMs: 0, maxMs: 86_400_000 }),
          scopes: list('ASYA_GATEWAY_OIDC_SCOPES'),
        }
  if (enabled) {
    if (sidecarTokenFile === undefined) r.fail('ASYA_GATEWAY_SIDECAR_TOKEN_FILE', 'is required with ASYA_GATEWAY_SECURITY=on')
    if (endActorTokenFile === undefined) r.fail('ASYA_GATEWAY_END_ACTOR_TOKEN_FILE', 'is required with ASYA_GATEWAY_SECURITY=on')
    if (apiKeysFile === undefined && oidc === undefined) r.fail('ASYA_GATEWAY_SECURITY', 'on needs ASYA_GATEWAY_API_KEYS_FILE or ASYA_GATEWAY_OIDC_ISSUER (no caller could authenticate)')
  }
  const security: SecurityConfig = {
    enabled,
    internalPort: r.int('ASYA_GATEWAY_INTERNAL_PORT', 8081, { min: 0, max: 65535 }),
    ...(sidecarTokenFile !== undefined ? { sidecarTokenFile } : {}),
    ...(endActorTokenFile !== undefined ? { endActorTokenFile } : {}),
    ...(apiKeysFile !== undefined ? { apiKeysFile } : {}),
    ...(oidc !== undefined ? { oidc } : {}),
    reloadIntervalMs: r.duration('ASYA_GATEWAY_SECRETS_RELOAD_INTERVAL', 5000, { minMs: 0, maxMs: 3_600_000 }),
  }
  const corsOrigins = list('ASYA_GATEWAY_CORS_ORIGINS')
  for (const o of corsOrigins) if (o !== '*' && !/^https?:\/\/[^/]+$/.test(o)) r.fail('ASYA_GATEWAY_CORS_ORIGINS', `${JSON.stringify(o)} is not an origin (scheme://host[:port]) or *`)
  const limits: GatewayLimits = {
    reportBodyLimit: r.int('ASYA_GATEWAY_REPORT_BODY_LIMIT', 64 * 1024, { min: 1024, max: 1024 * 1024 * 1024 }),
    maxJsonDepth: r.int('ASYA_GATEWAY_MAX_JSON_DEPTH', 256, { min: 8, max: 2048 }),
    maxArgumentsBytes: r.int('ASYA_GATEWAY_MAX_ARGUMENTS_SIZE', 16 * 1024 * 1024, { min: 2, max: 1024 * 1024 * 1024 }),
    rateLimit: r.int('ASYA_GATEWAY_RATE_LIMIT', enabled ? 600 : 0, { min: 0 }),
    rateLimitWindowMs: r.duration('ASYA_GATEWAY_RATE_LIMIT_WINDOW', 60_000, { minMs: 1, maxMs: 86_400_000 }),
    maxSsePerCaller: r.int('ASYA_GATEWAY_MAX_SSE_PER_CALLER', enabled ? 32 : 0, { min: 0 }),
    requestTimeoutMs: r.duration('ASYA_GATEWAY_REQUEST_TIMEOUT', 60_000, { minMs: 0, maxMs: 3_600_000 }),
    corsOrigins,
  }
  return { security, limits }
}

/** Reads the gateway's env; throws ASYA_ERR_CONFIG_INVALID naming every bad variable. */
export function readGatewayConfig(env: NodeJS.ProcessEnv = process.env): GatewayConfig {
  // Upstream picks the transport from which variables are set; ASYA_TRANSPORT (ours) wins when set.
  const transportEnv: NodeJS.ProcessEnv = { ...env }
  if (transportEnv.ASYA_TRANSPORT === undefined || transportEnv.ASYA_TRANSPORT.trim() === '') {
    if (env.ASYA_SQS_ENDPOINT && !env.ASYA_RABBITMQ_URL) transportEnv.ASYA_TRANSPORT = 'sqs'
  }
  // Upstream's gateway names the SQS region ASYA_SQS_REGION; the sidecar's reader uses ASYA_AWS_REGION.
  if (env.ASYA_SQS_REGION && !env.ASYA_AWS_REGION) transportEnv.ASYA_AWS_REGION = env.ASYA_SQS_REGION
  const r = new EnvReader(transportEnv)
  const logLevel = (r.string('ASYA_LOG_LEVEL', 'info') as string).toLowerCase()
  if (!isLogLevel(logLevel)) r.fail('ASYA_LOG_LEVEL', `${JSON.stringify(logLevel)} is not one of fatal, error, warn, info, debug, trace, silent`)
  const databaseUrl = r.string('ASYA_DATABASE_URL')
  if (databaseUrl !== undefined && !/^postgres(ql)?:\/\//.test(databaseUrl)) r.fail('ASYA_DATABASE_URL', 'must be a postgres:// or postgresql:// URL')
  const publicUrl = (r.string('ASYA_GATEWAY_PUBLIC_URL') ?? '').replace(/\/+$/, '')
  if (publicUrl !== '' && !/^https?:\/\//.test(publicUrl)) r.fail('ASYA_GATEWAY_PUBLIC_URL', 'must be an http(s):// URL')
  const mcpSessionSecret = r.raw('ASYA_MCP_SESSION_SECRET')
  if (mcpSessionSecret !== undefined && mcpSessionSecret.length < 16) r.fail('ASYA_MCP_SESSION_SECRET', 'must be at least 16 characters')
  const { security, limits } = readSecurity(r)
  const config: GatewayConfig = {
    port: r.int('ASYA_GATEWAY_PORT', 8080, { min: 0, max: 65535 }),
    host: r.string('ASYA_GATEWAY_HOST', '0.0.0.0'),
    ...(databaseUrl !== undefined ? { databaseUrl } : {}),
    dbMaxConns: r.int('ASYA_DB_MAX_CONNS', 10, { min: 1, max: 1000 }),
    ...(r.string('ASYA_CONFIG_PATH') !== undefined ? { configPath: r.string('ASYA_CONFIG_PATH') as string } : {}),
    transport: readTransportSettings(r),
    logLevel,
    tracing: readTracingConfig(r, 'asya-gateway'),
    sweepIntervalMs: r.duration('ASYA_GATEWAY_SWEEP_INTERVAL', 1000, { minMs: 10, maxMs: 3_600_000 }),
    keepaliveIntervalMs: r.duration('ASYA_GATEWAY_KEEPALIVE_INTERVAL', 15_000, { minMs: 10, maxMs: 3_600_000 }),
    bodyLimit: r.int('ASYA_GATEWAY_BODY_LIMIT', 64 * 1024 * 1024, { min: 1024, max: 1024 * 1024 * 1024 }),
    retentionMs: r.duration('ASYA_GATEWAY_RETENTION', 7 * 24 * 3_600_000, { minMs: 0 }),
    shutdownTimeoutMs: r.duration('ASYA_SHUTDOWN_TIMEOUT', 25_000, { minMs: 0, maxMs: 3_600_000 }),
    publicUrl,
    ...(mcpSessionSecret !== undefined ? { mcpSessionSecret } : {}),
    limits,
    security,
  }
  if (security.enabled && security.internalPort === config.port && config.port !== 0) r.fail('ASYA_GATEWAY_INTERNAL_PORT', `must differ from ASYA_GATEWAY_PORT (${config.port})`)
  r.finish()
  return config
}
