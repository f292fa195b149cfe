/**
 * What the gateway stores about an envelope and the updates streamed to clients. The JSON shapes
 * (field names, lowercase statuses) are upstream's asya-gateway wire format: GET /envelopes/{id}
 * returns an {@link EnvelopeRecord}, every SSE `update` event carries an {@link EnvelopeUpdate}.
 */
import type { Json } from '../../src/envelope.js'

export type EnvelopeStatus = 'pending' | 'running' | 'succeeded' | 'failed' | 'unknown'
export type FinalStatus = 'succeeded' | 'failed'
/** Where the envelope is at the actor that reported (SPEC §10.2). */
export type ActorState = 'received' | 'processing' | 'completed'

export const FINAL_STATUSES: readonly EnvelopeStatus[] = ['succeeded', 'failed']
export const ACTOR_STATES: readonly ActorState[] = ['received', 'processing', 'completed']

export function isFinalStatus(status: string): status is FinalStatus {
  return status === 'succeeded' || status === 'failed'
}

/** GET /envelopes/{id} (upstream `types.Envelope`). */
export interface EnvelopeRecord {
  id: string
  parent_id?: string
  status: EnvelopeStatus
  route: { actors: string[]; current: number; metadata?: { [k: string]: Json } }
  payload: Json
  result?: Json
  error?: string
  timeout_seconds?: number
  /** RFC 3339; absent when the envelope has no deadline. */
  deadline?: string
  progress_percent: number
  current_actor_idx: number
  current_actor_name?: string
  message?: string
  actors_completed: number
  total_actors: number
  created_at: string
  updated_at: string
}

/** One SSE `update` event / one `envelope_updates` row (upstream `types.EnvelopeUpdate`). */
export interface EnvelopeUpdate {
  /** Envelope id. */
  id: string
  status: EnvelopeStatus
  message?: string
  result?: Json
  error?: string
  progress_percent?: number
  actor?: string
  actors?: string[]
  current_actor_idx?: number
  envelope_state?: ActorState
  timestamp: string
}

/** An update with its position in the envelope's history (envelope_updates.id; increasing per envelope in commit order). */
export interface SequencedUpdate {
  seq: number
  update: EnvelopeUpdate
}

export interface NewEnvelope {
  id: string
  parentId?: string
  actors: string[]
  current: number
  payload: Json
  /** Seconds until the deadline; the store computes the deadline from its own clock. */
  timeoutSec?: number
  /** Absolute deadline (fan-out children inherit their parent's). Wins over timeoutSec. */
  deadline?: Date
}

export interface ProgressReport {
  /** Route as the reporting sidecar saw it (envelope-mode handlers may extend it). */
  actors?: string[]
  /** Index of the actor that did the work (SPEC §10.2). */
  currentActorIdx: number
  state: ActorState
  message?: string
  /** Index of the actor that published the envelope to the reporting one (`from_actor_idx`, ours; see progressRows). */
  fromIdx?: number
  /**
   * Messages of earlier states of the same actor that the same sender reported just before this
   * one (a batch the gateway folded into this report, see foldProgress): recorded on those
   * states' rows when this report records them, as if each had been written on its own.
   */
  earlierMessages?: Partial<Record<ActorState, string>>
}

export interface FinalReport {
  status: FinalStatus
  result?: Json
  error?: string
  message: string
  actor?: string
  actors?: string[]
  currentActorIdx?: number
}

/** Result of a write: applied (with the update it produced), nothing to do, refused because the envelope is final, or no such envelope. */
export type WriteResult =
  | { outcome: 'applied'; update: SequencedUpdate; envelope?: undefined }
  | { outcome: 'unchanged'; progressPercent?: number }
  | { outcome: 'final'; status: FinalStatus }
  | { outcome: 'not_found' }

/** Weight of an actor state in the progress formula (SPEC §10.2, upstream's values). */
export const STATE_WEIGHT: Record<ActorState, number> = { received: 10, processing: 50, completed: 100 }

/**
 * Progress percentage of a report: `(idx·100 + weight) / len(actors)`, capped at 100 and never below
 * `previous` (monotonic under reordered or concurrent reports). Rounded to 2 decimals (DECIMAL(5,2)).
 */
export function progressPercent(idx: number, state: ActorState, totalActors: number, previous = 0): number {
  if (totalActors <= 0) return previous
  const raw = (Math.max(0, idx) * 100 + STATE_WEIGHT[state]) / totalActors
  const pct = Math.round(Math.min(100, raw) * 100) / 100
  return Math.max(previous, pct)
}

/** The route the gateway trusts for progress: the stored one, unless the report carries a longer (extended) one. */
export function effectiveActors(stored: string[], reported: string[] | undefined): string[] {
  return reported !== undefined && reported.length > stored.length ? reported : stored
}

/** Position of (actor index, state) in the envelope's walk: idx·3 + (received 0, processing 1, completed 2). */
export function progressStep(idx: number, state: ActorState): number {
  return idx * 3 + ACTOR_STATES.indexOf(state)
}

export interface ProgressRow {
  idx: number
  state: ActorState
  percent: number
  message?: string
}

