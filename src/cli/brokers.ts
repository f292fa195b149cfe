/**
 * Broker access for the CLI: the same env as the system process and the sidecar (ASYA_TRANSPORT,
 * ASYA_RABBITMQ_*, ASYA_SQS_ENDPOINT, ASYA_AWS_REGION, ...), overridden by flags. One connected
 * Transport per transport name, created on first use, so `asya actors` can show RabbitMQ and SQS
 * actors side by side. A new transport (NATS) plugs in through readTransportSettings and
 * createTransport: nothing here names a broker except for the hints in error messages.
 */
import { Writable } from 'node:stream'
import { Command, Option } from 'commander'
import { EnvReader } from '../config/env.js'
import { AsyaError, errorMessage, isAsyaError } from '../errors.js'
import { createTransport, readTransportSettings, type TransportSettings } from '../transport/create-transport.js'
import { redactUrl } from '../transport/rabbitmq-transport.js'
import type { Transport } from '../transport/transport.js'
import { createLogger, type Logger } from '../logger.js'
import { CliError, usageError } from './io.js'

export interface BrokerFlags {
  transport?: string
  rabbitmqUrl?: string
  rabbitmqManagementUrl?: string
  sqsEndpoint?: string
  region?: string
  brokerTimeout?: string
}

/** Adds the broker flags to a command. */
export function brokerOptions(cmd: Command): Command {
  // Env fallbacks are applied by Brokers from the CliIo env (commander's .env() reads process.env).
  return cmd
    .option('--transport <name>', 'transport of actors that do not say (asya.sh/transport) [env ASYA_TRANSPORT, default rabbitmq]')
    .option('--rabbitmq-url <url>', 'RabbitMQ AMQP URL [env ASYA_RABBITMQ_URL, else ASYA_RABBITMQ_HOST/PORT/USERNAME/PASSWORD/VHOST]')
    .option('--rabbitmq-management-url <url>', 'RabbitMQ management API, for in-flight counts [env ASYA_RABBITMQ_MANAGEMENT_URL, default http://<host>:15672]')
    .option('--sqs-endpoint <url>', 'SQS endpoint, for emulators [env ASYA_SQS_ENDPOINT]')
    .option('--region <region>', 'AWS region for SQS [env ASYA_AWS_REGION]')
    .addOption(new Option('--broker-timeout <seconds>', 'give up connecting to a broker after this long').default('10'))
}

const HINTS: Record<string, string> = {
  rabbitmq: 'start RabbitMQ or point asya at it with --rabbitmq-url / ASYA_RABBITMQ_URL',
  sqs: 'check --sqs-endpoint / ASYA_SQS_ENDPOINT, --region / ASYA_AWS_REGION and the AWS credentials',
  nats: 'start NATS or point asya at it with ASYA_NATS_URL',
}

export class Brokers {
  private readonly open = new Map<string, Promise<Transport>>()
  private readonly env: NodeJS.ProcessEnv
  readonly defaultTransport: string
  private readonly timeoutMs: number

  constructor(flags: BrokerFlags, env: NodeJS.ProcessEnv) {
    const overlay: NodeJS.ProcessEnv = { ...env }
    if (flags.rabbitmqUrl !== undefined) overlay.ASYA_RABBITMQ_URL = flags.rabbitmqUrl
    if (flags.sqsEndpoint !== undefined) overlay.ASYA_SQS_ENDPOINT = flags.sqsEndpoint
    if (flags.region !== undefined) overlay.ASYA_AWS_REGION = flags.region
    if (flags.rabbitmqManagementUrl !== undefined) overlay.ASYA_RABBITMQ_MANAGEMENT_URL = flags.rabbitmqManagementUrl
    this.env = overlay
    this.defaultTransport = flags.transport ?? new EnvReader(env).string('ASYA_TRANSPORT', 'rabbitmq')
    const seconds = Number(flags.brokerTimeout ?? '10')
    if (!(seconds > 0)) throw usageError(`--broker-timeout must be a positive number of seconds, got ${JSON.stringify(flags.brokerTimeout)}`)
    this.timeoutMs = seconds * 1000
  }

