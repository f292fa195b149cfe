/**
 * The sidecar's outcome table (SPEC §5) as pure functions: what becomes of one delivery, decided
 * from what is known about it, with no broker, runtime or clock involved. settle.ts carries an
 * outcome out; message-processor.ts runs the steps in order (receive → call the runtime → decide →
 * settle). Each function is one part of the table:
 *
 *   admit        first: delivery limit, parse_error, validation_error
 *   checkRoute   before the runtime: route_mismatch, hop_limit
 *   decide       the runtime's answer: results, [], an error item, unreachable / bad response, timeout
 *   publishFailed  an output the broker did not take: retry, the DLQ past the limit, payload_too_large
 *   claimFailed  a claim-check payload that cannot be restored
 *   endFinished  an end actor's persist + report step
 */
import { errorMessage } from '../src/errors.js'
import { currentActor, envelopeProblem, isPlainObject, type Envelope } from '../src/envelope.js'
import { HEADER } from '../src/names.js'
import type { RuntimeErrorItem, RuntimeResponse } from '../src/runtime/runtime-client.js'
import type { TransportHeaders } from '../src/transport/transport.js'
import { endResult, type EndOutcome } from './end-actor.js'
import { errorEnvelopeFor, errorEnvelopeForRaw, routeResults, type FailureReason } from './envelopes.js'

/** What outcomes are decided from: the sidecar's settings that shape the table. */
export interface OutcomeContext {
  /** ASYA_ACTOR_NAME. */
  actor: string
  happyEnd: string
  errorEnd: string
  isEndActor: boolean
  /** ASYA_MAX_RETRIES: handler errors retried this many times. */
  maxRetries: number
  /** Deliveries after which a message is parked in the DLQ (max retries + ASYA_DELIVERY_LIMIT). */
  deliveryLimit: number
  /** ASYA_MAX_HOPS. */
  maxHops: number
  /** ASYA_RUNTIME_TIMEOUT, for the timeout message. */
  runtimeTimeoutMs: number
}

/** The parts of a delivery outcomes depend on (a Transport Delivery has them all). */
export interface DeliveryFacts {
  readonly body: Buffer
  readonly headers: TransportHeaders
  readonly attempt: number
}

/** One message to publish before the input is acked. */
export interface Outgoing {
  destination: string
  body: Buffer
  kind: 'routed' | 'happy_end' | 'error_end'
  id: string
}

/** Why, in words, for the error envelope and the logs. */
export interface Failure {
  reason: FailureReason
  message: string
  /** details.type of the error envelope. */
  type: string
  /** payload.error of the error envelope. @default the reason */
  error?: string
  traceback?: string
  /** More details (the runtime's, a claim reference). */
  extra?: Record<string, unknown>
}

export type Outcome =
  /** Results to the next actors (or happy-end when a route is done), all confirmed, then ack. */
  | { kind: 'route'; outgoing: Outgoing[] }
  /** `[]`: the original envelope to happy-end, then ack. */
  | { kind: 'happy_end'; outgoing: [Outgoing] }
  /** An error envelope to error-end, then ack. */
  | { kind: 'error_end'; failure: Failure; outgoing: [Outgoing] }
  /** Delivered again later with attempt + 1; `infrastructure` backs off from 1 s, not the handler policy. */
  | { kind: 'retry'; failure: Failure; infrastructure: boolean; headers?: TransportHeaders }
  /** Parked in `asya-<actor>-dlq` with the reason. */
  | { kind: 'dead_letter'; failure: Failure }
  /** Never started (drain, shed by the window): back to the broker, no attempt counted. */
  | { kind: 'release' }
  /** End actors: persist and report `result` (end-actor.ts); endFinished decides the rest. */
  | { kind: 'end'; result: Envelope }

/** A parsed delivery: the envelope once it is known to be one. */
export type Received =
  | { kind: 'unparseable'; message: string }
  | { kind: 'invalid'; value: Record<string, unknown>; problem: string }
  | { kind: 'envelope'; env: Envelope }

const utf8 = new TextDecoder('utf-8', { fatal: true })

/** Parses and validates a body (SPEC §2). */
export function parseDelivery(body: Buffer): Received {
  let value: unknown
  try {
    value = JSON.parse(utf8.decode(body))
  } catch (err) {
    return { kind: 'unparseable', message: errorMessage(err) }
  }
  if (!isPlainObject(value)) return { kind: 'unparseable', message: 'envelope must be a JSON object' }
  const problem = envelopeProblem(value)
  if (problem !== undefined) return { kind: 'invalid', value, problem }
  return { kind: 'envelope', env: value as Envelope }
}

/** The envelope id of a parsed delivery, when it has one (logs, events). */
export function receivedId(r: Received): string | undefined {
  if (r.kind === 'envelope') return r.env.id
  if (r.kind === 'invalid' && typeof r.value.id === 'string') return r.value.id
  return undefined
}

function hopsOf(d: DeliveryFacts): number {
  return Number(d.headers[HEADER.hops] ?? '0')
}

