/**
 * The floor any sidecar design sits on, for bench/pipeline.bench.ts: one process per actor that
 * consumes `asya-<actor>` (same prefetch window, 32), calls the runtime over the socket protocol
 * (one call at a time, as the runtime serves them), publishes the result persistent with a
 * confirm to the next actor of its route (or happy-end), then acks. Nothing else: no envelope
 * validation, retries, error envelopes, metrics or logs. It reads the sidecar's variables so the
 * bench starts it exactly like a sidecar.
 */
import { RuntimeClient } from '../src/runtime/runtime-client.js'
import { RabbitMqTransport } from '../src/transport/rabbitmq-transport.js'

const env = (k: string): string => {
  const v = process.env[k]
  if (!v) throw new Error(`${k} is required`)
  return v
}
const actor = env('ASYA_ACTOR_NAME')
const happyEnd = env('ASYA_ACTOR_HAPPY_END')
const transport = new RabbitMqTransport({ url: env('ASYA_RABBITMQ_URL'), exchange: env('ASYA_RABBITMQ_EXCHANGE') })
const runtime = new RuntimeClient({ socketDir: env('ASYA_SOCKET_DIR') })
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
    const response = await runtime.call(d.body).finally(release)
    const out = response.kind === 'results' ? response.results[0] : undefined
    if (!out) throw new Error('echo handler returned no result')
    const next = out.route.actors[out.route.current] ?? happyEnd
    await transport.publish(next, Buffer.from(JSON.stringify(out)))
    await d.ack()
  },
  { prefetch: 32 },
)
process.on('SIGTERM', () => void transport.close().then(() => process.exit(0)))
