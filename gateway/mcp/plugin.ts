/**
 * `POST /mcp`: MCP Streamable HTTP through the SDK's transport, arranged so that upstream's
 * clients keep working (SPEC §10.1):
 *
 * - Stateless on the server: every request gets a fresh SDK transport and protocol server, so any
 *   replica answers any request. `initialize` still answers with an `Mcp-Session-Id` (a signed
 *   token, see session.ts) and later requests carrying it are verified on whichever replica they
 *   reach; an id no replica could have issued gets 404 (the client re-initializes). A request
 *   without the header is served (curl, upstream's tests).
 * - Content negotiation: a `tools/call` with a `progressToken` from a client that accepts
 *   `text/event-stream` (the SDK client) gets an SSE response, which is what carries
 *   `notifications/progress` before the result. Everything else gets plain JSON, the only thing
 *   upstream's clients (`Accept: *\/*`, `application/json`, none) understand.
 * - Notifications and responses alone → 202. Protocol versions: whatever the SDK supports
 *   (2024-11-05 … its newest); the SDK negotiates on `initialize`, and a replica takes the version
 *   of later requests from the `MCP-Protocol-Version` header or, failing that, the session id.
 * - `GET` and `DELETE /mcp` → 405: there is no server-initiated stream and no server-side session
 *   to delete (both allowed by the spec).
 */
import { WebStandardStreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/webStandardStreamableHttp.js'
import { LATEST_PROTOCOL_VERSION, SUPPORTED_PROTOCOL_VERSIONS } from '@modelcontextprotocol/sdk/types.js'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import { Readable } from 'node:stream'
import type { ReadableStream as NodeReadableStream } from 'node:stream/web'
import { isPlainObject } from '../../src/envelope.js'
import { errorMessage } from '../../src/errors.js'
import type { GatewayContext, GatewayPlugin } from '../gateway.js'
import { recordRejection } from '../security/rejections.js'
import { McpMetrics } from './metrics.js'
import { SessionSigner, sessionKey } from './session.js'
import { createMcpServer } from './tool-handlers.js'

export const MCP_PATH = '/mcp'
const SESSION_HEADER = 'mcp-session-id'
const VERSION_HEADER = 'mcp-protocol-version'
/** Methods counted by name in the metrics; anything else is `other` (bounded label values). */
const KNOWN_METHODS = new Set(['initialize', 'ping', 'tools/list', 'tools/call', 'notifications/initialized', 'notifications/cancelled'])

export interface McpPluginOptions {
  /** Signing key of session ids. @default from the gateway config (see sessionKey) */
  sessionKey?: Buffer
}

/** The MCP endpoint as a gateway plugin. */
export function mcpPlugin(o: McpPluginOptions = {}): GatewayPlugin {
  return (app: FastifyInstance, ctx: GatewayContext) => {
    const { logger, config } = ctx
    const derived = o.sessionKey !== undefined ? { key: o.sessionKey, source: 'option' as const } : sessionKey({ ...(config.mcpSessionSecret !== undefined ? { secret: config.mcpSessionSecret } : {}), ...(config.databaseUrl !== undefined ? { databaseUrl: config.databaseUrl } : {}) })
    if (derived.source === 'random') logger.warn('MCP session ids are signed with a random per-process key: valid on this replica only (set ASYA_MCP_SESSION_SECRET or ASYA_DATABASE_URL)')
    const signer = new SessionSigner(derived.key)
    const metrics = new McpMetrics(ctx.metrics.registry)

    app.post(MCP_PATH, (req, reply) => handlePost(req, reply, ctx, signer, metrics))
    for (const method of ['GET', 'DELETE'] as const) {
      app.route({
        method,
        url: MCP_PATH,
        handler: async (_req, reply) =>
          reply
            .code(405)
            .header('allow', 'POST')
            .send({ jsonrpc: '2.0', error: { code: -32000, message: `Method not allowed: ${method} ${MCP_PATH} (this server offers no standalone stream and keeps no session state)` }, id: null }),
      })
    }
  }
}

function methodsOf(body: unknown): string[] {
  const messages = Array.isArray(body) ? body : [body]
  return messages.flatMap((m) => (isPlainObject(m) && typeof m.method === 'string' ? [KNOWN_METHODS.has(m.method) ? m.method : 'other'] : []))
}

/** A tools/call asking for progress notifications (`params._meta.progressToken`). */
function wantsProgress(body: unknown): boolean {
  const messages = Array.isArray(body) ? body : [body]
  return messages.some((m) => isPlainObject(m) && m.method === 'tools/call' && isPlainObject(m.params) && isPlainObject(m.params._meta) && m.params._meta.progressToken !== undefined)
}

function headerValue(req: FastifyRequest, name: string): string | undefined {
  const v = req.headers[name]
  return Array.isArray(v) ? v[0] : v
}

async function handlePost(req: FastifyRequest, reply: FastifyReply, ctx: GatewayContext, signer: SessionSigner, metrics: McpMetrics): Promise<FastifyReply> {
  const body = req.body
  const methods = methodsOf(body)
  const count = (outcome: string): void => {
    for (const method of methods.length > 0 ? methods : ['none']) metrics.requests.inc({ method, outcome })
  }
  const initialize = Array.isArray(body) ? body.find((m) => isPlainObject(m) && m.method === 'initialize') : isPlainObject(body) && body.method === 'initialize' ? body : undefined

  // Session: issued on initialize, verified (on any replica) afterwards.
  let sessionId: string | undefined
  let protocolVersion = headerValue(req, VERSION_HEADER)
  if (initialize !== undefined) {
    const requested = isPlainObject(initialize) && isPlainObject(initialize.params) ? initialize.params.protocolVersion : undefined
    const negotiated = typeof requested === 'string' && SUPPORTED_PROTOCOL_VERSIONS.includes(requested) ? requested : LATEST_PROTOCOL_VERSION
    sessionId = signer.issue(negotiated)
  } else {
    const given = headerValue(req, SESSION_HEADER)
    if (given !== undefined) {
      const claims = signer.verify(given)
      if (!claims) {
        count('unknown_session')
        return reply.code(404).send({ jsonrpc: '2.0', error: { code: -32001, message: 'Session not found: initialize again' }, id: null })
      }
      protocolVersion ??= claims.protocolVersion
    }
  }

  // Content negotiation: an SSE response only where it carries something JSON cannot (progress
  // notifications before the result) and the client accepts it; JSON otherwise. The SDK's own
  // check wants both types listed, whatever we answer with.
  const accept = headerValue(req, 'accept') ?? ''
  const wantsSse = accept.includes('text/event-stream') && wantsProgress(body)
  const headers = new Headers()
  for (const [k, v] of Object.entries(req.headers)) if (v !== undefined) headers.set(k, Array.isArray(v) ? v.join(', ') : v)
  headers.set('accept', 'application/json, text/event-stream')
  // The gateway parses any body as JSON whatever its content type (upstream does too).
  headers.set('content-type', 'application/json')
  headers.delete('content-length')
  if (protocolVersion !== undefined) headers.set(VERSION_HEADER, protocolVersion)

  const closed = new AbortController()
  const transport = new WebStandardStreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: !wantsSse })
  const server = createMcpServer({
    service: ctx.service,
    logger: ctx.logger,
    metrics,
    signal: closed.signal,
    ...(req.caller ? { caller: req.caller } : {}),
    onRejected: (r) => recordRejection({ metrics: ctx.metrics, logger: ctx.logger, listener: 'public' }, r, { method: 'POST', url: MCP_PATH, ...(req.caller ? { caller: req.caller.name } : {}), ip: req.ip }),
  })
  const cleanup = (): void => {
    closed.abort(new Error('client closed the request'))
    void transport.close().catch(() => undefined)
    void server.close().catch(() => undefined)
  }
  reply.raw.once('close', cleanup)
  let response: Response
  try {
    await server.connect(transport)
    const request = new Request(`http://gateway${MCP_PATH}`, { method: 'POST', headers, body: body === undefined ? '' : JSON.stringify(body) })
    response = await transport.handleRequest(request, body === undefined ? {} : { parsedBody: body })
  } catch (err) {
    ctx.logger.error({ err: errorMessage(err) }, 'MCP request failed')
    count('error')
    cleanup()
    return reply.code(500).send({ jsonrpc: '2.0', error: { code: -32603, message: 'Internal error' }, id: null })
  }
  count(response.status >= 500 ? 'error' : response.status >= 400 ? 'rejected' : 'ok')
  reply.code(response.status)
  response.headers.forEach((v, k) => {
    if (k !== 'content-length') reply.header(k, v)
  })
  if (sessionId !== undefined && response.status < 400) reply.header(SESSION_HEADER, sessionId)
  if (response.body === null) return reply.send()
  if (!wantsSse) return reply.send(Buffer.from(await response.arrayBuffer()))
  return reply.send(Readable.fromWeb(response.body as unknown as NodeReadableStream))
}
