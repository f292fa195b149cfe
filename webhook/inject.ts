/**
 * Pod injection (SPEC §6): a pure function from a pod (raw JSON, as the API server sent it) to
 * a mutated pod plus the JSON Patch between them. Used by the admission webhook and by the
 * `asya inject` CLI, so a GitOps diff shows exactly what admission will do.
 *
 * The pod is never re-serialised through a typed model: we deep-clone the raw JSON and edit the
 * clone, so fields this code does not know (newer Kubernetes, vendor extensions) survive.
 */
import fastJsonPatch from 'fast-json-patch'
import type { Operation } from 'fast-json-patch'
import { describeProblems, parsePodAnnotations, type AnnotationProblem, type PodAnnotations } from '../src/annotations.js'
import {
  ACTOR_LABEL,
  ANNOTATION,
  CLUSTER_TRANSPORTS,
  END_ACTORS,
  RUNTIME_CONFIGMAP,
  RUNTIME_CONTAINER,
  RUNTIME_SCRIPT_KEY,
  RUNTIME_SCRIPT_PATH,
  RUNTIME_VOLUME,
  SIDECAR_CONTAINER,
  SOCKET_DIR,
  SIDECAR_METRICS_PORT,
  SOCKET_VOLUME,
  readyFilePath,
  socketPath,
  type ClusterTransportName,
} from '../src/names.js'
import type { InjectionConfig } from '../src/system/config.js'
import { claimCheckEnv } from './claim-check-env.js'
import { decideLiveness } from './liveness.js'
import { natsSidecarSecrets } from './nats-secrets.js'

export type { Operation }

const SOCKET_FILE = socketPath(SOCKET_DIR)
const READY_FILE = readyFilePath(SOCKET_DIR)
const MIRROR_ANNOTATION = 'kubernetes.io/config.mirror'

/** Why a pod was admitted unchanged. A closed set: logged and counted as a metric label. */
export type SkipReason =
  | 'not_pod'
  | 'not_create'
  | 'no_actor_label'
  | 'excluded_namespace'
  | 'mirror_pod'
  | 'already_injected'
  | 'no_runtime_container'

export const SKIP_REASONS: readonly SkipReason[] = ['not_pod', 'not_create', 'no_actor_label', 'excluded_namespace', 'mirror_pod', 'already_injected', 'no_runtime_container']

export interface InjectContext {
  config: InjectionConfig
  /** Namespace of the request (pods created by controllers often have none in metadata yet). */
  namespace?: string
}

export type InjectResult =
  | { kind: 'skipped'; reason: SkipReason; warnings: string[] }
  | { kind: 'denied'; message: string; problems: AnnotationProblem[] }
  | {
      kind: 'injected'
      actor: string
      pod: Record<string, unknown>
      patch: Operation[]
      warnings: string[]
      /** Set when the runtime's own liveness probe could not carry the ready-file check (also in warnings). */
      recoveryOff?: string
    }

type J = Record<string, unknown>

