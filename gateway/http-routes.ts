/**
 * Upstream asya-gateway's HTTP API on Fastify: paths, methods, status codes and bodies as upstream
 * (errors are `text/plain` lines like Go's http.Error), with upstream's defects fixed (SPEC §11
 * #16–#19). docs/gateway.md is the reference.
 */
import type { FastifyInstance } from 'fastify'
import { isPlainObject, type Json } from '../src/envelope.js'
import { errorMessage, isAsyaError } from '../src/errors.js'
import type { Logger } from '../src/logger.js'
import type { GatewayMetrics } from './metrics.js'
import { registerProgressRoutes } from './progress-routes.js'
import { adoptFanoutChild, impossibleId, MAX_ID_LENGTH, text, viaStore } from './route-support.js'
import { SseHub } from './sse.js'
import type { EnvelopeStore } from './store/store.js'
import type { FinalReport } from './store/types.js'
import { callerTrace, type ToolService } from './tool-service.js'
import type { GatewayLimits } from './config.js'
import type { SseCap } from './security/limits.js'
import { RejectionError, sendRejection, type RejectDeps } from './security/rejections.js'

export interface RouteDeps {
  service: ToolService
  store: EnvelopeStore
  metrics: GatewayMetrics
  logger: Logger
  sse: SseHub
  limits: GatewayLimits
  /** Per-caller cap on open SSE streams (security on); none = no cap. */
  sseCap?: SseCap
  /** Where rejections of the caller routes are counted. */
  rejectDeps: RejectDeps
}

/**
 * Which routes a listener serves. Security off: all on one listener (upstream). Security on: the
 * public listener serves `open` + `caller`, the internal one `sidecar` (+ its own /health).
 */
export type RouteGroup = 'open' | 'caller' | 'sidecar'

/** Routes the sidecars call (internal listener with security on). */
export const SIDECAR_ROUTES: ReadonlySet<string> = new Set(['/envelopes/:id/progress', '/envelopes/progress', '/envelopes/:id/final', '/envelopes', '/envelopes/:id/active'])
/** Report bodies are small: ASYA_GATEWAY_REPORT_BODY_LIMIT (final carries the result: ASYA_GATEWAY_BODY_LIMIT). */
export const REPORT_ROUTES: ReadonlySet<string> = new Set(['/envelopes/:id/progress', '/envelopes/progress', '/envelopes'])

export function registerHttpRoutes(app: FastifyInstance, d: RouteDeps, groups: ReadonlySet<RouteGroup> = new Set(['open', 'caller', 'sidecar'])): void {
  // Answered before the store sees them: a lookup of such an id would only fail there (503).
  app.addHook('preHandler', async (req, reply) => {
    if (impossibleId((req.params as { id?: unknown } | undefined)?.id)) return text(reply, 404, 'Envelope not found')
  })
  if (groups.has('open')) {
    app.get('/health', async (_req, reply) => text(reply, 200, 'OK'))
    app.get('/metrics', async (_req, reply) => reply.type(d.metrics.registry.contentType).send(await d.metrics.registry.metrics()))
  }
  if (groups.has('caller')) registerCallerRoutes(app, d)
  if (groups.has('sidecar')) registerSidecarRoutes(app, d, !groups.has('caller'))
}

function registerCallerRoutes(app: FastifyInstance, d: RouteDeps): void {
  app.post('/tools/call', async (req, reply) => {
    const body = req.body
    if (!isPlainObject(body)) return text(reply, 400, 'Invalid request body')
    if (typeof body.name !== 'string' || body.name === '') return text(reply, 400, 'Tool name is required')
    if (!d.service.getTool(body.name)) {
      d.metrics.toolCalls.inc({ tool: '(unknown)', outcome: 'unknown_tool' })
      return text(reply, 404, `Tool ${JSON.stringify(body.name)} not found`)
    }
    if (req.caller?.tools && !req.caller.tools.has(body.name)) {
      return sendRejection(reply, d.rejectDeps, { status: 403, code: 'ASYA_ERR_FORBIDDEN', reason: 'forbidden_tool', message: `tool ${JSON.stringify(body.name)} is not in the allow-list of ${req.caller.name}` })
    }
    const outcome = await d.service.callTool(body.name, body.arguments, callerTrace(req.headers))
    return reply.code(200).send(outcome.result)
  })

  app.get<{ Params: { id: string } }>('/envelopes/:id', async (req, reply) => {
    const rec = await d.service.getEnvelope(req.params.id)
    if (!rec) return text(reply, 404, 'Envelope not found')
    return reply.send(rec)
  })

  registerActive(app, d)

  app.get<{ Params: { id: string } }>('/envelopes/:id/stream', async (req, reply) => {
    const release = d.sseCap ? d.sseCap.acquire(req) : () => undefined
    if (!release) return sendRejection(reply, d.rejectDeps, (d.sseCap as SseCap).rejection())
    reply.raw.once('close', release)
    try {
      await d.sse.stream(req, reply, req.params.id)
    } catch (err) {
      release()
      throw err
    }
  })
}

