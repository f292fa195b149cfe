/**
 * Runs real actors for tests: a real asya_runtime.py process per actor (RuntimeProcess plays the
 * kubelet: restarts it when it dies or its ready file goes) beside an in-process Sidecar, on a
 * real transport. Names are random per test so concurrent test files never share queues.
 */
import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { createLogger, type Logger } from '../../src/logger.js'
import { RuntimeProcess } from '../../src/runtime/runtime-process.js'
import type { Delivery, Transport } from '../../src/transport/transport.js'
import { readSidecarConfig } from '../../sidecar/config.js'
import type { SidecarEvent } from '../../sidecar/message-processor.js'
import { Sidecar } from '../../sidecar/sidecar.js'
import { RABBITMQ_URL, rabbitTransport } from './rabbitmq.js'
import { Inbox } from '../transport/conformance.js'

export const SIDECAR_HANDLERS_DIR = join(dirname(fileURLToPath(import.meta.url)), '..', 'sidecar', 'handlers')

export function rand(): string {
  return randomBytes(4).toString('hex')
}

/** Transport-related sidecar env for a test "world" (one exchange, own end actors). */
export interface World {
  transport: 'memory' | 'rabbitmq' | 'sqs' | 'nats'
  exchange: string
  happyEnd: string
  errorEnd: string
  env: Record<string, string>
}

export function rabbitWorld(): World {
  const id = rand()
  const w = { transport: 'rabbitmq' as const, exchange: `asya-test-${id}`, happyEnd: `happy-${id}`, errorEnd: `error-${id}` }
  return {
    ...w,
    env: {
      ASYA_TRANSPORT: 'rabbitmq',
      ASYA_RABBITMQ_URL: RABBITMQ_URL,
      ASYA_RABBITMQ_EXCHANGE: w.exchange,
      ASYA_ACTOR_HAPPY_END: w.happyEnd,
      ASYA_ACTOR_ERROR_END: w.errorEnd,
    },
  }
}

export function sqsWorld(endpoint: string, region = 'us-east-1'): World {
  const id = rand()
  return {
    transport: 'sqs',
    exchange: '',
    happyEnd: `happy-${id}`,
    errorEnd: `error-${id}`,
    env: {
      ASYA_TRANSPORT: 'sqs',
      ASYA_AWS_REGION: region,
      ASYA_SQS_ENDPOINT: endpoint,
      ASYA_SQS_WAIT_TIME_SECONDS: '1',
      ASYA_ACTOR_HAPPY_END: `happy-${id}`,
      ASYA_ACTOR_ERROR_END: `error-${id}`,
    },
  }
}

/** A NATS test world on the server at `url` (a private `nats-server -js` of the test file). */
export function natsWorld(url: string): World {
  const id = rand()
  return {
    transport: 'nats',
    exchange: '',
    happyEnd: `happy-${id}`,
    errorEnd: `error-${id}`,
    env: {
      ASYA_TRANSPORT: 'nats',
      ASYA_NATS_URL: url,
      ASYA_ACTOR_HAPPY_END: `happy-${id}`,
      ASYA_ACTOR_ERROR_END: `error-${id}`,
    },
  }
}

export interface ActorOptions {
  /** Actor name (make it unique per test). */
  name: string
  /** module.function or module.Class.method in test/sidecar/handlers. */
  handler: string
  mode?: 'payload' | 'envelope'
  world: World
  transport: Transport
  /** Extra sidecar env (ASYA_MAX_RETRIES, ASYA_RUNTIME_TIMEOUT, ...). */
  env?: Record<string, string>
  onEvent?: (e: SidecarEvent) => void
  logger?: Logger
  pythonPath?: string[]
}

export interface TestActor {
  name: string
  sidecar: Sidecar
  runtime: RuntimeProcess
  socketDir: string
  /** Drain the sidecar, stop the runtime, remove the socket dir. */
  stop(): Promise<void>
}

export async function startActor(o: ActorOptions): Promise<TestActor> {
  const socketDir = mkdtempSync(join(tmpdir(), `asya-t-${o.name.slice(0, 20)}-`))
  const runtime = new RuntimeProcess({
    handler: `sidecar_handlers.${o.handler}`,
    mode: o.mode ?? 'payload',
    socketDir,
    pythonPath: [SIDECAR_HANDLERS_DIR, ...(o.pythonPath ?? [])],
    // As the webhook does: the concurrency and batch settings reach both containers; the
    // runtime's own settings (ASYA_ENABLE_VALIDATION) reach the runtime.
    env: { TEST_ACTOR_NAME: o.name, ASYA_LOG_LEVEL: 'WARNING', ...runtimeEnv(o.env) },
    livenessIntervalMs: 100,
  })
  await runtime.start()
  const config = readSidecarConfig({
    ASYA_RUNTIME_TIMEOUT: '20s',
    ASYA_RUNTIME_READY_TIMEOUT: '30s',
    ASYA_SHUTDOWN_TIMEOUT: '20s',
    ...o.world.env,
    ...(o.env ?? {}),
    ASYA_ACTOR_NAME: o.name,
    ASYA_SOCKET_DIR: socketDir,
  })
  const logger = o.logger ?? createLogger('asya-sidecar', { level: process.env.ASYA_TEST_LOG_LEVEL ?? 'silent', bindings: { actor: o.name } })
  const sidecar = new Sidecar({ config, transport: o.transport, logger, serveHttp: false, ...(o.onEvent ? { onEvent: o.onEvent } : {}) })
  await sidecar.start()
  return {
    name: o.name,
    sidecar,
    runtime,
    socketDir,
    stop: async () => {
      await sidecar.stop()
      await runtime.stop()
      rmSync(socketDir, { recursive: true, force: true })
    },
  }
}

