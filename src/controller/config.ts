import { randomBytes } from 'node:crypto'
import { existsSync, readFileSync } from 'node:fs'
import { hostname } from 'node:os'
import { errors } from '../errors.js'
import { EnvReader } from '../config/env.js'
import { DEFAULT_EXCHANGE, ERROR_END, HAPPY_END, isValidActorName, type ClusterTransportName } from '../names.js'
import { readNatsSettings, readQueueTopology, type NatsSettings } from '../transport/create-transport.js'
import type { QueueTopology } from '../transport/rabbitmq-topology.js'
import type { SqsScalerConfig } from './keda.js'
import { runtimeScriptCandidates } from '../runtime/runtime-process.js'

/** Controller-only settings (the transport settings, shared with the webhook, are {@link ControllerTransports}). */
export interface ControllerSettings {
  enabled: boolean
  /** Full resync period. */
  resyncMs: number
  concurrency: number
  leaderElection: boolean
  leaseName: string
  /** Namespace of the Lease: the system namespace. */
  leaseNamespace: string
  leaseDurationMs: number
  renewDeadlineMs: number
  retryPeriodMs: number
  identity: string
  /** SQS redrive: receives before a message moves to the DLQ. */
  sqsMaxReceiveCount: number
  /** ASYA_SHARED_ACTOR_NAMES: one actor name (one queue) may be served from several namespaces. @default false */
  shareActorsAcrossNamespaces: boolean
  /** ASYA_ACTOR_HAPPY_END / ASYA_ACTOR_ERROR_END: end actors whose queues always exist. */
  endActors: [string, string]
}

/**
 * Reads ASYA_CONTROLLER_* variables. Identity defaults to the pod name (downward API `POD_NAME`)
 * plus a random suffix, so a restarted pod never mistakes its predecessor's lease for its own.
 */
export function readControllerSettings(env: NodeJS.ProcessEnv, systemNamespace: string, reader?: EnvReader): ControllerSettings {
  const r = reader ?? new EnvReader(env)
  const s: ControllerSettings = {
    enabled: r.bool('ASYA_CONTROLLER_ENABLED', true),
    resyncMs: r.duration('ASYA_CONTROLLER_RESYNC', 300_000, { minMs: 1000 }),
    concurrency: r.int('ASYA_CONTROLLER_CONCURRENCY', 8, { min: 1, max: 256 }),
    leaderElection: r.bool('ASYA_LEADER_ELECTION', true),
    leaseName: r.string('ASYA_LEASE_NAME', 'asya-controller'),
    leaseNamespace: r.string('ASYA_LEASE_NAMESPACE', systemNamespace),
    leaseDurationMs: r.duration('ASYA_LEASE_DURATION', 15_000, { minMs: 1000 }),
    renewDeadlineMs: r.duration('ASYA_LEASE_RENEW_DEADLINE', 10_000, { minMs: 500 }),
    retryPeriodMs: r.duration('ASYA_LEASE_RETRY_PERIOD', 2_000, { minMs: 100 }),
    identity: `${r.string('POD_NAME', hostname())}-${randomBytes(3).toString('hex')}`,
    sqsMaxReceiveCount: r.int('ASYA_SQS_MAX_RECEIVE_COUNT', 5, { min: 1, max: 1000 }),
    shareActorsAcrossNamespaces: r.bool('ASYA_SHARED_ACTOR_NAMES', false),
    endActors: [r.string('ASYA_ACTOR_HAPPY_END', HAPPY_END), r.string('ASYA_ACTOR_ERROR_END', ERROR_END)],
  }
  for (const [i, name] of ['ASYA_ACTOR_HAPPY_END', 'ASYA_ACTOR_ERROR_END'].entries()) {
    if (!isValidActorName(s.endActors[i])) r.fail(name, `"${s.endActors[i] ?? ''}" is not a DNS-1123 label`)
  }
  if (s.renewDeadlineMs >= s.leaseDurationMs) r.fail('ASYA_LEASE_RENEW_DEADLINE', 'must be shorter than ASYA_LEASE_DURATION')
  if (!reader) r.finish()
  return s
}

