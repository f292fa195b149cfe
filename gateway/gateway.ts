/**
 * The gateway process minus its entry point: the Fastify app, the store, the transport, the tool
 * service, the deadline sweep and retention, and graceful shutdown. Tests and the demo build it
 * in-process; gateway/main.ts builds it from env.
 *
 * Extension point: `plugins` are registered on the Fastify app with the {@link GatewayContext}
 * (the MCP endpoint `POST /mcp` is one), after the upstream routes and before listen.
 */
import Fastify, { type FastifyInstance } from 'fastify'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { errorMessage } from '../src/errors.js'
import { createLogger, type Logger } from '../src/logger.js'
import { createTransport } from '../src/transport/create-transport.js'
import type { Transport } from '../src/transport/transport.js'
import { Tracing } from '../src/tracing/tracing.js'
import type { GatewayConfig } from './config.js'
import { installErrorHandler, registerHttpRoutes } from './http-routes.js'
import { GatewayMetrics } from './metrics.js'
import { SseHub } from './sse.js'
import { MemoryEnvelopeStore } from './store/memory-store.js'
import type { EnvelopeStore } from './store/store.js'
import { timedStore } from './store/timed-store.js'
import { loadToolConfig, type ToolConfig } from './tool-config.js'
import { ToolService } from './tool-service.js'
import { installCallerAuth, installInternalAuth } from './security/auth.js'
import { clientErrorHandler, installCors, installRateLimit, installSecurityHeaders, SseCap } from './security/limits.js'
import { RejectionError, type RejectDeps } from './security/rejections.js'
import { buildSecurity, registerProtectedResourceMetadata } from './security/setup.js'

/** What a plugin gets: the internal API and the process's parts. */
export interface GatewayContext {
  service: ToolService
  store: EnvelopeStore
  transport: Transport
  metrics: GatewayMetrics
  logger: Logger
  config: GatewayConfig
  tracing: Tracing
}

export type GatewayPlugin = (app: FastifyInstance, ctx: GatewayContext) => void | Promise<void>

export interface GatewayOptions {
  config: GatewayConfig
  logger?: Logger
  /** @default from config: PostgreSQL when ASYA_DATABASE_URL is set, else memory */
  store?: EnvelopeStore
  /** @default createTransport(config.transport) */
  transport?: Transport
  /** @default Tracing.start(config.tracing) */
  tracing?: Tracing
  /** @default loaded from config.configPath (no tools when unset) */
  tools?: ToolConfig
  plugins?: GatewayPlugin[]
  metrics?: GatewayMetrics
}

/**
 * Whether JSON text nests deeper than `max` (brackets outside strings). Deeply nested bodies
 * overflow the stack of recursive code further on (the MCP SDK's validation, structured clones),
 * so they are refused at the parser: one pass over the bytes, skipped for bodies too short to
 * nest that deep.
 */
export function jsonDepthExceeds(buf: Uint8Array, max: number): boolean {
  if (buf.length <= max * 2) return false
  let depth = 0
  let inString = false
  for (let i = 0; i < buf.length; i++) {
    const c = buf[i]
    if (inString) {
      if (c === 0x5c) i++ // backslash: skip the escaped byte
      else if (c === 0x22) inString = false
    } else if (c === 0x22) inString = true
    else if (c === 0x5b || c === 0x7b) {
      if (++depth > max) return true
    } else if (c === 0x5d || c === 0x7d) depth--
  }
  return false
}

/**
 * A Fastify app with the gateway's body parsing, error handling, timeouts and headers; one per
 * listener.
 */
function buildApp(config: GatewayConfig, logger: Logger, rejectDeps: RejectDeps): FastifyInstance {
  const timeout = config.limits.requestTimeoutMs
  const app = Fastify({
    bodyLimit: config.bodyLimit,
    logger: false,
    forceCloseConnections: 'idle',
    return503OnClosing: true,
    // Node checks request timeouts every connectionsCheckingInterval (30 s by default): check
    // often enough for the configured timeout to mean what it says.
    serverFactory: (handler) =>
      createServer({ requestTimeout: timeout, headersTimeout: timeout > 0 ? Math.min(timeout, 60_000) : 60_000, connectionsCheckingInterval: timeout > 0 ? Math.max(100, Math.min(1000, Math.floor(timeout / 4))) : 30_000 }, handler),
    clientErrorHandler: clientErrorHandler(() => rejectDeps, timeout),
  })
  // Upstream decodes any body as JSON whatever its content type; so do we.
  app.removeAllContentTypeParsers()
  app.addContentTypeParser('*', { parseAs: 'buffer' }, (_req, body, done) => {
    const buf = body as Buffer
    if (buf.length === 0) return done(null, undefined)
    const maxDepth = config.limits.maxJsonDepth
    if (jsonDepthExceeds(buf, maxDepth)) {
      return done(new RejectionError({ status: 400, code: 'ASYA_ERR_LIMIT_EXCEEDED', reason: 'json_too_deep', message: `JSON body nested deeper than ${maxDepth} levels`, limit: 'ASYA_GATEWAY_MAX_JSON_DEPTH' }), undefined)
    }
    try {
      done(null, JSON.parse(buf.toString('utf8')))
    } catch (err) {
      done(Object.assign(new Error(`not JSON: ${errorMessage(err)}`), { statusCode: 400 }), undefined)
    }
  })
  installErrorHandler(app, logger, rejectDeps)
  installSecurityHeaders(app, { hsts: config.publicUrl.startsWith('https://') })
  return app
}

