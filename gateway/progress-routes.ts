/**
 * Sidecar progress reports (SPEC §10.2): upstream's `POST /envelopes/{id}/progress`, and ours,
 * `POST /envelopes/progress`, a batch of them in one request (a sidecar sends whatever queued
 * while its previous request was in flight). A batch answers `200 {results}`, one per report in
 * order, each with the status code and body the single endpoint would have given it; reports of
 * one envelope are applied in order, consecutive states of one actor folded into one store write
 * (foldsInto), envelopes a few at a time.
 */
import type { FastifyInstance } from 'fastify'
import { isPlainObject, type Json } from '../src/envelope.js'
import { errorMessage } from '../src/errors.js'
import type { RouteDeps } from './http-routes.js'
import { adoptFanoutChild, impossibleId, text, viaStore } from './route-support.js'
import { ACTOR_STATES, foldInto, foldsInto, type ActorState, type ProgressReport } from './store/types.js'
import { storeError } from './tool-service.js'

/** Most reports one batch may carry (the body limit, ASYA_GATEWAY_REPORT_BODY_LIMIT, applies too). */
export const MAX_BATCH_REPORTS = 1000
/** Envelopes of one batch written at once (the rest wait: a batch must not take the whole pool). */
const BATCH_CONCURRENCY = 4

/** What the single endpoint answers; in a batch, one result (`{id, code, ...body}`). */
export interface ProgressAnswer {
  code: number
  body: { [k: string]: Json }
}

/** The body of one report → the store's report, or the 400 message naming the field. */
export function parseProgress(b: unknown): ProgressReport | string {
  if (!isPlainObject(b)) return 'Invalid request body'
  const state = b.status
  if (typeof state !== 'string' || !(ACTOR_STATES as readonly string[]).includes(state)) return `Invalid field status: must be one of ${ACTOR_STATES.join(', ')}`
  const idx = b.current_actor_idx ?? 0
  if (typeof idx !== 'number' || !Number.isInteger(idx) || idx < 0) return 'Invalid field current_actor_idx: must be an integer >= 0'
  if (b.actors !== undefined && b.actors !== null && !(Array.isArray(b.actors) && b.actors.every((a) => typeof a === 'string'))) {
    return 'Invalid field actors: must be a list of actor names'
  }
  if (b.message !== undefined && b.message !== null && typeof b.message !== 'string') return 'Invalid field message: must be a string'
  // Ours (upstream's sidecars never send it): the actor that published the envelope to the reporter.
  const from = b.from_actor_idx
  if (from !== undefined && from !== null && (typeof from !== 'number' || !Number.isInteger(from) || from < 0)) return 'Invalid field from_actor_idx: must be an integer >= 0'
  return {
    ...(Array.isArray(b.actors) && b.actors.length > 0 ? { actors: b.actors as string[] } : {}),
    currentActorIdx: idx,
    state: state as ActorState,
    // Only an earlier actor can have published it (and the store's integer column stays in range).
    ...(typeof from === 'number' && from < idx ? { fromIdx: from } : {}),
    ...(typeof b.message === 'string' && b.message !== '' ? { message: b.message } : {}),
  }
}

/**
 * Applies one report (a fan-out child seen first here is adopted); store failures throw
 * ASYA_ERR_STORE. `reports`: how many reports it stands for (folded ones), for the metric.
 */
export async function applyProgress(d: RouteDeps, id: string, report: ProgressReport, reports = 1): Promise<ProgressAnswer> {
  let w = await viaStore(() => d.store.progress(id, report))
  if (w.outcome === 'not_found' && (await adoptFanoutChild(d, id, report.actors, report.currentActorIdx))) w = await viaStore(() => d.store.progress(id, report))
  if (w.outcome === 'not_found') {
    d.metrics.progressReports.inc({ result: 'not_found' }, reports)
    return { code: 404, body: { error: 'Envelope not found' } }
  }
  if (w.outcome === 'final') {
    // Final is final (SPEC §11 #17): a late report changes nothing, and the reporter must not retry.
    d.metrics.progressReports.inc({ result: 'ignored_final' }, reports)
    return { code: 200, body: { status: 'ignored', reason: 'envelope is final', envelope_status: w.status } }
  }
  // A stale report (a later state of the envelope is recorded already) adds nothing: see progressRows.
  d.metrics.progressReports.inc({ result: w.outcome === 'applied' ? 'applied' : 'stale' }, reports)
  return { code: 200, body: { status: 'ok', progress_percent: w.outcome === 'applied' ? (w.update.update.progress_percent ?? 0) : (w.progressPercent ?? 0) } }
}

