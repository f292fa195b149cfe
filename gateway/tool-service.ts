/**
 * The gateway's internal API: what `POST /tools/call`, the SSE endpoint and the MCP endpoint
 * (gateway/mcp) are built on. Stable: list tools, call a tool (→ envelope id and status), get an
 * envelope, follow an envelope's updates until it is final.
 *
 * A call: arguments → payload (defaults, required and type checks) → `pending` envelope in the
 * store → first envelope `{id, route{actors, current 0, metadata{job_id}}, payload, deadline}`
 * published to the first actor's queue and confirmed by the broker → `running`. A publish the
 * broker refuses (no queue for the first actor, nack, too large) marks the envelope `failed` with
 * the reason: never a silent drop.
 */
import { randomUUID } from 'node:crypto'
import type { Json } from '../src/envelope.js'
import { AsyaError, errorMessage, errors } from '../src/errors.js'
import type { Logger } from '../src/logger.js'
import type { Transport } from '../src/transport/transport.js'
import { HEADER } from '../src/names.js'
import { endWithError, SpanKind, traceFields, Tracing, TRACEPARENT, TRACESTATE } from '../src/tracing/tracing.js'
import { EnvelopeFollower, type FollowEnd } from './envelope-follower.js'
import type { GatewayMetrics } from './metrics.js'
import type { EnvelopeStore } from './store/store.js'
import { isFinalStatus, type EnvelopeRecord, type EnvelopeStatus, type EnvelopeUpdate, type SequencedUpdate } from './store/types.js'
import { argumentsToPayload, toolInputSchema, type ToolConfig, type ToolDefinition } from './tool-config.js'

/** MCP `CallToolResult` (text content only, as upstream). */
export interface CallToolResult {
  content: Array<{ type: 'text'; text: string }>
  isError?: boolean
  [extra: string]: unknown
}

/** A tool as MCP `tools/list` and `GET /tools` show it. */
export interface ToolDescriptor {
  name: string
  description: string
  inputSchema: { type: 'object'; properties: Record<string, Json>; required?: string[] }
  /** Progress streamed (tool result carries `stream_url`). */
  progress: boolean
  timeoutSec: number
  metadata: Record<string, string>
  /** Ours: MCP tools/call should answer with the final result. */
  wait: boolean
}

export interface ToolCallOutcome {
  tool: ToolDefinition
  /** Undefined when the call was rejected before an envelope existed (bad arguments). */
  envelopeId?: string
  /** `running` after a confirmed publish, `failed` when the publish failed, `rejected` for bad arguments. */
  status: EnvelopeStatus | 'rejected'
  /** The upstream-compatible tool result: `content[0].text` is JSON with envelope_id, message, status_url, stream_url, metadata. */
  result: CallToolResult
}

export interface ToolServiceOptions {
  tools: ToolConfig
  store: EnvelopeStore
  transport: Transport
  logger: Logger
  metrics: GatewayMetrics
  /** Prefix of status_url / stream_url (upstream: relative paths). @default '' */
  publicUrl?: string
  /** ASYA_GATEWAY_MAX_ARGUMENTS_SIZE: largest `arguments` as JSON bytes. @default unlimited */
  maxArgumentsBytes?: number
  /** One span per tool call; the first envelope carries its traceparent. @default off */
  tracing?: Tracing
}

/** The caller's W3C trace context (HTTP `traceparent` / `tracestate` request headers), continued by the call. */
export interface CallerTrace {
  traceparent?: string
  tracestate?: string
}

/** The caller's trace headers from an HTTP request's headers (first value when repeated). */
export function callerTrace(headers: Record<string, string | string[] | undefined> | undefined): CallerTrace {
  const one = (v: string | string[] | undefined): string | undefined => (Array.isArray(v) ? v[0] : v)
  const tp = one(headers?.[TRACEPARENT])
  const ts = one(headers?.[TRACESTATE])
  return { ...(tp ? { traceparent: tp } : {}), ...(ts ? { tracestate: ts } : {}) }
}

export interface WaitOptions {
  /** Called for every update, history first, in order. */
  onUpdate?: (update: EnvelopeUpdate) => void
  /** Stops waiting (the promise rejects with the signal's reason). */
  signal?: AbortSignal
}

export class ToolService {
  private readonly byName = new Map<string, ToolDefinition>()

