/**
 * Tracing (W3C Trace Context + OpenTelemetry), shared by the sidecar and the gateway.
 *
 * The trace context rides in the envelope's `headers` (`traceparent`, `tracestate`), which every
 * hop carries unchanged (SPEC §2): each component continues the context it finds there and writes
 * its own into every envelope it sends. Spans are exported with OTLP/HTTP (JSON) when the standard
 * `OTEL_*` variables ask for it; otherwise nothing is registered and every call below is a no-op
 * on the OpenTelemetry API's non-recording span (near-zero cost), while the headers still pass
 * through untouched.
 *
 * Configuration (the OpenTelemetry SDK's own variables):
 * - `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (full URL) or `OTEL_EXPORTER_OTLP_ENDPOINT` (base URL,
 *   `/v1/traces` appended): set one to turn tracing on.
 * - `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none`: off even with an endpoint.
 * - `OTEL_EXPORTER_OTLP_PROTOCOL` / `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL`: only `http/json` is
 *   shipped; another value is a startup error naming the variable (better than silently sending a
 *   format the collector does not expect).
 * - `OTEL_SERVICE_NAME` @default the component (`asya-sidecar`, `asya-gateway`);
 *   `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG`,
 *   `OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_BSP_*`: read by the SDK as documented by OpenTelemetry.
 */
import {
  INVALID_SPAN_CONTEXT,
  isSpanContextValid,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  trace,
  type Attributes,
  type Context,
  type Span,
  type TextMapGetter,
  type TextMapSetter,
  type Tracer,
} from '@opentelemetry/api'
import { W3CTraceContextPropagator } from '@opentelemetry/core'
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http'
import { detectResources, envDetector, resourceFromAttributes } from '@opentelemetry/resources'
import { BasicTracerProvider, BatchSpanProcessor } from '@opentelemetry/sdk-trace-base'
import { EnvReader } from '../config/env.js'

export { SpanKind, SpanStatusCode, ROOT_CONTEXT, type Attributes, type Context, type Span }

/** The span every call returns while tracing is off: records nothing, costs nothing. */
export const NOOP_SPAN: Span = trace.wrapSpanContext(INVALID_SPAN_CONTEXT)

/** Envelope header names of W3C Trace Context. */
export const TRACEPARENT = 'traceparent'
export const TRACESTATE = 'tracestate'

export interface TracingConfig {
  /** True when an OTLP endpoint is configured and tracing is not disabled. @default false */
  enabled: boolean
  /** OTLP/HTTP traces URL (…/v1/traces). */
  tracesUrl?: string
  /** `service.name`. @default the component name */
  serviceName: string
}

/** Reads the OTEL_* variables that decide whether tracing is on; problems go to `env` (reported with the rest). */
export function readTracingConfig(env: EnvReader, component: string): TracingConfig {
  const serviceName = env.string('OTEL_SERVICE_NAME', component)
  const disabled = env.bool('OTEL_SDK_DISABLED', false)
  const exporter = env.string('OTEL_TRACES_EXPORTER', 'otlp')
  if (exporter !== 'otlp' && exporter !== 'none') env.fail('OTEL_TRACES_EXPORTER', `"${exporter}" is not supported: otlp or none`)
  for (const name of ['OTEL_EXPORTER_OTLP_TRACES_PROTOCOL', 'OTEL_EXPORTER_OTLP_PROTOCOL']) {
    const p = env.raw(name)
    if (p !== undefined && p !== 'http/json') env.fail(name, `"${p}" is not supported: this build exports OTLP over HTTP as JSON (http/json); every OpenTelemetry Collector accepts it on :4318`)
  }
  const full = env.raw('OTEL_EXPORTER_OTLP_TRACES_ENDPOINT')
  const base = env.raw('OTEL_EXPORTER_OTLP_ENDPOINT')
  let tracesUrl: string | undefined
  for (const [name, value, suffix] of [
    ['OTEL_EXPORTER_OTLP_TRACES_ENDPOINT', full, ''],
    ['OTEL_EXPORTER_OTLP_ENDPOINT', base, '/v1/traces'],
  ] as const) {
    if (value === undefined || tracesUrl !== undefined) continue
    try {
      const u = new URL(value)
      if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error('not http(s)')
      tracesUrl = suffix === '' ? u.toString() : `${value.replace(/\/+$/, '')}${suffix}`
    } catch {
      env.fail(name, `"${value}" is not an http(s) URL`)
    }
  }
  const enabled = !disabled && exporter === 'otlp' && tracesUrl !== undefined
  return { enabled, serviceName, ...(tracesUrl !== undefined ? { tracesUrl } : {}) }
}

type Headers = Record<string, unknown>