/** Error envelope for `failure`, bound for error-end. */
function toErrorEnd(d: DeliveryFacts, original: Record<string, unknown> | undefined, failure: Failure, ctx: OutcomeContext): Outcome {
  const info = {
    error: failure.error ?? failure.reason,
    message: failure.message,
    type: failure.type,
    ...(failure.traceback !== undefined ? { traceback: failure.traceback } : {}),
    reason: failure.reason,
    actor: ctx.actor,
    attempts: d.attempt,
    ...(failure.extra !== undefined ? { extra: failure.extra } : {}),
  }
  const env = original === undefined ? errorEnvelopeForRaw(d.body, info) : errorEnvelopeFor(original, info)
  return { kind: 'error_end', failure, outgoing: [{ destination: ctx.errorEnd, body: Buffer.from(JSON.stringify(env)), kind: 'error_end', id: String(env.id) }] }
}

/** A failure that ends the envelope: error-end, or for end actors (which never route) their DLQ. */
function fail(d: DeliveryFacts, original: Record<string, unknown> | undefined, failure: Failure, ctx: OutcomeContext): Outcome {
  return ctx.isEndActor ? { kind: 'dead_letter', failure } : toErrorEnd(d, original, failure, ctx)
}

/** A failure worth another attempt while `attempt < limit`, then {@link fail}. */
function retryOrFail(d: DeliveryFacts, env: Envelope, failure: Failure, ctx: OutcomeContext): Outcome {
  if (d.attempt < ctx.deliveryLimit) return { kind: 'retry', failure, infrastructure: true }
  return fail(d, env, failure, ctx)
}

/**
 * The first rows, before anything reads the payload: the delivery limit, parse_error,
 * validation_error. Returns the outcome, or undefined for a valid envelope.
 */
export function admit(d: DeliveryFacts, r: Received, ctx: OutcomeContext): Outcome | undefined {
  if (d.attempt > ctx.deliveryLimit) {
    // Redelivered past every budget (crash loops, publish failures): park it, never hot-loop.
    return { kind: 'dead_letter', failure: { reason: 'delivery_limit', message: `delivered ${d.attempt} times (limit ${ctx.deliveryLimit})`, type: 'DeliveryLimitError' } }
  }
  if (r.kind === 'unparseable') return fail(d, undefined, { reason: 'parse_error', message: r.message, type: 'EnvelopeParseError' }, ctx)
  if (r.kind === 'invalid') return fail(d, r.value, { reason: 'validation_error', message: r.problem, type: 'EnvelopeValidationError' }, ctx)
  return undefined
}

/**
 * The route rows of a non-end actor, once the payload is restored: route_mismatch (the runtime
 * is not called) and hop_limit. Undefined: the envelope goes to the runtime.
 */
export function checkRoute(d: DeliveryFacts, env: Envelope, ctx: OutcomeContext): Outcome | undefined {
  if (ctx.isEndActor) return undefined
  const expected = currentActor(env)
  if (expected !== ctx.actor) {
    const message = `route.actors[${env.route.current}] is ${JSON.stringify(expected ?? null)}, this actor is ${ctx.actor}`
    return toErrorEnd(d, env, { reason: 'route_mismatch', message, type: 'RouteMismatchError' }, ctx)
  }
  const hops = hopsOf(d)
  if (Number.isFinite(hops) && hops >= ctx.maxHops) {
    const message = `envelope made ${hops} hops (ASYA_MAX_HOPS=${ctx.maxHops}); its route stopped advancing`
    return toErrorEnd(d, env, { reason: 'hop_limit', message, type: 'HopLimitError' }, ctx)
  }
  return undefined
}

/** What the runtime gate gave back for one envelope. */
export type RuntimeResult =
  | { kind: 'response'; response: RuntimeResponse }
  /** The call failed: timeout, unreachable, connection lost, malformed answer. */
  | { kind: 'failed'; failure: 'timeout' | 'unreachable' | 'bad_response'; message: string }
  /** Never started: drain, or shed by the delivery window. */
  | { kind: 'not_started' }

function runtimeErrorFailure(item: RuntimeErrorItem, reason: FailureReason): Failure {
  const { error, details } = item
  return {
    reason,
    error,
    message: String(details.message ?? ''),
    type: String(details.type ?? ''),
    traceback: String(details.traceback ?? ''),
    extra: details,
  }
}

