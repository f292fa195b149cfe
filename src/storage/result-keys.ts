/**
 * Where an end actor puts an envelope (SPEC §10.3): `{prefix}{UTC %Y-%m-%dT%H:%M:%S.%fZ}/{last_actor}/{id}.json`.
 * Pure functions: the timestamp, the actor that produced the envelope, and key-safe ids.
 */
import { isPlainObject, type Envelope } from '../envelope.js'

/** `2026-12-01T09:30:45.123000Z`: Python's `%Y-%m-%dT%H:%M:%S.%fZ` (microseconds; ours end in 000). */
export function resultTimestamp(at: Date): string {
  return `${at.toISOString().slice(0, 23)}000Z`
}

/**
 * The actor that produced the envelope. Error envelopes name it (`payload.details.actor`, set by
 * the sidecar that failed it). Otherwise it is the actor at `current - 1` once the route is done,
 * or the actor at `current` when it returned nothing (`[]`: the envelope arrives unadvanced).
 * Upstream takes `actors[current - 1]` always, which names the wrong actor (or none) at index 0.
 */
export function lastActor(env: Pick<Envelope, 'route' | 'payload'>, kind: 'happy' | 'error'): string {
  const actors = env.route.actors
  if (kind === 'error' && isPlainObject(env.payload) && isPlainObject(env.payload.details)) {
    const a = env.payload.details.actor
    if (typeof a === 'string' && a !== '') return safeSegment(a)
  }
  if (actors.length === 0) return 'unknown'
  const cur = Number.isInteger(env.route.current) ? env.route.current : 0
  const idx = kind === 'error' ? Math.min(Math.max(cur, 0), actors.length - 1) : cur >= actors.length ? actors.length - 1 : Math.max(cur, 0)
  return safeSegment(actors[idx] ?? 'unknown')
}

/**
 * A key segment from an id or name: kept as it is except `/`, `\`, `%`, control characters and
 * whitespace, which are percent-encoded, so one envelope is one object and an id can never climb
 * out of its folder (`../x`) or split the key.
 */
export function safeSegment(s: string): string {
  const out = s.replace(/[%/\\\s\p{Cc}]/gu, (c) => encodeURIComponent(c))
  return out === '.' || out === '..' ? out.replace(/\./g, '%2E') : out
}

export function resultKey(prefix: string, at: Date, actor: string, id: string): string {
  return `${prefix}${resultTimestamp(at)}/${actor}/${safeSegment(id)}.json`
}
