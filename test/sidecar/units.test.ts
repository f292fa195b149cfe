import t from 'tap'
import { isAsyaError } from '../../src/errors.js'
import type { Envelope } from '../../src/envelope.js'
import { readSidecarConfig } from '../../sidecar/config.js'
import { parseListenAddr } from '../../src/config/env.js'
import { errorEnvelopeFor, errorEnvelopeForRaw, routeResults } from '../../sidecar/envelopes.js'

t.test('config: defaults follow SPEC §5', async (t) => {
  const c = readSidecarConfig({ ASYA_ACTOR_NAME: 'a' })
  t.equal(c.transport.name, 'rabbitmq')
  t.equal(c.socketDir, '/var/run/asya')
  t.equal(c.runtimeTimeoutMs, 300_000)
  t.equal(c.runtimeReadyTimeoutMs, 300_000)
  t.equal(c.happyEnd, 'happy-end')
  t.equal(c.errorEnd, 'error-end')
  t.equal(c.isEndActor, false)
  t.equal(c.maxRetries, 0, 'upstream: handler errors are not retried')
  t.equal(c.metricsPort, 8080)
  t.equal(c.metricsNamespace, 'asya_actor')
  t.equal(c.prefetch, 2)
  t.equal(c.transport.rabbitmq?.url, 'amqp://guest:guest@localhost:5672/%2F')
  t.equal(c.transport.rabbitmq?.exchange, 'asya')
  t.equal(readSidecarConfig({ ASYA_ACTOR_NAME: 'happy-end' }).isEndActor, true, 'end actors by name')
})

t.test('config: credentials are escaped into the URL', async (t) => {
  const c = readSidecarConfig({ ASYA_ACTOR_NAME: 'a', ASYA_RABBITMQ_HOST: 'mq', ASYA_RABBITMQ_USERNAME: 'u@x', ASYA_RABBITMQ_PASSWORD: 'p@ss/w:rd', ASYA_RABBITMQ_VHOST: 'prod' })
  t.equal(c.transport.rabbitmq?.url, 'amqp://u%40x:p%40ss%2Fw%3Ard@mq:5672/prod')
})

t.test('config: every bad variable named at once; never a silent default', async (t) => {
  try {
    readSidecarConfig({
      ASYA_ACTOR_NAME: 'Bad_Name',
      ASYA_RUNTIME_TIMEOUT: '5 minutes',
      ASYA_TRANSPORT: 'kafka',
      ASYA_METRICS_ADDR: 'nope',
      ASYA_MAX_RETRIES: 'x',
      ASYA_LOG_LEVEL: 'loud',
      ASYA_IS_END_ACTOR: 'maybe',
    })
    t.fail('should throw')
  } catch (err) {
    t.ok(isAsyaError(err, 'ASYA_ERR_CONFIG_INVALID'))
    const msg = String((err as Error).message)
    for (const v of ['ASYA_ACTOR_NAME', 'ASYA_RUNTIME_TIMEOUT', 'ASYA_TRANSPORT', 'ASYA_METRICS_ADDR', 'ASYA_MAX_RETRIES', 'ASYA_LOG_LEVEL', 'ASYA_IS_END_ACTOR']) {
      t.match(msg, v, v)
    }
  }
  t.throws(() => readSidecarConfig({ ASYA_ACTOR_NAME: 'a', ASYA_TRANSPORT: 'sqs' }), /ASYA_AWS_REGION/)
  const sqs = readSidecarConfig({ ASYA_ACTOR_NAME: 'a', ASYA_TRANSPORT: 'sqs', ASYA_AWS_REGION: 'eu-west-1', ASYA_RUNTIME_TIMEOUT: '10m' })
  t.equal(sqs.transport.sqs?.visibilityTimeoutSeconds, 1200, 'visibility = 2 × runtime timeout')
})

t.test('listen addresses', async (t) => {
  t.same(parseListenAddr(':8080'), { host: '0.0.0.0', port: 8080 })
  t.same(parseListenAddr('127.0.0.1:9'), { host: '127.0.0.1', port: 9 })
  t.same(parseListenAddr('[::1]:80'), { host: '::1', port: 80 })
  t.equal(parseListenAddr('8080'), undefined)
  t.equal(parseListenAddr(':99999'), undefined)
})

const input: Envelope = { id: 'e1', route: { actors: ['a', 'b'], current: 0 }, headers: { trace: 't' }, payload: { x: 1 }, extra_field: 42 }

