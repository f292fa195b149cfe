/**
 * Configuration of the system process (SPEC §9), read from env once by {@link readSystemConfig}:
 * the controller's settings, the transports (`readControllerTransports`: one ConfigMap/Secret feeds
 * the controller, the webhook and — through the env the webhook injects — every sidecar) and the
 * webhook's. Webhook and controller import these types from here and from src/controller/config.ts.
 */
import { EnvReader } from '../config/env.js'
import { readControllerSettings, readControllerTransports, type ControllerSettings, type ControllerTransports } from '../controller/config.js'
import { isLogLevel } from '../logger.js'
import { readClaimCheckInjection, type ClaimCheckInjection } from './claim-check-injection.js'
import { readNatsInjection, type NatsInjection } from './nats-injection.js'
import { readTracingConfig } from '../tracing/tracing.js'

export interface ResourceList {
  cpu?: string
  memory?: string
}

export interface SidecarResources {
  requests: ResourceList
  limits: ResourceList
}

/** What `injectPod` needs: everything that shapes the injected sidecar. */
export interface InjectionConfig {
  /** ASYA_SIDECAR_IMAGE. @default ghcr.io/asya-ts/asya-sidecar:latest */
  sidecarImage: string
  /** ASYA_SIDECAR_IMAGE_PULL_POLICY (Always, IfNotPresent, Never). @default unset (Kubernetes decides) */
  sidecarImagePullPolicy?: 'Always' | 'IfNotPresent' | 'Never'
  /** ASYA_SIDECAR_COMMAND, space-separated. @default unset: the image's entrypoint */
  sidecarCommand?: string[]
  /** ASYA_SIDECAR_CPU_REQUEST (50m), ASYA_SIDECAR_MEMORY_REQUEST (64Mi), ASYA_SIDECAR_CPU_LIMIT (unset), ASYA_SIDECAR_MEMORY_LIMIT (256Mi). */
  sidecarResources: SidecarResources
  /** ASYA_SIDECAR_RUN_AS_USER: uid of the sidecar (runAsNonRoot needs a numeric user). @default 65532 */
  sidecarRunAsUser: number
  /** ASYA_SHUTDOWN_MARGIN: ASYA_SHUTDOWN_TIMEOUT = terminationGracePeriodSeconds − this. @default 5s */
  shutdownMarginSeconds: number
  /** ASYA_MAX_HOPS passed to every sidecar when set. */
  maxHops?: number
  /** ASYA_GATEWAY_URL passed to every injected sidecar when set (progress; final status from end actors). */
  gatewayUrl?: string
  /** ASYA_CLAIM_CHECK_*: claim-check settings passed to every injected sidecar (SPEC §10.4). @default unset (off) */
  claimCheck?: ClaimCheckInjection
  /** ASYA_NATS_*_SECRET: token and credential/TLS files for every injected NATS sidecar (docs/nats.md). @default unset */
  natsSecrets?: NatsInjection
  /**
   * ASYA_GATEWAY_TOKEN_SECRET: Secret (in each actor's namespace, key `token`) whose value the
   * webhook passes to every injected sidecar as ASYA_GATEWAY_TOKEN (optional reference: a pod in
   * a namespace without the Secret still starts, and its reports are refused). @default unset
   */
  gatewayTokenSecret?: string
  /**
   * The system's own OTEL_* tracing variables ({@link SIDECAR_OTEL_VARIABLES}), passed unchanged to
   * every injected sidecar so one setting traces every actor (docs/tracing.md). @default {} (off)
   */
  sidecarTracingEnv?: Record<string, string>
  /** Transports (controller's reader). */
  transports: ControllerTransports
  /** Namespaces never mutated: kube-system, kube-public, kube-node-lease, the system namespace and ASYA_WEBHOOK_EXCLUDED_NAMESPACES. */
  excludedNamespaces: readonly string[]
}

