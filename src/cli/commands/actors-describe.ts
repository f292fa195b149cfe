/** `asya actors describe NAME`: one actor in detail (kubectl describe style). */
import type { CoreV1Event, V1Pod } from '@kubernetes/client-node'
import { parsePodAnnotations, parseWorkloadAnnotations, type PodAnnotations, type WorkloadAnnotations } from '../../annotations.js'
import { httpStatus } from '../../controller/kube.js'
import { errorMessage } from '../../errors.js'
import { Brokers } from '../brokers.js'
import { CliError, type CliIo } from '../io.js'
import { connectKube, type Kube } from '../kube.js'
import { count, structured, table } from '../output.js'
import { actorView, listActorWorkloads, type ActorsFlags, type ActorView, type ListedWorkload } from './actors.js'
import { ACTOR_LABEL, ANNOTATION, ANNOTATION_PREFIX } from '../../names.js'

export interface EffectiveAnnotation {
  annotation: string
  /** What the actor runs with: the set value, else the default; undefined when none applies. */
  value?: string
  /** `pod template`, `workload`, `default`, or `invalid`. */
  source: string
  problem?: string
}

const POD: Array<[string, keyof PodAnnotations, string | undefined]> = [
  [ANNOTATION.transport, 'transport', undefined],
  [ANNOTATION.handler, 'handler', undefined],
  [ANNOTATION.handlerMode, 'handlerMode', 'payload'],
  [ANNOTATION.timeout, 'timeoutSeconds', undefined],
  [ANNOTATION.maxRetries, 'maxRetries', undefined],
  [ANNOTATION.retryBackoff, 'retryBackoff', undefined],
  [ANNOTATION.nativeSidecar, 'nativeSidecar', undefined],
  [ANNOTATION.runtimeContainer, 'runtimeContainer', undefined],
  [ANNOTATION.runtimeCommand, 'runtimeCommand', undefined],
]
const WORKLOAD: Array<[string, keyof WorkloadAnnotations]> = [
  [ANNOTATION.scaling, 'scaling'],
  [ANNOTATION.minReplicas, 'minReplicas'],
  [ANNOTATION.maxReplicas, 'maxReplicas'],
  [ANNOTATION.queueLength, 'queueLength'],
  [ANNOTATION.pollingInterval, 'pollingInterval'],
  [ANNOTATION.cooldownPeriod, 'cooldownPeriod'],
  [ANNOTATION.queueRetention, 'queueRetention'],
]
/** Written by Asya itself, not settings. */
const OUTPUTS = new Set<string>([ANNOTATION.status, ANNOTATION.injected, ACTOR_LABEL, ANNOTATION.statusMessage, ANNOTATION.wired])

/**
 * Every asya.sh/* annotation of an actor with the value it runs with, through the same parser as
 * the webhook and the controller (src/annotations.ts): set values, defaults, invalid values named.
 */
export function effectiveAnnotations(w: ListedWorkload, defaultTransport: string): EffectiveAnnotation[] {
  const wa = w.obj.metadata?.annotations ?? {}
  const template = w.obj.spec?.template?.metadata ?? {}
  const ta = template.annotations ?? {}
  const pod = parsePodAnnotations(template.labels, ta)
  const workload = parseWorkloadAnnotations(wa, ta, defaultTransport === 'sqs' ? 'sqs' : 'rabbitmq')
  const problems = new Map([...pod.problems, ...workload.problems].map((p) => [p.annotation, p.message]))
  const out: EffectiveAnnotation[] = []
  const add = (annotation: string, set: string | undefined, source: string, effective: unknown): void => {
    const problem = problems.get(annotation)
    if (problem !== undefined) out.push({ annotation, ...(set !== undefined ? { value: set } : {}), source: 'invalid', problem })
    else if (set !== undefined) out.push({ annotation, value: String(effective ?? set), source })
    else if (effective !== undefined) out.push({ annotation, value: String(effective), source: 'default' })
    else out.push({ annotation, source: 'default' })
  }
  for (const [name, key, fallback] of POD) {
    const eff = name === ANNOTATION.transport ? (pod.value?.transport ?? defaultTransport) : (pod.value?.[key] ?? fallback)
    add(name, ta[name], 'pod template', eff)
  }
  for (const [name, key] of WORKLOAD) add(name, wa[name], 'workload', workload.value?.[key])
  const known = new Set([...POD.map((p) => p[0]), ...WORKLOAD.map((p) => p[0]), ...OUTPUTS])
  for (const [src, map] of [['pod template', ta], ['workload', wa]] as const) {
    for (const [k, v] of Object.entries(map)) {
      if (!k.startsWith(ANNOTATION_PREFIX) || known.has(k)) continue
      out.push({ annotation: k, value: v, source: src, ...(problems.has(k) ? { problem: problems.get(k) as string } : {}) })
    }
  }
  return out
}

