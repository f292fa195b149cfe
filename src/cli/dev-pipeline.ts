/**
 * A whole pipeline in one process, for a data scientist's loop before any cluster exists (`asya
 * dev`) and for `npm run demo`: each actor is a real asya_runtime.py process running a handler from
 * one Python file, beside an in-process sidecar; the sidecars talk over the memory transport (or the
 * transport the env names). Envelopes sent go to the first actor of their route; `finals` is every
 * envelope that reached happy-end or error-end (or a dead-letter queue), in the order they arrived.
 *
 * The end actors are either collected by the pipeline itself (the default) or, with a gateway URL,
 * real runtime-less end-actor sidecars (ASYA_IS_END_ACTOR=true, ASYA_RUNTIME_ENABLED=false) that
 * post the final status to that gateway, beside every actor's progress reports. A gateway shares the
 * pipeline's broker through `transport()`.
 *
 * Completion is counted, not guessed: every envelope sent and every message a sidecar sends is one
 * live message; an actor finishing one (acked), a dead letter and a final that reached an end actor
 * each end one. When none is live, the pipeline is idle (retries keep their message live while they
 * wait). Envelopes published by someone else (a gateway) are not counted: `idle()` is for `send()`.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

import { EnvReader } from '../config/env.js'
import { createLogger, type Logger } from '../logger.js'
import { dlqActor } from '../names.js'
import { RuntimeProcess } from '../runtime/runtime-process.js'
import { createTransport, readTransportSettings } from '../transport/create-transport.js'
import { MemoryBroker } from '../transport/memory-transport.js'
import type { Delivery, DeliveryHandler, Transport } from '../transport/transport.js'
import { readSidecarConfig } from '../../sidecar/config.js'
import type { SidecarEvent } from '../../sidecar/message-processor.js'
import { Sidecar } from '../../sidecar/sidecar.js'

export interface DevActor {
  name: string
  /** ASYA_HANDLER: module.function or module.Class.method. */
  handler: string
  /** @default 'payload' */
  mode?: 'payload' | 'envelope'
}

export interface DevFinal {
  /** `happy-end`, `error-end`, or `dlq` (dead-lettered by an actor). */
  end: 'happy-end' | 'error-end' | 'dlq'
  envelope: unknown
}

export interface DevEnvelope {
  id: string
  route: { actors: string[]; current: number }
  payload: unknown
  headers?: Record<string, unknown>
}

export interface DevPipelineOptions {
  actors: DevActor[]
  /** Directory holding the handler module (cwd and PYTHONPATH of every runtime). */
  moduleDir: string
  /** Hops and life-cycle events (the sidecars' own, end actors' included). */
  onEvent?: (e: SidecarEvent) => void
  /** Runtime/sidecar logs of this level and above. @default 'error' */
  logLevel?: string
  /** Where the sidecars log. @default a logger on stderr at logLevel */
  logger?: Logger
  /** Names the logger, connections and temporary directories. @default 'asya-dev' */
  name?: string
  /** ASYA_RUNTIME_TIMEOUT for every actor. @default '30s' */
  runtimeTimeout?: string
  /** Extra env for the sidecars (ASYA_MAX_RETRIES, ASYA_TRANSPORT=rabbitmq, ...). @default memory transport */
  env?: NodeJS.ProcessEnv
}

export interface DevStartOptions {
  /**
   * Every sidecar reports progress to this gateway (ASYA_GATEWAY_URL), and happy-end / error-end
   * run as runtime-less end-actor sidecars that post the final status to it. Without it the
   * pipeline collects the end queues itself. @default none
   */
  gatewayUrl?: string
}

/** The delivery as given, with `onAck` called once the consumer acked it. */
function watchAck(d: Delivery, onAck: () => void): Delivery {
  return {
    actor: d.actor,
    body: d.body,
    headers: d.headers,
    attempt: d.attempt,
    redelivered: d.redelivered,
    ack: async () => {
      await d.ack()
      onAck()
    },
    retry: (delayMs, info) => d.retry(delayMs, info),
    deadLetter: (info) => d.deadLetter(info),
    release: () => d.release(),
  }
}

/** A transport whose consumers' acks are reported (the end-actor sidecars' finals). */
function onAcked(t: Transport, record: (d: Delivery) => void): Transport {
  return {
    name: t.name,
    connect: () => t.connect(),
    isReady: () => t.isReady(),
    ensureQueue: (actor, options) => t.ensureQueue(actor, options),
    publish: (actor, body, options) => t.publish(actor, body, options),
    consume: (actor, handler: DeliveryHandler, options) => t.consume(actor, (d) => handler(watchAck(d, () => record(d))), options),
    messageCount: (actor) => t.messageCount(actor),
    inspectQueue: (actor) => t.inspectQueue(actor),
    deleteQueue: (actor) => t.deleteQueue(actor),
    close: () => t.close(),
  }
}