  /** Settings for one transport, validated like the sidecar's (bad values name the variable). */
  settings(name: string): TransportSettings {
    const r = new EnvReader({ ...this.env, ASYA_TRANSPORT: name })
    const settings = readTransportSettings(r)
    try {
      r.finish()
    } catch (err) {
      throw usageError(errorMessage(err))
    }
    return settings
  }

  /** Where a transport connects, for messages (credentials redacted). */
  where(name: string): string {
    const s = this.settings(name)
    if (s.rabbitmq) return `RabbitMQ at ${redactUrl(s.rabbitmq.url)}`
    if (s.sqs) return `SQS ${s.sqs.endpoint ?? `in ${s.sqs.region}`}`
    if (s.nats) return `NATS at ${s.nats.servers.map(redactUrl).join(',')}`
    return `the ${name} transport`
  }

  /** A connected transport; a CliError naming the fix when it does not connect in time. */
  get(name: string): Promise<Transport> {
    let p = this.open.get(name)
    if (!p) {
      p = this.connect(name)
      this.open.set(name, p)
    }
    return p
  }

  private async connect(name: string): Promise<Transport> {
    const settings = this.settings(name)
    if (settings.name === 'memory') throw usageError('the memory transport lives inside one process: `asya dev` uses it; pass --transport rabbitmq or sqs')
    const managementUrl = settings.rabbitmq ? this.managementUrl(settings.rabbitmq.url) : undefined
    let lastError: string | undefined
    const transport = await createTransport(settings, {
      connectionName: 'asya-cli',
      logger: captureLogger((msg) => (lastError = msg)),
      ...(managementUrl !== undefined ? { rabbitmqManagementUrl: managementUrl } : {}),
    })
    let timer: NodeJS.Timeout | undefined
    const timedOut = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), this.timeoutMs)))
    const r = await Promise.race([transport.connect().then(() => 'ok' as const), timedOut]).finally(() => clearTimeout(timer))
    if (r === 'timeout') {
      await transport.close().catch(() => undefined)
      throw new CliError(`cannot connect to ${this.where(name)} within ${this.timeoutMs / 1000} s${lastError ? ` (${lastError})` : ''}: ${HINTS[name] ?? 'check the broker settings'}`)
    }
    return transport
  }

  private managementUrl(amqpUrl: string): string {
    const explicit = this.env.ASYA_RABBITMQ_MANAGEMENT_URL
    if (explicit) return explicit
    return `http://${new URL(amqpUrl).hostname}:15672`
  }

  /** Turns a broker failure into a CliError naming the fix. */
  fail(name: string, err: unknown, what: string): CliError {
    if (err instanceof CliError) return err
    const code = (e: unknown, c: Parameters<typeof isAsyaError>[1]): boolean => isAsyaError(e, c) || (e instanceof Error && isAsyaError(e.cause, c))
    if (code(err, 'ASYA_ERR_TRANSPORT_QUEUE_MISSING')) return new CliError(`${what}: ${(err as AsyaError).message} on ${this.where(name)}: the controller creates it when the actor is deployed (check \`asya actors\`), or the actor runs on another transport (--transport)`)
    if (code(err, 'ASYA_ERR_TRANSPORT_UNROUTABLE')) return new CliError(`${what}: ${errorMessage(err)}: the actor's queue is missing or unbound; the controller re-creates it on its next resync (check \`asya actors describe\`)`)
    return new CliError(`${what}: ${this.where(name)}: ${errorMessage(err)}: ${HINTS[name] ?? 'check the broker settings'}`)
  }

  async close(): Promise<void> {
    for (const p of this.open.values()) {
      const t = await p.catch(() => undefined)
      await t?.close().catch(() => undefined)
    }
    this.open.clear()
  }
}

/** A warn-level logger that keeps the last message (why a connection keeps failing). */
function captureLogger(keep: (msg: string) => void): Logger {
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString().split('\n')) {
        if (line.trim() === '') continue
        try {
          const rec = JSON.parse(line) as { msg?: unknown; err?: unknown }
          keep([rec.msg, rec.err].filter((x) => typeof x === 'string' && x !== '').join(': '))
        } catch {
          // not a log line
        }
      }
      done()
    },
  })
  return createLogger('asya-cli', { level: 'warn', destination: sink })
}