function runtimeEnv(env: Record<string, string> | undefined): Record<string, string> {
  const out: Record<string, string> = {}
  for (const k of ['ASYA_CONCURRENCY', 'ASYA_BATCH_SIZE', 'ASYA_BATCH_WAIT', 'ASYA_ENABLE_VALIDATION']) if (env?.[k] !== undefined) out[k] = env[k] as string
  return out
}

/** Parsed envelope of a delivery. */
export function json(d: Delivery): Record<string, any> {
  return JSON.parse(d.body.toString('utf8')) as Record<string, any>
}

export function envelope(id: string, actors: string[], payload: unknown, extra: Record<string, unknown> = {}): Buffer {
  return Buffer.from(JSON.stringify({ id, route: { actors, current: 0 }, payload, ...extra }))
}

/** A RabbitMQ test world with a client consuming its happy-end and error-end, torn down for you. */
export interface RabbitSuite {
  world: World
  client: Transport
  happy: Inbox
  errors: Inbox
  actors: TestActor[]
  /** A new connected transport on the suite's exchange (closed at teardown). */
  transport(connectionName?: string): Promise<Transport>
  /** Starts an actor on its own transport (stopped, queues deleted at teardown). */
  actor(o: Omit<ActorOptions, 'world' | 'transport'> & { connectionName?: string }): Promise<TestActor>
}

export async function rabbitSuite(tap: { teardown(fn: () => unknown): void }, prefetch = 100): Promise<RabbitSuite> {
  const world = rabbitWorld()
  const transports: Transport[] = []
  const actors: TestActor[] = []
  const transport = async (connectionName?: string): Promise<Transport> => {
    const tr = rabbitTransport({ exchange: world.exchange, ...(connectionName ? { connectionName } : {}) })
    await tr.connect()
    transports.push(tr)
    return tr
  }
  const client = await transport()
  const happy = new Inbox()
  const errors = new Inbox()
  await client.ensureQueue(world.happyEnd)
  await client.ensureQueue(world.errorEnd)
  await client.consume(world.happyEnd, happy.push, { prefetch })
  await client.consume(world.errorEnd, errors.push, { prefetch })
  tap.teardown(async () => {
    for (const a of actors) await a.stop().catch(() => undefined)
    for (const q of [world.happyEnd, world.errorEnd, ...actors.map((a) => a.name)]) {
      await client.deleteQueue(q).catch(() => undefined)
      await client.deleteQueue(`${q}-dlq`).catch(() => undefined)
    }
    for (const tr of transports) await tr.close().catch(() => undefined)
  })
  return {
    world,
    client,
    happy,
    errors,
    actors,
    transport,
    actor: async ({ connectionName, ...o }) => {
      const a = await startActor({ ...o, world, transport: await transport(connectionName) })
      actors.push(a)
      return a
    },
  }
}

/** Connections and actors of one RabbitMQ test, torn down together (actors, then queues, then connections). */
export interface RabbitRig {
  /** A new connected transport on the world's exchange. */
  transport(): Promise<Transport>
  /** Starts an actor on a transport of its own; stopped at teardown. */
  start(o: Omit<ActorOptions, 'world' | 'transport'>): Promise<TestActor>
  /** The first transport made (for publishing and inspecting queues). */
  first(): Transport | undefined
}

/** `queues`: actor names whose queues and DLQs the teardown deletes (the world's end queues are added). */
export function rabbitRig(tap: { teardown(fn: () => unknown): void }, world: World, queues: string[]): RabbitRig {
  const transports: Transport[] = []
  const actors: TestActor[] = []
  const transport = async (): Promise<Transport> => {
    const tr = rabbitTransport({ exchange: world.exchange })
    await tr.connect()
    transports.push(tr)
    return tr
  }
  tap.teardown(async () => {
    for (const a of actors) await a.stop().catch(() => undefined)
    const c = transports[0]
    for (const q of [...queues, world.happyEnd, world.errorEnd]) {
      await c?.deleteQueue(q).catch(() => undefined)
      await c?.deleteQueue(`${q}-dlq`).catch(() => undefined)
    }
    for (const tr of transports) await tr.close().catch(() => undefined)
  })
  return {
    transport,
    start: async (o) => {
      const a = await startActor({ ...o, world, transport: await transport() })
      actors.push(a)
      return a
    },
    first: () => transports[0],
  }
}
