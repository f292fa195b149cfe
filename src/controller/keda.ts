/**
 * Builders of the KEDA objects the controller owns (keda.sh/v1alpha1 ScaledObject and
 * TriggerAuthentication). Pure functions: the reconciler compares their output with what the API
 * server holds and writes only on a difference.
 */
import { ACTOR_LABEL, MANAGED_BY, MANAGED_BY_LABEL, NATS_STREAM, queueName } from '../names.js'

export const KEDA_GROUP = 'keda.sh'
export const KEDA_VERSION = 'v1alpha1'
export const SCALED_OBJECTS = 'scaledobjects'
export const TRIGGER_AUTHS = 'triggerauthentications'


export type WorkloadKind = 'Deployment' | 'StatefulSet'

export interface WorkloadRef {
  kind: WorkloadKind
  namespace: string
  name: string
  uid: string
}

export interface ScalingSettings {
  minReplicas: number
  maxReplicas: number
  queueLength: number
  pollingInterval: number
  cooldownPeriod: number
}

/** Where KEDA's rabbitmq scaler reads queue depth: the management API, so unacked messages count. */
export interface RabbitScalerConfig {
  /** Management API base URL without credentials, e.g. `http://rabbitmq.asya-system:15672`. */
  managementUrl: string
  vhost: string
  /** Secret (in the actor's namespace) holding the broker user; absent = no TriggerAuthentication. */
  credentialSecret?: { name: string; usernameKey: string; passwordKey: string }
}

export interface SqsScalerConfig {
  region: string
  /** Custom endpoint (emulators, VPC endpoints). */
  endpoint?: string
  /** Queue URL of `asya-<actor>`. */
  queueUrl: string
  /**
   * `secret`: TriggerAuthentication from a Secret with AWS keys; `pod`: TriggerAuthentication with
   * pod identity (IRSA / EKS pod identity); `operator`: KEDA's own identity, no TriggerAuthentication.
   */
  auth:
    | { kind: 'secret'; secretName: string; accessKeyIdKey: string; secretAccessKeyKey: string }
    | { kind: 'pod' }
    | { kind: 'operator' }
}

/** Where KEDA's nats-jetstream scaler reads consumer lag: the server's monitoring endpoint (`/jsz`). */
export interface NatsScalerConfig {
  /** `host:port` of the monitoring endpoint (KEDA adds the scheme). */
  monitoringEndpoint: string
  /** NATS account of the stream. @default '$G' */
  account: string
  useHttps: boolean
  /**
   * Secret (in the actor's namespace) holding the monitoring endpoint (and account) for a
   * TriggerAuthentication, e.g. when the endpoint carries basic-auth credentials
   * (`user:password@host:8222`). Absent = plain trigger metadata, no TriggerAuthentication.
   */
  credentialSecret?: { name: string; endpointKey: string; accountKey?: string }
}

export type ScalerConfig =
  | { transport: 'rabbitmq'; rabbitmq: RabbitScalerConfig }
  | { transport: 'sqs'; sqs: SqsScalerConfig }
  | { transport: 'nats'; nats: NatsScalerConfig }

export interface KubeObject {
  apiVersion: string
  kind: string
  metadata: {
    name: string
    namespace: string
    labels?: Record<string, string>
    annotations?: Record<string, string>
    ownerReferences?: OwnerReference[]
    resourceVersion?: string
    [k: string]: unknown
  }
  spec?: Record<string, unknown>
  [k: string]: unknown
}

export interface OwnerReference {
  apiVersion: string
  kind: string
  name: string
  uid: string
  controller?: boolean
  blockOwnerDeletion?: boolean
}

export function triggerAuthName(workload: string): string {
  return `${workload}-trigger-auth`
}

export function ownerReference(w: WorkloadRef): OwnerReference {
  return { apiVersion: 'apps/v1', kind: w.kind, name: w.name, uid: w.uid, controller: true, blockOwnerDeletion: true }
}

