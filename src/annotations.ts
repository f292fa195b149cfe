/**
 * The user interface of Asya (SPEC §7): every `asya.sh/*` label and annotation is parsed and
 * validated here, once, for the webhook (pod template annotations), the controller (workload
 * annotations) and the `asya inject` CLI. A bad value is reported naming the annotation and the
 * accepted values; it is never silently replaced by a default.
 */
import { parseDuration } from './config/env.js'
import { parseBytes } from './storage/s3-settings.js'
import { ACTOR_LABEL, ANNOTATION, CLUSTER_TRANSPORTS, DNS1123_LABEL_RULE, isDns1123Label, isValidActorName, type ClusterTransportName } from './names.js'

/** One bad annotation: which, what it held, what would have been accepted. */
export interface AnnotationProblem {
  annotation: string
  value: string
  expected: string
  /** `annotation asya.sh/x="v" is invalid: expected ...` */
  message: string
}

type Annotations = Readonly<Record<string, unknown>> | undefined

/** The pod-template annotations the webhook turns into containers and env (SPEC §6, §7). */
export interface PodAnnotations {
  actor: string
  /** Unset when the pod does not say: the system default applies. */
  transport?: ClusterTransportName
  handler?: string
  /** Unset when the pod does not say (the runtime defaults to `payload`). */
  handlerMode?: 'payload' | 'envelope'
  /** asya.sh/timeout, whole seconds. @default 300 */
  timeoutSeconds: number
  /** @default 0 */
  maxRetries: number
  /** asya.sh/retry-backoff normalised to a duration the sidecar reads (e.g. `1s`, `250ms`). @default 1s */
  retryBackoff: string
  retryBackoffMs: number
  /** @default true */
  nativeSidecar: boolean
  runtimeContainer?: string
  /** asya.sh/runtime-command: `inject` sets `python3 /opt/asya/asya_runtime.py`, `keep` leaves the image's. @default inject */
  runtimeCommand: 'inject' | 'keep'
  /** asya.sh/concurrency → ASYA_CONCURRENCY on both containers; unset when the pod does not say (1). */
  concurrency?: number
  /** asya.sh/batch-size → ASYA_BATCH_SIZE on both containers; unset when the pod does not say (1). */
  batchSize?: number
  /** asya.sh/batch-wait normalised (e.g. `20ms`) → ASYA_BATCH_WAIT; unset when the pod does not say (20ms). */
  batchWait?: string
  /** asya.sh/claim-check-threshold in bytes → ASYA_CLAIM_CHECK_THRESHOLD of the sidecar; unset = the system's. */
  claimCheckThresholdBytes?: number
}

/** Ranges of SPEC §13's settings, shared by the annotations, the sidecar and runtime-py. */
export const CONCURRENCY_MAX = 1000
export const BATCH_SIZE_MAX = 1000
export const BATCH_WAIT_MAX_MS = 60_000

/** The workload annotations the controller reads. */
export interface WorkloadAnnotations {
  transport: ClusterTransportName
  scaling: 'keda' | 'off'
  minReplicas: number
  maxReplicas: number
  queueLength: number
  pollingInterval: number
  cooldownPeriod: number
  queueRetention: 'retain' | 'delete' | 'force-delete'
}

export interface ParseResult<T> {
  /** Present only when there is no problem: nothing is half-applied. */
  value?: T
  problems: AnnotationProblem[]
}

const HANDLER = /^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$/

/** Collects problems while reading one annotation map. */
class Reader {
  readonly problems: AnnotationProblem[] = []
  constructor(private readonly sources: Annotations[]) {}

  /** First source that has the annotation wins; non-strings are reported as such. */
  raw(name: string): string | undefined {
    for (const s of this.sources) {
      if (s === undefined || !Object.prototype.hasOwnProperty.call(s, name)) continue
      const v = s[name]
      if (typeof v !== 'string') {
        // Describe, never serialise: the value may be arbitrarily large or deep.
        const shown = v === null ? 'null' : Array.isArray(v) ? '[array]' : typeof v === 'object' ? '{object}' : String(v)
        this.bad(name, shown, 'a string value (quote it in YAML)')
        return undefined
      }
      return v.trim()
    }
    return undefined
  }

  bad(annotation: string, value: string, expected: string): void {
    this.problems.push({ annotation, value, expected, message: `annotation ${annotation}=${JSON.stringify(value)} is invalid: expected ${expected}` })
  }