function parseBody(d: Delivery): unknown {
  try {
    return JSON.parse(d.body.toString('utf8')) as unknown
  } catch {
    return d.body.toString('utf8')
  }
}

export class DevPipeline {
  /** The in-memory broker every transport of this pipeline shares (a gateway's too, via transport()). */
  readonly broker = new MemoryBroker()
  readonly finals: DevFinal[] = []
  readonly happyEnd: string
  readonly errorEnd: string
  private readonly logger: Logger
  private readonly logLevel: string
  private readonly name: string
  private readonly env: NodeJS.ProcessEnv
  private readonly dirs: string[] = []
  private readonly runtimes: RuntimeProcess[] = []
  private readonly sidecars: Sidecar[] = []
  private readonly transports: Transport[] = []
  private client: Transport | undefined
  private live = 0
  private waiters: Array<() => void> = []
  private stopped = false

  constructor(private readonly o: DevPipelineOptions) {
    this.logLevel = o.logLevel ?? 'error'
    this.name = o.name ?? 'asya-dev'
    this.logger = o.logger ?? createLogger(this.name, { level: this.logLevel, destination: process.stderr })
    // The caller's ASYA_GATEWAY_URL never leaks in: reporting is start({ gatewayUrl })'s choice.
    const env: NodeJS.ProcessEnv = { ...process.env, ASYA_TRANSPORT: 'memory', ...(o.env ?? {}), ASYA_LOG_LEVEL: this.logLevel }
    if (o.env?.ASYA_GATEWAY_URL === undefined) delete env.ASYA_GATEWAY_URL
    this.env = env
    this.happyEnd = env.ASYA_ACTOR_HAPPY_END ?? 'happy-end'
    this.errorEnd = env.ASYA_ACTOR_ERROR_END ?? 'error-end'
  }

  /** A transport on the pipeline's settings and broker (closed by stop()), e.g. for a gateway. */
  async transport(name: string): Promise<Transport> {
    const r = new EnvReader(this.env)
    const settings = readTransportSettings(r)
    r.finish()
    const t = await createTransport(settings, { memoryBroker: this.broker, logger: this.logger, connectionName: `${this.name}-${name}` })
    this.transports.push(t)
    return t
  }

  /** Starts every runtime and sidecar (and the end actors); on failure what started is stopped. */
  async start(s: DevStartOptions = {}): Promise<void> {
    try {
      await this.startAll(s)
    } catch (err) {
      await this.stop()
      throw err
    }
  }

  private async startAll(s: DevStartOptions): Promise<void> {
    const env = s.gatewayUrl !== undefined ? { ...this.env, ASYA_GATEWAY_URL: s.gatewayUrl } : this.env
    const client = await this.transport('client')
    this.client = client
    await client.connect()
    for (const end of [this.happyEnd, this.errorEnd]) await client.ensureQueue(end)
    for (const a of this.o.actors) await client.ensureQueue(a.name)
    const onEvent = (e: SidecarEvent): void => {
      if (e.type === 'sent') this.settle(+1)
      else if (e.type === 'done' && e.status !== 'released') this.settle(-1)
      else if (e.type === 'dead_letter') this.settle(-1)
      this.o.onEvent?.(e)
    }
    const runtimeLogLevel = this.logLevel === 'error' ? 'WARNING' : this.logLevel.toUpperCase()
    // Start every runtime at once (Python start-up dominates), and let every start finish before
    // reporting a failure, so stop() never races a runtime still starting.
    const started = await Promise.allSettled(
      this.o.actors.map(async (a) => {
        const socketDir = this.tempDir(a.name)
        const logger = this.logger.child({ actor: a.name })
        const runtime = new RuntimeProcess({ handler: a.handler, mode: a.mode ?? 'payload', socketDir, cwd: this.o.moduleDir, pythonPath: [this.o.moduleDir], env: { ASYA_LOG_LEVEL: runtimeLogLevel }, logger })
        this.runtimes.push(runtime)
        await runtime.start()
        const config = readSidecarConfig({ ...env, ASYA_ACTOR_NAME: a.name, ASYA_SOCKET_DIR: socketDir, ASYA_RUNTIME_TIMEOUT: this.o.runtimeTimeout ?? '30s' })
        await this.startSidecar(new Sidecar({ config, transport: await this.transport(a.name), logger, serveHttp: false, onEvent }))
      }),
    )
    const failed = started.find((r): r is PromiseRejectedResult => r.status === 'rejected')
    if (failed) throw failed.reason
    if (s.gatewayUrl !== undefined) {
      for (const [end, kind] of [[this.happyEnd, 'happy-end'], [this.errorEnd, 'error-end']] as const) {
        const config = readSidecarConfig({ ...env, ASYA_ACTOR_NAME: end, ASYA_IS_END_ACTOR: 'true', ASYA_RUNTIME_ENABLED: 'false', ASYA_SOCKET_DIR: this.tempDir(end) })
        const transport = onAcked(await this.transport(end), (d) => this.finals.push({ end: kind, envelope: parseBody(d) }))
        await this.startSidecar(new Sidecar({ config, transport, logger: this.logger.child({ actor: end }), serveHttp: false, onEvent }))
      }
    } else {
      const collect = (end: 'happy-end' | 'error-end') => async (d: Delivery) => {
        this.finals.push({ end, envelope: parseBody(d) })
        await d.ack()
        this.settle(-1)
      }
      await client.consume(this.happyEnd, collect('happy-end'), { prefetch: 100 })
      await client.consume(this.errorEnd, collect('error-end'), { prefetch: 100 })
    }
    // Dead letters were already counted by the sidecar's dead_letter event: collecting ends nothing.
    const dead = async (d: Delivery): Promise<void> => {
      this.finals.push({ end: 'dlq', envelope: parseBody(d) })
      await d.ack()
    }
    const ends = s.gatewayUrl !== undefined ? [this.happyEnd, this.errorEnd] : []
    for (const a of [...this.o.actors.map((x) => x.name), ...ends]) await client.consume(dlqActor(a), dead, { prefetch: 100 })
  }