export class Gateway {
  readonly app: FastifyInstance
  /** The sidecars' listener (security on); undefined when everything is on `app`. */
  readonly internalApp: FastifyInstance | undefined
  readonly ctx: GatewayContext
  private internalAddress: AddressInfo | undefined
  private readonly sse: SseHub
  private sweepTimer: NodeJS.Timeout | undefined
  private retentionTimer: NodeJS.Timeout | undefined
  private sweeping = false
  private stopped = false
  private readonly ownsTransport: boolean

  private constructor(app: FastifyInstance, internalApp: FastifyInstance | undefined, ctx: GatewayContext, sse: SseHub, ownsTransport: boolean) {
    this.app = app
    this.internalApp = internalApp
    this.ctx = ctx
    this.sse = sse
    this.ownsTransport = ownsTransport
  }

  /** Builds the gateway (nothing is connected or listening yet: see start()). */
  static async create(o: GatewayOptions): Promise<Gateway> {
    const config = o.config
    const logger = o.logger ?? createLogger('asya-gateway', { level: config.logLevel })
    const metrics = o.metrics ?? new GatewayMetrics()
    const tools = o.tools ?? (config.configPath !== undefined ? loadToolConfig(config.configPath) : { tools: [], routes: {} })
    let rawStore = o.store
    if (!rawStore) {
      if (config.databaseUrl !== undefined) {
        const { PgEnvelopeStore } = await import('./store/pg-store.js')
        rawStore = new PgEnvelopeStore({ url: config.databaseUrl, maxConnections: config.dbMaxConns, logger })
      } else {
        logger.warn('ASYA_DATABASE_URL is not set: using the in-memory envelope store (one replica, lost on restart; local runs only)')
        rawStore = new MemoryEnvelopeStore()
      }
    }
    // Security files first: a bad one fails the start before anything connects.
    const security = buildSecurity(config, logger)
    const store = timedStore(rawStore, (op, s, ok) => metrics.storeDuration.observe({ operation: op, result: ok ? 'ok' : 'error' }, s))
    const transport = o.transport ?? (await createTransport(config.transport, { logger, connectionName: 'asya-gateway' }))
    const tracing = o.tracing ?? Tracing.start(config.tracing)
    const service = new ToolService({ tools, store, transport, logger, metrics, publicUrl: config.publicUrl, maxArgumentsBytes: config.limits.maxArgumentsBytes, tracing })
    const publicDeps: RejectDeps = { metrics, logger, listener: 'public' }
    const app = buildApp(config, logger, publicDeps)
    installCors(app, config.limits.corsOrigins)
    const sse = new SseHub(service, metrics, logger, config.keepaliveIntervalMs)
    const sseCap = config.limits.maxSsePerCaller > 0 ? new SseCap(config.limits.maxSsePerCaller) : undefined
    const routeDeps = { service, store, metrics, logger, sse, limits: config.limits, ...(sseCap ? { sseCap } : {}), rejectDeps: publicDeps }
    let internalApp: FastifyInstance | undefined
    if (security) {
      installCallerAuth(app, security.callers, { deps: publicDeps, publicUrl: config.publicUrl, corsEnabled: config.limits.corsOrigins.length > 0 })
      await installRateLimit(app, config.limits)
      registerHttpRoutes(app, routeDeps, new Set(['open', 'caller']))
      registerProtectedResourceMetadata(app, config)
      const internalDeps: RejectDeps = { metrics, logger, listener: 'internal' }
      internalApp = buildApp(config, logger, internalDeps)
      installInternalAuth(internalApp, { deps: internalDeps, sidecarTokens: security.sidecarTokens, endActorTokens: security.endActorTokens, endActorRoutes: new Set(['/envelopes/:id/final']) })
      internalApp.get('/health', async (_req, reply) => reply.type('text/plain; charset=utf-8').send('OK\n'))
      registerHttpRoutes(internalApp, { ...routeDeps, rejectDeps: internalDeps }, new Set(['sidecar']))
    } else {
      await installRateLimit(app, config.limits)
      registerHttpRoutes(app, routeDeps)
    }
    const ctx: GatewayContext = { service, store, transport, metrics, logger, config, tracing }
    for (const plugin of o.plugins ?? []) await plugin(app, ctx)
    return new Gateway(app, internalApp, ctx, sse, o.transport === undefined)
  }

