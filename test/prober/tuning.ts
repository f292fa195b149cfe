/**
 * Runs a prober scenario with every actor at a concurrency or batch size other than the defaults
 * (SPEC §13), as `asya.sh/concurrency` / `asya.sh/batch-size` would: the same settings reach both
 * containers (sidecar and runtime env, as the webhook passes them). A batch handler gets a list, so
 * with a batch size above 1 each `prober_handlers.X` becomes its batch version
 * `prober_batch_handlers.X` (handlers/prober_batch_handlers.py): one result per input, a failing
 * input's slot holding its exception.
 */
import type { ActorSpec, HandlerStats } from './local-pipeline.js'

export interface ActorTuning {
  /** ASYA_CONCURRENCY of every actor. @default 1 */
  concurrency?: number
  /** ASYA_BATCH_SIZE of every actor. @default 1 */
  batchSize?: number
  /** ASYA_BATCH_WAIT (a duration such as `20ms`). @default the sidecar's (20ms) */
  batchWait?: string
}

/** A short label for reports and test names: `concurrency 8`, `batch 16`, `defaults`. */
export function tuningLabel(t: ActorTuning | undefined): string {
  const parts = [
    ...(t?.concurrency !== undefined && t.concurrency > 1 ? [`concurrency ${t.concurrency}`] : []),
    ...(t?.batchSize !== undefined && t.batchSize > 1 ? [`batch ${t.batchSize}${t.batchWait ? ` wait ${t.batchWait}` : ''}`] : []),
  ]
  return parts.length > 0 ? parts.join(', ') : 'defaults'
}

/** `spec` with the tuning applied; actors without a runtime (end actors) are left as they are. */
export function tuneActor(spec: ActorSpec, t: ActorTuning | undefined): ActorSpec {
  if (!t || spec.runtime === false) return spec
  const env: Record<string, string> = {}
  if (t.concurrency !== undefined && t.concurrency > 1) env['ASYA_CONCURRENCY'] = String(t.concurrency)
  const batched = t.batchSize !== undefined && t.batchSize > 1
  if (batched) {
    env['ASYA_BATCH_SIZE'] = String(t.batchSize)
    if (t.batchWait !== undefined) env['ASYA_BATCH_WAIT'] = t.batchWait
  }
  if (Object.keys(env).length === 0) return spec
  return {
    ...spec,
    handler: batched ? spec.handler.replace(/^prober_handlers\./, 'prober_batch_handlers.') : spec.handler,
    env: { ...(spec.env ?? {}), ...env },
    runtimeEnv: { ...(spec.runtimeEnv ?? {}), ...env },
  }
}

/**
 * Why a tuned run did not test what it was asked to, from what the handlers reported: no two calls
 * ever overlapped at concurrency N, or no call got a batch of more than one at batch size B (a
 * setting that never reached a container would pass every other check silently).
 */
export function tuningProblems(t: ActorTuning | undefined, stats: HandlerStats[]): string[] {
  const problems: string[] = []
  const peak = Math.max(0, ...stats.map((s) => s.peakInFlight))
  const batch = Math.max(0, ...stats.map((s) => s.maxBatch))
  if (t?.concurrency !== undefined && t.concurrency > 1 && peak < 2) problems.push(`no two handler calls ever overlapped (peak ${peak}): ASYA_CONCURRENCY=${t.concurrency} was not exercised`)
  if (t?.batchSize !== undefined && t.batchSize > 1 && batch < 2) problems.push(`no handler call got more than ${batch} envelope(s): ASYA_BATCH_SIZE=${t.batchSize} was not exercised`)
  return problems
}