/** Counters and the mean processing time from a sidecar's /metrics (Prometheus text format). */
export interface MetricsSummary {
  pod: string
  received?: number
  processed?: Record<string, number>
  failed?: number
  retries?: number
  deadLettered?: number
  active?: number
  meanProcessingMs?: number
  error?: string
}

export function summarizeMetrics(pod: string, text: string): MetricsSummary {
  const sums = new Map<string, number>()
  const processed: Record<string, number> = {}
  for (const line of text.split('\n')) {
    if (line.startsWith('#') || line.trim() === '') continue
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)/.exec(line)
    if (!m) continue
    const [, name, labels = '', raw] = m
    const value = Number(raw)
    if (!Number.isFinite(value)) continue
    const base = (name as string).replace(/^asya_actor_/, '')
    sums.set(base, (sums.get(base) ?? 0) + value)
    if (base === 'messages_processed_total') {
      const status = /status="([^"]*)"/.exec(labels)?.[1] ?? 'unknown'
      processed[status] = (processed[status] ?? 0) + value
    }
  }
  const get = (k: string): number | undefined => sums.get(k)
  const s: MetricsSummary = { pod }
  const set = <K extends keyof MetricsSummary>(k: K, v: MetricsSummary[K] | undefined): void => {
    if (v !== undefined) s[k] = v
  }
  set('received', get('messages_received_total'))
  if (Object.keys(processed).length > 0) s.processed = processed
  set('failed', get('messages_failed_total'))
  set('retries', get('retries_total'))
  set('deadLettered', get('dead_lettered_total'))
  set('active', get('active_messages'))
  const n = get('processing_duration_seconds_count')
  const sum = get('processing_duration_seconds_sum')
  if (n !== undefined && sum !== undefined && n > 0) s.meanProcessingMs = Math.round((sum / n) * 10_000) / 10
  return s
}

async function podMetrics(kube: Kube, namespace: string, pods: V1Pod[]): Promise<MetricsSummary[]> {
  const out: MetricsSummary[] = []
  for (const p of pods.slice(0, 10)) {
    const name = p.metadata?.name ?? ''
    try {
      const text = await kube.core.connectGetNamespacedPodProxyWithPath({ name: `${name}:8080`, namespace, path: 'metrics' })
      out.push(summarizeMetrics(name, String(text)))
    } catch (err) {
      const status = httpStatus(err)
      out.push({ pod: name, error: status !== undefined ? `pod proxy answered HTTP ${status} (is the sidecar up and serving :8080/metrics?)` : errorMessage(err) })
    }
  }
  return out
}

interface Described {
  actor: ActorView
  statusMessage?: string
  annotations: EffectiveAnnotation[]
  scaledObject?: Record<string, unknown> | null
  events: Array<{ type: string; reason: string; message: string; count: number; lastSeen: string }>
  metrics?: MetricsSummary[]
}

