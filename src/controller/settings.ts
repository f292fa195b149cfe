import type { ScalingSettings } from './keda.js'
import type { QueueTransport } from './queues.js'

/** What the controller needs from a workload's asya.sh/* annotations (SPEC §7). */
export interface WorkloadSettings extends ScalingSettings {
  transport: QueueTransport
  scaling: 'keda' | 'off'
  queueRetention: 'retain' | 'delete'
}

export interface SettingsResult {
  settings?: WorkloadSettings
  /** One line per bad annotation, naming it and the accepted values. */
  problems: string[]
}

type Annotations = Record<string, string> | undefined

function intAnnotation(
  name: string,
  raw: string | undefined,
  fallback: number,
  min: number,
  max: number,
  problems: string[],
): number {
  if (raw === undefined) return fallback
  const v = raw.trim()
  if (!/^\d+$/.test(v) || Number(v) < min || Number(v) > max) {
    problems.push(`annotation ${name}=${JSON.stringify(raw)} is invalid: expected an integer in [${min}, ${max}]`)
    return fallback
  }
  return Number(v)
}

function enumAnnotation<T extends string>(name: string, raw: string | undefined, allowed: readonly T[], fallback: T, problems: string[]): T {
  if (raw === undefined) return fallback
  const v = raw.trim()
  if (!(allowed as readonly string[]).includes(v)) {
    problems.push(`annotation ${name}=${JSON.stringify(raw)} is invalid: expected one of ${allowed.join(', ')}`)
    return fallback
  }
  return v as T
}

/**
 * Reads the controller's annotations: `asya.sh/transport` from the pod template (the sidecar
 * reads it there too; the workload's own annotation is accepted as well), scaling and retention
 * from the workload. Every bad value is reported, none is silently replaced by a default.
 */
export function readWorkloadSettings(workload: Annotations, template: Annotations, defaultTransport: QueueTransport): SettingsResult {
  const w = workload ?? {}
  const p = template ?? {}
  const problems: string[] = []
  const transport = enumAnnotation('asya.sh/transport', p['asya.sh/transport'] ?? w['asya.sh/transport'], ['rabbitmq', 'sqs'] as const, defaultTransport, problems)
  const scaling = enumAnnotation('asya.sh/scaling', w['asya.sh/scaling'], ['keda', 'off'] as const, 'keda', problems)
  const minReplicas = intAnnotation('asya.sh/min-replicas', w['asya.sh/min-replicas'], 0, 0, 10_000, problems)
  const maxReplicas = intAnnotation('asya.sh/max-replicas', w['asya.sh/max-replicas'], 50, 1, 10_000, problems)
  const queueLength = intAnnotation('asya.sh/queue-length', w['asya.sh/queue-length'], 5, 1, 1_000_000, problems)
  const pollingInterval = intAnnotation('asya.sh/polling-interval', w['asya.sh/polling-interval'], 10, 1, 86_400, problems)
  const cooldownPeriod = intAnnotation('asya.sh/cooldown-period', w['asya.sh/cooldown-period'], 60, 0, 86_400, problems)
  const queueRetention = enumAnnotation('asya.sh/queue-retention', w['asya.sh/queue-retention'], ['retain', 'delete'] as const, 'retain', problems)
  if (problems.length === 0 && minReplicas > maxReplicas) {
    problems.push(`annotation asya.sh/min-replicas=${minReplicas} is larger than asya.sh/max-replicas=${maxReplicas}`)
  }
  if (problems.length > 0) return { problems }
  return {
    settings: { transport, scaling, minReplicas, maxReplicas, queueLength, pollingInterval, cooldownPeriod, queueRetention },
    problems,
  }
}
