/**
 * Configuration of the webhook half of the system process (SPEC §9), read from env once. The
 * transport settings are the controller's (`readControllerTransports`), so one ConfigMap/Secret
 * feeds the controller, the webhook and — through the env the webhook injects — every sidecar.
 */
import { EnvReader } from '../config/env.js'
import { readControllerTransports } from '../controller/config.js'
import type { ControllerTransports } from '../controller/setup.js'

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
  /** ASYA_GATEWAY_URL passed to end actors when set. */
  gatewayUrl?: string
  /** Transports (controller's reader). */
  transports: ControllerTransports
  /** Namespaces never mutated: kube-system, kube-public, kube-node-lease, the system namespace and ASYA_WEBHOOK_EXCLUDED_NAMESPACES. */
  excludedNamespaces: readonly string[]
}

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

function parseAddr(addr: string): { host: string; port: number } | undefined {
  const m = /^(.*):(\d{1,5})$/.exec(addr.trim())
  if (!m || Number(m[2]) > 65535) return undefined
  const host = (m[1] ?? '').replace(/^\[(.*)\]$/, '$1')
  return { host: host === '' ? '0.0.0.0' : host, port: Number(m[2]) }
}

const QUANTITY = /^\d+(\.\d+)?(m|k|Ki|Mi|Gi|Ti|M|G|T)?$/

export function readWebhookConfig(env: NodeJS.ProcessEnv = process.env): WebhookConfig {
  const transports = readControllerTransports(env)
  const r = new EnvReader(env)
  const systemNamespace = r.string('ASYA_SYSTEM_NAMESPACE') ?? r.string('POD_NAMESPACE') ?? 'asya-system'
  const addrText = r.string('ASYA_WEBHOOK_ADDR', ':8443')
  const addr = parseAddr(addrText)
  if (!addr) r.fail('ASYA_WEBHOOK_ADDR', `"${addrText}" is not host:port or :port`)
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
    host: addr?.host ?? '0.0.0.0',
    port: addr?.port ?? 8443,
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
    transports,
    excludedNamespaces: [...new Set([...ALWAYS_EXCLUDED_NAMESPACES, systemNamespace, ...extra])],
  }
  r.finish()
  return cfg
}