/** Content of the project's runtime-py/asya_runtime.py (the `asya-runtime` ConfigMap). */
export function loadRuntimeScript(path?: string): string {
  const candidates = path ? [path] : runtimeScriptCandidates()
  for (const p of candidates) if (existsSync(p)) return readFileSync(p, 'utf8')
  throw new errors.ASYA_ERR_CONFIG_MISSING('runtime script', `looked in ${candidates.join(', ')}`)
}

/** Transport settings the controller needs (a projection of the system process config). */
export interface ControllerTransports {
  defaultTransport: ClusterTransportName
  watchNamespaces: readonly string[]
  rabbitmq?: {
    host: string
    port: number
    vhost: string
    exchange: string
    username: string
    password: string
    tls?: boolean
    /** Management API URL KEDA polls (protocol http), without credentials. */
    managementUrl: string
    /** Secret in each actor namespace with the broker user, for the TriggerAuthentication. */
    credentialSecret?: { name: string; usernameKey: string; passwordKey: string }
    /** ASYA_RABBITMQ_QUEUE_TYPE / ASYA_DELIVERY_LIMIT (passed on to sidecars when not the default). @default quorum, 5 */
    topology?: QueueTopology
  }
  nats?: {
    connection: NatsSettings
    /** KEDA nats-jetstream scaler: monitoring endpoint (host:port), account, https. */
    monitoringEndpoint: string
    account: string
    monitoringHttps: boolean
    /** Secret (in actor namespaces) with the NATS user for sidecars. */
    credentialSecret?: { name: string; usernameKey: string; passwordKey: string }
    /** Secret (in actor namespaces) with the monitoring endpoint for KEDA's TriggerAuthentication. */
    monitoringSecret?: { name: string; endpointKey: string; accountKey?: string }
  }
  sqs?: {
    region: string
    endpoint?: string
    /**
     * ASYA_AWS_ACCOUNT_ID, for the queue URL KEDA polls. Unset: taken from the URL SQS itself
     * returns for the actor's queue (CreateQueue/GetQueueUrl), never guessed. */
    accountId?: string
    auth: SqsScalerConfig['auth']
  }
}

/**
 * Transport settings from env (the controller's, and through the webhook every sidecar's). Names
 * follow the sidecar's (SPEC §5) so one Secret/ConfigMap feeds both. With `reader` (readSystemConfig)
 * problems are collected there and reported with every other one; alone it throws its own.
 */
