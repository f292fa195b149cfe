/**
 * The delivery prober: sends N envelopes with unique ids into a pipeline and accounts for every one
 * of them at the sinks (happy-end, error-end, and the DLQs of every actor), while the caller
 * injects faults. It proves "at-least-once, nothing lost": `lost` must be 0. Duplicates are
 * counted, not failed, because at-least-once allows them (except where a scenario asserts 0).
 *
 * Usable against a real cluster's broker too: it only needs a Transport (see prober-cli.ts).
 */
import { randomUUID } from 'node:crypto'
import type { Envelope } from '../../src/envelope.js'
import { ERROR_END, HAPPY_END } from '../../src/names.js'
import type { Subscription, Transport } from '../../src/transport/transport.js'

export interface ProbeOptions {
  transport: Transport
  /** The actors of every envelope's route, in order. */
  actors: string[]
  /** How many envelopes to send. */
  count: number
  /** Payload bytes per envelope (padding), @default 64 */
  payloadBytes?: number
  /** Publish concurrency. @default 32 */
  publishConcurrency?: number
  /** Give up when nothing new arrived (and nothing else happened, see `lastActivity`) for this long. @default 30000 */
  idleTimeoutMs?: number
  /**
   * Time (ms since epoch) of the scenario's own last sign of life, such as a sidecar crashing or
   * coming back: a crash loop delivers nothing for several crash cycles, and on a loaded machine
   * those alone can outlast any fixed idle timeout. @default none: only arrivals count
   */
  lastActivity?: () => number
  /** Give up after this long in total. @default 300000 */
  totalTimeoutMs?: number
  /** Extra fields merged into every payload (e.g. `{ fail: true }` to drive test handlers). */
  payloadExtra?: (i: number) => Record<string, unknown>
  /** Called once all envelopes are published (faults can be injected from here too). */
  onPublished?: () => void | Promise<void>
  /** Called with the running tally whenever an envelope arrives at a sink. */
  onProgress?: (accounted: number, total: number) => void
  /** End actors of the pipeline under probe. @default 'happy-end' / 'error-end' */
  happyEnd?: string
  errorEnd?: string
  /** Run id used in envelope ids. @default random */
  runId?: string
}

export interface ProbeReport {
  runId: string
  sent: number
  delivered: number
  errored: number
  deadLettered: number
  lost: number
  duplicated: number
  /** Outcome per error-end reason (details.reason) and DLQ reason header. */
  reasons: Record<string, number>
  latencyMs: { p50: number; p99: number; max: number }
  durationMs: number
  /** Ids of lost envelopes (at most 20). */
  lostIds: string[]
}

type Sink = 'delivered' | 'errored' | 'deadLettered'

