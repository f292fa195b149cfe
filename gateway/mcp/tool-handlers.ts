/**
 * The MCP server of one request: the SDK's protocol `Server` (initialize, ping, version
 * negotiation, JSON-RPC framing and errors) with `tools/list` and `tools/call` answered from the
 * gateway's ToolService.
 *
 * The low-level `Server` rather than `McpServer`: tool input schemas come from routes.yaml as JSON
 * Schema, and `McpServer.registerTool` wants Zod schemas (a lossy round trip for enums, defaults
 * and nested objects).
 *
 * tools/call answers at once with upstream's result (`content[0].text` = JSON with `envelope_id`,
 * `status_url`, `stream_url`), unless the call waits: the tool is marked `wait: true`, the client
 * sends `_meta["asya.sh/wait"]: true`, or the client sends a `progressToken` (progress is only
 * deliverable while the request is open; `_meta["asya.sh/wait"]: false` opts out). A waiting call
 * streams `notifications/progress` to a client with a progressToken and answers with the
 * envelope's final result.
 */
import { Server } from '@modelcontextprotocol/sdk/server/index.js'
import { CallToolRequestSchema, ErrorCode, ListToolsRequestSchema, McpError, type CallToolResult, type Tool } from '@modelcontextprotocol/sdk/types.js'
import { isPlainObject } from '../../src/envelope.js'
import { errorMessage, isAsyaError } from '../../src/errors.js'
import type { Logger } from '../../src/logger.js'
import type { EnvelopeRecord } from '../store/types.js'
import type { Caller } from '../security/auth.js'
import type { Rejection } from '../security/rejections.js'
import { callerTrace, type ToolService } from '../tool-service.js'
import type { McpMetrics } from './metrics.js'

/** `serverInfo` as upstream's gateway reports it (clients and upstream's tests check the name). */
export const SERVER_INFO = { name: 'asya-gateway', version: '0.1.0' }

/** `_meta` key a client sets to ask for (true) or refuse (false) the final result. */
export const WAIT_META = 'asya.sh/wait'

export interface ToolHandlerDeps {
  service: ToolService
  logger: Logger
  metrics: McpMetrics
  /** Aborted when the HTTP request goes away (the client closed the stream). */
  signal: AbortSignal
  /** The authenticated caller (security on): its tool allow-list applies. */
  caller?: Caller
  /** Counts and logs a rejection (allow-list, argument size) answered as a JSON-RPC error. */
  onRejected?: (r: Rejection) => void
}

function allowed(caller: Caller | undefined, tool: string): boolean {
  return caller?.tools === undefined || caller.tools.has(tool)
}

export function createMcpServer(d: ToolHandlerDeps): Server {
  const server = new Server(SERVER_INFO, { capabilities: { tools: { listChanged: false } } })

  server.setRequestHandler(ListToolsRequestSchema, () => ({
    tools: d.service.listTools().filter((t) => allowed(d.caller, t.name)).map(
      (t): Tool => ({
        name: t.name,
        description: t.description,
        inputSchema: t.inputSchema as Tool['inputSchema'],
        // Ours, for clients that look: whether the call answers with the final result.
        _meta: { [WAIT_META]: t.wait, 'asya.sh/progress': t.progress },
      }),
    ),
  }))

  server.setRequestHandler(CallToolRequestSchema, async (request, extra): Promise<CallToolResult> => {
    const { name, arguments: args } = request.params
    const meta = request.params._meta ?? {}
    const progressToken = meta.progressToken
    if (!allowed(d.caller, name)) {
      const message = `tool ${JSON.stringify(name)} is not in the allow-list of ${d.caller?.name ?? '?'}`
      d.onRejected?.({ status: 403, code: 'ASYA_ERR_FORBIDDEN', reason: 'forbidden_tool', message })
      throw new McpError(ErrorCode.InvalidParams, message)
    }
    let outcome
    try {
      outcome = await d.service.callTool(name, args ?? {}, callerTrace(extra.requestInfo?.headers))
    } catch (err) {
      if (isAsyaError(err, 'ASYA_ERR_TOOL_NOT_FOUND')) throw new McpError(ErrorCode.InvalidParams, `Tool ${name} not found`)
      if (isAsyaError(err, 'ASYA_ERR_LIMIT_EXCEEDED')) {
        d.onRejected?.({ status: 413, code: 'ASYA_ERR_LIMIT_EXCEEDED', reason: 'arguments_too_large', message: err.message, limit: String(err.details.limit) })
        throw new McpError(ErrorCode.InvalidParams, `${err.message} (limit ${String(err.details.limit)})`)
      }
      d.logger.error({ tool: name, err: errorMessage(err), code: isAsyaError(err) ? err.code : undefined }, 'MCP tools/call failed')
      throw new McpError(ErrorCode.InternalError, errorMessage(err))
    }
    const askedWait = meta[WAIT_META]
    const wait = askedWait === true || (askedWait !== false && (outcome.tool.wait || progressToken !== undefined))
    if (!wait || outcome.status !== 'running' || outcome.envelopeId === undefined) return outcome.result as CallToolResult

    const id = outcome.envelopeId
    const signal = AbortSignal.any([d.signal, extra.signal])
    let last = 0
    d.metrics.waiting.inc()
    try {
      const record = await d.service.waitForFinal(id, {
        signal,
        onUpdate: (u) => {
          if (progressToken === undefined || u.progress_percent === undefined) return
          // MCP: progress must increase with every notification.
          if (!(u.progress_percent > last)) return
          last = u.progress_percent
          const message = u.message ?? (u.actor !== undefined && u.envelope_state !== undefined ? `${u.envelope_state}: ${u.actor}` : undefined)
          extra
            .sendNotification({
              method: 'notifications/progress',
              params: { progressToken, progress: u.progress_percent, total: 100, ...(message !== undefined ? { message } : {}) },
            })
            .catch(() => undefined)
        },
      })
      d.metrics.waitResults.inc({ status: record.status })
      return finalResult(record)
    } catch (err) {
      if (signal.aborted) {
        d.metrics.waitResults.inc({ status: 'abandoned' })
        throw new McpError(ErrorCode.RequestTimeout, 'request closed before the envelope finished')
      }
      d.logger.error({ envelope_id: id, err: errorMessage(err) }, 'waiting for the final result failed')
      throw new McpError(ErrorCode.InternalError, errorMessage(err))
    } finally {
      d.metrics.waiting.dec()
    }
  })
  return server
}

/** The tool result of a finished envelope: the handler's result, or the error with isError. */
export function finalResult(r: EnvelopeRecord): CallToolResult {
  const meta = { 'asya.sh/envelope_id': r.id, 'asya.sh/status': r.status }
  if (r.status === 'succeeded') {
    const result = r.result ?? null
    return {
      content: [{ type: 'text', text: typeof result === 'string' ? result : JSON.stringify(result) }],
      ...(isPlainObject(result) ? { structuredContent: result as Record<string, unknown> } : {}),
      _meta: meta,
    }
  }
  // error-end's payload (SPEC §10.3) carries the handler's message under details.
  const details = isPlainObject(r.result) && isPlainObject(r.result.details) ? r.result.details : undefined
  const failure = {
    envelope_id: r.id,
    status: r.status,
    error: r.error ?? 'failed',
    ...(typeof details?.message === 'string' ? { message: details.message } : r.message !== undefined ? { message: r.message } : {}),
    ...(typeof details?.actor === 'string' ? { actor: details.actor } : {}),
  }
  return {
    content: [{ type: 'text', text: JSON.stringify(failure) }],
    isError: true,
    _meta: meta,
  }
}