function registerActive(app: FastifyInstance, d: RouteDeps): void {
  app.get<{ Params: { id: string } }>('/envelopes/:id/active', async (req, reply) => {
    const active = await viaStore(() => d.store.isActive(req.params.id))
    return reply.code(active ? 200 : 410).send({ active })
  })
}

function registerSidecarRoutes(app: FastifyInstance, d: RouteDeps, withActive: boolean): void {
  const reportLimit = { bodyLimit: d.limits.reportBodyLimit }
  if (withActive) registerActive(app, d)

  registerProgressRoutes(app, d)

  app.post<{ Params: { id: string } }>('/envelopes/:id/final', async (req, reply) => {
    const id = req.params.id
    const b = req.body
    if (!isPlainObject(b)) return text(reply, 400, 'Invalid request body')
    if (b.status !== 'succeeded' && b.status !== 'failed') return text(reply, 400, "Invalid status: must be 'succeeded' or 'failed'")
    const report = finalReport(b as Record<string, Json>)
    let w = await viaStore(() => d.store.finish(id, report))
    if (w.outcome === 'not_found' && (await adoptFanoutChild(d, id, report.actors, report.currentActorIdx ?? 0))) w = await viaStore(() => d.store.finish(id, report))
    if (w.outcome === 'not_found') return text(reply, 404, 'Envelope not found')
    if (w.outcome === 'final') {
      // A redelivered end-actor message: idempotent, and the first final status stays.
      return reply.code(200).send({ status: 'ignored', reason: 'envelope is final', envelope_status: w.status })
    }
    if (w.outcome === 'applied') d.metrics.envelopesFinal.inc({ status: report.status, source: 'end_actor' })
    d.logger.debug({ envelope_id: id, status: report.status, actor: report.actor }, 'envelope final')
    return reply.code(200).send({ status: 'ok' })
  })

  app.post('/envelopes', reportLimit, async (req, reply) => {
    const b = req.body
    if (!isPlainObject(b)) return text(reply, 400, 'Invalid request body')
    if (typeof b.id !== 'string' || b.id === '') return text(reply, 400, 'Missing required field: id')
    if (impossibleId(b.id)) return text(reply, 400, `Invalid field id: at most ${MAX_ID_LENGTH} characters, no U+0000`)
    if (b.parent_id !== undefined && b.parent_id !== null && typeof b.parent_id !== 'string') return text(reply, 400, 'Invalid field parent_id: must be a string')
    if (impossibleId(b.parent_id)) return text(reply, 400, `Invalid field parent_id: at most ${MAX_ID_LENGTH} characters, no U+0000`)
    const actors = b.actors ?? []
    if (!Array.isArray(actors) || !actors.every((a) => typeof a === 'string')) return text(reply, 400, 'Invalid field actors: must be a list of actor names')
    const current = b.current ?? 0
    if (typeof current !== 'number' || !Number.isInteger(current) || current < 0) return text(reply, 400, 'Invalid field current: must be an integer >= 0')
    const parentId = typeof b.parent_id === 'string' && b.parent_id !== '' ? b.parent_id : undefined
    // A fan-out child shares its parent's deadline. It is never published here: the sidecar that
    // fanned out already published it (upstream published it a second time, SPEC §11 #18).
    const parent = parentId !== undefined ? await viaStore(() => d.store.get(parentId)) : undefined
    const deadline = parent?.deadline !== undefined ? new Date(parent.deadline) : undefined
    const r = await viaStore(() =>
      d.store.create({
        id: b.id as string,
        ...(parentId !== undefined ? { parentId } : {}),
        actors: actors as string[],
        current,
        payload: null,
        ...(deadline ? { deadline } : {}),
      }),
    )
    return reply.code(201).send({ status: r.created ? 'created' : 'exists', id: b.id })
  })
}