function labels(actor: string): Record<string, string> {
  return { [MANAGED_BY_LABEL]: MANAGED_BY, [ACTOR_LABEL]: actor }
}

/** True when the scaler needs a TriggerAuthentication. */
export function needsTriggerAuth(scaler: ScalerConfig): boolean {
  if (scaler.transport === 'rabbitmq') return scaler.rabbitmq.credentialSecret !== undefined
  if (scaler.transport === 'nats') return scaler.nats.credentialSecret !== undefined
  return scaler.sqs.auth.kind !== 'operator'
}

/**
 * Scale-down is slow on purpose (an actor's queue often drains in bursts and pods may hold long
 * GPU tasks); scale-up is fast. Scale-to-zero itself is governed by KEDA's cooldownPeriod.
 */
export const HPA_BEHAVIOR = {
  scaleDown: { stabilizationWindowSeconds: 300, selectPolicy: 'Max', policies: [{ type: 'Percent', value: 50, periodSeconds: 60 }] },
  scaleUp: {
    stabilizationWindowSeconds: 0,
    selectPolicy: 'Max',
    policies: [
      { type: 'Percent', value: 100, periodSeconds: 15 },
      { type: 'Pods', value: 4, periodSeconds: 15 },
    ],
  },
} as const

export function buildScaledObject(w: WorkloadRef, actor: string, scaling: ScalingSettings, scaler: ScalerConfig): KubeObject {
  const trigger: Record<string, unknown> =
    scaler.transport === 'nats'
      ? {
          type: 'nats-jetstream',
          metadata: {
            ...(scaler.nats.credentialSecret ? {} : { natsServerMonitoringEndpoint: scaler.nats.monitoringEndpoint }),
            ...(scaler.nats.credentialSecret?.accountKey ? {} : { account: scaler.nats.account }),
            stream: NATS_STREAM,
            consumer: queueName(actor),
            lagThreshold: String(scaling.queueLength),
            useHttps: String(scaler.nats.useHttps),
          },
        }
      : scaler.transport === 'rabbitmq'
      ? {
          type: 'rabbitmq',
          metadata: {
            mode: 'QueueLength',
            value: String(scaling.queueLength),
            queueName: queueName(actor),
            protocol: 'http',
            host: scaler.rabbitmq.managementUrl,
            vhostName: scaler.rabbitmq.vhost,
          },
        }
      : {
          type: 'aws-sqs-queue',
          metadata: {
            queueURL: scaler.sqs.queueUrl,
            queueLength: String(scaling.queueLength),
            awsRegion: scaler.sqs.region,
            scaleOnInFlight: 'true',
            ...(scaler.sqs.endpoint ? { awsEndpoint: scaler.sqs.endpoint } : {}),
            ...(scaler.sqs.auth.kind === 'operator' ? { identityOwner: 'operator' } : {}),
          },
        }
  if (needsTriggerAuth(scaler)) trigger.authenticationRef = { name: triggerAuthName(w.name) }
  return {
    apiVersion: `${KEDA_GROUP}/${KEDA_VERSION}`,
    kind: 'ScaledObject',
    metadata: { name: w.name, namespace: w.namespace, labels: labels(actor), ownerReferences: [ownerReference(w)] },
    spec: {
      scaleTargetRef: { apiVersion: 'apps/v1', kind: w.kind, name: w.name },
      minReplicaCount: scaling.minReplicas,
      maxReplicaCount: scaling.maxReplicas,
      pollingInterval: scaling.pollingInterval,
      cooldownPeriod: scaling.cooldownPeriod,
      advanced: { horizontalPodAutoscalerConfig: { behavior: HPA_BEHAVIOR } },
      triggers: [trigger],
    },
  }
}