/** The OpenTelemetry variables of the system process that every injected sidecar gets (docs/tracing.md). */
export const SIDECAR_OTEL_VARIABLES = [
  'OTEL_EXPORTER_OTLP_ENDPOINT',
  'OTEL_EXPORTER_OTLP_TRACES_ENDPOINT',
  'OTEL_EXPORTER_OTLP_PROTOCOL',
  'OTEL_EXPORTER_OTLP_TRACES_PROTOCOL',
  'OTEL_TRACES_SAMPLER',
  'OTEL_TRACES_SAMPLER_ARG',
  'OTEL_TRACES_EXPORTER',
  'OTEL_SDK_DISABLED',
  'OTEL_RESOURCE_ATTRIBUTES',
] as const

export interface WebhookConfig extends InjectionConfig {
  /** ASYA_WEBHOOK_ENABLED. @default true */
  enabled: boolean
  /** ASYA_SYSTEM_NAMESPACE (or POD_NAMESPACE). @default asya-system */
  systemNamespace: string
  /** ASYA_WEBHOOK_ADDR. @default :8443 */
  host: string
  port: number
  /** ASYA_TLS_CERT_FILE. @default /etc/asya/tls/tls.crt */
  tlsCertFile: string
  /** ASYA_TLS_KEY_FILE. @default /etc/asya/tls/tls.key */
  tlsKeyFile: string
  /** ASYA_TLS_RELOAD_INTERVAL: poll period of the cert files (beside fs.watch). @default 10s */
  tlsReloadIntervalMs: number
  /** ASYA_WEBHOOK_BODY_LIMIT bytes. @default 8 MiB */
  bodyLimit: number
  /**
   * ASYA_WEBHOOK_CERT_MODE: `files` (cert-manager or certs/gen-certs.sh put the pair in
   * ASYA_TLS_CERT_FILE/KEY_FILE) or `self-managed` (the webhook keeps a CA in a Secret, signs its
   * own cert into those paths and patches caBundle). @default files
   */
  certMode: 'files' | 'self-managed'
  /** ASYA_WEBHOOK_SERVICE: the Service the API server calls (certificate names). @default asya-webhook */
  service: string
  /** ASYA_WEBHOOK_CONFIGURATION: MutatingWebhookConfiguration whose caBundle is kept (self-managed). @default asya-webhook */
  webhookConfigurationName: string
  /** ASYA_WEBHOOK_CA_SECRET: Secret in the system namespace holding the CA (self-managed). @default asya-webhook-ca */
  caSecretName: string
  /** ASYA_WEBHOOK_CA_RESYNC: how often caBundle and the serving cert are checked (self-managed). @default 30s */
  caResyncMs: number
}

export const ALWAYS_EXCLUDED_NAMESPACES: readonly string[] = ['kube-system', 'kube-public', 'kube-node-lease']

const QUANTITY = /^\d+(\.\d+)?(m|k|Ki|Mi|Gi|Ti|M|G|T)?$/

/** ASYA_SYSTEM_NAMESPACE, else the pod's own (downward API POD_NAMESPACE). @default asya-system */
function readSystemNamespace(r: EnvReader): string {
  return r.string('ASYA_SYSTEM_NAMESPACE') ?? r.string('POD_NAMESPACE') ?? 'asya-system'
}

/**
 * The webhook's half. With `reader` (readSystemConfig) problems are collected there and the
 * transports already read are reused; alone it reads its own and throws its own problems.
 */
