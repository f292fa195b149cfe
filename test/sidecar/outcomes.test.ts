/**
 * The outcome table of SPEC §5 as pure functions (sidecar/outcomes.ts), one row per table row and
 * per policy rule, without a broker or a runtime. The same rows run end to end through RabbitMQ
 * and real runtimes in outcomes-rabbitmq.test.ts.
 */
import t from 'tap'
import type { Envelope } from '../../src/envelope.js'
import { HEADER } from '../../src/names.js'
import type { RuntimeResponse } from '../../src/runtime/runtime-client.js'
import {
  admit,
  checkRoute,
  claimFailed,
  decide,
  endFinished,
  outputHeaders,
  parseDelivery,
  publishFailed,
  type DeliveryFacts,
  type Outcome,
  type OutcomeContext,
  type RuntimeResult,
} from '../../sidecar/outcomes.js'

const ctx: OutcomeContext = {
  actor: 'a',
  happyEnd: 'happy-end',
  errorEnd: 'error-end',
  isEndActor: false,
  maxRetries: 2,
  deliveryLimit: 7,
  maxHops: 50,
  runtimeTimeoutMs: 1000,
}
const endCtx: OutcomeContext = { ...ctx, actor: 'happy-end', isEndActor: true }

const env = (over: Partial<Envelope> = {}): Envelope => ({ id: 'e1', route: { actors: ['a', 'b'], current: 0 }, headers: { trace: 'T' }, payload: { x: 1 }, ...over })
const delivery = (body: unknown, attempt = 1, headers: Record<string, string> = {}): DeliveryFacts => ({
  body: Buffer.isBuffer(body) ? body : Buffer.from(typeof body === 'string' ? body : JSON.stringify(body)),
  headers,
  attempt,
})

/** Where an outcome sends things, in one comparable line. */
function summary(o: Outcome | undefined): Record<string, unknown> | undefined {
  if (o === undefined) return undefined
  switch (o.kind) {
    case 'route':
    case 'happy_end':
      return { kind: o.kind, to: o.outgoing.map((x) => x.destination) }
    case 'error_end':
      return { kind: o.kind, to: o.outgoing.map((x) => x.destination), reason: o.failure.reason }
    case 'retry':
      return { kind: o.kind, reason: o.failure.reason, infrastructure: o.infrastructure }
    case 'dead_letter':
      return { kind: o.kind, reason: o.failure.reason }
    case 'release':
      return { kind: o.kind }
    case 'end':
      return { kind: o.kind, id: o.result.id }
  }
}

function errorPayload(o: Outcome): Record<string, unknown> {
  if (o.kind !== 'error_end') throw new Error(`not error_end: ${o.kind}`)
  return JSON.parse(o.outgoing[0].body.toString()) as Record<string, unknown>
}

const results = (...rs: unknown[]): RuntimeResult => ({ kind: 'response', response: { kind: 'results', results: rs } as RuntimeResponse })
const handlerError = (error: string, details: Record<string, unknown> = {}): RuntimeResult => ({
  kind: 'response',
  response: { kind: 'error', error: { error, details: { message: 'boom', type: 'ValueError', traceback: 'tb', ...details } } },
})

t.test('rows before the runtime (admit, checkRoute)', async (t) => {
  const rows: Array<[string, DeliveryFacts, OutcomeContext, Record<string, unknown> | undefined]> = [
    ['body not JSON → error-end parse_error', delivery('not json {'), ctx, { kind: 'error_end', to: ['error-end'], reason: 'parse_error' }],
    ['JSON but not an object → error-end parse_error', delivery('[1,2]'), ctx, { kind: 'error_end', to: ['error-end'], reason: 'parse_error' }],
    ['no id → error-end validation_error', delivery({ route: { actors: ['a'], current: 0 }, payload: 1 }), ctx, { kind: 'error_end', to: ['error-end'], reason: 'validation_error' }],
    ['bad route → error-end validation_error', delivery({ id: 'x', route: { actors: ['a'], current: -1 }, payload: 1 }), ctx, { kind: 'error_end', to: ['error-end'], reason: 'validation_error' }],
    ['end actor: malformed input → its DLQ, never re-sent', delivery('nope'), endCtx, { kind: 'dead_letter', reason: 'parse_error' }],
    ['past the delivery limit → DLQ delivery_limit', delivery(env(), 8), ctx, { kind: 'dead_letter', reason: 'delivery_limit' }],
    ['at the delivery limit → still processed', delivery(env(), 7), ctx, undefined],
    ['valid envelope → on to the runtime', delivery(env()), ctx, undefined],
  ]
  for (const [name, d, c, want] of rows) t.same(summary(admit(d, parseDelivery(d.body), c)), want, name)

  const mismatch = checkRoute(delivery(env()), env({ route: { actors: ['x', 'a'], current: 0 } }), ctx)
  t.same(summary(mismatch), { kind: 'error_end', to: ['error-end'], reason: 'route_mismatch' }, 'actors[current] ≠ this actor → error-end route_mismatch (runtime not called)')
  t.same(summary(checkRoute(delivery(env(), 1, { [HEADER.hops]: '50' }), env(), ctx)), { kind: 'error_end', to: ['error-end'], reason: 'hop_limit' }, 'hop limit → error-end hop_limit')
  t.equal(checkRoute(delivery(env(), 1, { [HEADER.hops]: '49' }), env(), ctx), undefined, 'below the hop limit → runtime')
  t.equal(checkRoute(delivery(env()), env({ route: { actors: ['x'], current: 0 } }), endCtx), undefined, 'end actors never check the route')

  const raw = errorPayload(admit(delivery('not json {'), parseDelivery(Buffer.from('not json {')), ctx) as Outcome)
  const p = raw.payload as { error: string; details: Record<string, unknown>; original_body: string }
  t.equal(p.error, 'parse_error', 'payload.error is the reason when there is no runtime code')
  t.match(p.details, { reason: 'parse_error', type: 'EnvelopeParseError', actor: 'a', attempts: 1 })
  t.equal(p.original_body, 'not json {', 'the raw body kept for forensics')
  const m = errorPayload(mismatch as Outcome)
  t.equal(m.id, 'e1', 'same id')
  t.same(m.headers, { trace: 'T' }, 'headers carried to error-end')
  t.same((m.payload as { original_payload: unknown }).original_payload, { x: 1 })
})