/** The TriggerAuthentication, or undefined when the scaler needs none. */
export function buildTriggerAuth(w: WorkloadRef, actor: string, scaler: ScalerConfig): KubeObject | undefined {
  if (!needsTriggerAuth(scaler)) return undefined
  let spec: Record<string, unknown>
  if (scaler.transport === 'rabbitmq') {
    const s = scaler.rabbitmq.credentialSecret as NonNullable<RabbitScalerConfig['credentialSecret']>
    // KEDA >= 2.10 accepts username/password separately, so the password never sits in a URL.
    spec = {
      secretTargetRef: [
        { parameter: 'username', name: s.name, key: s.usernameKey },
        { parameter: 'password', name: s.name, key: s.passwordKey },
      ],
    }
  } else if (scaler.transport === 'nats') {
    const s = scaler.nats.credentialSecret as NonNullable<NatsScalerConfig['credentialSecret']>
    spec = {
      secretTargetRef: [
        { parameter: 'natsServerMonitoringEndpoint', name: s.name, key: s.endpointKey },
        ...(s.accountKey ? [{ parameter: 'account', name: s.name, key: s.accountKey }] : []),
      ],
    }
  } else if (scaler.sqs.auth.kind === 'secret') {
    const a = scaler.sqs.auth
    spec = {
      secretTargetRef: [
        { parameter: 'awsAccessKeyID', name: a.secretName, key: a.accessKeyIdKey },
        { parameter: 'awsSecretAccessKey', name: a.secretName, key: a.secretAccessKeyKey },
      ],
    }
  } else {
    spec = { podIdentity: { provider: 'aws' } }
  }
  return {
    apiVersion: `${KEDA_GROUP}/${KEDA_VERSION}`,
    kind: 'TriggerAuthentication',
    metadata: { name: triggerAuthName(w.name), namespace: w.namespace, labels: labels(actor), ownerReferences: [ownerReference(w)] },
    spec,
  }
}

/** KEDA labels the HPA and its metrics with the ScaledObject name, so it must fit a label value. */
export const MAX_SCALED_OBJECT_NAME = 63
export const MAX_OBJECT_NAME = 253

/** Problems with derived names (ASYA_ERR_NAME_TOO_LONG); never truncated silently. */
export function nameProblems(workload: string): string[] {
  const problems: string[] = []
  if (workload.length > MAX_SCALED_OBJECT_NAME) {
    problems.push(`ScaledObject name "${workload}" is ${workload.length} characters; KEDA allows at most ${MAX_SCALED_OBJECT_NAME}`)
  }
  const ta = triggerAuthName(workload)
  if (ta.length > MAX_OBJECT_NAME) problems.push(`TriggerAuthentication name "${ta}" is ${ta.length} characters; at most ${MAX_OBJECT_NAME} allowed`)
  return problems
}

/**
 * True when `observed` already says what `desired` says: desired spec equal, desired labels and
 * owner references present. Fields the server or other tools add (status, managedFields, extra
 * labels/annotations) do not count as drift.
 */
export function matches(desired: KubeObject, observed: KubeObject): boolean {
  if (!deepEqual(desired.spec, observed.spec)) return false
  for (const [k, v] of Object.entries(desired.metadata.labels ?? {})) if (observed.metadata.labels?.[k] !== v) return false
  for (const ref of desired.metadata.ownerReferences ?? []) {
    const o = (observed.metadata.ownerReferences ?? []).find((r) => r.uid === ref.uid)
    if (!o || o.controller !== ref.controller || o.kind !== ref.kind || o.name !== ref.name) return false
  }
  return true
}

export function deepEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false
  if (Array.isArray(a) !== Array.isArray(b)) return false
  if (Array.isArray(a)) {
    const bb = b as unknown[]
    return a.length === bb.length && a.every((v, i) => deepEqual(v, bb[i]))
  }
  const ak = Object.keys(a as object).filter((k) => (a as Record<string, unknown>)[k] !== undefined)
  const bk = Object.keys(b as object).filter((k) => (b as Record<string, unknown>)[k] !== undefined)
  if (ak.length !== bk.length) return false
  return ak.every((k) => deepEqual((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]))
}
