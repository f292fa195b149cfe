import { errors } from './errors.js'
import { END_ACTORS, isValidActorName } from './names.js'

/** Any JSON value. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json }

export interface Route {
  /** Actors still to visit and already visited; never lists happy-end / error-end. */
  actors: string[]
  /**
   * Index of the actor that must process this envelope, >= 0. At or past the end (a handler with
   * validation off may set len(actors) + 5) the route is done: the envelope goes to happy-end as it
   * is, like upstream (SPEC §2).
   */
  current: number
  /** Carried unchanged. */
  metadata?: { [key: string]: Json }
}

/** The JSON message body that travels between actors (SPEC §2). */
export interface Envelope {
  id: string
  parent_id?: string
  route: Route
  /** Trace ids, priority, ...: carried unchanged on every hop, error hops included. */
  headers?: { [key: string]: Json }
  payload: Json
  /** Unknown top-level fields are preserved on routed hops (forward compatibility). */
  [extra: string]: unknown
}

const utf8 = new TextDecoder('utf-8', { fatal: true })

/**
 * Parses and validates a message body. Throws ASYA_ERR_ENVELOPE_PARSE (details.reason
 * `parse_error`) when it is not UTF-8 JSON, ASYA_ERR_ENVELOPE_INVALID (`validation_error`) when
 * the envelope breaks SPEC §2.
 */
export function parseEnvelope(body: Uint8Array | string): Envelope {
  let value: unknown
  try {
    const text = typeof body === 'string' ? body : utf8.decode(body)
    value = JSON.parse(text)
  } catch (err) {
    throw new errors.ASYA_ERR_ENVELOPE_PARSE((err as Error).message, {
      details: { reason: 'parse_error' },
    })
  }
  const problem = envelopeProblem(value)
  if (problem !== undefined) {
    throw new errors.ASYA_ERR_ENVELOPE_INVALID(problem, {
      details: { reason: 'validation_error' },
    })
  }
  return value as Envelope
}

/** Returns a description of the first rule `value` breaks, or undefined for a valid envelope. */
export function envelopeProblem(value: unknown): string | undefined {
  if (!isPlainObject(value)) return 'envelope must be a JSON object'
  const { id, parent_id: parentId, route, headers } = value
  if (typeof id !== 'string' || id === '') return '"id" must be a non-empty string'
  if (parentId !== undefined && parentId !== null && typeof parentId !== 'string') return '"parent_id" must be a string'
  if (!isPlainObject(route)) return '"route" must be an object'
  const { actors, current, metadata } = route
  if (!Array.isArray(actors) || actors.length === 0) return '"route.actors" must be a non-empty array'
  for (const [i, a] of actors.entries()) {
    if (!isValidActorName(a)) return `"route.actors[${i}]" must be a DNS-1123 actor name`
    if (END_ACTORS.includes(a)) return `"route.actors[${i}]" must not name the end actor ${a}`
  }
  // No upper bound: an index past the end means the route is done (SPEC §2, upstream's behaviour).
  if (typeof current !== 'number' || !Number.isInteger(current) || current < 0) {
    return '"route.current" must be an integer >= 0'
  }
  if (metadata !== undefined && !isPlainObject(metadata)) return '"route.metadata" must be an object'
  if (headers !== undefined && headers !== null && !isPlainObject(headers)) return '"headers" must be an object'
  if (!('payload' in value)) return '"payload" is required (it may be null)'
  return undefined
}

export function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

/** The actor this envelope must visit next, or undefined when the route is finished. */
export function currentActor(env: Envelope): string | undefined {
  return env.route.actors[env.route.current]
}

/** Byte size of a serialised envelope. */
export function serializeEnvelope(env: Envelope): Buffer {
  return Buffer.from(JSON.stringify(env), 'utf8')
}