/** Upstream's final-report mapping: message text, and error details folded into `result` for failures. */
export function finalReport(b: Record<string, Json>): FinalReport {
  const status = b.status as 'succeeded' | 'failed'
  const actor = typeof b.current_actor_name === 'string' && b.current_actor_name !== '' ? b.current_actor_name : undefined
  const idx = typeof b.current_actor_idx === 'number' && Number.isInteger(b.current_actor_idx) ? b.current_actor_idx : undefined
  const actors = Array.isArray(b.actors) && b.actors.length > 0 && b.actors.every((a) => typeof a === 'string') ? (b.actors as string[]) : undefined
  // Upstream's error-end sends `error_details`; ours sends `details` (with the handler's message).
  const details = b.error_details ?? b.details
  const detailMessage = isPlainObject(details) && typeof details.message === 'string' && details.message !== '' ? details.message : undefined
  const code = typeof b.error === 'string' && b.error !== '' ? b.error : undefined
  const error = code !== undefined && detailMessage !== undefined && !code.includes(detailMessage) ? `${code}: ${detailMessage}` : (code ?? detailMessage)
  const base = { ...(actor !== undefined ? { actor } : {}), ...(idx !== undefined ? { currentActorIdx: idx } : {}), ...(actors ? { actors } : {}) }
  if (status === 'succeeded') {
    const meta = isPlainObject(b.metadata) ? b.metadata : undefined
    const s3 = meta && typeof meta.s3_uri === 'string' ? meta.s3_uri : undefined
    return {
      status,
      ...(b.result !== undefined ? { result: b.result } : {}),
      message: s3 ? `Envelope completed successfully, results stored at ${s3}` : 'Envelope completed successfully',
      ...base,
    }
  }
  let result: Json | undefined = b.result
  if (details !== undefined && details !== null) {
    result = {
      error: error ?? '',
      details,
      ...(actor !== undefined ? { failed_actor: actor } : {}),
      ...(idx !== undefined ? { failed_actor_idx: idx } : {}),
      ...(actors ? { route: actors } : {}),
    }
  }
  const message = error === undefined ? 'Envelope failed' : actor !== undefined ? `Envelope failed at actor '${actor}': ${error}` : `Envelope failed: ${error}`
  return { status, ...(result !== undefined ? { result } : {}), ...(error !== undefined ? { error } : {}), message, ...base }
}

/**
 * Maps thrown errors to upstream-style text responses; store problems are 503. Limits and
 * security rejections are JSON naming the limit (security/rejections.ts).
 */
export function installErrorHandler(app: FastifyInstance, logger: Logger, rejectDeps: RejectDeps): void {
  app.setErrorHandler((err, req, reply) => {
    if (err instanceof RejectionError) return sendRejection(reply, rejectDeps, err.rejection)
    if (isAsyaError(err, 'ASYA_ERR_LIMIT_EXCEEDED') && typeof err.details.limit === 'string') {
      return sendRejection(reply, rejectDeps, { status: 413, code: 'ASYA_ERR_LIMIT_EXCEEDED', reason: 'arguments_too_large', message: err.message, limit: err.details.limit })
    }
    if ((err as { code?: string }).code === 'FST_ERR_CTP_BODY_TOO_LARGE') {
      const route = req.routeOptions.url
      const limit = route !== undefined && REPORT_ROUTES.has(route) ? 'ASYA_GATEWAY_REPORT_BODY_LIMIT' : 'ASYA_GATEWAY_BODY_LIMIT'
      return sendRejection(reply, rejectDeps, { status: 413, code: 'ASYA_ERR_LIMIT_EXCEEDED', reason: 'body_too_large', message: `request body larger than ${req.routeOptions.bodyLimit ?? '?'} bytes`, limit })
    }
    if (isAsyaError(err, 'ASYA_ERR_TOOL_NOT_FOUND')) return text(reply, 404, err.message)
    if (isAsyaError(err, 'ASYA_ERR_ENVELOPE_NOT_FOUND')) return text(reply, 404, 'Envelope not found')
    if (isAsyaError(err, 'ASYA_ERR_STORE')) {
      logger.error({ code: err.code, err: err.message, url: req.url }, 'envelope store failed')
      return text(reply, 503, 'Envelope store unavailable')
    }
    const status = (err as { statusCode?: number }).statusCode
    if (typeof status === 'number' && status >= 400 && status < 500) {
      return text(reply, status, status === 413 ? `Request body too large: ${errorMessage(err)}` : `Invalid request body: ${errorMessage(err)}`)
    }
    logger.error({ err: errorMessage(err), url: req.url }, 'request failed')
    return text(reply, 500, 'Internal server error')
  })
}
