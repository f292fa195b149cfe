/**
 * A client of the gateway's HTTP API (SPEC §10.1), the same endpoints upstream's `asya-mcp` uses:
 * MCP JSON-RPC on POST /mcp for tools, POST /tools/call to start an envelope, GET /envelopes/{id}
 * and the SSE stream GET /envelopes/{id}/stream (parsed with eventsource-parser).
 */
import { createParser } from 'eventsource-parser'
import { errorMessage } from '../errors.js'
import { CliError } from './io.js'

/** One row of the gateway's envelope history (upstream's EnvelopeUpdate). */
export interface EnvelopeUpdate {
  id: string
  status: string
  message?: string
  result?: unknown
  error?: string
  progress_percent?: number
  actor?: string
  actors?: string[]
  current_actor_idx?: number
  envelope_state?: string
  timestamp?: string
  [k: string]: unknown
}

export interface McpTool {
  name: string
  description?: string
  inputSchema?: { properties?: Record<string, { type?: string; description?: string; default?: unknown; enum?: unknown[]; items?: unknown }>; required?: string[] }
}

export const FINAL_STATUSES = new Set(['succeeded', 'failed'])

export class GatewayClient {
  private session: string | undefined
  private nextId = 1
  readonly base: string

  constructor(url: string) {
    this.base = url.replace(/\/+$/, '')
  }

  private unreachable(err: unknown): CliError {
    const cause = err instanceof Error && err.cause instanceof Error ? `${errorMessage(err)} (${err.cause.message})` : errorMessage(err)
    return new CliError(`gateway unreachable at ${this.base}: ${cause}; start it (npm run gateway, or kubectl -n asya-system port-forward svc/asya-gateway 8089:8080) or pass --url / set ASYA_CLI_MCP_URL`)
  }