  /** The internal listener's address once started (security on). */
  get internalAddr(): AddressInfo | undefined {
    return this.internalAddress
  }

  /** Connects the store (migrations) and the transport, starts the sweep, listens. */
  async start(): Promise<AddressInfo> {
    const { store, transport, config, logger } = this.ctx
    await store.start()
    await transport.connect()
    this.sweepTimer = setInterval(() => void this.sweep(), config.sweepIntervalMs)
    this.sweepTimer.unref()
    if (config.retentionMs > 0) {
      this.retentionTimer = setInterval(() => void this.retention(), Math.min(config.retentionMs, 60_000))
      this.retentionTimer.unref()
    }
    await this.app.listen({ port: config.port, host: config.host })
    const addr = this.app.server.address() as AddressInfo
    if (this.internalApp) {
      await this.internalApp.listen({ port: config.security.internalPort, host: config.host })
      this.internalAddress = this.internalApp.server.address() as AddressInfo
    } else {
      logger.warn(
        { port: addr.port },
        'ASYA_GATEWAY_SECURITY is off: anyone who reaches this port can start pipelines and post progress and final results (upstream-compatible mode, for local runs; deploy/overlays/gateway turns it on)',
      )
    }
    logger.info({ port: addr.port, internal_port: this.internalAddress?.port, store: store.kind, transport: transport.name, tools: this.ctx.service.listTools().map((t) => t.name) }, 'gateway listening')
    return addr
  }

  /** One deadline sweep (also run by the timer). Returns how many envelopes timed out. */
  async sweep(): Promise<number> {
    if (this.sweeping || this.stopped) return 0
    this.sweeping = true
    let total = 0
    try {
      for (;;) {
        const n = await this.ctx.store.expireDue(500)
        total += n
        if (n < 500) break
      }
      if (total > 0) {
        this.ctx.metrics.sweepExpired.inc(total)
        this.ctx.metrics.envelopesFinal.inc({ status: 'failed', source: 'timeout' }, total)
        this.ctx.logger.info({ count: total }, 'envelopes timed out')
      }
    } catch (err) {
      this.ctx.logger.warn({ err: errorMessage(err) }, 'deadline sweep failed; retrying at the next interval')
    } finally {
      this.sweeping = false
    }
    return total
  }

  private async retention(): Promise<void> {
    try {
      const n = await this.ctx.store.deleteFinalBefore(new Date(Date.now() - this.ctx.config.retentionMs), 1000)
      if (n > 0) this.ctx.logger.info({ count: n }, 'retention: final envelopes deleted')
    } catch (err) {
      this.ctx.logger.warn({ err: errorMessage(err) }, 'retention sweep failed')
    }
  }

  /**
   * Graceful shutdown: stop accepting, end SSE streams cleanly (clients reconnect elsewhere),
   * let in-flight requests finish within ASYA_SHUTDOWN_TIMEOUT, then close store and transport.
   * Returns false when the budget ran out.
   */
  async stop(): Promise<boolean> {
    if (this.stopped) return true
    this.stopped = true
    clearInterval(this.sweepTimer)
    clearInterval(this.retentionTimer)
    this.sse.closeAll()
    let clean = true
    const timeout = new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), this.ctx.config.shutdownTimeoutMs).unref())
    const apps = [this.app, ...(this.internalApp ? [this.internalApp] : [])]
    const closed = Promise.all(apps.map((a) => a.close())).then(() => 'closed' as const)
    if ((await Promise.race([closed, timeout])) === 'timeout') {
      clean = false
      for (const a of apps) a.server.closeAllConnections()
    }
    if (this.ownsTransport) await this.ctx.transport.close().catch(() => {})
    await this.ctx.store.close().catch(() => {})
    await this.ctx.tracing.shutdown()
    return clean
  }
}