  oneOf<T extends string>(name: string, allowed: readonly T[]): T | undefined
  oneOf<T extends string>(name: string, allowed: readonly T[], fallback: T): T
  oneOf<T extends string>(name: string, allowed: readonly T[], fallback?: T): T | undefined {
    const v = this.raw(name)
    if (v === undefined) return fallback
    if ((allowed as readonly string[]).includes(v)) return v as T
    this.bad(name, v, `one of ${allowed.join(', ')}`)
    return fallback
  }

  int(name: string, fallback: number, min: number, max: number): number {
    const v = this.raw(name)
    if (v === undefined) return fallback
    if (/^\d+$/.test(v) && Number(v) >= min && Number(v) <= max) return Number(v)
    this.bad(name, v, `an integer in [${min}, ${max}]`)
    return fallback
  }

  bool(name: string, fallback: boolean): boolean {
    const v = this.raw(name)
    if (v === undefined) return fallback
    if (v === 'true') return true
    if (v === 'false') return false
    this.bad(name, v, '"true" or "false"')
    return fallback
  }
}

function formatMs(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`
}

/**
 * Reads the actor label and the pod-template annotations of a pod. `labels`/`annotations` are
 * the raw objects from the manifest (values may be anything: the API server only guarantees
 * strings for objects it has validated).
 */
export function parsePodAnnotations(labels: Annotations, annotations: Annotations): ParseResult<PodAnnotations> {
  const r = new Reader([annotations])
  const labelReader = new Reader([labels])
  const actor = labelReader.raw(ACTOR_LABEL)
  r.problems.push(...labelReader.problems.map((p) => ({ ...p, message: p.message.replace(/^annotation/, 'label') })))
  if (actor !== undefined && !isValidActorName(actor)) {
    r.problems.push({
      annotation: ACTOR_LABEL,
      value: actor,
      expected: DNS1123_LABEL_RULE,
      message: `label ${ACTOR_LABEL}=${JSON.stringify(actor)} is invalid: expected ${DNS1123_LABEL_RULE}`,
    })
  }
  const transport = r.oneOf(ANNOTATION.transport, CLUSTER_TRANSPORTS)
  const handler = r.raw(ANNOTATION.handler)
  if (handler !== undefined && !HANDLER.test(handler)) r.bad(ANNOTATION.handler, handler, 'module.function or module.Class.method')
  const handlerMode = r.oneOf(ANNOTATION.handlerMode, ['payload', 'envelope'] as const)
  let timeoutSeconds = 300
  const rawTimeout = r.raw(ANNOTATION.timeout)
  if (rawTimeout !== undefined) {
    const ms = parseDuration(rawTimeout)
    if (ms === undefined || ms < 1000 || ms > 86_400_000 || ms % 1000 !== 0) {
      r.bad(ANNOTATION.timeout, rawTimeout, 'whole seconds in [1, 86400] (e.g. "300"; "5m" is accepted too)')
    } else timeoutSeconds = ms / 1000
  }
  const maxRetries = r.int(ANNOTATION.maxRetries, 0, 0, 1000)
  let retryBackoffMs = 1000
  const rawBackoff = r.raw(ANNOTATION.retryBackoff)
  if (rawBackoff !== undefined) {
    const ms = parseDuration(rawBackoff)
    if (ms === undefined || ms < 1 || ms > 3_600_000) r.bad(ANNOTATION.retryBackoff, rawBackoff, 'a duration between 1ms and 1h such as 500ms, 1s, 2m (a bare number is seconds)')
    else retryBackoffMs = ms
  }
  const nativeSidecar = r.bool(ANNOTATION.nativeSidecar, true)
  const runtimeContainer = r.raw(ANNOTATION.runtimeContainer)
  if (runtimeContainer !== undefined && !isDns1123Label(runtimeContainer)) {
    r.bad(ANNOTATION.runtimeContainer, runtimeContainer, 'the name of one of the pod\'s containers (a DNS-1123 label)')
  }
  const runtimeCommand = r.oneOf(ANNOTATION.runtimeCommand, ['inject', 'keep'] as const, 'inject')
  const given = (name: string): boolean => annotations !== undefined && Object.prototype.hasOwnProperty.call(annotations, name)
  const concurrency = given(ANNOTATION.concurrency) ? r.int(ANNOTATION.concurrency, 1, 1, CONCURRENCY_MAX) : undefined
  const batchSize = given(ANNOTATION.batchSize) ? r.int(ANNOTATION.batchSize, 1, 1, BATCH_SIZE_MAX) : undefined
  const rawBatchWait = r.raw(ANNOTATION.batchWait)
  let batchWait: string | undefined
  if (rawBatchWait !== undefined) {
    const ms = parseDuration(rawBatchWait)
    if (ms === undefined || ms > BATCH_WAIT_MAX_MS) r.bad(ANNOTATION.batchWait, rawBatchWait, 'a duration in [0ms, 60s] such as 2ms, 20ms, 0.5s')
    else batchWait = formatMs(ms)
  }
  const rawClaimThreshold = r.raw(ANNOTATION.claimCheckThreshold)
  let claimCheckThresholdBytes: number | undefined
  if (rawClaimThreshold !== undefined) {
    const bytes = parseBytes(rawClaimThreshold)
    if (bytes === undefined || bytes < 1024) r.bad(ANNOTATION.claimCheckThreshold, rawClaimThreshold, 'a size of at least 1024 bytes such as 64KiB, 1MiB, 262144')
    else claimCheckThresholdBytes = bytes
  }
  if (r.problems.length > 0 || actor === undefined) return { problems: r.problems }
  return {
    value: {
      actor,
      ...(transport !== undefined ? { transport } : {}),
      ...(handler !== undefined ? { handler } : {}),
      ...(handlerMode !== undefined ? { handlerMode } : {}),
      timeoutSeconds,
      maxRetries,
      retryBackoff: formatMs(retryBackoffMs),
      retryBackoffMs,
      nativeSidecar,
      ...(runtimeContainer !== undefined ? { runtimeContainer } : {}),
      runtimeCommand,
      ...(concurrency !== undefined ? { concurrency } : {}),
      ...(batchSize !== undefined ? { batchSize } : {}),
      ...(batchWait !== undefined ? { batchWait } : {}),
      ...(claimCheckThresholdBytes !== undefined ? { claimCheckThresholdBytes } : {}),
    },
    problems: [],
  }
}

/**
 * Reads a workload's annotations (SPEC §7): `asya.sh/transport` from the pod template first (the
 * webhook reads it there too), else the workload's own; scaling and retention from the workload.
 * Used by the controller; the webhook ignores workload annotations.
 */
export function parseWorkloadAnnotations(workload: Annotations, template: Annotations, defaultTransport: ClusterTransportName): ParseResult<WorkloadAnnotations> {
  const r = new Reader([template, workload])
  const transport = r.oneOf(ANNOTATION.transport, CLUSTER_TRANSPORTS, defaultTransport)
  const w = new Reader([workload])
  const scaling = w.oneOf(ANNOTATION.scaling, ['keda', 'off'] as const, 'keda')
  const minReplicas = w.int(ANNOTATION.minReplicas, 0, 0, 10_000)
  const maxReplicas = w.int(ANNOTATION.maxReplicas, 50, 1, 10_000)
  const queueLength = w.int(ANNOTATION.queueLength, 5, 1, 1_000_000)
  const pollingInterval = w.int(ANNOTATION.pollingInterval, 10, 1, 86_400)
  const cooldownPeriod = w.int(ANNOTATION.cooldownPeriod, 60, 0, 86_400)
  const queueRetention = w.oneOf(ANNOTATION.queueRetention, ['retain', 'delete', 'force-delete'] as const, 'retain')
  const problems = [...r.problems, ...w.problems]
  if (problems.length === 0 && minReplicas > maxReplicas) {
    problems.push({
      annotation: ANNOTATION.minReplicas,
      value: String(minReplicas),
      expected: `at most asya.sh/max-replicas (${maxReplicas})`,
      message: `annotation ${ANNOTATION.minReplicas}=${minReplicas} is larger than ${ANNOTATION.maxReplicas}=${maxReplicas}`,
    })
  }
  if (problems.length > 0) return { problems }
  return { value: { transport, scaling, minReplicas, maxReplicas, queueLength, pollingInterval, cooldownPeriod, queueRetention }, problems }
}

/** One line for messages and logs: every problem, `; `-separated. */
export function describeProblems(problems: readonly AnnotationProblem[]): string {
  return problems.map((p) => p.message).join('; ')
}