  constructor(private readonly o: ToolServiceOptions) {
    for (const t of o.tools.tools) this.byName.set(t.name, t)
  }

  get store(): EnvelopeStore {
    return this.o.store
  }

  listTools(): ToolDescriptor[] {
    return [...this.byName.values()].map((t) => ({
      name: t.name,
      description: t.description,
      inputSchema: toolInputSchema(t),
      progress: t.progress,
      timeoutSec: t.timeoutSec,
      metadata: { ...t.metadata },
      wait: t.wait,
    }))
  }

  getTool(name: string): ToolDefinition | undefined {
    return this.byName.get(name)
  }

  /** Calls a tool. Throws ASYA_ERR_TOOL_NOT_FOUND for an unknown name and ASYA_ERR_STORE when the store fails. */
  async callTool(name: string, args: unknown, caller: CallerTrace = {}): Promise<ToolCallOutcome> {
    const tool = this.byName.get(name)
    if (!tool) {
      this.o.metrics.toolCalls.inc({ tool: '(unknown)', outcome: 'unknown_tool' })
      throw new errors.ASYA_ERR_TOOL_NOT_FOUND(`Tool ${JSON.stringify(name)} not found`, { details: { tool: name } })
    }
    if (this.o.maxArgumentsBytes !== undefined && args !== undefined) {
      // Bytes as the envelope will carry them; the cheap length check settles most calls.
      const json = JSON.stringify(args) ?? ''
      if (json.length > this.o.maxArgumentsBytes || Buffer.byteLength(json) > this.o.maxArgumentsBytes) {
        this.o.metrics.toolCalls.inc({ tool: tool.name, outcome: 'too_large' })
        throw new errors.ASYA_ERR_LIMIT_EXCEEDED(`tool arguments larger than ${this.o.maxArgumentsBytes} bytes`, { details: { limit: 'ASYA_GATEWAY_MAX_ARGUMENTS_SIZE', tool: tool.name } })
      }
    }
    const checked = argumentsToPayload(tool, args)
    if ('problems' in checked) {
      this.o.metrics.toolCalls.inc({ tool: tool.name, outcome: 'invalid_arguments' })
      return { tool, status: 'rejected', result: { content: [{ type: 'text', text: checked.problems.join('; ') }], isError: true } }
    }
    const id = randomUUID()
    let record: EnvelopeRecord
    try {
      record = (
        await this.o.store.create({ id, actors: tool.actors, current: 0, payload: checked.payload, ...(tool.timeoutSec > 0 ? { timeoutSec: tool.timeoutSec } : {}) })
      ).record
    } catch (err) {
      this.o.metrics.toolCalls.inc({ tool: tool.name, outcome: 'error' })
      throw storeError(err)
    }
    const first = tool.actors[0] as string
    const tracing = this.o.tracing ?? Tracing.off()
    // The trace of the whole pipeline starts here (or continues the caller's): every actor's hop
    // span descends from this one through the envelope's headers.
    const span = tracing.startSpan(`tools/call ${tool.name}`, tracing.extract(caller), {
      kind: SpanKind.PRODUCER,
      attributes: { 'messaging.system': this.o.transport.name, 'messaging.operation.type': 'send', 'messaging.destination.name': first, 'messaging.message.id': id, 'asya.tool': tool.name, 'asya.route.current': 0 },
    })
    const headers = tracing.inject(span, {} as Record<string, string>)
    const envelope = {
      id,
      route: { actors: tool.actors, current: 0, metadata: { job_id: id } },
      ...(headers && Object.keys(headers).length > 0 ? { headers } : {}),
      payload: checked.payload,
      ...(record.deadline !== undefined ? { deadline: record.deadline } : {}),
    }
    const started = process.hrtime.bigint()
    let status: EnvelopeStatus = 'running'
    let failure: string | undefined
    try {
      // Tracing on: the first hop's span shows the queue wait since this publish.
      await this.o.transport.publish(first, Buffer.from(JSON.stringify(envelope), 'utf8'), span.isRecording() ? { headers: { [HEADER.sentAt]: String(Date.now()) } } : undefined)
      this.o.metrics.publishDuration.observe({ result: 'ok' }, seconds(started))
      await this.o.store.markRunning(id, 'Envelope sent to first actor')
      this.o.metrics.toolCalls.inc({ tool: tool.name, outcome: 'accepted' })
    } catch (err) {
      this.o.metrics.publishDuration.observe({ result: 'failed' }, seconds(started))
      failure = `failed to send envelope to actor ${first}: ${errorMessage(err)}`
      status = 'failed'
      this.o.logger.warn({ envelope_id: id, tool: tool.name, actor: first, err: errorMessage(err), code: (err as AsyaError).code, ...traceFields(span) }, 'first envelope not published')
      this.o.metrics.toolCalls.inc({ tool: tool.name, outcome: 'publish_failed' })
      try {
        const w = await this.o.store.finish(id, { status: 'failed', error: failure, message: `Envelope failed: ${failure}` })
        if (w.outcome === 'applied') this.o.metrics.envelopesFinal.inc({ status: 'failed', source: 'publish' })
      } catch (storeErr) {
        this.o.logger.error({ envelope_id: id, err: errorMessage(storeErr) }, 'could not record the publish failure')
      }
    }
    const base = this.o.publicUrl ?? ''
    const text: Record<string, Json> = {
      envelope_id: id,
      message: failure === undefined ? 'Envelope created successfully' : `Envelope failed: ${failure}`,
      status_url: `${base}/envelopes/${id}`,
    }
    if (tool.progress) text.stream_url = `${base}/envelopes/${id}/stream`
    if (Object.keys(tool.metadata).length > 0) text.metadata = tool.metadata
    if (failure !== undefined) text.error = failure
    if (failure === undefined) span.end()
    else endWithError(span, 'publish_failed', failure)
    return {
      tool,
      envelopeId: id,
      status,
      result: { content: [{ type: 'text', text: JSON.stringify(text) }], ...(failure !== undefined ? { isError: true } : {}) },
    }
  }

