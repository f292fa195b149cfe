/**
 * Every request the gateway's security refuses gets the same treatment: a 4xx (503 when the
 * issuer's keys cannot be read) JSON body naming the code, the reason and the limit variable, a
 * log line and `asya_gateway_rejections_total{listener, reason}`. docs/security.md lists them.
 */
import type { FastifyReply } from 'fastify'
import type { Logger } from '../../src/logger.js'
import type { GatewayMetrics } from '../metrics.js'

export type RejectReason =
  | 'unauthorized'
  | 'forbidden_tool'
  | 'forbidden_final'
  | 'rate_limited'
  | 'sse_cap'
  | 'body_too_large'
  | 'json_too_deep'
  | 'arguments_too_large'
  | 'request_timeout'
  | 'auth_unavailable'

export type RejectCode = 'ASYA_ERR_UNAUTHORIZED' | 'ASYA_ERR_FORBIDDEN' | 'ASYA_ERR_LIMIT_EXCEEDED' | 'ASYA_ERR_AUTH_UNAVAILABLE'

export interface Rejection {
  status: number
  code: RejectCode
  reason: RejectReason
  message: string
  /** The variable that sets the limit, when one does. */
  limit?: string
  headers?: Record<string, string>
}

export type Listener = 'public' | 'internal'

export interface RejectDeps {
  metrics: GatewayMetrics
  logger: Logger
  listener: Listener
}

/** Thrown where a reply is not at hand (rate-limit plugin, tool service); the error handler sends it. */
export class RejectionError extends Error {
  readonly statusCode: number
  constructor(readonly rejection: Rejection) {
    super(rejection.message)
    this.statusCode = rejection.status
  }
}

export function rejectionBody(r: Rejection): Record<string, string> {
  return { error: r.message, code: r.code, reason: r.reason, ...(r.limit !== undefined ? { limit: r.limit } : {}) }
}

/** Counts and logs a rejection (also used where the answer is not HTTP, e.g. an MCP error). */
export function recordRejection(d: RejectDeps, r: Rejection, ctx: { method?: string; url?: string; caller?: string; ip?: string }): void {
  d.metrics.rejections.inc({ listener: d.listener, reason: r.reason })
  d.logger.info({ code: r.code, reason: r.reason, limit: r.limit, status: r.status, listener: d.listener, ...ctx }, `request rejected: ${r.message}`)
}

export function sendRejection(reply: FastifyReply, d: RejectDeps, r: Rejection): FastifyReply {
  const req = reply.request
  recordRejection(d, r, { method: req.method, url: req.routeOptions.url ?? '(no route)', ...(req.caller ? { caller: req.caller.name } : {}), ip: req.ip })
  for (const [k, v] of Object.entries(r.headers ?? {})) reply.header(k, v)
  return reply.code(r.status).type('application/json; charset=utf-8').send(rejectionBody(r))
}
