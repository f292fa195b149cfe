/**
 * Every name Asya shares with the outside world, in one module (fastify keeps such things in
 * `lib/symbols.js`): label and annotation keys, queue names, transport header names, the runtime
 * ConfigMap, container, volume, socket and ready-file names, and the DNS-1123 rule. Other modules
 * import these; none spells them itself, so a rename (never done lightly: they are wire names,
 * SPEC §3, §4, §6, §7) happens here or nowhere.
 */
import { posix } from 'node:path'

// ---------------------------------------------------------------------------------------------
// Transports

/** Every transport of ASYA_TRANSPORT and `asya.sh/transport`. Add a transport here first. */
export const TRANSPORT_NAMES = ['memory', 'rabbitmq', 'sqs', 'nats'] as const
export type TransportName = (typeof TRANSPORT_NAMES)[number]
/**
 * Transports the controller provisions (queues, KEDA triggers) and `asya.sh/transport` accepts;
 * `memory` is for local runs and tests only.
 */
export const CLUSTER_TRANSPORTS = ['rabbitmq', 'sqs', 'nats'] as const satisfies readonly TransportName[]
export type ClusterTransportName = (typeof CLUSTER_TRANSPORTS)[number]

/** RabbitMQ: the durable topic exchange every actor queue is bound to (SPEC §3); also our client name on brokers. */
export const DEFAULT_EXCHANGE = 'asya'

/** NATS JetStream: the stream every actor subject lives in (SPEC §3). */
export const NATS_STREAM = 'ASYA'
/** NATS subject prefix: actor `a` publishes to `asya.a`; its durable consumer is `queueName(a)`. */
export const NATS_SUBJECT_PREFIX = 'asya'
/** NATS KV bucket holding retry/release notes (see nats-transport.ts). */
export const NATS_NOTES_BUCKET = 'asya-notes'

export function natsSubject(actor: string): string {
  return `${NATS_SUBJECT_PREFIX}.${actor}`
}

// ---------------------------------------------------------------------------------------------
// Actors and queues (SPEC §3)

export const HAPPY_END = 'happy-end'
export const ERROR_END = 'error-end'
export const END_ACTORS: readonly string[] = [HAPPY_END, ERROR_END]

/** Every actor queue starts with it (SQS ListQueues prefix, queue → actor). */
export const QUEUE_PREFIX = 'asya-'

/** Queue of actor `a`: `asya-<a>`. */
export function queueName(actor: string): string {
  return `${QUEUE_PREFIX}${actor}`
}

/**
 * The pseudo-actor whose queue is the dead-letter queue of `actor`, so a DLQ is addressed like
 * any queue (publish, consume, count) and `queueName(dlqActor(a)) === dlqName(a)`. On RabbitMQ it
 * is also the DLQ's routing key.
 */
export function dlqActor(actor: string): string {
  return `${actor}-dlq`
}

/** Dead-letter queue of actor `a`: `asya-<a>-dlq`. */
export function dlqName(actor: string): string {
  return queueName(dlqActor(actor))
}

/** RabbitMQ retry tier queue of `actor` for delays of `tierMs` (see rabbitmq-topology.ts). */
export function retryQueueName(actor: string, tierMs: number): string {
  return `${queueName(actor)}-retry-${tierMs}`
}

/** The actor of queue `asya-<a>` (`a`, which is `<x>-dlq` for a DLQ); undefined for other queues. */
export function actorOfQueue(queue: string): string | undefined {
  return queue.startsWith(QUEUE_PREFIX) ? queue.slice(QUEUE_PREFIX.length) : undefined
}

const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/

/** A DNS-1123 label: lowercase letters, digits and '-', alphanumeric at both ends, ≤ 63 chars. */
export function isDns1123Label(name: unknown): name is string {
  return typeof name === 'string' && name.length <= 63 && DNS1123_LABEL.test(name)
}

/** What a DNS-1123 label is, for messages that reject one. */
export const DNS1123_LABEL_RULE = "a DNS-1123 label (lowercase letters, digits, '-', at most 63 characters)"

/** Actor names are DNS-1123 labels (SPEC §3): they become queue, object and container names. */
export const isValidActorName: (name: unknown) => name is string = isDns1123Label

// ---------------------------------------------------------------------------------------------
// Transport headers (AMQP headers / SQS message attributes; never part of the envelope)

export const HEADER = {
  /** 1-based attempt number of the next delivery (written on retried copies). */
  attempt: 'x-asya-attempt',
  /** Why the message was retried or dead-lettered. */
  reason: 'x-asya-reason',
  /** Last error message (at most 1 KiB). */
  error: 'x-asya-error',
  /** Attempts made before dead-lettering. */
  attempts: 'x-asya-attempts',
  /** Actor whose queue dead-lettered the message. */
  actor: 'x-asya-actor',
  /** Hops made so far: the hop limit (SPEC §11.7). */
  hops: 'x-asya-hops',
  /** Fan-out children already confirmed before a retry, so a retry sends only the rest (SPEC §11.4). */
  sent: 'x-asya-sent',
  /** End actors: the object key already written, so a retry reports without writing twice. */
  endKey: 'x-asya-end-key',
  /** End actors: the object key a failed write chose, so its retry writes the same key (one object per id). */
  endPendingKey: 'x-asya-end-pending-key',
  /** Tracing on: when the sending sidecar published the message (ms since the epoch), so the next hop's span shows the queue wait. */
  sentAt: 'x-asya-sent-at',
  /**
   * The actor whose sidecar published this message (every routed, happy-end and error-end output).
   * The next actor's progress reports name it (`from_actor_idx`), so the gateway records that it ran
   * even when its own reports arrive late (docs/sidecar.md#progress-reports). Upstream ignores it.
   */
  fromActor: 'x-asya-from-actor',
} as const