  async getEnvelope(id: string): Promise<EnvelopeRecord | undefined> {
    try {
      return await this.o.store.get(id)
    } catch (err) {
      throw storeError(err)
    }
  }

  /**
   * Follows an envelope: `sink` gets every update (history, then live) until the final one.
   * Returns undefined when there is no such envelope. See {@link EnvelopeFollower}.
   */
  async follow(id: string, sink: (u: SequencedUpdate) => boolean, onEnd: (end: FollowEnd) => void): Promise<EnvelopeFollower | undefined> {
    const f = new EnvelopeFollower(this.o.store, id, sink, onEnd)
    return (await f.start()) ? f : undefined
  }

  /**
   * Resolves with the envelope once it is final (at once when it already is), after passing every
   * update to `onUpdate`. Throws ASYA_ERR_ENVELOPE_NOT_FOUND, or the signal's reason when aborted.
   */
  async waitForFinal(id: string, options: WaitOptions = {}): Promise<EnvelopeRecord> {
    options.signal?.throwIfAborted()
    return new Promise<EnvelopeRecord>((resolve, reject) => {
      let follower: EnvelopeFollower | undefined
      const onAbort = (): void => {
        follower?.close()
        reject(options.signal?.reason)
      }
      options.signal?.addEventListener('abort', onAbort, { once: true })
      const done = (): void => options.signal?.removeEventListener('abort', onAbort)
      this.follow(
        id,
        (u) => {
          options.onUpdate?.(u.update)
          return true
        },
        (end) => {
          done()
          if (end.reason === 'final') {
            this.o.store.get(id).then((r) => (r ? resolve(r) : reject(notFound(id))), (err: unknown) => reject(storeError(err)))
          } else if (end.reason === 'error') reject(storeError(end.error))
        },
      ).then(
        (f) => {
          follower = f
          if (!f) {
            done()
            reject(notFound(id))
          }
        },
        (err: unknown) => {
          done()
          reject(storeError(err))
        },
      )
    })
  }

  /** True when `status` is final. */
  static isFinal(status: string): boolean {
    return isFinalStatus(status)
  }
}

function seconds(start: bigint): number {
  return Number(process.hrtime.bigint() - start) / 1e9
}

function notFound(id: string): AsyaError {
  return new errors.ASYA_ERR_ENVELOPE_NOT_FOUND(`Envelope ${id} not found`, { details: { envelope_id: id } })
}

export function storeError(err: unknown): AsyaError {
  if (err instanceof AsyaError) return err
  return new errors.ASYA_ERR_STORE(`envelope store: ${errorMessage(err)}`, { cause: err })
}
