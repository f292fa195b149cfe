/**
 * The user interface of Asya (SPEC §7): every `asya.sh/*` label and annotation is parsed and
 * validated here, once, for the webhook (pod template annotations), the controller (workload
 * annotations) and the `asya inject` CLI. A bad value is reported naming the annotation and the
 * accepted values; it is never silently replaced by a default.
 */
import { parseDuration } from './config/env.js'
import { isValidActorName } from './envelope.js'

/** Every name of the interface, so no module spells them itself. */
export const ANNOTATION = {
  actor: 'asya.sh/actor',
  transport: 'asya.sh/transport',
  handler: 'asya.sh/handler',
  handlerMode: 'asya.sh/handler-mode',
  timeout: 'asya.sh/timeout',
  maxRetries: 'asya.sh/max-retries',
  retryBackoff: 'asya.sh/retry-backoff',
  nativeSidecar: 'asya.sh/native-sidecar',
  runtimeContainer: 'asya.sh/runtime-container',
  runtimeCommand: 'asya.sh/runtime-command',
  scaling: 'asya.sh/scaling',
  minReplicas: 'asya.sh/min-replicas',
  maxReplicas: 'asya.sh/max-replicas',
  queueLength: 'asya.sh/queue-length',
  pollingInterval: 'asya.sh/polling-interval',
  cooldownPeriod: 'asya.sh/cooldown-period',
  queueRetention: 'asya.sh/queue-retention',
  /** Written by the webhook: the pod has been injected. */
  injected: 'asya.sh/injected',
  /** Written by the controller on the workload. */
  status: 'asya.sh/status',
} as const

export type Transport = 'rabbitmq' | 'sqs'
export const TRANSPORTS: readonly Transport[] = ['rabbitmq', 'sqs']

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
  transport?: Transport
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
}

/** The workload annotations the controller reads (same shape as src/controller/settings.ts). */
export interface WorkloadAnnotations {
  transport: Transport
  scaling: 'keda' | 'off'
  minReplicas: number
  maxReplicas: number
  queueLength: number
  pollingInterval: number
  cooldownPeriod: number
  queueRetention: 'retain' | 'delete'
}

export interface ParseResult<T> {
  /** Present only when there is no problem: nothing is half-applied. */
  value?: T
  problems: AnnotationProblem[]
}

const HANDLER = /^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$/
const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/

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
  const actor = labelReader.raw(ANNOTATION.actor)
  r.problems.push(...labelReader.problems.map((p) => ({ ...p, message: p.message.replace(/^annotation/, 'label') })))
  if (actor !== undefined && !isValidActorName(actor)) {
    r.problems.push({
      annotation: ANNOTATION.actor,
      value: actor,
      expected: "a DNS-1123 label (lowercase letters, digits, '-', at most 63 characters)",
      message: `label ${ANNOTATION.actor}=${JSON.stringify(actor)} is invalid: expected a DNS-1123 label (lowercase letters, digits, '-', at most 63 characters)`,
    })
  }
  const transport = r.oneOf(ANNOTATION.transport, TRANSPORTS)
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
  if (runtimeContainer !== undefined && !(runtimeContainer.length <= 63 && DNS1123_LABEL.test(runtimeContainer))) {
    r.bad(ANNOTATION.runtimeContainer, runtimeContainer, 'the name of one of the pod\'s containers (a DNS-1123 label)')
  }
  const runtimeCommand = r.oneOf(ANNOTATION.runtimeCommand, ['inject', 'keep'] as const, 'inject')
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
    },
    problems: [],
  }
}

/**
 * Reads a workload's annotations (SPEC §7): `asya.sh/transport` from the pod template first (the
 * webhook reads it there too), else the workload's own; scaling and retention from the workload.
 * Drop-in for src/controller/settings.ts `readWorkloadSettings` (problems carry `.message`).
 */
export function parseWorkloadAnnotations(workload: Annotations, template: Annotations, defaultTransport: Transport): ParseResult<WorkloadAnnotations> {
  const r = new Reader([template, workload])
  const transport = r.oneOf(ANNOTATION.transport, TRANSPORTS, defaultTransport)
  const w = new Reader([workload])
  const scaling = w.oneOf(ANNOTATION.scaling, ['keda', 'off'] as const, 'keda')
  const minReplicas = w.int(ANNOTATION.minReplicas, 0, 0, 10_000)
  const maxReplicas = w.int(ANNOTATION.maxReplicas, 50, 1, 10_000)
  const queueLength = w.int(ANNOTATION.queueLength, 5, 1, 1_000_000)
  const pollingInterval = w.int(ANNOTATION.pollingInterval, 10, 1, 86_400)
  const cooldownPeriod = w.int(ANNOTATION.cooldownPeriod, 60, 0, 86_400)
  const queueRetention = w.oneOf(ANNOTATION.queueRetention, ['retain', 'delete'] as const, 'retain')
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
