/**
 * The floor any sidecar design sits on, for bench/pipeline.bench.ts: one process per actor that
 * consumes `asya-<actor>` (same prefetch window, 32), calls the runtime over the socket protocol
 * (one call at a time, as the runtime serves them), publishes the result persistent with a
 * confirm to the next actor of its route (or happy-end), then acks. Nothing else: no envelope
 * validation, retries, error envelopes, metrics or logs. It reads the sidecar's variables so the
 * bench starts it exactly like a sidecar.
 *
 * With the sidecar's OTEL_* variables set (bench/tracing.bench.ts) it also traces as a sidecar
 * must at the least: the same four spans per hop (hop, queue wait, runtime call, publish) on the
 * same OpenTelemetry SDK and OTLP/JSON exporter, the runtime call's `traceparent` in the body the
 * handler gets, and the hop's written into the output envelope it serialises anyway. That is the
 * floor of what tracing costs any sidecar.
 */
import { RuntimeClient } from '../src/runtime/runtime-client.js'
import { RabbitMqTransport } from '../src/transport/rabbitmq-transport.js'
import { EnvReader } from '../src/config/env.js'
import { readTracingConfig, SpanKind, Tracing } from '../src/tracing/tracing.js'

const env = (k: string): string => {
  const v = process.env[k]
  if (!v) throw new Error(`${k} is required`)
  return v
}
const actor = env('ASYA_ACTOR_NAME')
const happyEnd = env('ASYA_ACTOR_HAPPY_END')
const transport = new RabbitMqTransport({ url: env('ASYA_RABBITMQ_URL'), exchange: env('ASYA_RABBITMQ_EXCHANGE') })
const runtime = new RuntimeClient({ socketDir: env('ASYA_SOCKET_DIR') })
const tracingEnv = new EnvReader(process.env)
const tracing = Tracing.start(readTracingConfig(tracingEnv, 'asya-minimal-hop'))
tracingEnv.finish()
await transport.connect()
await transport.ensureQueue(actor)
await runtime.waitReady(30_000)
let turn: Promise<void> = Promise.resolve()
await transport.consume(
  actor,
  async (d) => {
    const prev = turn
    let release!: () => void
    turn = new Promise((r) => (release = r))
    await prev
    // Tracing off: one check, as in the sidecar. On: the four spans a hop makes, nothing more.
    const input = tracing.enabled ? (JSON.parse(d.body.toString('utf8')) as { headers?: Record<string, unknown> }) : undefined
    const span = input ? tracing.startSpan(`${actor} process`, tracing.extract(input.headers), { kind: SpanKind.CONSUMER, attributes: { 'messaging.system': 'rabbitmq', 'messaging.destination.name': `asya-${actor}` } }) : undefined
    if (span) tracing.startSpan('queue wait', span, { startTime: Date.now() - 1 }).end()
    const rs = span ? tracing.startSpan('runtime call', span, { kind: SpanKind.CLIENT }) : undefined
    // The handler must see its call's trace context (issue 19): the body carries it.
    const body = input && rs ? Buffer.from(JSON.stringify({ ...input, headers: tracing.inject(rs, input.headers ?? {}) })) : d.body
    const response = await runtime.call(body).finally(release)
    rs?.end()
    const out = response.kind === 'results' ? response.results[0] : undefined
    if (!out) throw new Error('echo handler returned no result')
    const next = out.route.actors[out.route.current] ?? happyEnd
    if (span) out.headers = tracing.inject(span, (out.headers ?? {}) as Record<string, unknown>)
    const ps = span ? tracing.startSpan(`publish ${next}`, span, { kind: SpanKind.PRODUCER }) : undefined
    // The next hop's queue may not be declared yet while the pipeline starts: wait for it rather
    // than throw (a throw requeues at once and the quorum queue's delivery limit would park the
    // bench's probe envelope in the DLQ). In the measured run this never loops.
    for (let tries = 1; ; tries++) {
      try {
        await transport.publish(next, Buffer.from(JSON.stringify(out)))
        break
      } catch (err) {
        if (tries >= 100) throw err
        await new Promise((r) => setTimeout(r, 100))
      }
    }
    ps?.end()
    await d.ack()
    span?.end()
  },
  { prefetch: 32 },
)
process.on('SIGTERM', () => void tracing.shutdown().then(() => transport.close()).then(() => process.exit(0)))