export async function runProbe(options: ProbeOptions): Promise<ProbeReport> {
  const { transport, actors, count } = options
  const runId = options.runId ?? randomUUID().slice(0, 8)
  const idle = options.idleTimeoutMs ?? 30_000
  const total = options.totalTimeoutMs ?? 300_000
  const pad = 'x'.repeat(options.payloadBytes ?? 64)
  const sentAt = new Map<string, number>()
  const outcome = new Map<string, Sink>()
  const latencies: number[] = []
  const reasons: Record<string, number> = {}
  let duplicated = 0
  let lastArrival = Date.now()
  let settle: (() => void) | undefined
  const done = new Promise<void>((resolve) => {
    settle = resolve
  })

  const record = (id: string | undefined, sink: Sink, reason?: string): void => {
    if (id === undefined || !sentAt.has(id)) return // not ours (another run, or a foreign message)
    lastArrival = Date.now()
    if (reason !== undefined) reasons[reason] = (reasons[reason] ?? 0) + 1
    if (outcome.has(id)) {
      duplicated++
      return
    }
    outcome.set(id, sink)
    latencies.push(Date.now() - (sentAt.get(id) as number))
    options.onProgress?.(outcome.size, count)
    if (outcome.size === count) settle?.()
  }

  const subs: Subscription[] = []
  const HAPPY = options.happyEnd ?? HAPPY_END
  const ERRORS = options.errorEnd ?? ERROR_END
  const sinkFor = (actor: string): Sink => (actor === HAPPY ? 'delivered' : actor === ERRORS ? 'errored' : 'deadLettered')
  const sinks = [HAPPY, ERRORS, ...actors.map((a) => `${a}-dlq`), `${HAPPY}-dlq`, `${ERRORS}-dlq`]
  for (const actor of [HAPPY, ERRORS, ...actors]) await transport.ensureQueue(actor)
  for (const sinkActor of sinks) {
    subs.push(
      await transport.consume(
        sinkActor,
        async (d) => {
          let id: string | undefined
          let reason: string | undefined = d.headers['x-asya-reason']
          try {
            const env = JSON.parse(d.body.toString('utf8')) as Envelope
            id = env.id
            const details = (env.payload as { details?: { reason?: string } } | null)?.details
            if (sinkActor === ERRORS && typeof details?.reason === 'string') reason = details.reason
          } catch {
            // A body that is not JSON cannot be one of ours.
          }
          record(id, sinkFor(sinkActor), reason)
          await d.ack()
        },
        { prefetch: 64 },
      ),
    )
  }

  const started = Date.now()
  const ids = Array.from({ length: count }, (_, i) => `probe-${runId}-${i}`)
  let next = 0
  const publishOne = async (): Promise<void> => {
    while (next < ids.length) {
      const i = next++
      const id = ids[i] as string
      const env: Envelope = {
        id,
        route: { actors, current: 0 },
        headers: { probe_run: runId },
        payload: { i, pad, ...(options.payloadExtra?.(i) ?? {}) },
      }
      sentAt.set(id, Date.now())
      // A publish that fails during a fault is retried: the prober itself must not lose envelopes.
      for (let attempt = 1; ; attempt++) {
        try {
          await transport.publish(actors[0] as string, Buffer.from(JSON.stringify(env)))
          break
        } catch (err) {
          if (attempt >= 100) throw err
          await new Promise((r) => setTimeout(r, Math.min(2000, 50 * attempt)))
        }
      }
    }
  }
  await Promise.all(Array.from({ length: options.publishConcurrency ?? 32 }, publishOne))
  await options.onPublished?.()

  lastArrival = Math.max(lastArrival, Date.now())
  await Promise.race([
    done,
    new Promise<void>((resolve) => {
      const timer = setInterval(() => {
        const now = Date.now()
        const alive = Math.max(lastArrival, options.lastActivity?.() ?? 0)
        if (now - alive > idle || now - started > total) {
          clearInterval(timer)
          resolve()
        }
      }, 100)
      void done.then(() => clearInterval(timer))
    }),
  ])
  for (const s of subs) await s.cancel().catch(() => undefined)

  const lostIds = ids.filter((id) => !outcome.has(id))
  const counts = { delivered: 0, errored: 0, deadLettered: 0 }
  for (const sink of outcome.values()) counts[sink]++
  latencies.sort((a, b) => a - b)
  const pct = (p: number): number => (latencies.length === 0 ? 0 : (latencies[Math.min(latencies.length - 1, Math.floor((p / 100) * latencies.length))] as number))
  return {
    runId,
    sent: count,
    ...counts,
    lost: lostIds.length,
    duplicated,
    reasons,
    latencyMs: { p50: pct(50), p99: pct(99), max: latencies[latencies.length - 1] ?? 0 },
    durationMs: Date.now() - started,
    lostIds: lostIds.slice(0, 20),
  }
}

/** One human-readable line per report. */
export function formatReport(name: string, r: ProbeReport): string {
  const reasons = Object.entries(r.reasons)
    .map(([k, v]) => `${k}=${v}`)
    .join(',')
  return (
    `${name}: sent=${r.sent} delivered=${r.delivered} errored=${r.errored} dead_lettered=${r.deadLettered} ` +
    `lost=${r.lost} duplicated=${r.duplicated} p50=${r.latencyMs.p50}ms p99=${r.latencyMs.p99}ms max=${r.latencyMs.max}ms` +
    (reasons ? ` reasons=${reasons}` : '') +
    (r.lostIds.length ? ` lost_ids=${r.lostIds.join(',')}` : '')
  )
}