t.test('routeResults: single result keeps id, carries headers and unknown fields, picks destination', async (t) => {
  const r = routeResults(input, [{ payload: { y: 2 }, route: { actors: ['a', 'b'], current: 1 } }], 'happy-end')
  if (typeof r === 'string') throw new Error(r)
  t.equal(r.length, 1)
  t.equal(r[0]?.destination, 'b')
  t.equal(r[0]?.kind, 'routed')
  t.same(r[0]?.envelope, { id: 'e1', route: { actors: ['a', 'b'], current: 1 }, headers: { trace: 't' }, payload: { y: 2 }, extra_field: 42 })
  const done = routeResults(input, [{ payload: 1, route: { actors: ['a', 'b'], current: 2 } }], 'happy-end')
  if (typeof done === 'string') throw new Error(done)
  t.equal(done[0]?.destination, 'happy-end')
  t.equal(done[0]?.kind, 'happy_end')
})

t.test('routeResults: fan-out ids and parent_id; invalid results are reported', async (t) => {
  const route = { actors: ['a', 'b'], current: 1 }
  const r = routeResults(input, [{ payload: 0, route }, { payload: 1, route }, { payload: 2, route }], 'happy-end')
  if (typeof r === 'string') throw new Error(r)
  t.same(
    r.map((x) => [x.envelope.id, x.envelope.parent_id]),
    [
      ['e1', undefined],
      ['e1-1', 'e1'],
      ['e1-2', 'e1'],
    ],
  )
  t.match(routeResults(input, [{ payload: 1, route: { actors: [], current: 0 } }], 'happy-end'), /route.actors/)
  t.match(routeResults(input, ['nope'], 'happy-end'), /not an object/)
  t.match(routeResults(input, [{ payload: 1, route: { actors: ['a'], current: -1 } }], 'happy-end'), /route.current/)
  t.match(routeResults(input, [{ payload: 1, route: { actors: ['a'], current: 1.5 } }], 'happy-end'), /route.current/)
  // Past the end (a handler with validation off): happy-end with `current` unchanged, as upstream.
  const past = routeResults(input, [{ payload: 1, route: { actors: ['a'], current: 6 } }], 'happy-end')
  if (typeof past === 'string') throw new Error(past)
  t.equal(past[0]?.destination, 'happy-end')
  t.equal(past[0]?.kind, 'happy_end')
  t.same(past[0]?.envelope.route, { actors: ['a'], current: 6 }, 'current unchanged')
})

t.test('error envelopes: upstream shape plus reason, actor, attempts', async (t) => {
  const e = errorEnvelopeFor(input, { error: 'processing_error', message: 'boom', type: 'ValueError', traceback: 'tb', reason: 'processing_error', actor: 'a', attempts: 3, extra: { retryable: false } })
  t.same(e, {
    id: 'e1',
    route: { actors: ['a', 'b'], current: 0 },
    headers: { trace: 't' },
    extra_field: 42,
    payload: {
      error: 'processing_error',
      details: { retryable: false, message: 'boom', type: 'ValueError', traceback: 'tb', reason: 'processing_error', actor: 'a', attempts: 3 },
      original_payload: { x: 1 },
    },
  })
  const raw = errorEnvelopeForRaw(Buffer.from([0xff, 0x00]), { error: 'parse_error', message: 'm', type: 'T', reason: 'parse_error', actor: 'a', attempts: 1 })
  t.match(raw.id, /^unparseable-/)
  t.equal((raw.payload as Record<string, unknown>).original_body_encoding, 'base64')
  t.equal((raw.payload as Record<string, unknown>).original_body, '/wA=')
})

t.test('delivery window: widens after a run of fast calls, back to the base at the first slow one', async (t) => {
  const { PrefetchWindow } = await import('../../sidecar/prefetch-window.js')
  const applied: number[] = []
  const w = new PrefetchWindow(2, { wide: 32, fastMs: 50, fastStreak: 3 })
  w.attach({ cancel: async () => undefined, setPrefetch: async (n: number) => void applied.push(n) })
  w.observe(1)
  w.observe(2)
  t.same(applied, [], 'not yet')
  w.observe(3)
  t.same(applied, [32], 'widened after 3 fast calls')
  w.observe(4)
  t.same(applied, [32], 'no RPC per message')
  w.observe(900)
  t.same(applied, [32, 2], 'a slow (GPU) call restores the base at once')
  t.equal(w.size, 2)
  const off = new PrefetchWindow(2, { wide: 2 })
  off.attach({ cancel: async () => undefined, setPrefetch: async (n: number) => void applied.push(n) })
  for (let i = 0; i < 50; i++) off.observe(1)
  t.same(applied, [32, 2], 'wide = base turns adaptation off')
})