async function gather(kube: Kube, w: ListedWorkload, brokers: Brokers | undefined, withMetrics: boolean, warn: (m: string) => void): Promise<Described> {
  const namespace = w.obj.metadata?.namespace ?? kube.namespace
  const name = w.obj.metadata?.name ?? ''
  const actor = await actorView(w, brokers, warn)
  let scaledObject: Record<string, unknown> | null = null
  try {
    scaledObject = (await kube.custom.getNamespacedCustomObject({ group: 'keda.sh', version: 'v1alpha1', namespace, plural: 'scaledobjects', name })) as Record<string, unknown>
  } catch (err) {
    if (httpStatus(err) !== 404) warn(kube.fail(err, `reading ScaledObject ${namespace}/${name}`).message)
  }
  let events: CoreV1Event[] = []
  try {
    events = (await kube.core.listNamespacedEvent({ namespace, fieldSelector: `involvedObject.name=${name}` })).items.filter((e) => e.involvedObject?.name === name && (e.involvedObject?.kind ?? w.kind) === w.kind)
  } catch (err) {
    warn(kube.fail(err, `listing Events of ${w.kind}/${name}`).message)
  }
  const time = (e: CoreV1Event): string => {
    const v: unknown = e.lastTimestamp ?? e.eventTime ?? e.firstTimestamp ?? e.metadata?.creationTimestamp
    return v instanceof Date ? v.toISOString() : typeof v === 'string' ? v : ''
  }
  const recent = events
    .sort((a, b) => time(a).localeCompare(time(b)))
    .slice(-10)
    .map((e) => ({ type: e.type ?? '', reason: e.reason ?? '', message: e.message ?? '', count: e.count ?? 1, lastSeen: time(e) }))
  const statusMessage = w.obj.metadata?.annotations?.[ANNOTATION.statusMessage]
  const d: Described = { actor, ...(statusMessage ? { statusMessage } : {}), annotations: effectiveAnnotations(w, actor.transport), scaledObject, events: recent }
  if (withMetrics) {
    const selector = Object.entries(w.obj.spec?.selector?.matchLabels ?? {}).map(([k, v]) => `${k}=${v}`).join(',')
    try {
      const pods = selector === '' ? [] : (await kube.core.listNamespacedPod({ namespace, labelSelector: selector })).items
      d.metrics = await podMetrics(kube, namespace, pods)
    } catch (err) {
      warn(kube.fail(err, `listing pods of ${w.kind}/${name}`).message)
    }
  }
  return d
}

function scaledObjectLines(so: Record<string, unknown> | null | undefined, scalingOff: boolean): string[] {
  if (!so) return [scalingOff ? '  none (asya.sh/scaling: off)' : '  none: the controller has not created one yet (see Events and asya.sh/status) or KEDA is not installed']
  const spec = (so.spec ?? {}) as { minReplicaCount?: number; maxReplicaCount?: number; pollingInterval?: number; cooldownPeriod?: number; triggers?: Array<{ type?: string; metadata?: Record<string, string> }> }
  const status = (so.status ?? {}) as { conditions?: Array<{ type?: string; status?: string; reason?: string }> }
  const lines = [`  Replicas:    ${spec.minReplicaCount ?? '-'} to ${spec.maxReplicaCount ?? '-'}   polling ${spec.pollingInterval ?? '-'} s, cooldown ${spec.cooldownPeriod ?? '-'} s`]
  for (const t of spec.triggers ?? []) {
    lines.push(`  Trigger:     ${t.type ?? '?'} ${Object.entries(t.metadata ?? {}).filter(([k]) => k !== 'host').map(([k, v]) => `${k}=${v}`).join(' ')}`)
  }
  const conditions = (status.conditions ?? []).map((c) => `${c.type}=${c.status}${c.reason ? ` (${c.reason})` : ''}`)
  lines.push(`  Conditions:  ${conditions.length > 0 ? conditions.join(', ') : 'none reported (KEDA not running?)'}`)
  return lines
}

