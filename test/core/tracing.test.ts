/** src/tracing: OTEL_* configuration, W3C propagation through envelope headers, real OTLP/HTTP export. */
import t from 'tap'
import { EnvReader } from '../../src/config/env.js'
import { readTracingConfig, SpanKind, Tracing, traceFields, endWithError } from '../../src/tracing/tracing.js'
import { startOtlpReceiver } from '../support/otlp-receiver.js'

const TP = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01'

const cfg = (env: Record<string, string>) => {
  const r = new EnvReader(env)
  const c = readTracingConfig(r, 'asya-test')
  return { c, finish: () => r.finish() }
}

t.test('configuration: off unless an endpoint is set; disabled and none win; bad values named', async (t) => {
  t.same(cfg({}).c, { enabled: false, serviceName: 'asya-test' })
  t.same(cfg({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318/' }).c, { enabled: true, serviceName: 'asya-test', tracesUrl: 'http://collector:4318/v1/traces' })
  t.equal(cfg({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://c:4318/custom', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://x:1' }).c.tracesUrl, 'http://c:4318/custom', 'the traces endpoint wins, used as is')
  t.equal(cfg({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318', OTEL_SDK_DISABLED: 'true' }).c.enabled, false)
  t.equal(cfg({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://c:4318', OTEL_TRACES_EXPORTER: 'none' }).c.enabled, false)
  t.equal(cfg({ OTEL_SERVICE_NAME: 'mine' }).c.serviceName, 'mine')
  const bad = cfg({ OTEL_EXPORTER_OTLP_ENDPOINT: 'collector:4318', OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc', OTEL_TRACES_EXPORTER: 'zipkin' })
  t.throws(() => bad.finish(), /OTEL_TRACES_EXPORTER.*zipkin.*OTEL_EXPORTER_OTLP_PROTOCOL.*grpc.*http\/json.*OTEL_EXPORTER_OTLP_ENDPOINT.*not an http\(s\) URL/s, 'every problem at once, each naming its variable')
  t.doesNotThrow(() => cfg({ OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json' }).finish())
})

t.test('off: spans do not record, headers pass through unchanged, no log fields', async (t) => {
  const tr = Tracing.off()
  const span = tr.startSpan('x', tr.extract({ traceparent: TP }))
  t.equal(span.isRecording(), false)
  const h = { traceparent: TP, other: 'kept' }
  t.equal(tr.inject(span, h), h, 'the very same headers object')
  t.same(traceFields(span), {})
  span.end()
})

t.test('on: continues the envelope trace, writes its own traceparent, exports real OTLP/JSON', async (t) => {
  const rx = await startOtlpReceiver()
  t.teardown(() => rx.close())
  const tr = Tracing.start({ enabled: true, serviceName: 'asya-test', tracesUrl: `${rx.url}/v1/traces` }, { 'asya.actor': 'a1' })
  const parent = tr.extract({ traceparent: TP, tracestate: 'vendor=1' })
  const hop = tr.startSpan('a1 process', parent, { kind: SpanKind.CONSUMER, attributes: { 'messaging.system': 'rabbitmq' } })
  const child = tr.startSpan('runtime call', hop)
  child.end()
  const out = tr.inject(hop, { traceparent: TP, keep: 'me' }) as Record<string, string>
  t.equal(out.keep, 'me')
  t.match(out.traceparent, /^00-0af7651916cd43dd8448eb211c80319c-[0-9a-f]{16}-01$/, 'same trace, new parent')
  t.not(out.traceparent, TP)
  t.equal(out.tracestate, 'vendor=1', 'tracestate carried on')
  t.same(traceFields(hop), { trace_id: '0af7651916cd43dd8448eb211c80319c', span_id: hop.spanContext().spanId })
  endWithError(hop, 'processing_error', 'boom')
  await tr.flush()
  const spans = await rx.waitFor(2)
  const h = spans.find((s) => s.name === 'a1 process')
  const c = spans.find((s) => s.name === 'runtime call')
  t.ok(h && c)
  t.equal(h?.traceId, '0af7651916cd43dd8448eb211c80319c')
  t.equal(h?.parentSpanId, 'b7ad6b7169203331', 'parent is the span named by the incoming traceparent')
  t.equal(c?.parentSpanId, h?.spanId)
  t.equal(h?.kind, 5, 'consumer')
  t.equal(h?.service, 'asya-test')
  t.equal(h?.attributes['messaging.system'], 'rabbitmq')
  t.same(h?.status, { code: 2, message: 'boom' })
  t.equal(h?.attributes['asya.error.reason'], 'processing_error')
  await tr.shutdown()
})

t.test('on: no or malformed traceparent starts a new trace', async (t) => {
  const tr = Tracing.start({ enabled: true, serviceName: 's', tracesUrl: 'http://127.0.0.1:9/v1/traces' })
  for (const headers of [undefined, {}, { traceparent: 'garbage' }, { traceparent: 7 }, 'str', [TP]]) {
    const span = tr.startSpan('x', tr.extract(headers))
    t.equal(span.isRecording(), true)
    t.not(span.spanContext().traceId, '0af7651916cd43dd8448eb211c80319c', JSON.stringify(headers))
    span.end()
  }
  await tr.shutdown()
})

t.test('sampled out: nothing recorded, but the "not sampled" decision travels so later hops do not start traces', async (t) => {
  process.env.OTEL_TRACES_SAMPLER = 'always_off'
  const root = Tracing.start({ enabled: true, serviceName: 's', tracesUrl: 'http://127.0.0.1:9/v1/traces' })
  delete process.env.OTEL_TRACES_SAMPLER
  const span = root.startSpan('first hop', root.extract(undefined))
  t.equal(span.isRecording(), false)
  t.equal(root.needsInject(span, {}), true, 'the trace starts here: the decision must be written')
  const h = root.inject(span, {}) as Record<string, string>
  t.match(h.traceparent, /^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/, 'flags 00: not sampled')
  t.equal(root.needsInject(span, h), false, 'an envelope already carrying it is forwarded as it is')
  const next = Tracing.start({ enabled: true, serviceName: 's', tracesUrl: 'http://127.0.0.1:9/v1/traces' })
  const child = next.startSpan('next hop', next.extract(h))
  t.equal(child.isRecording(), false, 'the next hop (parent-based sampler, the default) records nothing either')
  t.equal(child.spanContext().traceId, span.spanContext().traceId)
  t.equal(Tracing.off().needsInject(span, {}), false, 'off: never')
  await root.shutdown()
  await next.shutdown()
})
