/**
 * The sidecar: connects the transport, waits for the runtime, consumes `asya-<actor>` and hands
 * each delivery to the MessageProcessor. stop() is the SIGTERM drain of SPEC §5: stop consuming,
 * give back what never started, finish every in-flight call and batch (publish, confirm, ack), close.
 */
import type { AddressInfo } from 'node:net'
import { Registry } from 'prom-client'
import { errorMessage, errors, isAsyaError } from '../src/errors.js'
import type { Logger } from '../src/logger.js'
import { queueName } from '../src/names.js'
import { RuntimeClient } from '../src/runtime/runtime-client.js'
import type { Delivery, Subscription, Transport } from '../src/transport/transport.js'
import type { SidecarConfig } from './config.js'
import { ClaimCheck } from '../src/storage/claim-check.js'
import { S3ObjectStore, type ObjectStore } from '../src/storage/object-store.js'
import { EndActor } from './end-actor.js'
import { HealthServer } from './health-server.js'
import { MessageProcessor, type SidecarEvent } from './message-processor.js'
import { PrefetchWindow } from './prefetch-window.js'
import { ProgressReporter } from './progress-reporter.js'
import { Tracing } from '../src/tracing/tracing.js'
import { SidecarMetrics, type HotMetrics } from './metrics.js'
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
  /** @default Tracing.start(config.tracing): spans only when an OTLP endpoint is configured */
  tracing?: Tracing
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
  /** Progress reports to the gateway: non-end actors with ASYA_GATEWAY_URL (SPEC §10.2). */
  readonly progress: ProgressReporter | undefined
  private readonly endActor: EndActor | undefined
  private readonly health: HealthServer | undefined
  private readonly tracing: Tracing
  private subscription: Subscription | undefined
  private readonly inFlight = new Set<Promise<void>>()
  private draining = false
  private stopping: Promise<boolean> | undefined
  private readonly startAbort = new AbortController()
  private httpAddress: AddressInfo | undefined
  private readonly store: ObjectStore | undefined
  private readonly claims: ClaimCheck | undefined
  private readonly hot: HotMetrics

  constructor(private readonly o: SidecarOptions) {
    this.config = o.config
    this.transport = o.transport
    this.logger = o.logger
    this.metrics = new SidecarMetrics(o.config.metricsNamespace, o.registry ?? new Registry(), { defaultMetrics: o.registry === undefined })
    this.runtime = new RuntimeClient({ socketDir: o.config.socketDir, timeoutMs: o.config.runtimeTimeoutMs })
    const { concurrency, batchSize } = o.config
    const hot = this.metrics.hot(queueName(o.config.actorName), o.transport.name)
    this.hot = hot
    this.window = new PrefetchWindow(o.config.prefetch, {
      wide: o.config.prefetchWide,
      slots: concurrency * batchSize,
      probation: true,
      shed: (keep) => {
        const n = this.gate.shed(keep)
        if (n > 0) this.logger.info({ released: n, window: this.window.size }, 'calls turned slow: queued envelopes given back to the broker')
        return n
      },
    })
    this.gate = new RuntimeGate(
      this.runtime,
      {
        readyTimeoutMs: o.config.runtimeReadyTimeoutMs,
        callTimeoutMs: o.config.runtimeTimeoutMs,
        concurrency,
        batchSize,
        batchWaitMs: o.config.batchWaitMs,
        onCallStart: (envelopes) => {
          hot.callsInFlight.set(this.gate.inFlight)
          hot.batchEnvelopes.observe(envelopes)
        },
        onCallDone: (ms) => {
          hot.callsInFlight.set(this.gate.inFlight)
          if (ms !== undefined) this.window.observe(ms)
          hot.deliveryWindow.set(this.window.size)
        },
      },
      o.logger,
      (err) => (o.onFatal ?? (() => undefined))(err),
    )
    this.progress =
      o.config.gatewayUrl !== undefined && !o.config.isEndActor
        ? new ProgressReporter({
            gatewayUrl: o.config.gatewayUrl,
            timeoutMs: o.config.progressTimeoutMs,
            ...(o.config.gatewayToken !== undefined ? { token: o.config.gatewayToken } : {}),
            maxPending: o.config.progressMaxPending,
            batch: o.config.progressBatch,
            metrics: this.metrics,
            logger: o.logger,
          })
        : undefined
    const s3 = o.config.s3
    this.store = o.config.isEndActor && s3.bucket !== undefined ? new S3ObjectStore({ ...s3, bucket: s3.bucket }) : undefined
    const cc = o.config.claimCheck
    this.claims = cc ? new ClaimCheck({ store: new S3ObjectStore({ ...s3, bucket: cc.bucket }), prefix: cc.prefix, thresholdBytes: cc.thresholdBytes }) : undefined
    const endActor = (this.endActor = o.config.isEndActor
      ? new EndActor({
          config: o.config,
          kind: o.config.actorName === o.config.errorEnd ? 'error' : 'happy',
          metrics: this.metrics,
          ...(this.store ? { store: this.store } : {}),
        })
      : undefined)
    this.tracing = o.tracing ?? Tracing.start(o.config.tracing, { 'asya.actor': o.config.actorName })
    this.processor = new MessageProcessor({
      tracing: this.tracing,
      config: o.config,
      transport: o.transport,
      runtime: this.runtime,
      gate: this.gate,
      metrics: this.metrics,
      logger: o.logger,
      isDraining: () => this.draining,
      ...(this.progress ? { progress: this.progress } : {}),
      ...(endActor ? { endActor } : {}),
      ...(this.claims ? { claims: this.claims } : {}),
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
    const checks = { broker: this.transport.isReady(), runtime: !this.config.runtimeEnabled || this.gate.isReady(), consuming: this.subscription !== undefined && !this.draining }
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
    if (config.runtimeEnabled) {
      logger.info({ socket: this.runtime.socketPath }, 'broker connected; waiting for the runtime')
      await this.gate.start(this.startAbort.signal)
    } else {
      logger.info('broker connected; no runtime (ASYA_RUNTIME_ENABLED=false)')
    }
    if (config.isEndActor) {
      if (this.store) {
        // Reported, not fatal: a bucket that is missing now may exist by the first message, and
        // every persist failure is retried and then dead-lettered, never lost.
        await this.store.check().then(
          () => logger.info({ bucket: this.store?.bucket }, 'object storage reachable'),
          (err: unknown) => logger.error({ code: isAsyaError(err) ? err.code : undefined, err: errorMessage(err) }, 'object storage check failed; persisting will be retried per message'),
        )
      }
      if (!this.store && config.gatewayUrl === undefined) logger.warn('end actor with neither ASYA_S3_BUCKET nor ASYA_GATEWAY_URL: finished envelopes are acked and kept nowhere')
    }
    if (this.draining) return
    this.subscription = await this.transport.consume(config.actorName, (d) => this.onDelivery(d), { prefetch: this.window.size })
    this.window.attach(this.subscription)
    this.metrics.deliveryWindow.set(this.window.size)
    logger.info(
      { queue: queueName(config.actorName), prefetch: this.window.size, concurrency: config.concurrency, batch_size: config.batchSize, batch_wait_ms: config.batchWaitMs, end_actor: config.isEndActor },
      'consuming',
    )
  }

  private onDelivery(d: Delivery): Promise<void> {
    this.window.delivered(d.redelivered)
    this.hot.deliveryWindow.set(this.window.size)
    const handled = this.processor.handle(d)
    const p = handled.catch((err: unknown) => {
      // The processor settles every outcome itself; reaching here means a settlement failed (the
      // broker did not take the retry, the dead letter or the ack). The rejection goes on to the
      // transport, which gives the message back to the broker (src/transport/delivery.ts).
      this.logger.error({ err: errorMessage(err) }, 'message not settled; given back to the broker')
    })
    this.inFlight.add(p)
    void p.finally(() => this.inFlight.delete(p))
    return handled
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
    this.startAbort.abort(new errors.ASYA_ERR_TRANSPORT_CLOSED('sidecar'))
    const t0 = Date.now()
    this.logger.info({ in_flight: this.inFlight.size }, 'draining')
    await this.subscription?.cancel().catch(() => undefined)
    // Queued and never started (a batch still gathering, envelopes waiting for a slot): give them
    // back; every call already in the runtime finishes, publishes and acks below.
    this.gate.close()
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
    // The last reports (the in-flight message's `completed`) get a short window, never the whole budget.
    await this.progress?.close(Math.min(2000, Math.max(0, this.config.shutdownTimeoutMs - (Date.now() - t0))))
    this.endActor?.close()
    await this.transport.close().catch((err: unknown) => this.logger.warn({ err: errorMessage(err) }, 'transport close failed'))
    await this.health?.close()
    this.store?.close()
    this.claims?.close()
    await this.tracing.shutdown()
    this.logger.info({ clean, ms: Date.now() - t0 }, 'sidecar stopped')
    return clean
  }
}