/**
 * The updates one progress report adds to an envelope's history, given the last step recorded.
 *
 * Reports come from different sidecars, asynchronously: actor 1's `received` can reach the gateway
 * before actor 0's `completed`. The stream must still read received → processing → completed per
 * actor, in route order, so:
 * - a report at or before the last recorded step is stale: it adds nothing (the state it reports is
 *   already implied by a later one);
 * - a report past the last step first records the states it implies: the rest of the previous
 *   reporter's states (it handed the envelope on, so it completed), the states of the actor that
 *   published the envelope to the reporting one (`fromIdx`, from the `x-asya-from-actor` header:
 *   it certainly ran, also when none of its reports has arrived yet, e.g. all three still in its
 *   sidecar's batch), and the earlier states of the reporting actor (it received before it
 *   processed). Other actors in between that never reported are not invented (an envelope-mode
 *   handler may have skipped them) — except the actor the envelope was sent to first (`startIdx`):
 *   it certainly ran, so when a later actor's report is the first to arrive, the start actor's
 *   three states are recorded before it. A publisher before `startIdx` (a fan-out child adopted at
 *   a later actor) is not recorded.
 * The late reports of an actor recorded this way are then stale: answered, adding nothing.
 * Percentages follow SPEC §10.2 and never decrease.
 */
export function progressRows(
  prevStep: number,
  prevPercent: number,
  totalActors: number,
  idx: number,
  state: ActorState,
  message?: string,
  startIdx = 0,
  fromIdx?: number,
): ProgressRow[] {
  const step = progressStep(idx, state)
  if (step <= prevStep) return []
  const steps = new Set<number>()
  const range = (from: number, to: number): void => {
    for (let s = from; s <= to; s++) steps.add(s)
  }
  const k = ACTOR_STATES.indexOf(state)
  const started = prevStep >= progressStep(startIdx, 'received')
  const pIdx = Math.floor(prevStep / 3)
  if (started) {
    if (pIdx < idx) range(prevStep + 1, pIdx * 3 + 2)
  } else if (idx > startIdx) {
    range(startIdx * 3, startIdx * 3 + 2)
  }
  if (fromIdx !== undefined && fromIdx >= startIdx && fromIdx < idx) range(Math.max(fromIdx * 3, prevStep + 1), fromIdx * 3 + 2)
  range(started && pIdx === idx ? prevStep + 1 : idx * 3, idx * 3 + k)
  const rows: ProgressRow[] = []
  let pct = prevPercent
  for (const s of [...steps].sort((a, b) => a - b)) {
    const i = Math.floor(s / 3)
    const st = ACTOR_STATES[s % 3] as ActorState
    pct = progressPercent(i, st, totalActors, pct)
    rows.push({ idx: i, state: st, percent: pct, ...(s === step && message !== undefined ? { message } : {}) })
  }
  return rows
}

/** The rows of `progressRows` with the messages a folded report carries for the reporting actor's earlier states. */
export function withEarlierMessages(rows: ProgressRow[], idx: number, earlier: ProgressReport['earlierMessages']): ProgressRow[] {
  if (!earlier) return rows
  return rows.map((r) => {
    const m = r.idx === idx && r.message === undefined ? earlier[r.state] : undefined
    return m === undefined ? r : { ...r, message: m }
  })
}

/**
 * Whether `next`, reported right after `prev` for the same envelope by the same sender, can be
 * folded into it (one store write giving the same history): a later state of the same actor on the
 * same route. The fold is exact because progressRows records a report's implied states of the
 * same actor itself: writing (0 received, 0 processing) one after the other adds the rows writing
 * (0 processing) alone adds; `earlierMessages` keeps each one's message. Reports of different
 * actors are never folded (the rows a report implies for the previous reporter depend on which
 * report was recorded last), nor an earlier state after a later one (a retried message).
 */
export function foldsInto(prev: ProgressReport, next: ProgressReport): boolean {
  return prev.currentActorIdx === next.currentActorIdx && ACTOR_STATES.indexOf(next.state) > ACTOR_STATES.indexOf(prev.state) && sameRoute(prev.actors, next.actors)
}

/** `next` carrying what `prev` recorded (only when foldsInto(prev, next)). */
export function foldInto(prev: ProgressReport, next: ProgressReport): ProgressReport {
  const earlier = { ...prev.earlierMessages, ...(prev.message !== undefined ? { [prev.state]: prev.message } : {}) }
  // The publisher that counts is the first report's: once it is recorded, the later states of the
  // same actor imply nothing before it (see progressRows), whatever they name.
  const { fromIdx: _ignored, ...rest } = next
  return { ...rest, ...(prev.fromIdx !== undefined ? { fromIdx: prev.fromIdx } : {}), ...(Object.keys(earlier).length > 0 ? { earlierMessages: earlier } : {}) }
}

/** Consecutive reports of one envelope, in order, folded into as few store writes as give the same history. */
export function foldProgress(reports: readonly ProgressReport[]): ProgressReport[] {
  const out: ProgressReport[] = []
  for (const r of reports) {
    const prev = out[out.length - 1]
    if (prev && foldsInto(prev, r)) out[out.length - 1] = foldInto(prev, r)
    else out.push(r)
  }
  return out
}

function sameRoute(a: string[] | undefined, b: string[] | undefined): boolean {
  if (a === undefined || b === undefined) return a === b
  return a.length === b.length && a.every((x, i) => x === b[i])
}

/** On `succeeded`: the last reporter's remaining states (it completed, since the envelope reached happy-end). */
export function completionRows(prevStep: number, prevPercent: number, totalActors: number): ProgressRow[] {
  if (prevStep < 0 || prevStep % 3 === 2) return []
  const idx = Math.floor(prevStep / 3)
  return progressRows(prevStep, prevPercent, totalActors, idx, 'completed')
}