  private async http(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<Response> {
    let res: Response
    try {
      res = await fetch(`${this.base}${path}`, {
        method,
        headers: { ...(body !== undefined ? { 'content-type': 'application/json' } : {}), accept: 'application/json', ...headers },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
        signal: AbortSignal.timeout(30_000),
      })
    } catch (err) {
      throw this.unreachable(err)
    }
    if (!res.ok) {
      const text = (await res.text().catch(() => '')).slice(0, 500)
      let detail = text.trim()
      try {
        const j = JSON.parse(text) as { error?: unknown; message?: unknown }
        detail = String(j.error ?? j.message ?? text).trim()
      } catch {
        // plain text
      }
      const hint = res.status === 404 && path.startsWith('/envelopes/') ? ': no such envelope (ids come from `asya mcp call --no-stream`)' : res.status === 404 ? ` (is ${this.base} an Asya gateway? check --url)` : ''
      throw new CliError(`gateway at ${this.base} answered ${res.status} for ${method} ${path}: ${detail}${hint}`)
    }
    return res
  }

  private async rpc(method: string, params: Record<string, unknown>): Promise<Record<string, unknown>> {
    const res = await this.http('POST', '/mcp', { jsonrpc: '2.0', id: this.nextId++, method, params }, this.mcpHeaders())
    this.session = res.headers.get('mcp-session-id') ?? this.session
    const text = await res.text()
    // Streamable HTTP may answer one JSON-RPC message as an SSE event.
    let json = text
    if ((res.headers.get('content-type') ?? '').includes('text/event-stream')) {
      json = ''
      const parser = createParser({ onEvent: (e) => void (json ||= e.data) })
      parser.feed(text)
    }
    const msg = JSON.parse(json) as { result?: Record<string, unknown>; error?: { message?: string } }
    if (msg.error) throw new CliError(`gateway MCP error for ${method}: ${msg.error.message ?? JSON.stringify(msg.error)}`)
    return msg.result ?? {}
  }

  private mcpHeaders(): Record<string, string> {
    const h: Record<string, string> = { accept: 'application/json, text/event-stream' }
    if (this.session !== undefined) h['mcp-session-id'] = this.session
    return h
  }

  private async initialize(): Promise<void> {
    if (this.session !== undefined) return
    await this.rpc('initialize', { protocolVersion: '2025-03-26', capabilities: {}, clientInfo: { name: 'asya-cli', version: '0.1.0' } })
    await this.http('POST', '/mcp', { jsonrpc: '2.0', method: 'notifications/initialized' }, this.mcpHeaders())
  }

  async listTools(): Promise<McpTool[]> {
    await this.initialize()
    const r = await this.rpc('tools/list', {})
    return (r.tools as McpTool[] | undefined) ?? []
  }

  /** POST /tools/call: the CallToolResult (content[0].text holds envelope_id, status_url, ...). */
  async callTool(name: string, args: Record<string, unknown>): Promise<Record<string, unknown>> {
    const res = await this.http('POST', '/tools/call', { name, arguments: args })
    return (await res.json()) as Record<string, unknown>
  }

  async status(id: string): Promise<Record<string, unknown>> {
    return (await (await this.http('GET', `/envelopes/${encodeURIComponent(id)}`)).json()) as Record<string, unknown>
  }

  /** Follows the SSE stream until it closes (after a final status); calls onUpdate per update. */
  async stream(id: string, onUpdate: (u: EnvelopeUpdate) => void, onRaw?: (data: string) => void): Promise<void> {
    let res: Response
    try {
      res = await fetch(`${this.base}/envelopes/${encodeURIComponent(id)}/stream`, { headers: { accept: 'text/event-stream' } })
    } catch (err) {
      throw this.unreachable(err)
    }
    if (!res.ok || !res.body) {
      const text = (await res.text().catch(() => '')).slice(0, 300)
      throw new CliError(`gateway at ${this.base} answered ${res.status} for GET /envelopes/${id}/stream: ${text}${res.status === 404 ? ': no such envelope' : ''}`)
    }
    let final = false
    const parser = createParser({
      onEvent: (e) => {
        onRaw?.(e.data)
        try {
          const u = JSON.parse(e.data) as EnvelopeUpdate
          onUpdate(u)
          if (FINAL_STATUSES.has(u.status)) final = true
        } catch {
          // not an update (a comment-like data line): shown with --debug only
        }
      },
    })
    const decoder = new TextDecoder()
    const reader = res.body.getReader()
    try {
      for (;;) {
        const { done, value } = await reader.read()
        if (done) break
        parser.feed(decoder.decode(value, { stream: true }))
        if (final) break
      }
    } catch (err) {
      if (!final) throw new CliError(`stream of envelope ${id} from ${this.base} broke: ${errorMessage(err)}; follow it again with \`asya mcp stream ${id}\``)
    } finally {
      await reader.cancel().catch(() => undefined)
    }
  }
}

/** The envelope id in a CallToolResult (content[].text JSON), or undefined. */
export function envelopeIdOf(result: Record<string, unknown>): string | undefined {
  const content = Array.isArray(result.content) ? (result.content as Array<{ type?: string; text?: string }>) : []
  for (const c of content) {
    if (c.type !== 'text' || typeof c.text !== 'string') continue
    try {
      const d = JSON.parse(c.text) as { envelope_id?: unknown }
      if (typeof d.envelope_id === 'string' && d.envelope_id !== '') return d.envelope_id
    } catch {
      // not JSON
    }
  }
  return typeof result.envelope_id === 'string' ? result.envelope_id : undefined
}

/** Upstream's value typing for --k=v flags: true/false, integers, numbers with a dot, else strings. */
export function typedValue(v: string): unknown {
  const low = v.toLowerCase()
  if (low === 'true' || low === 'false') return low === 'true'
  if (/^[+-]?\d+$/.test(v.trim())) return Number.parseInt(v, 10)
  if (v.includes('.') && /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(v.trim())) return Number.parseFloat(v)
  return v
}

/**
 * Tool arguments from the command line: a JSON object, or `--k=v`, `--k v` and `--flag` (true).
 * Names are kept as written; `renames` maps a dashed name to the tool's own (sleep-seconds →
 * sleep_seconds), so dashed flags are never silently dropped.
 */
export function parseToolArgs(params: readonly string[]): { args: Record<string, unknown>; error?: string } {
  if (params.length === 0) return { args: {} }
  const first = params[0] as string
  if (!first.startsWith('--')) {
    if (params.length > 1) return { args: {}, error: `give the arguments as one JSON object or as --name=value flags, not both (extra: ${params.slice(1).join(' ')})` }
    try {
      const v = JSON.parse(first) as unknown
      if (typeof v !== 'object' || v === null || Array.isArray(v)) return { args: {}, error: `JSON arguments must be an object, e.g. '{"text": "hello"}'` }
      return { args: v as Record<string, unknown> }
    } catch (err) {
      return { args: {}, error: `invalid JSON arguments: ${errorMessage(err)} (you gave ${first}; e.g. '{"text": "hello"}')` }
    }
  }
  const args: Record<string, unknown> = {}
  for (let i = 0; i < params.length; i++) {
    const p = params[i] as string
    if (!p.startsWith('--') || p === '--') return { args: {}, error: `unexpected argument ${JSON.stringify(p)}: tool arguments are --name=value, --name value or --flag` }
    const eq = p.indexOf('=')
    if (eq > 2) args[p.slice(2, eq)] = typedValue(p.slice(eq + 1))
    else {
      const next = params[i + 1]
      if (next !== undefined && !next.startsWith('--')) {
        args[p.slice(2)] = typedValue(next)
        i++
      } else args[p.slice(2)] = true
    }
  }
  return { args }
}
