/**
 * Transport configuration from env (the sidecar's names, SPEC §5) and the one factory that turns
 * it into a Transport. Used by the sidecar, the demo and the prober.
 */
import { existsSync } from 'node:fs'
import { EnvReader } from '../config/env.js'
import type { Logger } from '../logger.js'
import { MemoryTransport, type MemoryBroker } from './memory-transport.js'
import { amqpUrl, RabbitMqTransport } from './rabbitmq-transport.js'
import { DEFAULT_QUEUE_TOPOLOGY, type QueueTopology } from './rabbitmq-topology.js'
import type { Transport } from './transport.js'
import { DEFAULT_EXCHANGE, TRANSPORT_NAMES, type TransportName } from '../names.js'

export interface RabbitMqSettings {
  /** amqp(s):// URL with escaped credentials. */
  url: string
  exchange: string
  prefetch: number
  /** ASYA_RABBITMQ_QUEUE_TYPE and ASYA_DELIVERY_LIMIT: how the queues this process declares look. */
  topology: QueueTopology
}

export interface SqsSettings {
  region: string
  endpoint?: string
  /** Visibility timeout in seconds; undefined = derived from the runtime timeout by the caller. */
  visibilityTimeoutSeconds?: number
  waitTimeSeconds: number
}

export interface NatsSettings {
  /** Server URLs (ASYA_NATS_URL, comma-separated). */
  servers: string[]
  user?: string
  password?: string
  token?: string
  credsFile?: string
  nkeySeedFile?: string
  tls?: { caFile?: string; certFile?: string; keyFile?: string }
  /** AckWait in ms; undefined = derived from the runtime timeout by the caller. */
  ackWaitMs?: number
  maxAckPending: number
  replicas: number
}

export interface TransportSettings {
  name: TransportName
  rabbitmq?: RabbitMqSettings
  sqs?: SqsSettings
  nats?: NatsSettings
}

/**
 * Reads ASYA_TRANSPORT and the settings of the chosen transport into `r` (problems are reported
 * by the caller's `r.finish()`, all at once with the caller's other variables).
 */
/**
 * ASYA_RABBITMQ_QUEUE_TYPE (`quorum` | `classic`, default quorum) and ASYA_DELIVERY_LIMIT (the
 * quorum queues' x-delivery-limit, default 5). The sidecar and the system process read the same
 * variables (the webhook passes non-default values on), so both declare identical arguments.
 */
export function readQueueTopology(r: EnvReader): QueueTopology {
  return {
    queueType: r.oneOf('ASYA_RABBITMQ_QUEUE_TYPE', ['quorum', 'classic'] as const, DEFAULT_QUEUE_TOPOLOGY.queueType),
    deliveryLimit: r.int('ASYA_DELIVERY_LIMIT', DEFAULT_QUEUE_TOPOLOGY.deliveryLimit, { min: 1, max: 1000 }),
  }
}

