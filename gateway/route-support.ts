/** Helpers shared by the HTTP route modules. */
import type { FastifyReply } from 'fastify'
import type { RouteDeps } from './http-routes.js'
import { storeError } from './tool-service.js'

/** Upstream's error bodies: a text/plain line, like Go's http.Error. */
export function text(reply: FastifyReply, code: number, message: string): FastifyReply {
  return reply.code(code).type('text/plain; charset=utf-8').send(`${message}\n`)
}

/** Longest envelope id accepted (ours are UUIDs, children `<uuid>-<i>`); longer ones cannot exist. */
export const MAX_ID_LENGTH = 256

/** An id no envelope can have: U+0000 (PostgreSQL text refuses it) or longer than MAX_ID_LENGTH. */
export function impossibleId(id: unknown): boolean {
  return typeof id === 'string' && (id.length > MAX_ID_LENGTH || id.includes('\u0000'))
}

/** Store failures become ASYA_ERR_STORE (503). */
export async function viaStore<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn()
  } catch (err) {
    throw storeError(err)
  }
}

/**
 * A report for an unknown `<parent>-<i>` whose parent we track is a fan-out child (SPEC §2) that no
 * one registered with POST /envelopes (our sidecars do not): record it now, under its parent and
 * with the parent's deadline, so its progress and final status are tracked like the parent's.
 */
export async function adoptFanoutChild(d: RouteDeps, id: string, actors: string[] | undefined, current: number): Promise<boolean> {
  const m = /^(.+)-(\d+)$/.exec(id)
  if (!m) return false
  const parent = await viaStore(() => d.store.get(m[1] as string))
  if (!parent) return false
  await viaStore(() =>
    d.store.create({
      id,
      parentId: parent.id,
      actors: actors ?? parent.route.actors,
      current,
      payload: null,
      ...(parent.deadline !== undefined ? { deadline: new Date(parent.deadline) } : {}),
    }),
  )
  d.logger.debug({ envelope_id: id, parent_id: parent.id }, 'fan-out child adopted from its first report')
  return true
}
