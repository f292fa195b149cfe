/**
 * Building outgoing envelopes: routed results (fan-out ids, headers and unknown fields carried)
 * and error envelopes for error-end (upstream's shape plus reason/actor/attempts).
 */
import { randomUUID } from 'node:crypto'
import { envelopeProblem, isPlainObject, type Envelope, type Json } from '../src/envelope.js'

/** Why an envelope went to error-end or the DLQ; stable values, documented in docs/sidecar.md. */
export type FailureReason =
  | 'parse_error'
  | 'validation_error'
  | 'route_mismatch'
  | 'hop_limit'
  | 'processing_error'
  | 'msg_parsing_error'
  | 'runtime_error'
  | 'invalid_result'
  | 'timeout'
  | 'runtime_unreachable'
  | 'publish_failed'
  | 'payload_too_large'
  | 'delivery_limit'
  | 'persist_failed'
  | 'report_failed'
  | 'report_rejected'
  | 'claim_missing'
  | 'claim_corrupt'
  | 'claim_unavailable'

export interface ErrorInfo {
  /** `error` of the payload: the runtime's code (processing_error, ...) or a short message. */
  error: string
  message: string
  type: string
  traceback?: string
  reason: FailureReason
  actor: string
  attempts: number
  /** Extra runtime details (retryable, ...), merged under details. */
  extra?: Record<string, unknown>
}

/** Error envelope for a parsed (possibly invalid) envelope: same id/parent_id/route/headers. */
export function errorEnvelopeFor(original: Record<string, unknown>, info: ErrorInfo): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  // Unknown top-level fields ride along (forward compatibility), then ours overwrite payload.
  for (const [k, v] of Object.entries(original)) if (k !== 'payload') out[k] = v
  if (typeof out.id !== 'string' || out.id === '') out.id = `invalid-${randomUUID()}`
  out.payload = {
    error: info.error,
    details: {
      ...(info.extra ?? {}),
      message: info.message,
      type: info.type,
      traceback: info.traceback ?? '',
      reason: info.reason,
      actor: info.actor,
      attempts: info.attempts,
    },
    original_payload: (original.payload ?? null) as Json,
  }
  return out
}

/**
 * Error envelope for a body that is not a JSON object at all: a fresh id, a route naming this
 * actor, and the raw body (UTF-8 text, or base64 when it is not valid UTF-8) for forensics.
 */
export function errorEnvelopeForRaw(body: Buffer, info: ErrorInfo): Record<string, unknown> {
  let text: string | undefined
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(body)
  } catch {
    text = undefined
  }
  return {
    id: `unparseable-${randomUUID()}`,
    route: { actors: [info.actor], current: 0 },
    headers: {},
    payload: {
      error: info.error,
      details: {
        message: info.message,
        type: info.type,
        traceback: '',
        reason: info.reason,
        actor: info.actor,
        attempts: info.attempts,
      },
      original_payload: null,
      original_body: text ?? body.toString('base64'),
      original_body_encoding: text === undefined ? 'base64' : 'utf-8',
    },
  }
}

export interface RoutedResult {
  envelope: Record<string, unknown>
  /** Actor whose queue receives it (the next actor, or happy-end). */
  destination: string
  kind: 'routed' | 'happy_end'
}

/**
 * Turns the runtime's results into outgoing envelopes. Child 0 keeps the id; child i > 0 gets
 * `<id>-<i>` and `parent_id = <id>` (SPEC §2). Headers and unknown fields of the input are
 * carried unless the result sets its own. Returns an error string for a result that is not a
 * valid envelope.
 */
export function routeResults(input: Envelope, results: unknown[], happyEnd: string): RoutedResult[] | string {
  const out: RoutedResult[] = []
  const fanOut = results.length > 1
  for (const [i, r] of results.entries()) {
    if (!isPlainObject(r)) return `result ${i} is not an object`
    const env: Record<string, unknown> = {}
    for (const k of Object.keys(input)) env[k] = input[k]
    for (const k of Object.keys(r)) {
      const v = r[k]
      if (v !== undefined) env[k] = v
    }
    if (r.headers === undefined || r.headers === null) {
      if (input.headers !== undefined) env.headers = input.headers
      else delete env.headers
    }
    if (fanOut) {
      env.id = i === 0 ? input.id : `${input.id}-${i}`
      if (i > 0) env.parent_id = input.id
      else if (input.parent_id !== undefined) env.parent_id = input.parent_id
      else delete env.parent_id
    } else {
      env.id = typeof r.id === 'string' && r.id !== '' ? r.id : input.id
    }
    if (!('payload' in env)) env.payload = null
    const problem = envelopeProblem(env)
    if (problem !== undefined) return `result ${i}: ${problem}`
    const route = env.route as { actors: string[]; current: number }
    const next = route.actors[route.current]
    out.push(next === undefined ? { envelope: env, destination: happyEnd, kind: 'happy_end' } : { envelope: env, destination: next, kind: 'routed' })
  }
  return out
}
