/**
 * The sidecar: connects the transport, waits for the runtime, consumes `asya-<actor>` and hands
 * each delivery to the MessageProcessor. stop() is the SIGTERM drain of SPEC §5: stop consuming,
 * give back what never started, finish the in-flight message (publish, confirm, ack), close.
 */
import type { AddressInfo } from 'node:net'
import { Registry } from 'prom-client'
import { AsyaError, errorMessage } from '../src/errors.js'
import type { Logger } from '../src/logger.js'
import { RuntimeClient } from '../src/runtime/runtime-client.js'
import type { Delivery, Subscription, Transport } from '../src/transport/transport.js'
import type { SidecarConfig } from './config.js'
import { HealthServer } from './health-server.js'
import { MessageProcessor, type SidecarEvent } from './message-processor.js'
import { PrefetchWindow } from './prefetch-window.js'
import { SidecarMetrics } from './metrics.js'
import { RuntimeGate } from './runtime-gate.js'

export interface SidecarOptions {
  config: SidecarConfig
  transport: Transport
  logger: Logger
  /** Serve /healthz, /readyz, /metrics on the configured address. @default true */
  serveHttp?: boolean
  /** @default a new Registry with default process metrics */
  registry?: Registry
  onEvent?: (e: SidecarEvent) => void
  /** The runtime is gone for good (ASYA_RUNTIME_READY_TIMEOUT): the caller should exit non-zero. */
  onFatal?: (err: unknown) => void
}

export class Sidecar {
  readonly config: SidecarConfig
  readonly metrics: SidecarMetrics
  readonly runtime: RuntimeClient
  private readonly transport: Transport
  private readonly logger: Logger
  private readonly gate: RuntimeGate
  private readonly processor: MessageProcessor
  private readonly window: PrefetchWindow
  private readonly health: HealthServer | undefined
  private subscription: Subscription | undefined
  private readonly inFlight = new Set<Promise<void>>()
  private draining = false
  private stopping: Promise<boolean> | undefined
  private readonly startAbort = new AbortController()
  private httpAddress: AddressInfo | undefined

  constructor(private readonly o: SidecarOptions) {
    this.config = o.config
    this.transport = o.transport
    this.logger = o.logger
    this.metrics = new SidecarMetrics(o.config.metricsNamespace, o.registry ?? new Registry(), { defaultMetrics: o.registry === undefined })
    this.runtime = new RuntimeClient({ socketDir: o.config.socketDir, timeoutMs: o.config.runtimeTimeoutMs })
    this.window = new PrefetchWindow(o.config.prefetch, { wide: o.config.prefetchWide })
    this.gate = new RuntimeGate(this.runtime, o.config.runtimeReadyTimeoutMs, o.logger, (err) => (o.onFatal ?? (() => undefined))(err))
    this.processor = new MessageProcessor({
      config: o.config,
      transport: o.transport,
      runtime: this.runtime,
      gate: this.gate,
      metrics: this.metrics,
      logger: o.logger,
      isDraining: () => this.draining,
      window: this.window,
      ...(o.onEvent ? { onEvent: o.onEvent } : {}),
    })
    if (o.serveHttp ?? true) {
      this.health = new HealthServer({
        host: o.config.metricsHost,
        port: o.config.metricsPort,
        registry: this.metrics.registry,
        readiness: () => this.readiness(),
      })
    }
  }

  readiness(): { ready: boolean; checks: Record<string, boolean> } {
    const checks = { broker: this.transport.isReady(), runtime: this.gate.isReady(), consuming: this.subscription !== undefined && !this.draining }
    return { ready: checks.broker && checks.runtime && checks.consuming, checks }
  }

  isReady(): boolean {
    return this.readiness().ready
  }

  /** Address of the health/metrics listener (after start). */
  get address(): AddressInfo | undefined {
    return this.httpAddress
  }

  async start(): Promise<void> {
    const { config, logger } = this
    if (this.health) this.httpAddress = await this.health.listen()
    logger.info({ transport: this.transport.name, metrics: this.httpAddress ? `${this.httpAddress.address}:${this.httpAddress.port}` : null }, 'sidecar starting')
    await this.transport.connect()
    await this.transport.ensureQueue(config.actorName)
    logger.info({ socket: this.runtime.socketPath }, 'broker connected; waiting for the runtime')
    await this.gate.start(this.startAbort.signal)
    if (this.draining) return
    this.subscription = await this.transport.consume(config.actorName, (d) => this.onDelivery(d), { prefetch: config.prefetch })
    this.window.attach(this.subscription)
    logger.info({ queue: `asya-${config.actorName}`, prefetch: config.prefetch, end_actor: config.isEndActor }, 'consuming')
  }

  private onDelivery(d: Delivery): Promise<void> {
    const p = this.processor.handle(d).catch((err: unknown) => {
      // The processor settles every outcome itself; reaching here means the runtime is gone for
      // good. Leaving the delivery unsettled returns it to the queue when the transport closes.
      this.logger.error({ err: errorMessage(err) }, 'message left unsettled')
    })
    this.inFlight.add(p)
    void p.finally(() => this.inFlight.delete(p))
    return p
  }

  /**
   * Drains and closes. Resolves true when everything in flight finished within
   * ASYA_SHUTDOWN_TIMEOUT, false when the deadline forced the close (those messages return to the
   * queue and are processed again elsewhere).
   */
  stop(): Promise<boolean> {
    if (!this.stopping) this.stopping = this.drain()
    return this.stopping
  }

  private async drain(): Promise<boolean> {
    this.draining = true
    this.startAbort.abort(new AsyaError('ASYA_ERR_TRANSPORT_CLOSED', 'sidecar stopping'))
    const t0 = Date.now()
    this.logger.info({ in_flight: this.inFlight.size }, 'draining')
    await this.subscription?.cancel().catch(() => undefined)
    let clean = true
    const deadline = new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), this.config.shutdownTimeoutMs).unref())
    while (this.inFlight.size > 0) {
      const r = await Promise.race([Promise.allSettled([...this.inFlight]).then(() => 'done' as const), deadline])
      if (r === 'timeout') {
        clean = false
        this.logger.error({ code: 'ASYA_ERR_SHUTDOWN_TIMEOUT', in_flight: this.inFlight.size, timeout_ms: this.config.shutdownTimeoutMs }, 'drain timed out; unfinished messages return to the queue')
        break
      }
    }
    await this.transport.close().catch((err: unknown) => this.logger.warn({ err: errorMessage(err) }, 'transport close failed'))
    await this.health?.close()
    this.logger.info({ clean, ms: Date.now() - t0 }, 'sidecar stopped')
    return clean
  }
}
