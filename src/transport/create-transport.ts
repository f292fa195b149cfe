/**
 * Transport configuration from env (the sidecar's names, SPEC §5) and the one factory that turns
 * it into a Transport. Used by the sidecar, the demo and the prober.
 */
import { EnvReader } from '../config/env.js'
import type { Logger } from '../logger.js'
import { MemoryTransport, type MemoryBroker } from './memory-transport.js'
import { amqpUrl, RabbitMqTransport } from './rabbitmq-transport.js'
import type { Transport, TransportName } from './transport.js'

export interface RabbitMqSettings {
  /** amqp(s):// URL with escaped credentials. */
  url: string
  exchange: string
  prefetch: number
}

export interface SqsSettings {
  region: string
  endpoint?: string
  /** Visibility timeout in seconds; undefined = derived from the runtime timeout by the caller. */
  visibilityTimeoutSeconds?: number
  waitTimeSeconds: number
}

export interface TransportSettings {
  name: TransportName
  rabbitmq?: RabbitMqSettings
  sqs?: SqsSettings
}

/**
 * Reads ASYA_TRANSPORT and the settings of the chosen transport into `r` (problems are reported
 * by the caller's `r.finish()`, all at once with the caller's other variables).
 */
export function readTransportSettings(r: EnvReader): TransportSettings {
  const name = r.oneOf('ASYA_TRANSPORT', ['rabbitmq', 'sqs', 'memory'] as const, 'rabbitmq')
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
      exchange: r.string('ASYA_RABBITMQ_EXCHANGE', 'asya'),
      // One waiting behind the one in the runtime (SPEC §3): overlap without hoarding.
      prefetch: r.int('ASYA_RABBITMQ_PREFETCH', 2, { min: 1, max: 10_000 }),
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
  }
  return out
}

export interface CreateTransportOptions {
  logger?: Logger
  /** Memory transport only: the broker to share. */
  memoryBroker?: MemoryBroker
  /** Name shown by the broker (RabbitMQ connection_name). */
  connectionName?: string
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
        ...(options.logger ? { logger: options.logger } : {}),
        ...(options.connectionName ? { connectionName: options.connectionName } : {}),
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
  }
}

/** Reads the transport env and creates it; throws ASYA_ERR_CONFIG_INVALID naming bad variables. */
export async function createTransportFromEnv(env: NodeJS.ProcessEnv = process.env, options: CreateTransportOptions = {}): Promise<Transport> {
  const r = new EnvReader(env)
  const settings = readTransportSettings(r)
  r.finish()
  return createTransport(settings, options)
}