/** kubectl's short age: 45s, 12m, 3h, 5d. */
export function age(iso: string, now: number): string {
  const t = Date.parse(iso)
  if (!Number.isFinite(t)) return '-'
  const s = Math.max(0, Math.round((now - t) / 1000))
  if (s < 120) return `${s}s`
  if (s < 7200) return `${Math.floor(s / 60)}m`
  if (s < 172_800) return `${Math.floor(s / 3600)}h`
  return `${Math.floor(s / 86_400)}d`
}

export function describeText(d: Described, now = Date.now()): string {
  const a = d.actor
  const q = (v: ActorView['queue']): string => (v.error ? `? (${v.error})` : `${count(v.messages)} messages, ${count(v.inFlight)} in flight, ${count(v.consumers)} consumers`)
  const out = [
    `Name:         ${a.actor}`,
    `Namespace:    ${a.namespace}`,
    `Workload:     ${a.workload.kind}/${a.workload.name}`,
    `Status:       ${a.status}${d.statusMessage ? ` (${d.statusMessage})` : ''}`,
    `Replicas:     ${a.replicas.ready}/${a.replicas.desired} ready`,
    `Transport:    ${a.transport}`,
    `Queue:        ${a.queue.name}: ${q(a.queue)}`,
    `DLQ:          ${a.dlq.name}: ${a.dlq.error ? `? (${a.dlq.error})` : `${count(a.dlq.messages)} messages`}`,
    '',
    'Annotations (effective values):',
    table(['  ANNOTATION', 'VALUE', 'SOURCE'], d.annotations.map((e) => [`  ${e.annotation}`, e.value ?? '-', e.problem ? `invalid: ${e.problem}` : e.source])).trimEnd(),
    '',
    'ScaledObject:',
    ...scaledObjectLines(d.scaledObject, a.scaling?.mode === 'off'),
    '',
    'Events:',
    d.events.length === 0 ? '  <none>' : table(['  LAST SEEN', 'TYPE', 'REASON', 'COUNT', 'MESSAGE'], d.events.map((e) => [`  ${age(e.lastSeen, now)}`, e.type, e.reason, String(e.count), e.message])).trimEnd(),
  ]
  if (d.metrics !== undefined) {
    out.push('', 'Sidecar metrics:')
    if (d.metrics.length === 0) out.push('  <no pods>')
    for (const m of d.metrics) {
      if (m.error) out.push(`  ${m.pod}: ${m.error}`)
      else {
        const processed = Object.entries(m.processed ?? {}).map(([k, v]) => `${k} ${v}`).join(', ')
        out.push(`  ${m.pod}: received ${count(m.received)}, processed ${processed || '-'}, failed ${count(m.failed)}, retries ${count(m.retries)}, dead-lettered ${count(m.deadLettered)}, in flight ${count(m.active)}, mean processing ${m.meanProcessingMs === undefined ? '-' : `${m.meanProcessingMs} ms`}`)
      }
    }
  }
  return out.join('\n') + '\n'
}

export async function describeActor(name: string, flags: ActorsFlags & { metrics?: boolean }, io: CliIo): Promise<void> {
  const kube = connectKube(flags, io.env)
  const matches = (await listActorWorkloads(kube)).filter((w) => w.actor === name)
  if (matches.length === 0) {
    throw new CliError(`actor "${name}" not found in ${kube.scope === undefined ? 'any namespace' : `namespace ${kube.scope}`}: \`asya actors${kube.scope === undefined ? ' -A' : ''}\` lists them${kube.scope !== undefined ? '; add -n NAMESPACE or -A' : ''}`)
  }
  const brokers = flags.queues === false ? undefined : new Brokers(flags, io.env)
  const warn = (m: string): void => io.stderr(`warning: ${m}\n`)
  try {
    const described: Described[] = []
    for (const w of matches) described.push(await gather(kube, w, brokers, flags.metrics !== false, warn))
    if (flags.output === 'json' || flags.output === 'yaml') {
      io.stdout(structured(flags.output, described.length === 1 ? described[0] : { items: described }))
      return
    }
    io.stdout(described.map((d) => describeText(d)).join('\n'))
  } finally {
    await brokers?.close()
  }
}