export function readTransportSettings(r: EnvReader): TransportSettings {
  const name = r.oneOf('ASYA_TRANSPORT', TRANSPORT_NAMES, 'rabbitmq')
  const out: TransportSettings = { name }
  if (name === 'rabbitmq') {
    const url = r.string('ASYA_RABBITMQ_URL')
    if (url !== undefined && !/^amqps?:\/\//.test(url)) r.fail('ASYA_RABBITMQ_URL', 'must start with amqp:// or amqps://')
    out.rabbitmq = {
      url:
        url ??
        amqpUrl({
          host: r.string('ASYA_RABBITMQ_HOST', 'localhost'),
          port: r.int('ASYA_RABBITMQ_PORT', 5672, { min: 1, max: 65535 }),
          username: r.string('ASYA_RABBITMQ_USERNAME', 'guest'),
          password: r.raw('ASYA_RABBITMQ_PASSWORD') ?? 'guest',
          vhost: r.string('ASYA_RABBITMQ_VHOST', '/'),
          tls: r.bool('ASYA_RABBITMQ_TLS', false),
        }),
      exchange: r.string('ASYA_RABBITMQ_EXCHANGE', DEFAULT_EXCHANGE),
      // One waiting behind the one in the runtime (SPEC §3): overlap without hoarding.
      prefetch: r.int('ASYA_RABBITMQ_PREFETCH', 2, { min: 1, max: 10_000 }),
      topology: readQueueTopology(r),
    }
  } else if (name === 'sqs') {
    const region = r.string('ASYA_AWS_REGION') ?? r.string('AWS_REGION')
    if (region === undefined) r.fail('ASYA_AWS_REGION', 'is required when ASYA_TRANSPORT=sqs')
    const endpoint = r.string('ASYA_SQS_ENDPOINT')
    const vis = r.raw('ASYA_SQS_VISIBILITY_TIMEOUT')
    out.sqs = {
      region: region ?? '',
      ...(endpoint !== undefined ? { endpoint } : {}),
      ...(vis !== undefined ? { visibilityTimeoutSeconds: r.int('ASYA_SQS_VISIBILITY_TIMEOUT', 0, { min: 1, max: 43_200 }) } : {}),
      waitTimeSeconds: r.int('ASYA_SQS_WAIT_TIME_SECONDS', 20, { min: 0, max: 20 }),
    }
  } else if (name === 'nats') {
    out.nats = readNatsSettings(r)
  }
  return out
}

/** ASYA_NATS_* connection settings (the sidecar's, also read by the controller). */
export function readNatsSettings(r: EnvReader): NatsSettings {
  const servers = r
    .string('ASYA_NATS_URL', 'nats://localhost:4222')
    .split(',')
    .map((u) => u.trim())
    .filter((u) => u !== '')
  for (const u of servers) if (!/^(nats|tls|wss?):\/\/[^/]+/.test(u)) r.fail('ASYA_NATS_URL', `"${u}" is not a nats://, tls:// or ws(s):// server URL`)
  if (servers.length === 0) r.fail('ASYA_NATS_URL', 'names no server')
  const user = r.string('ASYA_NATS_USERNAME')
  const password = r.raw('ASYA_NATS_PASSWORD')
  if ((user === undefined) !== (password === undefined)) r.fail(user === undefined ? 'ASYA_NATS_USERNAME' : 'ASYA_NATS_PASSWORD', 'ASYA_NATS_USERNAME and ASYA_NATS_PASSWORD go together')
  const token = r.raw('ASYA_NATS_TOKEN')
  const credsFile = r.string('ASYA_NATS_CREDS_FILE')
  const nkeySeedFile = r.string('ASYA_NATS_NKEY_SEED_FILE')
  const files: Array<[string, string | undefined]> = [
    ['ASYA_NATS_CREDS_FILE', credsFile],
    ['ASYA_NATS_NKEY_SEED_FILE', nkeySeedFile],
  ]
  const caFile = r.string('ASYA_NATS_TLS_CA_FILE')
  const certFile = r.string('ASYA_NATS_TLS_CERT_FILE')
  const keyFile = r.string('ASYA_NATS_TLS_KEY_FILE')
  files.push(['ASYA_NATS_TLS_CA_FILE', caFile], ['ASYA_NATS_TLS_CERT_FILE', certFile], ['ASYA_NATS_TLS_KEY_FILE', keyFile])
  for (const [name, f] of files) if (f !== undefined && !existsSync(f)) r.fail(name, `file ${f} does not exist`)
  if ((certFile === undefined) !== (keyFile === undefined)) r.fail(certFile === undefined ? 'ASYA_NATS_TLS_CERT_FILE' : 'ASYA_NATS_TLS_KEY_FILE', 'a client certificate needs both ASYA_NATS_TLS_CERT_FILE and ASYA_NATS_TLS_KEY_FILE')
  const ackWait = r.raw('ASYA_NATS_ACK_WAIT')
  const tls = { ...(caFile ? { caFile } : {}), ...(certFile ? { certFile } : {}), ...(keyFile ? { keyFile } : {}) }
  return {
    servers,
    ...(user !== undefined ? { user } : {}),
    ...(password !== undefined ? { password } : {}),
    ...(token !== undefined ? { token } : {}),
    ...(credsFile !== undefined ? { credsFile } : {}),
    ...(nkeySeedFile !== undefined ? { nkeySeedFile } : {}),
    ...(Object.keys(tls).length > 0 ? { tls } : {}),
    ...(ackWait !== undefined ? { ackWaitMs: r.duration('ASYA_NATS_ACK_WAIT', 30_000, { minMs: 1000, maxMs: 12 * 3600_000 }) } : {}),
    maxAckPending: r.int('ASYA_NATS_MAX_ACK_PENDING', 1000, { min: 1, max: 1_000_000 }),
    replicas: r.int('ASYA_NATS_REPLICAS', 1, { min: 1, max: 5 }),
  }
}

export interface CreateTransportOptions {
  logger?: Logger
  /** Memory transport only: the broker to share. */
  memoryBroker?: MemoryBroker
  /** Name shown by the broker (RabbitMQ connection_name). */
  connectionName?: string
  /** RabbitMQ only: management API for in-flight counts in inspectQueue (the CLI sets it). */
  rabbitmqManagementUrl?: string
}

export async function createTransport(settings: TransportSettings, options: CreateTransportOptions = {}): Promise<Transport> {
  switch (settings.name) {
    case 'memory':
      return new MemoryTransport(options.memoryBroker ? { broker: options.memoryBroker } : {})
    case 'rabbitmq': {
      const s = settings.rabbitmq
      if (!s) throw new Error('rabbitmq settings missing')
      return new RabbitMqTransport({
        url: s.url,
        exchange: s.exchange,
        topology: s.topology,
        ...(options.logger ? { logger: options.logger } : {}),
        ...(options.connectionName ? { connectionName: options.connectionName } : {}),
        ...(options.rabbitmqManagementUrl ? { managementUrl: options.rabbitmqManagementUrl } : {}),
      })
    }
    case 'sqs': {
      const s = settings.sqs
      if (!s) throw new Error('sqs settings missing')
      // Loaded lazily: the AWS SDK costs start-up time and memory that RabbitMQ sidecars never need.
      const specifier = './sqs-transport.js'
      const mod = (await import(specifier)) as { SqsTransport: new (o: Record<string, unknown>) => Transport }
      return new mod.SqsTransport({ ...s, ...(options.logger ? { logger: options.logger } : {}) })
    }
    case 'nats': {
      const s = settings.nats
      if (!s) throw new Error('nats settings missing')
      // Loaded lazily like SQS: RabbitMQ sidecars never pay for the NATS client.
      const specifier = './nats-transport.js'
      const mod = (await import(specifier)) as typeof import('./nats-transport.js')
      return new mod.NatsTransport({
        ...s,
        ...(options.logger ? { logger: options.logger } : {}),
        ...(options.connectionName ? { connectionName: options.connectionName } : {}),
      })
    }
  }
}

/** Reads the transport env and creates it; throws ASYA_ERR_CONFIG_INVALID naming bad variables. */
export async function createTransportFromEnv(env: NodeJS.ProcessEnv = process.env, options: CreateTransportOptions = {}): Promise<Transport> {
  const r = new EnvReader(env)
  const settings = readTransportSettings(r)
  r.finish()
  return createTransport(settings, options)
}