export function readControllerTransports(env: NodeJS.ProcessEnv, reader?: EnvReader): ControllerTransports {
  const r = reader ?? new EnvReader(env)
  const defaultTransport = r.oneOf('ASYA_TRANSPORT', ['rabbitmq', 'sqs', 'nats'] as const, 'rabbitmq')
  const watchNamespaces = (r.string('ASYA_WATCH_NAMESPACES') ?? '').split(',').map((s) => s.trim()).filter((s) => s !== '')
  const out: ControllerTransports = { defaultTransport, watchNamespaces }
  const rmqHost = r.string('ASYA_RABBITMQ_HOST')
  const rmqUrl = r.string('ASYA_RABBITMQ_URL')
  if (rmqHost !== undefined || rmqUrl !== undefined || defaultTransport === 'rabbitmq') {
    let host = rmqHost ?? 'localhost'
    let port = r.int('ASYA_RABBITMQ_PORT', 5672, { min: 1, max: 65535 })
    let username = r.string('ASYA_RABBITMQ_USERNAME', 'guest')
    let password = r.string('ASYA_RABBITMQ_PASSWORD', 'guest')
    let vhost = r.string('ASYA_RABBITMQ_VHOST', '/')
    let tls = false
    if (rmqUrl !== undefined) {
      try {
        const u = new URL(rmqUrl)
        host = u.hostname
        tls = u.protocol === 'amqps:'
        port = u.port ? Number(u.port) : tls ? 5671 : 5672
        if (u.username) username = decodeURIComponent(u.username)
        if (u.password) password = decodeURIComponent(u.password)
        if (u.pathname.length > 1) vhost = decodeURIComponent(u.pathname.slice(1))
      } catch {
        r.fail('ASYA_RABBITMQ_URL', 'is not a valid amqp:// URL')
      }
    }
    const secret = r.string('ASYA_RABBITMQ_CREDENTIALS_SECRET')
    out.rabbitmq = {
      host,
      port,
      vhost,
      username,
      password,
      tls,
      exchange: r.string('ASYA_RABBITMQ_EXCHANGE', DEFAULT_EXCHANGE),
      managementUrl: r.string('ASYA_RABBITMQ_MANAGEMENT_URL', `http://${host}:15672`),
      topology: readQueueTopology(r),
      ...(secret
        ? {
            credentialSecret: {
              name: secret,
              usernameKey: r.string('ASYA_RABBITMQ_CREDENTIALS_USERNAME_KEY', 'username'),
              passwordKey: r.string('ASYA_RABBITMQ_CREDENTIALS_PASSWORD_KEY', 'password'),
            },
          }
        : {}),
    }
  }
  const region = r.string('ASYA_AWS_REGION')
  if (region !== undefined || defaultTransport === 'sqs') {
    const identity = r.oneOf('ASYA_SQS_IDENTITY', ['secret', 'pod', 'operator'] as const, 'operator')
    const secret = r.string('ASYA_SQS_CREDENTIALS_SECRET')
    if (identity === 'secret' && secret === undefined) r.fail('ASYA_SQS_CREDENTIALS_SECRET', 'is required when ASYA_SQS_IDENTITY=secret')
    const endpoint = r.string('ASYA_SQS_ENDPOINT')
    // Never a made-up default: 000000000000 gave KEDA a queue URL that does not exist on AWS.
    const account = r.string('ASYA_AWS_ACCOUNT_ID')
    if (account !== undefined && !/^\d{12}$/.test(account)) r.fail('ASYA_AWS_ACCOUNT_ID', `"${account}" is not a 12-digit AWS account id (leave it unset to take it from the queue URLs SQS returns)`)
    out.sqs = {
      region: region ?? (r.fail('ASYA_AWS_REGION', 'is required for the sqs transport'), ''),
      ...(endpoint ? { endpoint } : {}),
      ...(account !== undefined ? { accountId: account } : {}),
      auth:
        identity === 'secret'
          ? {
              kind: 'secret',
              secretName: secret ?? '',
              accessKeyIdKey: r.string('ASYA_SQS_CREDENTIALS_ACCESS_KEY_ID_KEY', 'AWS_ACCESS_KEY_ID'),
              secretAccessKeyKey: r.string('ASYA_SQS_CREDENTIALS_SECRET_ACCESS_KEY_KEY', 'AWS_SECRET_ACCESS_KEY'),
            }
          : { kind: identity },
    }
  }
  if (r.raw('ASYA_NATS_URL') !== undefined || defaultTransport === 'nats') {
    const connection = readNatsSettings(r)
    const first = connection.servers[0] ?? 'nats://localhost:4222'
    let host = 'localhost'
    try {
      host = new URL(first).hostname
    } catch {
      /* reported by readNatsSettings */
    }
    const secret = r.string('ASYA_NATS_CREDENTIALS_SECRET')
    const monitoringSecret = r.string('ASYA_NATS_MONITORING_SECRET') ?? secret
    const accountKey = r.string('ASYA_NATS_MONITORING_SECRET_ACCOUNT_KEY')
    const endpoint = r.string('ASYA_NATS_MONITORING_ENDPOINT', `${host}:8222`)
    if (/^[a-z]+:\/\//i.test(endpoint)) r.fail('ASYA_NATS_MONITORING_ENDPOINT', 'is host:port without a scheme (KEDA adds it; https via ASYA_NATS_MONITORING_HTTPS)')
    out.nats = {
      connection,
      monitoringEndpoint: endpoint,
      account: r.string('ASYA_NATS_ACCOUNT', '$G'),
      monitoringHttps: r.bool('ASYA_NATS_MONITORING_HTTPS', false),
      ...(secret
        ? {
            credentialSecret: {
              name: secret,
              usernameKey: r.string('ASYA_NATS_CREDENTIALS_USERNAME_KEY', 'username'),
              passwordKey: r.string('ASYA_NATS_CREDENTIALS_PASSWORD_KEY', 'password'),
            },
          }
        : {}),
      ...(monitoringSecret
        ? {
            monitoringSecret: {
              name: monitoringSecret,
              endpointKey: r.string('ASYA_NATS_MONITORING_SECRET_ENDPOINT_KEY', 'natsServerMonitoringEndpoint'),
              ...(accountKey ? { accountKey } : {}),
            },
          }
        : {}),
    }
  }
  if (!reader) r.finish()
  return out
}