const getter: TextMapGetter<Headers> = {
  keys: (carrier) => Object.keys(carrier),
  get: (carrier, key) => {
    const v = carrier[key]
    return typeof v === 'string' ? v : undefined
  },
}
const setter: TextMapSetter<Record<string, string>> = {
  set: (carrier, key, value) => {
    carrier[key] = value
  },
}
const w3c = new W3CTraceContextPropagator()

/**
 * The component's tracer plus the envelope-header propagation. One per process; `shutdown()`
 * flushes what is buffered (SIGTERM drain).
 */
export class Tracing {
  readonly tracer: Tracer

  private constructor(
    readonly enabled: boolean,
    private readonly provider: BasicTracerProvider | undefined,
  ) {
    this.tracer = provider ? provider.getTracer('asya') : trace.getTracer('asya')
  }

  /** Tracing as configured. */
  static start(config: TracingConfig, attributes: Attributes = {}): Tracing {
    if (!config.enabled) return new Tracing(false, undefined)
    const resource = detectResources({ detectors: [envDetector] }).merge(resourceFromAttributes({ 'service.name': config.serviceName, ...attributes }))
    const provider = new BasicTracerProvider({
      resource,
      spanProcessors: [new BatchSpanProcessor(new OTLPTraceExporter({ url: config.tracesUrl as string }))],
    })
    return new Tracing(true, provider)
  }

  /** Off: spans are non-recording, headers pass through. */
  static off(): Tracing {
    return new Tracing(false, undefined)
  }

  /** The context an envelope's headers carry (ROOT_CONTEXT when none or malformed: a new trace starts). */
  extract(headers: unknown): Context {
    if (!this.enabled || !headers || typeof headers !== 'object' || Array.isArray(headers)) return ROOT_CONTEXT
    return w3c.extract(ROOT_CONTEXT, headers as Headers, getter)
  }

  /**
   * `headers` with the trace context of `span` written in (a copy; other headers unchanged).
   * Tracing off: the headers are returned as they are. A sampled-out span is written too (its
   * flags say "not sampled", so the hops after it do not start traces of their own).
   */
  inject<H extends Record<string, unknown>>(span: Span, headers: H | undefined): H | undefined {
    if (!this.enabled || !isSpanContextValid(span.spanContext())) return headers
    const out: Record<string, string> = {}
    w3c.inject(trace.setSpan(ROOT_CONTEXT, span), out, setter)
    return { ...(headers ?? {}), ...out } as unknown as H
  }

  /**
   * Whether an envelope sent under `span` must get a new `traceparent`: always when the span
   * records; for a sampled-out span only when the envelope carries none yet (the trace starts
   * here), since otherwise the one it carries already says "not sampled" for the same trace.
   */
  needsInject(span: Span, headers: unknown): boolean {
    if (!this.enabled) return false
    if (span.isRecording()) return true
    if (!isSpanContextValid(span.spanContext())) return false
    const tp = headers && typeof headers === 'object' ? (headers as Record<string, unknown>)[TRACEPARENT] : undefined
    return typeof tp !== 'string' || tp === ''
  }

  /** Starts a span under `parent` (a context from {@link extract}, or a span). */
  startSpan(name: string, parent: Context | Span, options: { kind?: SpanKind; attributes?: Attributes; startTime?: number } = {}): Span {
    if (!this.enabled) return NOOP_SPAN
    const ctx = isSpan(parent) ? trace.setSpan(ROOT_CONTEXT, parent) : parent
    return this.tracer.startSpan(name, { ...(options.kind !== undefined ? { kind: options.kind } : {}), ...(options.attributes ? { attributes: options.attributes } : {}), ...(options.startTime !== undefined ? { startTime: options.startTime } : {}) }, ctx)
  }

  /** Flushes and stops the exporter; a no-op when off. */
  async shutdown(): Promise<void> {
    await this.provider?.shutdown().catch(() => undefined)
  }

  /** Exports what is buffered now (tests, drain). */
  async flush(): Promise<void> {
    await this.provider?.forceFlush().catch(() => undefined)
  }
}

function isSpan(x: Context | Span): x is Span {
  return typeof (x as Span).spanContext === 'function'
}

/** Log fields that join a log line to its span: `{trace_id, span_id}` when `span` records, else `{}`. */
export function traceFields(span: Span | undefined): { trace_id?: string; span_id?: string } {
  if (!span || !span.isRecording()) return {}
  const c = span.spanContext()
  return { trace_id: c.traceId, span_id: c.spanId }
}

/** Ends `span` with an error status carrying `reason` (and the message as the description). */
export function endWithError(span: Span, reason: string, message?: string): void {
  span.setAttribute('asya.error.reason', reason)
  span.setStatus({ code: SpanStatusCode.ERROR, message: message ?? reason })
  span.end()
}
