/**
 * Prober scenario `end-actors` (issue 14): the whole way to object storage. Three actors and a
 * failing one feed real end-actor sidecar processes (no runtime, as deploy/ ships them) that persist
 * to an S3-compatible server started for the run; S3 is taken off the network for a few seconds
 * once about a third is persisted. Accounting is by what storage holds, not by queues: every
 * envelope id must end as exactly one object, under happy-asya/ when its route finished and
 * under error-asya/ when an actor failed it, holding the envelope; nothing in any DLQ.
 */
import { GetObjectCommand } from '@aws-sdk/client-s3'
import type { Envelope } from '../../src/envelope.js'
import { createTransportFromEnv } from '../../src/transport/create-transport.js'
import type { Delivery } from '../../src/transport/transport.js'
import { startS3Server } from '../support/s3-server.js'
import { LocalPipeline, type ActorSpec } from './local-pipeline.js'
import type { ScenarioResult } from './scenarios.js'
import type { ActorTuning } from './tuning.js'

interface EndCtx {
  n: number
  long: boolean
  uid: string
  actor: (base: string) => string
  env: () => Record<string, string>
  onLog?: (actor: string, line: string) => void
  tuning?: ActorTuning
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

/** `prefix/{ts}/{actor}/{id}.json` → id (ids here have no characters that get percent-encoded). */
function idOf(key: string): string {
  return decodeURIComponent(key.slice(key.lastIndexOf('/') + 1).replace(/\.json$/, ''))
}

function sumMetric(text: string, name: string): number {
  let sum = 0
  for (const line of text.split('\n')) if (line.startsWith(`${name}{`) || line.startsWith(`${name} `)) sum += Number(line.slice(line.lastIndexOf(' ') + 1))
  return sum
}

export async function endActorsScenario(ctx: EndCtx): Promise<ScenarioResult> {
  const transportEnv = ctx.env()
  const happyEnd = transportEnv['ASYA_ACTOR_HAPPY_END'] as string
  const errorEnd = transportEnv['ASYA_ACTOR_ERROR_END'] as string
  const s3 = await startS3Server()
  const bucket = `probe-${ctx.uid}`
  await s3.createBucket(bucket)
  const [p1, p2, p3, bad] = ['p1', 'p2', 'p3', 'bad'].map(ctx.actor) as [string, string, string, string]
  // Retries of a failed write back off from 1 s; a delivery limit of 20 outlasts the outage.
  const endEnv = { ...s3.env(bucket), ASYA_DELIVERY_LIMIT: '20', ASYA_RETRY_BACKOFF_MAX: '2s' }
  const actors: ActorSpec[] = [
    { name: p1, handler: 'prober_handlers.echo' },
    { name: p2, handler: 'prober_handlers.slow' },
    { name: p3, handler: 'prober_handlers.echo' },
    { name: bad, handler: 'prober_handlers.poison' },
    { name: happyEnd, handler: '', runtime: false, env: endEnv },
    { name: errorEnd, handler: '', runtime: false, env: endEnv },
  ]
  const pipeline = new LocalPipeline({ actors, transportEnv, ...(ctx.onLog ? { onLog: ctx.onLog } : {}), ...(ctx.tuning ? { tuning: ctx.tuning } : {}) })
  const transport = await createTransportFromEnv(transportEnv, { connectionName: 'asya-prober' })
  await transport.connect()
  const started = Date.now()
  const dlq = new Map<string, string>()
  let outageMs = 0
  try {
    for (const a of actors) await transport.ensureQueue(a.name)
    await pipeline.start()
    for (const a of actors) {
      await transport.consume(
        `${a.name}-dlq`,
        async (d: Delivery) => {
          let id = '?'
          try {
            id = (JSON.parse(d.body.toString('utf8')) as Envelope).id
          } catch {
            /* not ours */
          }
          dlq.set(id, `${a.name}: ${d.headers['x-asya-reason'] ?? '?'}`)
          await d.ack()
        },
        { prefetch: 64 },
      )
    }
    const ids = Array.from({ length: ctx.n }, (_, i) => `probe-${ctx.uid}-${i}`)
    // One envelope in ten fails at `bad` and ends at error-end; the rest finish at happy-end.
    const fails = (i: number): boolean => i % 10 === 0
    for (let i = 0; i < ids.length; i += 50) {
      await Promise.all(
        ids.slice(i, i + 50).map((id, j) => {
          const k = i + j
          const env: Envelope = { id, route: { actors: fails(k) ? [p1, bad] : [p1, p2, p3], current: 0 }, headers: { probe_run: ctx.uid }, payload: { i: k, sleep: 0.002 } }
          return transport.publish(p1, Buffer.from(JSON.stringify(env)))
        }),
      )
    }
    // The fault: S3 off the network for 3 s once about a third is persisted.
    const persisted = async (): Promise<number> => {
      const texts = await Promise.all([happyEnd, errorEnd].map((a) => pipeline.metrics(a).catch(() => '')))
      return texts.reduce((s, t) => s + sumMetric(t, 'asya_actor_end_persisted_total'), 0)
    }
    const cutDeadline = Date.now() + 120_000
    while ((await persisted()) < Math.floor(ctx.n * 0.3) && Date.now() < cutDeadline) await sleep(50)
    const cutAt = Date.now()
    await s3.proxy.cut()
    await sleep(3000)
    await s3.proxy.restore()
    outageMs = Date.now() - cutAt

    // Wait until storage holds every id, or nothing new arrived for 30 s.
    let keys: string[] = []
    let last = -1
    let lastChange = Date.now()
    const total = Date.now() + (ctx.long ? 1_800_000 : 300_000)
    for (;;) {
      keys = [...(await s3.list(bucket, 'happy-asya/')), ...(await s3.list(bucket, 'error-asya/'))]
      if (keys.length !== last) {
        last = keys.length
        lastChange = Date.now()
      }
      if (keys.length >= ctx.n || Date.now() - lastChange > 30_000 || Date.now() > total) break
      await sleep(250)
    }
    await sleep(500) // a late duplicate would show now
    keys = [...(await s3.list(bucket, 'happy-asya/')), ...(await s3.list(bucket, 'error-asya/'))]

    const byId = new Map<string, string[]>()
    for (const k of keys) byId.set(idOf(k), [...(byId.get(idOf(k)) ?? []), k])
    const problems: string[] = []
    const lostIds = ids.filter((id) => !byId.has(id))
    const duplicated = [...byId.values()].reduce((s, ks) => s + ks.length - 1, 0)
    if (lostIds.length > 0) problems.push(`${lostIds.length} envelopes have no object (e.g. ${lostIds.slice(0, 5).join(', ')})`)
    if (duplicated > 0) problems.push(`${duplicated} extra objects: ${[...byId.entries()].filter(([, ks]) => ks.length > 1).slice(0, 3).map(([id, ks]) => `${id}: ${ks.join(' ')}`).join('; ')}`)
    const foreign = [...byId.keys()].filter((id) => !ids.includes(id))
    if (foreign.length > 0) problems.push(`objects for ids never sent: ${foreign.slice(0, 5).join(', ')}`)
    let errored = 0
    let delivered = 0
    for (const [i, id] of ids.entries()) {
      const k = byId.get(id)?.[0]
      if (k === undefined) continue
      const where = k.startsWith('error-asya/') ? 'error' : 'happy'
      if (where === 'error') errored++
      else delivered++
      const expected = fails(i) ? `error-asya/` : `happy-asya/`
      if (!k.startsWith(expected)) problems.push(`${id} persisted as ${k}, expected under ${expected}`)
      else if (!k.includes(`/${fails(i) ? bad : p3}/`)) problems.push(`${id}: key ${k} does not name the actor that produced it`)
    }
    // Bodies: the whole envelope (every object in CI, a sample in the long run).
    const step = ctx.long ? 97 : 1
    for (let i = 0; i < ids.length; i += step) {
      const k = byId.get(ids[i] as string)?.[0]
      if (k === undefined) continue
      const res = await s3.client.send(new GetObjectCommand({ Bucket: bucket, Key: k }))
      const body = JSON.parse(await (res.Body as { transformToString(): Promise<string> }).transformToString()) as Envelope
      if (body.id !== ids[i]) problems.push(`${k} holds envelope ${body.id}`)
      else if (!fails(i) && (body.payload as { i?: number } | null)?.i !== i) problems.push(`${k}: payload is not the envelope's`)
      else if (fails(i) && (body.payload as { details?: { actor?: string } } | null)?.details?.actor !== bad) problems.push(`${k}: not the error envelope of ${bad}`)
    }
    if (dlq.size > 0) problems.push(`${dlq.size} dead-lettered although S3 came back (${[...dlq.entries()].slice(0, 3).map(([id, w]) => `${id} at ${w}`).join('; ')})`)
    const crashed = pipeline.sidecarExits.filter((e) => e.signal === null && e.code !== 0)
    if (crashed.length > 0) problems.push(`sidecars exited non-zero: ${JSON.stringify(crashed)}`)
    const endMetrics = await Promise.all([happyEnd, errorEnd].map((a) => pipeline.metrics(a).catch(() => '')))
    const persistFailures = endMetrics.reduce((s, t) => s + sumMetric(t, 'asya_actor_end_persist_failures_total'), 0)
    if (persistFailures === 0) problems.push('no persist failure: the outage did not hit the end actors')
    return {
      report: {
        runId: ctx.uid,
        sent: ctx.n,
        delivered,
        errored,
        deadLettered: dlq.size,
        lost: lostIds.length,
        duplicated,
        reasons: { persist_failed: persistFailures },
        latencyMs: { p50: NaN, p99: NaN, max: NaN },
        durationMs: Date.now() - started,
        lostIds: lostIds.slice(0, 20),
      },
      problems,
      extra: { objects: keys.length, outageMs, persistFailures, sidecarExits: pipeline.sidecarExits },
    }
  } finally {
    await pipeline.stop()
    for (const a of actors) {
      for (const q of [a.name, `${a.name}-dlq`]) await transport.deleteQueue(q).catch(() => undefined)
    }
    await transport.close()
    await s3.stop()
  }
}