export function registerProgressRoutes(app: FastifyInstance, d: RouteDeps): void {
  const reportLimit = { bodyLimit: d.limits.reportBodyLimit }

  app.post<{ Params: { id: string } }>('/envelopes/:id/progress', reportLimit, async (req, reply) => {
    const report = parseProgress(req.body)
    if (typeof report === 'string') {
      d.metrics.progressReports.inc({ result: 'invalid' })
      return text(reply, 400, report)
    }
    const a = await applyProgress(d, req.params.id, report)
    if (a.code === 404) return text(reply, 404, 'Envelope not found')
    return reply.code(a.code).send(a.body)
  })

  app.post('/envelopes/progress', reportLimit, async (req, reply) => {
    const b = req.body
    if (!isPlainObject(b) || !Array.isArray(b.reports)) return text(reply, 400, 'Invalid request body: expected {"reports": [...]}')
    if (b.reports.length > MAX_BATCH_REPORTS) return text(reply, 400, `Invalid field reports: at most ${MAX_BATCH_REPORTS} reports`)
    return reply.code(200).send({ results: await applyBatch(d, b.reports) })
  })
}

/** One result per report, in order; see the module comment. */
async function applyBatch(d: RouteDeps, items: Json[]): Promise<Array<{ [k: string]: Json }>> {
  const results: Array<{ [k: string]: Json }> = new Array(items.length)
  /** Per envelope, in order: one store write and the reports (by position) folded into it. */
  const writes = new Map<string, Array<{ report: ProgressReport; positions: number[] }>>()
  items.forEach((item, i) => {
    const id = isPlainObject(item) ? item.id : undefined
    if (typeof id !== 'string' || id === '') {
      d.metrics.progressReports.inc({ result: 'invalid' })
      results[i] = { id: typeof id === 'string' ? id : null, code: 400, error: 'Missing required field: id' }
      return
    }
    if (impossibleId(id)) {
      d.metrics.progressReports.inc({ result: 'not_found' })
      results[i] = { id: id.slice(0, 300), code: 404, error: 'Envelope not found' }
      return
    }
    const report = parseProgress(item)
    if (typeof report === 'string') {
      d.metrics.progressReports.inc({ result: 'invalid' })
      results[i] = { id, code: 400, error: report }
      return
    }
    let list = writes.get(id)
    if (!list) writes.set(id, (list = []))
    const last = list[list.length - 1]
    if (last && foldsInto(last.report, report)) {
      last.report = foldInto(last.report, report)
      last.positions.push(i)
    } else {
      list.push({ report, positions: [i] })
    }
  })
  const queue = [...writes.entries()]
  const worker = async (): Promise<void> => {
    for (let next = queue.shift(); next !== undefined; next = queue.shift()) {
      const [id, list] = next
      for (const w of list) {
        let a: ProgressAnswer
        try {
          a = await applyProgress(d, id, w.report, w.positions.length)
        } catch (err) {
          const e = storeError(err)
          d.logger.error({ code: e.code, err: errorMessage(e), envelope_id: id }, 'envelope store failed')
          a = { code: 503, body: { error: 'Envelope store unavailable' } }
        }
        // Folded reports were recorded together: they share the answer.
        for (const i of w.positions) results[i] = { id, code: a.code, ...a.body }
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(BATCH_CONCURRENCY, queue.length) }, worker))
  return results
}