/** The rows of the runtime's answer for one envelope. */
export function decide(d: DeliveryFacts, env: Envelope, result: RuntimeResult, ctx: OutcomeContext): Outcome {
  if (result.kind === 'not_started') return { kind: 'release' }
  if (result.kind === 'failed') {
    if (result.failure === 'timeout') {
      // The gate is already replacing the hung runtime; the envelope is not retried.
      return fail(d, env, { reason: 'timeout', message: `runtime did not answer within ${ctx.runtimeTimeoutMs} ms`, type: 'TimeoutError' }, ctx)
    }
    const reason: FailureReason = result.failure === 'bad_response' ? 'runtime_error' : 'runtime_unreachable'
    return retryOrFail(d, env, { reason, message: result.message, type: 'RuntimeError' }, ctx)
  }
  const response = result.response
  if (response.kind === 'error') {
    const { error, details } = response.error
    if (error === 'connection_error') {
      return retryOrFail(d, env, { reason: 'runtime_unreachable', message: String(details.message), type: String(details.type) }, ctx)
    }
    const reason: FailureReason = error === 'processing_error' ? 'processing_error' : error === 'msg_parsing_error' ? 'msg_parsing_error' : 'runtime_error'
    const failure = runtimeErrorFailure(response.error, reason)
    const retryable = error === 'processing_error' && details.retryable !== false
    if (retryable && d.attempt <= ctx.maxRetries) return { kind: 'retry', failure, infrastructure: false }
    return fail(d, env, failure, ctx)
  }
  if (ctx.isEndActor) return { kind: 'end', result: endResult(env, response.results) }
  if (response.results.length === 0) return { kind: 'happy_end', outgoing: [{ destination: ctx.happyEnd, body: d.body, kind: 'happy_end', id: env.id }] }
  const routed = routeResults(env, response.results, ctx.happyEnd)
  if (typeof routed === 'string') return toErrorEnd(d, env, { reason: 'invalid_result', message: routed, type: 'InvalidResultError' }, ctx)
  return { kind: 'route', outgoing: routed.map((r) => ({ destination: r.destination, body: Buffer.from(JSON.stringify(r.envelope)), kind: r.kind, id: String(r.envelope.id) })) }
}

/**
 * Headers of every output of a delivery: the hop counter, one more than the input's, and the
 * publishing actor (`actor`, when given), which the next actor's progress reports name.
 */
export function outputHeaders(d: DeliveryFacts, actor?: string): TransportHeaders {
  return { [HEADER.hops]: String(hopsOf(d) + 1), ...(actor !== undefined ? { [HEADER.fromActor]: actor } : {}) }
}

const NONE_SENT: ReadonlySet<number> = new Set()

/** Fan-out children confirmed by an earlier attempt (not published again). */
export function alreadySent(d: DeliveryFacts): ReadonlySet<number> {
  const sent = d.headers[HEADER.sent]
  if (sent === undefined || sent === '') return NONE_SENT
  return new Set(sent.split(',').filter((s) => s !== '').map(Number))
}

/**
 * The publish row: some outputs of `outcome` were not confirmed (`sent` are the indexes that
 * were, including earlier attempts'). `tooLarge`: the broker refused the size, which no retry
 * changes.
 */
export function publishFailed(d: DeliveryFacts, env: Envelope | undefined, outcome: Outcome, sent: number[], message: string, tooLarge: boolean, ctx: OutcomeContext): Outcome {
  const outgoing = 'outgoing' in outcome ? outcome.outgoing : []
  if (tooLarge) {
    // Error-end gets the reason, or the DLQ when even the error envelope is too big.
    const failure: Failure = { reason: 'payload_too_large', message, type: 'PayloadTooLargeError' }
    if (outgoing.some((o) => o.kind === 'error_end') || !env) return { kind: 'dead_letter', failure }
    return toErrorEnd(d, env, failure, ctx)
  }
  const failure: Failure = { reason: 'publish_failed', message, type: 'PublishError' }
  if (d.attempt >= ctx.deliveryLimit) return { kind: 'dead_letter', failure }
  const sentHeader = [...new Set(sent)].sort((a, b) => a - b).join(',')
  return { kind: 'retry', failure, infrastructure: true, ...(sentHeader ? { headers: { [HEADER.sent]: sentHeader } } : {}) }
}

/** Why a claimed payload could not be restored. */
export interface ClaimFailure {
  reason: 'claim_missing' | 'claim_corrupt' | 'claim_unavailable'
  message: string
  type: string
  /** The reference, kept under details for forensics (never as a live claim). */
  claim: unknown
}

/**
 * A claim that cannot be restored: storage that does not answer is retried like any
 * infrastructure failure; a missing or corrupt object ends the envelope (`bare`: without its claim).
 */
export function claimFailed(d: DeliveryFacts, bare: Record<string, unknown>, c: ClaimFailure, ctx: OutcomeContext): Outcome {
  const failure: Failure = { reason: c.reason, message: c.message, type: c.type, extra: { claim: c.claim as never } }
  if (c.reason === 'claim_unavailable' && d.attempt < ctx.deliveryLimit) return { kind: 'retry', failure, infrastructure: true }
  return fail(d, bare, failure, ctx)
}

/** An end actor's persist + report step (end-actor.ts) settles as: ack, retry, or its DLQ. */
export function endFinished(d: DeliveryFacts, end: EndOutcome, ctx: OutcomeContext): Outcome | 'ack' {
  if (end.kind === 'done') return 'ack'
  const failure: Failure = { reason: end.reason, message: end.message, type: 'EndActorError' }
  if (end.kind === 'dead_letter' || d.attempt >= ctx.deliveryLimit) return { kind: 'dead_letter', failure }
  return { kind: 'retry', failure, infrastructure: true, headers: end.headers }
}
