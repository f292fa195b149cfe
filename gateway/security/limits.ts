/**
 * Limits and response hardening of the public listener: per-caller rate limit (@fastify/rate-limit,
 * in memory per replica), per-caller cap on open SSE streams, security headers, CORS (off unless
 * ASYA_GATEWAY_CORS_ORIGINS is set) and the JSON answer to requests the HTTP parser refuses
 * (request timeout, oversized headers). Body and argument sizes are enforced by the routes.
 */
import rateLimit from '@fastify/rate-limit'
import type { FastifyInstance } from 'fastify'
import type { Socket } from 'node:net'
import type { GatewayLimits } from '../config.js'
import { PUBLIC_OPEN_ROUTES } from './auth.js'
import { recordRejection, rejectionBody, RejectionError, type RejectDeps, type Rejection } from './rejections.js'

/** Per-caller limits key: the authenticated caller, else the client address. */
function callerKey(req: { caller?: { name: string }; ip: string }): string {
  return req.caller?.name ?? `ip:${req.ip}`
}

export async function installRateLimit(app: FastifyInstance, limits: GatewayLimits): Promise<void> {
  if (limits.rateLimit <= 0) return
  await app.register(rateLimit, {
    global: true,
    max: limits.rateLimit,
    timeWindow: limits.rateLimitWindowMs,
    // Runs after the authentication hook (app-level hooks come first), so the key is the caller.
    hook: 'onRequest',
    keyGenerator: callerKey,
    allowList: (req) => req.routeOptions.url !== undefined && PUBLIC_OPEN_ROUTES.has(req.routeOptions.url),
    errorResponseBuilder: (_req, ctx) =>
      new RejectionError({
        status: 429,
        code: 'ASYA_ERR_LIMIT_EXCEEDED',
        reason: 'rate_limited',
        message: `rate limit: ${ctx.max} requests per ${Math.round(limits.rateLimitWindowMs / 1000) || limits.rateLimitWindowMs / 1000}s per caller; retry in ${ctx.after}`,
        limit: 'ASYA_GATEWAY_RATE_LIMIT',
      }),
  })
}

/** Open SSE streams per caller. */
export class SseCap {
  private readonly open = new Map<string, number>()
  constructor(readonly max: number) {}

  /** Takes a slot for the request's caller; undefined when the cap is reached, else the release. */
  acquire(req: { caller?: { name: string }; ip: string }): (() => void) | undefined {
    if (this.max <= 0) return () => undefined
    const key = callerKey(req)
    const n = this.open.get(key) ?? 0
    if (n >= this.max) return undefined
    this.open.set(key, n + 1)
    let released = false
    return () => {
      if (released) return
      released = true
      const left = (this.open.get(key) ?? 1) - 1
      if (left <= 0) this.open.delete(key)
      else this.open.set(key, left)
    }
  }

  rejection(): Rejection {
    return { status: 429, code: 'ASYA_ERR_LIMIT_EXCEEDED', reason: 'sse_cap', message: `at most ${this.max} open SSE streams per caller`, limit: 'ASYA_GATEWAY_MAX_SSE_PER_CALLER' }
  }
}

const SECURITY_HEADERS: Record<string, string> = {
  'x-content-type-options': 'nosniff',
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
  'content-security-policy': "default-src 'none'; frame-ancestors 'none'",
  'cross-origin-opener-policy': 'same-origin',
}

/** An API never rendered in a browser: no sniffing, framing, referrers or inline anything. */
export function installSecurityHeaders(app: FastifyInstance, o: { hsts: boolean }): void {
  app.addHook('onSend', async (_req, reply, payload) => {
    for (const [k, v] of Object.entries(SECURITY_HEADERS)) if (!reply.hasHeader(k)) reply.header(k, v)
    if (o.hsts) reply.header('strict-transport-security', 'max-age=31536000')
    return payload
  })
}

/** The headers an SSE response (written on the raw socket) carries too. */
export const SSE_SECURITY_HEADERS = { 'x-content-type-options': 'nosniff' }

/** CORS for the configured origins only; nothing at all when none are configured. */
export function installCors(app: FastifyInstance, origins: readonly string[]): void {
  if (origins.length === 0) return
  const any = origins.includes('*')
  const allowed = new Set(origins)
  app.addHook('onRequest', async (req, reply) => {
    const origin = req.headers.origin
    if (typeof origin !== 'string' || !(any || allowed.has(origin))) return
    reply.header('access-control-allow-origin', any ? '*' : origin)
    reply.header('vary', 'Origin')
    reply.header('access-control-expose-headers', 'mcp-session-id, www-authenticate, retry-after')
    if (req.method === 'OPTIONS') {
      return reply
        .code(204)
        .header('access-control-allow-methods', 'GET, POST, OPTIONS')
        .header('access-control-allow-headers', 'authorization, content-type, accept, mcp-session-id, mcp-protocol-version, last-event-id')
        .header('access-control-max-age', '600')
        .send()
    }
  })
  // Preflights need a route to land on; the hook above answers them.
  app.options('*', async (_req, reply) => reply.code(404).send())
}

/**
 * Fastify's `clientErrorHandler`: requests the HTTP parser refuses (timeout receiving the
 * request, oversized or malformed headers) get a JSON 4xx, a log line and a metric.
 */
export function clientErrorHandler(d: () => RejectDeps | undefined, requestTimeoutMs: number): (err: Error & { code?: string }, socket: Socket) => void {
  return (err, socket) => {
    if (!socket.writable) return
    const timeout = err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
    const tooLarge = err.code === 'HPE_HEADER_OVERFLOW'
    const r: Rejection | undefined = timeout
      ? { status: 408, code: 'ASYA_ERR_LIMIT_EXCEEDED', reason: 'request_timeout', message: `request not received within ${requestTimeoutMs} ms`, limit: 'ASYA_GATEWAY_REQUEST_TIMEOUT' }
      : tooLarge
        ? { status: 431, code: 'ASYA_ERR_LIMIT_EXCEEDED', reason: 'body_too_large', message: 'request headers too large', limit: 'max-http-header-size (16 KiB)' }
        : undefined
    const deps = d()
    let status = 400
    let body = JSON.stringify({ error: "malformed HTTP request" })
    if (r) {
      status = r.status
      body = JSON.stringify(rejectionBody(r))
      if (deps) recordRejection(deps, r, { ip: socket.remoteAddress ?? '' })
    }
    const reason = status === 408 ? 'Request Timeout' : status === 431 ? 'Request Header Fields Too Large' : 'Bad Request'
    socket.end(`HTTP/1.1 ${status} ${reason}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`)
  }
}