t.test("rows of the runtime's answer (decide)", async (t) => {
  const e = env()
  const next = { ...e, route: { actors: ['a', 'b'], current: 1 } }
  const done = { ...e, route: { actors: ['a', 'b'], current: 2 } }
  const rows: Array<[string, DeliveryFacts, OutcomeContext, RuntimeResult, Record<string, unknown>]> = [
    ['N ≥ 1 results → each to asya-<actors[current]>', delivery(e), ctx, results(next, next), { kind: 'route', to: ['b', 'b'] }],
    ['a result with current ≥ len(actors) → happy-end', delivery(e), ctx, results(done), { kind: 'route', to: ['happy-end'] }],
    ['[] → the original envelope to happy-end', delivery(e), ctx, results(), { kind: 'happy_end', to: ['happy-end'] }],
    ['a result that is not an envelope → error-end invalid_result', delivery(e), ctx, results(42), { kind: 'error_end', to: ['error-end'], reason: 'invalid_result' }],
    ['handler error, retries left → retry (handler backoff)', delivery(e, 2), ctx, handlerError('processing_error'), { kind: 'retry', reason: 'processing_error', infrastructure: false }],
    ['handler error, retries used → error-end processing_error', delivery(e, 3), ctx, handlerError('processing_error'), { kind: 'error_end', to: ['error-end'], reason: 'processing_error' }],
    ['non-retryable handler error → error-end at once', delivery(e, 1), ctx, handlerError('processing_error', { retryable: false }), { kind: 'error_end', to: ['error-end'], reason: 'processing_error' }],
    ['msg_parsing_error → error-end, not retried', delivery(e, 1), ctx, handlerError('msg_parsing_error'), { kind: 'error_end', to: ['error-end'], reason: 'msg_parsing_error' }],
    ['connection_error item → retried as runtime_unreachable', delivery(e, 1), ctx, handlerError('connection_error'), { kind: 'retry', reason: 'runtime_unreachable', infrastructure: true }],
    ['runtime unreachable → retried with backoff', delivery(e, 6), ctx, { kind: 'failed', failure: 'unreachable', message: 'ECONNREFUSED' }, { kind: 'retry', reason: 'runtime_unreachable', infrastructure: true }],
    ['runtime unreachable at the limit → error-end', delivery(e, 7), ctx, { kind: 'failed', failure: 'unreachable', message: 'ECONNREFUSED' }, { kind: 'error_end', to: ['error-end'], reason: 'runtime_unreachable' }],
    ['bad response → retried as runtime_error', delivery(e, 1), ctx, { kind: 'failed', failure: 'bad_response', message: 'frame' }, { kind: 'retry', reason: 'runtime_error', infrastructure: true }],
    ['timeout → error-end timeout, never retried', delivery(e, 1), ctx, { kind: 'failed', failure: 'timeout', message: 't' }, { kind: 'error_end', to: ['error-end'], reason: 'timeout' }],
    ['never started (drain, shed) → released', delivery(e, 1), ctx, { kind: 'not_started' }, { kind: 'release' }],
    ['end actor: results → persist and report', delivery(e, 1), endCtx, results(), { kind: 'end', id: 'e1' }],
    ['end actor: handler error → its DLQ', delivery(e, 3), endCtx, handlerError('processing_error'), { kind: 'dead_letter', reason: 'processing_error' }],
    ['end actor: timeout → its DLQ', delivery(e, 1), endCtx, { kind: 'failed', failure: 'timeout', message: 't' }, { kind: 'dead_letter', reason: 'timeout' }],
  ]
  for (const [name, d, c, r, want] of rows) t.same(summary(decide(d, e, r, c)), want, name)

  const err = errorPayload(decide(delivery(e, 3), e, handlerError('processing_error', { retryable: true }), ctx))
  const p = err.payload as { error: string; details: Record<string, unknown> }
  t.equal(p.error, 'processing_error', 'payload.error is the runtime code')
  t.match(p.details, { message: 'boom', type: 'ValueError', traceback: 'tb', reason: 'processing_error', actor: 'a', attempts: 3, retryable: true })
  const timeout = errorPayload(decide(delivery(e), e, { kind: 'failed', failure: 'timeout', message: 't' }, ctx))
  t.equal((timeout.payload as { details: { message: string } }).details.message, 'runtime did not answer within 1000 ms')
  const fan = decide(delivery(e), e, results(next, next, next), ctx)
  t.same(
    fan.kind === 'route' ? fan.outgoing.map((o) => o.id) : [],
    ['e1', 'e1-1', 'e1-2'],
    'fan-out ids',
  )
  const empty = decide(delivery(e), e, results(), ctx)
  t.same(empty.kind === 'happy_end' ? JSON.parse(empty.outgoing[0].body.toString()) : undefined, e, 'happy-end gets the original envelope as it is')
  t.same(outputHeaders(delivery(e, 1, { [HEADER.hops]: '3' })), { [HEADER.hops]: '4' }, 'every output counts one hop more')
  t.same(outputHeaders(delivery(e, 1, { [HEADER.hops]: '3', [HEADER.fromActor]: 'x' }), 'a'), { [HEADER.hops]: '4', [HEADER.fromActor]: 'a' }, 'and names the publishing actor (never the input\'s publisher)')
})