function isObj(v: unknown): v is J {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

function obj(parent: J, key: string): J {
  const v = parent[key]
  if (isObj(v)) return v
  const created: J = {}
  parent[key] = created
  return created
}

function arr(parent: J, key: string): unknown[] {
  const v = parent[key]
  if (Array.isArray(v)) return v
  const created: unknown[] = []
  parent[key] = created
  return created
}

function named(list: unknown, name: string): J | undefined {
  if (!Array.isArray(list)) return undefined
  return list.find((c): c is J => isObj(c) && c.name === name)
}

function names(list: unknown): string[] {
  return Array.isArray(list) ? list.filter(isObj).map((c) => (typeof c.name === 'string' ? c.name : '?')) : []
}

/** Sets env `name` to a literal, replacing an entry of the same name (first one) if present. */
function setEnv(container: J, name: string, value: string | { valueFrom: J }): void {
  const env = arr(container, 'env')
  const entry: J = typeof value === 'string' ? { name, value } : { name, ...value }
  const i = env.findIndex((e) => isObj(e) && e.name === name)
  if (i >= 0) env[i] = entry
  else env.push(entry)
}

function hasEnv(container: J, name: string): boolean {
  return named(container.env, name) !== undefined
}

function secretRef(secret: string, key: string): { valueFrom: J } {
  return { valueFrom: { secretKeyRef: { name: secret, key } } }
}

function execProbe(paths: string[], periodSeconds: number, failureThreshold: number): J {
  // python3 is the one binary every runtime image has (distroless ones lack sh); -S skips site
  // imports so a probe costs milliseconds.
  const check = `import os,sys;sys.exit(0 if all(os.path.exists(p) for p in ${JSON.stringify(paths)}) else 1)`
  return { exec: { command: ['python3', '-S', '-c', check] }, periodSeconds, timeoutSeconds: 5, failureThreshold }
}

/** Chooses the runtime container (SPEC §6). */
function findRuntime(containers: J[], a: PodAnnotations): { index: number } | { warning: string } | { problem: AnnotationProblem } {
  const byName = containers.findIndex((c) => c.name === RUNTIME_CONTAINER)
  if (byName >= 0) return { index: byName }
  if (a.runtimeContainer !== undefined) {
    const chosen = containers.findIndex((c) => c.name === a.runtimeContainer)
    if (chosen >= 0) return { index: chosen }
    const expected = `the name of one of the pod's containers (${names(containers).join(', ') || 'none'})`
    return {
      problem: {
        annotation: ANNOTATION.runtimeContainer,
        value: a.runtimeContainer,
        expected,
        message: `annotation ${ANNOTATION.runtimeContainer}=${JSON.stringify(a.runtimeContainer)} is invalid: expected ${expected}`,
      },
    }
  }
  if (containers.length === 1) return { index: 0 }
  return {
    warning: `asya: pod not injected: cannot tell which of its ${containers.length} containers (${names(containers).join(', ')}) runs the handler; name it ${RUNTIME_CONTAINER} or set annotation ${ANNOTATION.runtimeContainer}`,
  }
}

function transportEnv(sidecar: J, transport: ClusterTransportName, config: InjectionConfig): void {
  setEnv(sidecar, 'ASYA_TRANSPORT', transport)
  if (transport === 'rabbitmq') {
    const r = config.transports.rabbitmq
    if (!r) return
    setEnv(sidecar, 'ASYA_RABBITMQ_HOST', r.host)
    setEnv(sidecar, 'ASYA_RABBITMQ_PORT', String(r.port))
    setEnv(sidecar, 'ASYA_RABBITMQ_VHOST', r.vhost)
    setEnv(sidecar, 'ASYA_RABBITMQ_EXCHANGE', r.exchange)
    if (r.tls) setEnv(sidecar, 'ASYA_RABBITMQ_TLS', 'true')
    // Queue arguments must match the controller's; only values other than the sidecar's defaults travel.
    if (r.topology && r.topology.queueType !== 'quorum') setEnv(sidecar, 'ASYA_RABBITMQ_QUEUE_TYPE', r.topology.queueType)
    if (r.topology && r.topology.deliveryLimit !== 5) setEnv(sidecar, 'ASYA_DELIVERY_LIMIT', String(r.topology.deliveryLimit))
    // Credentials only ever by reference: the pod spec is readable by far more people than the Secret.
    if (r.credentialSecret) {
      setEnv(sidecar, 'ASYA_RABBITMQ_USERNAME', secretRef(r.credentialSecret.name, r.credentialSecret.usernameKey))
      setEnv(sidecar, 'ASYA_RABBITMQ_PASSWORD', secretRef(r.credentialSecret.name, r.credentialSecret.passwordKey))
    }
    return
  }
  if (transport === 'nats') {
    const n = config.transports.nats
    if (!n) return
    setEnv(sidecar, 'ASYA_NATS_URL', n.connection.servers.join(','))
    if (n.credentialSecret) {
      setEnv(sidecar, 'ASYA_NATS_USERNAME', secretRef(n.credentialSecret.name, n.credentialSecret.usernameKey))
      setEnv(sidecar, 'ASYA_NATS_PASSWORD', secretRef(n.credentialSecret.name, n.credentialSecret.passwordKey))
    }
    return
  }
  const s = config.transports.sqs
  if (!s) return
  setEnv(sidecar, 'ASYA_AWS_REGION', s.region)
  if (s.endpoint !== undefined) setEnv(sidecar, 'ASYA_SQS_ENDPOINT', s.endpoint)
  if (s.auth.kind === 'secret') {
    setEnv(sidecar, 'AWS_ACCESS_KEY_ID', secretRef(s.auth.secretName, s.auth.accessKeyIdKey))
    setEnv(sidecar, 'AWS_SECRET_ACCESS_KEY', secretRef(s.auth.secretName, s.auth.secretAccessKeyKey))
  }
}

function buildSidecar(a: PodAnnotations, transport: ClusterTransportName, graceSeconds: number, config: InjectionConfig, native: boolean): J {
  const c: J = { name: SIDECAR_CONTAINER, image: config.sidecarImage }
  if (config.sidecarImagePullPolicy) c.imagePullPolicy = config.sidecarImagePullPolicy
  if (config.sidecarCommand) c.command = [...config.sidecarCommand]
  if (native) c.restartPolicy = 'Always'
  setEnv(c, 'ASYA_ACTOR_NAME', a.actor)
  transportEnv(c, transport, config)
  setEnv(c, 'ASYA_SOCKET_DIR', SOCKET_DIR)
  setEnv(c, 'ASYA_RUNTIME_TIMEOUT', `${a.timeoutSeconds}s`)
  setEnv(c, 'ASYA_MAX_RETRIES', String(a.maxRetries))
  setEnv(c, 'ASYA_RETRY_BACKOFF', a.retryBackoff)
  setEnv(c, 'ASYA_METRICS_ADDR', `:${SIDECAR_METRICS_PORT}`)
  setEnv(c, 'ASYA_SHUTDOWN_TIMEOUT', `${Math.max(1, graceSeconds - config.shutdownMarginSeconds)}s`)
  if (config.maxHops !== undefined) setEnv(c, 'ASYA_MAX_HOPS', String(config.maxHops))
  schedulingEnv(c, a)
  if (END_ACTORS.includes(a.actor)) setEnv(c, 'ASYA_IS_END_ACTOR', 'true')
  gatewayEnv(c, config)
  for (const [name, value] of Object.entries(config.sidecarTracingEnv ?? {})) setEnv(c, name, value)
  c.ports = [{ name: 'metrics', containerPort: SIDECAR_METRICS_PORT, protocol: 'TCP' }]
  c.livenessProbe = { httpGet: { path: '/healthz', port: 'metrics' }, periodSeconds: 10, timeoutSeconds: 3, failureThreshold: 3 }
  c.readinessProbe = { httpGet: { path: '/readyz', port: 'metrics' }, periodSeconds: 5, timeoutSeconds: 3, failureThreshold: 3 }
  c.volumeMounts = [{ name: SOCKET_VOLUME, mountPath: SOCKET_DIR }]
  const res: J = {}
  if (Object.keys(config.sidecarResources.requests).length > 0) res.requests = { ...config.sidecarResources.requests }
  if (Object.keys(config.sidecarResources.limits).length > 0) res.limits = { ...config.sidecarResources.limits }
  c.resources = res
  c.securityContext = {
    runAsNonRoot: true,
    runAsUser: config.sidecarRunAsUser,
    readOnlyRootFilesystem: true,
    allowPrivilegeEscalation: false,
    capabilities: { drop: ['ALL'] },
    seccompProfile: { type: 'RuntimeDefault' },
  }
  return c
}

/**
 * Every sidecar: end actors post the final status, the others progress (SPEC §10.2). With the
 * gateway's security on, the sidecars' token comes from a Secret in the pod's namespace; it only
 * lets a sidecar report progress: `final` needs the end actors' own token, which the webhook never
 * hands out (a pod merely labelled happy-end in a user namespace must not forge results).
 */
function gatewayEnv(c: J, config: InjectionConfig): void {
  if (config.gatewayUrl === undefined) return
  setEnv(c, 'ASYA_GATEWAY_URL', config.gatewayUrl)
  if (config.gatewayTokenSecret !== undefined) setEnv(c, 'ASYA_GATEWAY_TOKEN', { valueFrom: { secretKeyRef: { name: config.gatewayTokenSecret, key: 'token', optional: true } } })
}

/** SPEC §13: both containers get the same concurrency and batch settings, only where the pod set them. */
function schedulingEnv(container: J, a: PodAnnotations): void {
  if (a.concurrency !== undefined) setEnv(container, 'ASYA_CONCURRENCY', String(a.concurrency))
  if (a.batchSize !== undefined) setEnv(container, 'ASYA_BATCH_SIZE', String(a.batchSize))
  if (a.batchWait !== undefined) setEnv(container, 'ASYA_BATCH_WAIT', a.batchWait)
}

function addVolume(spec: J, volume: J, warnings: string[]): void {
  const volumes = arr(spec, 'volumes')
  if (named(volumes, volume.name as string)) {
    warnings.push(`asya: pod already has a volume named ${String(volume.name)}; it is used as is`)
    return
  }
  volumes.push(volume)
}

function addMount(container: J, mount: J): void {
  const mounts = arr(container, 'volumeMounts')
  if (mounts.some((m) => isObj(m) && m.mountPath === mount.mountPath)) return
  mounts.push(mount)
}

/**
 * Decides and applies the injection. Pure: the input is not modified; the same input and
 * configuration always give the same result.
 */
export function injectPod(pod: unknown, context: InjectContext): InjectResult {
  const skip = (reason: SkipReason, warnings: string[] = []): InjectResult => ({ kind: 'skipped', reason, warnings })
  if (!isObj(pod)) return skip('not_pod')
  const metadata = isObj(pod.metadata) ? pod.metadata : {}
  const labels = isObj(metadata.labels) ? metadata.labels : undefined
  const annotations = isObj(metadata.annotations) ? metadata.annotations : undefined
  if (labels === undefined || !Object.prototype.hasOwnProperty.call(labels, ACTOR_LABEL)) return skip('no_actor_label')
  const namespace = context.namespace ?? (typeof metadata.namespace === 'string' ? metadata.namespace : undefined)
  if (namespace !== undefined && context.config.excludedNamespaces.includes(namespace)) return skip('excluded_namespace')
  if (annotations !== undefined && Object.prototype.hasOwnProperty.call(annotations, MIRROR_ANNOTATION)) return skip('mirror_pod')
  const spec0 = isObj(pod.spec) ? pod.spec : {}
  if (
    (annotations !== undefined && Object.prototype.hasOwnProperty.call(annotations, ANNOTATION.injected)) ||
    named(spec0.containers, SIDECAR_CONTAINER) ||
    named(spec0.initContainers, SIDECAR_CONTAINER)
  ) {
    return skip('already_injected')
  }

  const parsed = parsePodAnnotations(labels, annotations)
  const problems = [...parsed.problems]
  const a = parsed.value
  const transport = a?.transport ?? context.config.transports.defaultTransport
  if (a !== undefined && !context.config.transports[transport]) {
    const configured = CLUSTER_TRANSPORTS.filter((t) => context.config.transports[t])
    const expected = `a transport this cluster is configured for (${configured.join(', ') || 'none'})`
    problems.push({
      annotation: ANNOTATION.transport,
      value: transport,
      expected,
      message: `annotation ${ANNOTATION.transport}=${JSON.stringify(transport)} is invalid: expected ${expected}`,
    })
  }
  const containers0 = Array.isArray(spec0.containers) ? spec0.containers.filter(isObj) : []
  if (a === undefined || problems.length > 0) return { kind: 'denied', message: `asya: ${describeProblems(problems)}`, problems }

  const found = findRuntime(containers0, a)
  if ('problem' in found) return { kind: 'denied', message: `asya: ${found.problem.message}`, problems: [found.problem] }
  if ('warning' in found) return skip('no_runtime_container', [found.warning])
  const runtimeIndex = found.index

  const mutated = structuredClone(pod)
  const warnings: string[] = []
  const spec = obj(mutated, 'spec')
  const containers = (spec.containers as unknown[]).filter(isObj)
  const runtime = containers[runtimeIndex] as J
  obj(obj(mutated, 'metadata'), 'annotations')[ANNOTATION.injected] = 'true'

  addVolume(spec, { name: SOCKET_VOLUME, emptyDir: { medium: 'Memory', sizeLimit: '16Mi' } }, warnings)
  addVolume(spec, { name: RUNTIME_VOLUME, configMap: { name: RUNTIME_CONFIGMAP, items: [{ key: RUNTIME_SCRIPT_KEY, path: RUNTIME_SCRIPT_KEY }], defaultMode: 0o444 } }, warnings)

  if (a.runtimeCommand === 'inject') runtime.command = ['python3', RUNTIME_SCRIPT_PATH]
  if (a.handler !== undefined) setEnv(runtime, 'ASYA_HANDLER', a.handler)
  else if (!hasEnv(runtime, 'ASYA_HANDLER')) warnings.push(`asya: neither annotation ${ANNOTATION.handler} nor env ASYA_HANDLER is set on container ${String(runtime.name)}; the runtime will not start`)
  if (a.handlerMode !== undefined) setEnv(runtime, 'ASYA_HANDLER_MODE', a.handlerMode)
  else if (!hasEnv(runtime, 'ASYA_HANDLER_MODE')) setEnv(runtime, 'ASYA_HANDLER_MODE', 'payload')
  setEnv(runtime, 'ASYA_SOCKET_DIR', SOCKET_DIR)
  schedulingEnv(runtime, a)
  addMount(runtime, { name: SOCKET_VOLUME, mountPath: SOCKET_DIR })
  addMount(runtime, { name: RUNTIME_VOLUME, mountPath: RUNTIME_SCRIPT_PATH, subPath: RUNTIME_SCRIPT_KEY, readOnly: true })
  // Startup and readiness only where the user set none: theirs know their handler better than
  // ours. Liveness watches the ready file because the sidecar removes it after a handler timeout,
  // so the kubelet restarts the hung runtime container (SPEC §5).
  if (runtime.startupProbe === undefined) runtime.startupProbe = execProbe([SOCKET_FILE, READY_FILE], 2, 150)
  if (runtime.readinessProbe === undefined) runtime.readinessProbe = execProbe([SOCKET_FILE, READY_FILE], 10, 3)
  // The user's liveness probe is composed with the ready-file check rather than replacing it
  // (webhook/liveness.ts); what cannot be composed is kept and reported: recovery is off.
  const liveness = decideLiveness(runtime, READY_FILE, execProbe([READY_FILE], 10, 3))
  runtime.livenessProbe = liveness.probe
  let recoveryOff: string | undefined
  if (liveness.kind === 'recovery_off') {
    recoveryOff = `asya: timeout recovery is off for container ${String(runtime.name)}: ${liveness.why}, so it is kept as written and a runtime hung past ${ANNOTATION.timeout} is never restarted; use an exec, httpGet or tcpSocket liveness probe, or include the check of ${READY_FILE} in yours`
    warnings.push(recoveryOff)
  }

  const grace = typeof spec.terminationGracePeriodSeconds === 'number' ? spec.terminationGracePeriodSeconds : 30
  const sidecar = buildSidecar(a, transport, grace, context.config, a.nativeSidecar)
  const claims = claimCheckEnv(context.config.claimCheck, a)
  for (const e of claims.env) setEnv(sidecar, e.name, 'value' in e ? e.value : { valueFrom: e.valueFrom })
  warnings.push(...claims.warnings)
  if (transport === 'nats') {
    const nats = natsSidecarSecrets(context.config.natsSecrets)
    for (const e of nats.env) setEnv(sidecar, e.name, 'value' in e ? e.value : { valueFrom: e.valueFrom })
    for (const v of nats.volumes) addVolume(spec, v, warnings)
    for (const m of nats.mounts) addMount(sidecar, m)
  }
  if (a.nativeSidecar) arr(spec, 'initContainers').push(sidecar)
  else arr(spec, 'containers').push(sidecar)

  const patch = fastJsonPatch.compare(pod, mutated)
  return { kind: 'injected', actor: a.actor, pod: mutated, patch, warnings, ...(recoveryOff !== undefined ? { recoveryOff } : {}) }
}