/** Prefix of our headers: SQS keeps these first under its 10-attribute limit. */
export const HEADER_PREFIX = 'x-asya-'

// ---------------------------------------------------------------------------------------------
// Labels and annotations (SPEC §7)

/** Pod-template label that makes a workload an actor; its value is the actor name. */
export const ACTOR_LABEL = 'asya.sh/actor'

/** Every `asya.sh/*` annotation users set or the system writes. */
export const ANNOTATION = {
  transport: 'asya.sh/transport',
  handler: 'asya.sh/handler',
  handlerMode: 'asya.sh/handler-mode',
  timeout: 'asya.sh/timeout',
  maxRetries: 'asya.sh/max-retries',
  retryBackoff: 'asya.sh/retry-backoff',
  nativeSidecar: 'asya.sh/native-sidecar',
  runtimeContainer: 'asya.sh/runtime-container',
  runtimeCommand: 'asya.sh/runtime-command',
  concurrency: 'asya.sh/concurrency',
  batchSize: 'asya.sh/batch-size',
  batchWait: 'asya.sh/batch-wait',
  claimCheckThreshold: 'asya.sh/claim-check-threshold',
  scaling: 'asya.sh/scaling',
  minReplicas: 'asya.sh/min-replicas',
  maxReplicas: 'asya.sh/max-replicas',
  queueLength: 'asya.sh/queue-length',
  pollingInterval: 'asya.sh/polling-interval',
  cooldownPeriod: 'asya.sh/cooldown-period',
  queueRetention: 'asya.sh/queue-retention',
  /** Written by the webhook: the pod has been injected. */
  injected: 'asya.sh/injected',
  /** Written by the controller on the workload: Ready, QueueError, InvalidConfig, ... */
  status: 'asya.sh/status',
  /** Written by the controller beside `status`: the human-readable why. */
  statusMessage: 'asya.sh/status-message',
  /** Written by the controller: what it wired (`<transport>:<actor>`), so un-labelling can be undone. */
  wired: 'asya.sh/wired',
} as const

/** Prefix of every Asya label and annotation. */
export const ANNOTATION_PREFIX = 'asya.sh/'

/** Tags on the SQS queues the controller creates. */
export const SQS_TAG = { actor: ACTOR_LABEL, namespace: 'asya.sh/namespace' } as const

/** Label on every object the controller creates, so cleanup never touches user objects. */
export const MANAGED_BY_LABEL = 'app.kubernetes.io/managed-by'
export const MANAGED_BY = 'asya-controller'

// ---------------------------------------------------------------------------------------------
// Pod layout: what the webhook injects and the sidecar and runtime find (SPEC §4, §6)

export const SIDECAR_CONTAINER = 'asya-sidecar'
/** Port of the sidecar's /healthz, /readyz and /metrics (default of ASYA_METRICS_ADDR, `:8080`). */
export const SIDECAR_METRICS_PORT = 8080
/** The runtime container, when the pod names one so. */
export const RUNTIME_CONTAINER = 'asya-runtime'
/** emptyDir (memory) volume shared by sidecar and runtime for the socket and the ready file. */
export const SOCKET_VOLUME = 'socket-dir'
/** ConfigMap volume carrying the runtime script. */
export const RUNTIME_VOLUME = 'asya-runtime'
/** Per-namespace ConfigMap of the runtime script, ensured by the controller. */
export const RUNTIME_CONFIGMAP = 'asya-runtime'
/** Key of the script in RUNTIME_CONFIGMAP; also the script's file name. */
export const RUNTIME_SCRIPT_KEY = 'asya_runtime.py'
export const RUNTIME_SCRIPT_DIR = '/opt/asya'
export const RUNTIME_SCRIPT_PATH = `${RUNTIME_SCRIPT_DIR}/${RUNTIME_SCRIPT_KEY}`
/** Default of ASYA_SOCKET_DIR, and where the webhook mounts the socket volume. */
export const SOCKET_DIR = '/var/run/asya'
/** File name (not path) of the runtime's Unix socket inside the socket directory. */
export const SOCKET_FILE_NAME = 'asya-runtime.sock'
/** File name (not path) of the ready file the runtime writes once it listens. */
export const READY_FILE_NAME = 'runtime-ready'

export function socketPath(socketDir: string): string {
  return posix.join(socketDir, SOCKET_FILE_NAME)
}

export function readyFilePath(socketDir: string): string {
  return posix.join(socketDir, READY_FILE_NAME)
}