t.test('publish fails: retried with the confirmed children recorded, the DLQ after the limit; too large → error-end', async (t) => {
  const e = env()
  const routed = decide(delivery(e), e, results({ ...e, route: { actors: ['a', 'b'], current: 1 } }), ctx)
  const retry = publishFailed(delivery(e, 1), e, routed, [0, 2], 'no queue', false, ctx)
  t.same(summary(retry), { kind: 'retry', reason: 'publish_failed', infrastructure: true })
  t.same(retry.kind === 'retry' ? retry.headers : undefined, { [HEADER.sent]: '0,2' }, 'confirmed children are not published again')
  t.same(summary(publishFailed(delivery(e, 7), e, routed, [], 'no queue', false, ctx)), { kind: 'dead_letter', reason: 'publish_failed' }, 'at the delivery limit → DLQ, never lost')
  t.same(summary(publishFailed(delivery(e, 1), e, routed, [], 'too big', true, ctx)), { kind: 'error_end', to: ['error-end'], reason: 'payload_too_large' }, 'too large → error-end')
  const errEnd = decide(delivery(e, 1), e, { kind: 'failed', failure: 'timeout', message: 't' }, ctx)
  t.same(summary(publishFailed(delivery(e, 1), e, errEnd, [], 'too big', true, ctx)), { kind: 'dead_letter', reason: 'payload_too_large' }, 'even the error envelope too large → DLQ')
})

t.test('claim-check and end-actor rows', async (t) => {
  const c = { message: 'x', type: 'StorageError', claim: { k: 1 } }
  t.same(summary(claimFailed(delivery(env(), 1), env(), { ...c, reason: 'claim_unavailable' }, ctx)), { kind: 'retry', reason: 'claim_unavailable', infrastructure: true }, 'storage down → retried')
  t.same(summary(claimFailed(delivery(env(), 7), env(), { ...c, reason: 'claim_unavailable' }, ctx)), { kind: 'error_end', to: ['error-end'], reason: 'claim_unavailable' }, 'storage down past the limit → error-end')
  t.same(summary(claimFailed(delivery(env(), 1), env(), { ...c, reason: 'claim_missing' }, ctx)), { kind: 'error_end', to: ['error-end'], reason: 'claim_missing' }, 'missing object → error-end')
  t.same(summary(claimFailed(delivery(env(), 1), env(), { ...c, reason: 'claim_corrupt' }, endCtx)), { kind: 'dead_letter', reason: 'claim_corrupt' }, 'end actor → its DLQ')
  const claimEnd = claimFailed(delivery(env(), 1), env(), { ...c, reason: 'claim_missing' }, ctx)
  t.same((errorPayload(claimEnd).payload as { details: { claim: unknown } }).details.claim, { k: 1 }, 'the reference kept under details')

  t.equal(endFinished(delivery(env()), { kind: 'done', report: 'ok' }, endCtx), 'ack', 'persisted and reported → ack')
  t.same(summary(endFinished(delivery(env(), 1), { kind: 'retry', reason: 'report_failed', message: 'm', headers: { k: 'v' } }, endCtx) as Outcome), { kind: 'retry', reason: 'report_failed', infrastructure: true })
  t.same(summary(endFinished(delivery(env(), 7), { kind: 'retry', reason: 'persist_failed', message: 'm', headers: {} }, endCtx) as Outcome), { kind: 'dead_letter', reason: 'persist_failed' }, 'past the limit → DLQ')
  t.same(summary(endFinished(delivery(env(), 1), { kind: 'dead_letter', reason: 'report_rejected', message: 'm' }, endCtx) as Outcome), { kind: 'dead_letter', reason: 'report_rejected' })
})