export function readWebhookConfig(env: NodeJS.ProcessEnv = process.env, reader?: EnvReader, readTransports?: ControllerTransports): WebhookConfig {
  const r = reader ?? new EnvReader(env)
  const transports = readTransports ?? readControllerTransports(env, r)
  const systemNamespace = readSystemNamespace(r)
  const addr = r.listenAddr('ASYA_WEBHOOK_ADDR', ':8443')
  const quantity = (name: string, fallback: string | undefined): string | undefined => {
    const v = r.string(name) ?? fallback
    if (v !== undefined && !QUANTITY.test(v)) r.fail(name, `"${v}" is not a Kubernetes quantity (e.g. 100m, 128Mi)`)
    return v
  }
  const resources: SidecarResources = { requests: {}, limits: {} }
  const set = (list: ResourceList, key: keyof ResourceList, v: string | undefined): void => {
    if (v !== undefined) list[key] = v
  }
  set(resources.requests, 'cpu', quantity('ASYA_SIDECAR_CPU_REQUEST', '50m'))
  set(resources.requests, 'memory', quantity('ASYA_SIDECAR_MEMORY_REQUEST', '64Mi'))
  set(resources.limits, 'cpu', quantity('ASYA_SIDECAR_CPU_LIMIT', undefined))
  set(resources.limits, 'memory', quantity('ASYA_SIDECAR_MEMORY_LIMIT', '256Mi'))
  const pull = r.string('ASYA_SIDECAR_IMAGE_PULL_POLICY')
  if (pull !== undefined && !['Always', 'IfNotPresent', 'Never'].includes(pull)) r.fail('ASYA_SIDECAR_IMAGE_PULL_POLICY', 'must be Always, IfNotPresent or Never')
  const command = r.string('ASYA_SIDECAR_COMMAND')?.split(/\s+/).filter((s) => s !== '')
  const extra = (r.string('ASYA_WEBHOOK_EXCLUDED_NAMESPACES') ?? '').split(',').map((s) => s.trim()).filter((s) => s !== '')
  const maxHopsRaw = r.raw('ASYA_MAX_HOPS')
  const gatewayUrl = r.string('ASYA_GATEWAY_URL')
  if (gatewayUrl !== undefined && !/^https?:\/\//.test(gatewayUrl)) r.fail('ASYA_GATEWAY_URL', 'must be an http(s):// URL')
  const claimCheck = readClaimCheckInjection(r)
  const natsSecrets = readNatsInjection(r, transports.nats !== undefined)
  // Validated as the sidecar will read them, so a bad value fails here, naming the variable, and
  // never reaches a pod. Header values (OTEL_EXPORTER_OTLP_HEADERS) may hold credentials: not
  // copied into pod specs; set them on the sidecars from a Secret if the collector needs them.
  readTracingConfig(r, 'asya-sidecar')
  const sidecarTracingEnv: Record<string, string> = {}
  for (const name of SIDECAR_OTEL_VARIABLES) {
    const v = r.raw(name)
    if (v !== undefined) sidecarTracingEnv[name] = v
  }
  const gatewayTokenSecret = r.string('ASYA_GATEWAY_TOKEN_SECRET')
  if (gatewayTokenSecret !== undefined && !/^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/.test(gatewayTokenSecret)) r.fail('ASYA_GATEWAY_TOKEN_SECRET', 'must be a Secret name (DNS subdomain)')
  const certMode = r.oneOf('ASYA_WEBHOOK_CERT_MODE', ['files', 'self-managed'] as const, 'files')
  // Self-managed certs are written by the process itself: default to a writable scratch path
  // (mount an emptyDir at /tmp under readOnlyRootFilesystem).
  const certDefaultDir = certMode === 'files' ? '/etc/asya/tls' : '/tmp/asya-webhook-tls'
  const cfg: WebhookConfig = {
    enabled: r.bool('ASYA_WEBHOOK_ENABLED', true),
    certMode,
    service: r.string('ASYA_WEBHOOK_SERVICE', 'asya-webhook'),
    webhookConfigurationName: r.string('ASYA_WEBHOOK_CONFIGURATION', 'asya-webhook'),
    caSecretName: r.string('ASYA_WEBHOOK_CA_SECRET', 'asya-webhook-ca'),
    caResyncMs: r.duration('ASYA_WEBHOOK_CA_RESYNC', 30_000, { minMs: 100 }),
    systemNamespace,
    host: addr.host,
    port: addr.port,
    tlsCertFile: r.string('ASYA_TLS_CERT_FILE', `${certDefaultDir}/tls.crt`),
    tlsKeyFile: r.string('ASYA_TLS_KEY_FILE', `${certDefaultDir}/tls.key`),
    tlsReloadIntervalMs: r.duration('ASYA_TLS_RELOAD_INTERVAL', 10_000, { minMs: 50 }),
    bodyLimit: r.int('ASYA_WEBHOOK_BODY_LIMIT', 8 * 1024 * 1024, { min: 64 * 1024, max: 64 * 1024 * 1024 }),
    sidecarImage: r.string('ASYA_SIDECAR_IMAGE', 'ghcr.io/asya-ts/asya-sidecar:latest'),
    ...(pull !== undefined ? { sidecarImagePullPolicy: pull as 'Always' | 'IfNotPresent' | 'Never' } : {}),
    ...(command !== undefined && command.length > 0 ? { sidecarCommand: command } : {}),
    sidecarResources: resources,
    sidecarRunAsUser: r.int('ASYA_SIDECAR_RUN_AS_USER', 65532, { min: 1, max: 2_147_483_647 }),
    shutdownMarginSeconds: Math.round(r.duration('ASYA_SHUTDOWN_MARGIN', 5000, { minMs: 0, maxMs: 3_600_000 }) / 1000),
    ...(maxHopsRaw !== undefined ? { maxHops: r.int('ASYA_MAX_HOPS', 100, { min: 1, max: 100_000 }) } : {}),
    ...(gatewayUrl !== undefined ? { gatewayUrl } : {}),
    ...(claimCheck !== undefined ? { claimCheck } : {}),
    ...(natsSecrets !== undefined ? { natsSecrets } : {}),
    ...(gatewayTokenSecret !== undefined ? { gatewayTokenSecret } : {}),
    sidecarTracingEnv,
    transports,
    excludedNamespaces: [...new Set([...ALWAYS_EXCLUDED_NAMESPACES, systemNamespace, ...extra])],
  }
  if (!reader) r.finish()
  return cfg
}

/** Everything the system process (webhook + controller) reads from env, validated together. */
export interface SystemConfig {
  /** ASYA_LOG_LEVEL (a pino level). @default info */
  logLevel: string
  /** ASYA_SYSTEM_NAMESPACE, else POD_NAMESPACE. @default asya-system */
  systemNamespace: string
  /** ASYA_METRICS_ADDR: the plain /metrics, /healthz, /readyz listener. @default :8081 */
  metrics: { host: string; port: number }
  /** ASYA_RUNTIME_SCRIPT: asya_runtime.py for the asya-runtime ConfigMap. @default the image's (or checkout's) copy */
  runtimeScriptPath?: string
  controller: ControllerSettings
  /** Shared by the controller and the webhook (which passes them on to every sidecar). */
  transports: ControllerTransports
  webhook: WebhookConfig
}

/**
 * Reads and validates the system process's whole configuration (SPEC §9) once, before anything
 * starts: one ASYA_ERR_CONFIG_INVALID names every bad variable at once.
 */
export function readSystemConfig(env: NodeJS.ProcessEnv = process.env): SystemConfig {
  const r = new EnvReader(env)
  const logLevel = r.string('ASYA_LOG_LEVEL', 'info').toLowerCase()
  if (!isLogLevel(logLevel)) r.fail('ASYA_LOG_LEVEL', `"${logLevel}" is not one of fatal, error, warn, info, debug, trace, silent`)
  const systemNamespace = readSystemNamespace(r)
  const metrics = r.listenAddr('ASYA_METRICS_ADDR', ':8081')
  const runtimeScriptPath = r.string('ASYA_RUNTIME_SCRIPT')
  const controller = readControllerSettings(env, systemNamespace, r)
  const transports = readControllerTransports(env, r)
  const webhook = readWebhookConfig(env, r, transports)
  r.finish()
  return { logLevel, systemNamespace, metrics, ...(runtimeScriptPath !== undefined ? { runtimeScriptPath } : {}), controller, transports, webhook }
}