  /** Publishes each envelope to the actor at its route's `current` (happy-end for an empty route). */
  async send(envelopes: readonly DevEnvelope[]): Promise<void> {
    if (!this.client) throw new Error('DevPipeline.send() before start()')
    this.live += envelopes.length
    for (const env of envelopes) await this.client.publish(env.route.actors[env.route.current] ?? this.happyEnd, Buffer.from(JSON.stringify(env)))
  }

  /** Resolves true once every envelope sent has ended, false when timeoutMs passed first. */
  async idle(timeoutMs: number): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined
    const done = this.live <= 0 ? Promise.resolve(true) : new Promise<boolean>((r) => this.waiters.push(() => r(true)))
    const ended = await Promise.race([done, new Promise<boolean>((r) => (timer = setTimeout(() => r(false), timeoutMs)))])
    clearTimeout(timer)
    // Dead letters are collected by a consumer of their own: give it a moment to see the last.
    await new Promise((r) => setTimeout(r, 20))
    return ended
  }

  /** Stops sidecars (draining), transports, runtimes; removes temporary directories. Idempotent. */
  async stop(): Promise<void> {
    if (this.stopped) return
    this.stopped = true
    for (const s of this.sidecars) await s.stop().catch(() => undefined)
    for (const t of this.transports) await t.close().catch(() => undefined)
    for (const r of this.runtimes) await r.stop().catch(() => undefined)
    for (const d of this.dirs) rmSync(d, { recursive: true, force: true })
    this.broker.shutdown()
  }

  private async startSidecar(sidecar: Sidecar): Promise<void> {
    this.sidecars.push(sidecar)
    await sidecar.start()
  }

  private tempDir(actor: string): string {
    const dir = mkdtempSync(join(tmpdir(), `${this.name}-${actor}-`))
    this.dirs.push(dir)
    return dir
  }

  private settle(delta: number): void {
    this.live += delta
    if (this.live > 0) return
    const waiters = this.waiters
    this.waiters = []
    for (const w of waiters) w()
  }
}

export interface DevPipelineRunOptions extends DevPipelineOptions {
  /** Envelopes to send (each to actors[route.current] of its own route). */
  envelopes: DevEnvelope[]
  /** Give up after this long. @default 60000 */
  timeoutMs?: number
}

export interface DevPipelineResult {
  finals: DevFinal[]
  /** True when some envelopes were still live at the timeout. */
  timedOut: boolean
}

/** Starts the pipeline, sends the envelopes, waits until they all ended, stops (`asya dev`). */
export async function runDevPipeline(o: DevPipelineRunOptions): Promise<DevPipelineResult> {
  const pipeline = new DevPipeline(o)
  try {
    await pipeline.start()
    await pipeline.send(o.envelopes)
    const ended = await pipeline.idle(o.timeoutMs ?? 60_000)
    return { finals: [...pipeline.finals], timedOut: !ended }
  } finally {
    await pipeline.stop()
  }
}
