/**
 * The fault scenarios of the delivery prober. Each starts its own pipeline of real runtimes and
 * sidecars, sends envelopes through it while injecting one fault, and returns the probe report
 * plus the problems found (lost envelopes, unexpected duplicates, crashed sidecars, hot loops).
 * CI runs the short version (small N); `npm run prober -- --long` the long one.
 */
import { randomUUID } from 'node:crypto'
import amqp from 'amqplib'
import { createTransportFromEnv } from '../../src/transport/create-transport.js'
import { retryQueueName } from '../../src/names.js'
import { retryTierMs } from '../../src/transport/rabbitmq-topology.js'
import type { Transport } from '../../src/transport/transport.js'
import { LocalPipeline, type ActorSpec } from './local-pipeline.js'
import { runProbe, type ProbeOptions, type ProbeReport } from './prober.js'
import { startPrivateRabbit, type PrivateRabbit } from '../support/private-rabbitmq.js'
import { SQS_TEST_CREDENTIALS, startSqsServer } from '../support/sqs-server.js'
import { startPrivateNats, type PrivateNats } from '../support/private-nats.js'
import { endActorsScenario } from './end-actor-scenario.js'
import { tuningProblems, type ActorTuning } from './tuning.js'

export interface ScenarioOptions {
  long?: boolean
  /** Envelopes per scenario. @default 10000 with long, else 200 */
  n?: number
  transport?: 'rabbitmq' | 'sqs' | 'nats'
  /** RabbitMQ queue type of every queue of the run. @default ASYA_PROBER_QUEUE_TYPE, else 'quorum' */
  queueType?: RabbitQueueType
  onLog?: (actor: string, line: string) => void
  /** Every actor at this concurrency / batch size (SPEC §13, tuning.ts). @default the defaults */
  tuning?: ActorTuning
}

export type RabbitQueueType = 'quorum' | 'classic'

export interface ScenarioResult {
  report: ProbeReport
  problems: string[]
  extra: Record<string, unknown>
}

interface Ctx {
  n: number
  long: boolean
  uid: string
  queueType: RabbitQueueType
  /** Names actors uniquely per run, so runs on one broker never share queues. */
  actor: (base: string) => string
  onLog?: (actor: string, line: string) => void
  /** Transport env of this run (RabbitMQ on the shared broker, or the SQS server of the run). */
  env: () => Record<string, string>
  /** NATS runs: the run's own server (broker faults hit it). */
  nats?: PrivateNats
  /** Concurrency / batch size of every actor (LocalPipeline applies it). */
  tuning?: ActorTuning
}

type Scenario = (ctx: Ctx) => Promise<ScenarioResult>

const SHARED_RABBIT = process.env['ASYA_RABBITMQ_URL'] ?? 'amqp://guest:guest@127.0.0.1:5672'

function rabbitEnv(url: string, ctx: { uid: string; queueType: RabbitQueueType }): Record<string, string> {
  const uid = ctx.uid
  // Own exchange and end actors per run: concurrent runs and tests on one broker never meet.
  return {
    ASYA_TRANSPORT: 'rabbitmq',
    ASYA_RABBITMQ_URL: url,
    ASYA_RABBITMQ_EXCHANGE: `asya-probe-${uid}`,
    ASYA_ACTOR_HAPPY_END: `happy-${uid}`,
    ASYA_ACTOR_ERROR_END: `error-${uid}`,
    ASYA_RABBITMQ_QUEUE_TYPE: ctx.queueType,
  }
}

async function openTransport(env: Record<string, string>): Promise<Transport> {
  const transport = await createTransportFromEnv(env, { connectionName: 'asya-prober' })
  await transport.connect()
  return transport
}

/** Starts the actors, runs the probe with `probe` options, always tears down. */
async function withPipeline(
  ctx: Ctx,
  transportEnv: Record<string, string>,
  actors: ActorSpec[],
  probe: (p: LocalPipeline, t: Transport) => Omit<ProbeOptions, 'transport' | 'actors'>,
  expect: { duplicates?: 'zero' | 'allowed' } = {},
): Promise<ScenarioResult> {
  const pipeline = new LocalPipeline({ actors, transportEnv, ...(ctx.onLog ? { onLog: ctx.onLog } : {}), ...(ctx.tuning ? { tuning: ctx.tuning } : {}) })
  const transport = await openTransport(transportEnv)
  const extra: Record<string, unknown> = {}
  try {
    for (const a of actors) await transport.ensureQueue(a.name)
    await pipeline.start()
    const report = await runProbe({
      transport,
      actors: actors.map((a) => a.name),
      happyEnd: transportEnv['ASYA_ACTOR_HAPPY_END'] ?? 'happy-end',
      errorEnd: transportEnv['ASYA_ACTOR_ERROR_END'] ?? 'error-end',
      ...probe(pipeline, transport),
    })
    const problems: string[] = []
    if (report.lost > 0) problems.push(`${report.lost} envelopes lost`)
    if (expect.duplicates === 'zero' && report.duplicated > 0) problems.push(`${report.duplicated} duplicates where none are allowed`)
    const crashed = pipeline.sidecarExits.filter((e) => e.signal === null && e.code !== 0)
    if (crashed.length > 0) problems.push(`sidecars exited non-zero: ${JSON.stringify(crashed)}`)
    extra['sidecarExits'] = pipeline.sidecarExits
    if (ctx.tuning) {
      const stats = actors.filter((a) => a.runtime !== false).map((a) => pipeline.handlerStats(a.name))
      extra['handlerStats'] = stats
      problems.push(...tuningProblems(ctx.tuning, stats))
    }
    return { report, problems, extra }
  } finally {
    await pipeline.stop()
    const ends = [transportEnv['ASYA_ACTOR_HAPPY_END'], transportEnv['ASYA_ACTOR_ERROR_END']].filter((x): x is string => x !== undefined)
    for (const name of [...actors.map((a) => a.name), ...ends]) {
      for (const q of [name, `${name}-dlq`]) await transport.deleteQueue(q).catch(() => undefined)
    }
    await transport.close()
  }
}

/** Resolves once `accounted` reached `fraction` of `total` (used to inject a fault mid-run). */
function progressGate(fraction: number): { onProgress: (a: number, t: number) => void; reached: Promise<void> } {
  let open: () => void = () => undefined
  const reached = new Promise<void>((r) => (open = r))
  return { onProgress: (a, t) => (a >= Math.floor(t * fraction) ? open() : undefined), reached }
}

const three = (ctx: Ctx, handler = 'prober_handlers.echo', env: Record<string, string> = {}): ActorSpec[] =>
  ['p1', 'p2', 'p3'].map((b) => ({ name: ctx.actor(b), handler, env }))

/** Three slow actors on a private broker node; `fault` hits the broker once 30 % arrived. */
async function withPrivateBrokerFault(ctx: Ctx, fault: (broker: PrivateRabbit) => Promise<void>): Promise<ScenarioResult> {
  const broker = await startPrivateRabbit()
  try {
    const gate = progressGate(0.3)
    return await withPipeline(ctx, rabbitEnv(broker.url, ctx), three(ctx, 'prober_handlers.slow'), () => ({
      count: ctx.n,
      payloadExtra: () => ({ sleep: 0.005 }),
      onProgress: gate.onProgress,
      onPublished: async () => {
        await gate.reached
        await fault(broker)
      },
      idleTimeoutMs: 60_000,
    }))
  } finally {
    await broker.destroy()
  }
}

/** NATS: three slow actors on the run's own server; `fault` hits it once 30 % arrived. */
async function withNatsBrokerFault(ctx: Ctx, broker: PrivateNats, fault: (broker: PrivateNats) => Promise<void>): Promise<ScenarioResult> {
  const gate = progressGate(0.3)
  return withPipeline(ctx, ctx.env(), three(ctx, 'prober_handlers.slow'), () => ({
    count: ctx.n,
    payloadExtra: () => ({ sleep: 0.005 }),
    onProgress: gate.onProgress,
    onPublished: async () => {
      await gate.reached
      await fault(broker)
    },
    idleTimeoutMs: 60_000,
  }))
}

export const SCENARIOS: Record<string, Scenario> = {
  async baseline(ctx) {
    return withPipeline(ctx, ctx.env(), three(ctx), () => ({ count: ctx.n }), { duplicates: 'zero' })
  },

  'broker-restart': (ctx) => (ctx.nats ? withNatsBrokerFault(ctx, ctx.nats, (broker) => broker.restart()) : withPrivateBrokerFault(ctx, (broker) => broker.restart())),

  'connection-cut': (ctx) => withPrivateBrokerFault(ctx, async (broker) => void (await broker.closeAllConnections())),

  async 'sidecar-sigkill'(ctx) {
    const actors = three(ctx, 'prober_handlers.slow')
    const victim = (actors[1] as ActorSpec).name
    const gate = progressGate(0.3)
    return withPipeline(ctx, ctx.env(), actors, (p) => ({
      count: ctx.n,
      payloadExtra: () => ({ sleep: 0.01 }),
      onProgress: gate.onProgress,
      onPublished: async () => {
        await gate.reached
        await p.stopSidecar(victim, 'SIGKILL')
        await p.restartSidecar(victim)
      },
    }))
  },

  async 'runtime-sigkill'(ctx) {
    const actors = three(ctx, 'prober_handlers.slow')
    const victim = (actors[1] as ActorSpec).name
    const gate = progressGate(0.3)
    const result = await withPipeline(ctx, ctx.env(), actors, (p) => ({
      count: ctx.n,
      payloadExtra: () => ({ sleep: 0.01 }),
      onProgress: gate.onProgress,
      onPublished: async () => {
        await gate.reached
        p.killRuntime(victim)
      },
    }))
    return result
  },

  async 'rolling-sigterm'(ctx) {
    const actors = three(ctx, 'prober_handlers.slow')
    const gate = progressGate(0.2)
    const result = await withPipeline(
      ctx,
      ctx.env(),
      actors,
      (p) => ({
        count: ctx.n,
        payloadExtra: () => ({ sleep: 0.01 }),
        onProgress: gate.onProgress,
        onPublished: async () => {
          await gate.reached
          for (const a of actors) {
            const code = await p.stopSidecar(a.name, 'SIGTERM')
            if (code !== 0) throw new Error(`sidecar ${a.name} exited ${code} on SIGTERM`)
            await p.restartSidecar(a.name)
          }
        },
      }),
      { duplicates: 'zero' },
    )
    return result
  },

  async 'handler-timeout'(ctx) {
    const actors: ActorSpec[] = [
      { name: ctx.actor('t1'), handler: 'prober_handlers.maybe_hang', env: { ASYA_RUNTIME_TIMEOUT: '1s', ASYA_RUNTIME_READY_TIMEOUT: '60s' } },
    ]
    const hangs = Math.max(1, Math.floor(ctx.n / 50))
    const result = await withPipeline(ctx, ctx.env(), actors, () => ({
      count: ctx.n,
      payloadExtra: (i) => ({ hang: i % Math.ceil(ctx.n / hangs) === 0 }),
      idleTimeoutMs: 60_000,
    }), { duplicates: 'zero' })
    const timeouts = result.report.reasons['timeout'] ?? 0
    if (timeouts !== result.report.errored) result.problems.push(`errored=${result.report.errored} but timeout reasons=${timeouts}`)
    if (result.report.errored === 0) result.problems.push('no envelope timed out: the scenario did not exercise the fault')
    return result
  },

  async 'queue-deleted'(ctx) {
    const actors = three(ctx, 'prober_handlers.slow', { ASYA_RETRY_BACKOFF: '200ms' })
    const [, upstream, victim] = actors.map((a) => a.name) as [string, string, string]
    const gate = progressGate(0.2)
    let destroyed = 0
    const result = await withPipeline(ctx, ctx.env(), actors, (p, t) => ({
      count: ctx.n,
      payloadExtra: () => ({ sleep: 0.005 }),
      onProgress: gate.onProgress,
      onPublished: async () => {
        await gate.reached
        // p3's queue is deleted mid-run (by hand, or lost with a broker node). Deleting a queue
        // destroys the messages sitting in it, by definition: the broker reports how many, and
        // exactly those may be missing. Freezing p2 and p3 first (SIGSTOP) keeps a publish from
        // racing the deletion inside the broker and stops p3 from re-declaring its queue at once,
        // so p2's next publishes really find no queue: they must wait (retried), not be dropped.
        p.signalSidecar(upstream, 'SIGSTOP')
        p.signalSidecar(victim, 'SIGSTOP')
        await new Promise((r) => setTimeout(r, 300))
        destroyed = await deleteQueueCounting(SHARED_RABBIT, `asya-${victim}`)
        p.signalSidecar(upstream, 'SIGCONT')
        await new Promise((r) => setTimeout(r, 2000)) // p2 meets a missing queue meanwhile
        await t.ensureQueue(victim) // the controller's resync re-creates it
        p.signalSidecar(victim, 'SIGCONT')
      },
      idleTimeoutMs: 10_000,
    }))
    result.extra['destroyedByDelete'] = destroyed
    result.problems = result.problems.filter((pr) => !/envelopes lost$/.test(pr))
    if (result.report.lost !== destroyed) {
      result.problems.push(`${result.report.lost} lost but the deletion destroyed ${destroyed}: ${result.report.lost - destroyed} lost by Asya`)
    }
    return result
  },

  async 'flaky-handler'(ctx) {
    const actors = three(ctx, 'prober_handlers.flaky', { ASYA_MAX_RETRIES: '5', ASYA_RETRY_BACKOFF: '20ms' })
    const result = await withPipeline(ctx, ctx.env(), actors, () => ({ count: ctx.n }))
    if (result.report.errored > 0) result.problems.push(`${result.report.errored} envelopes errored although retries should absorb 1 % failures`)
    return result
  },

  async poison(ctx) {
    const maxRetries = 2
    const actors: ActorSpec[] = [
      { name: ctx.actor('poison'), handler: 'prober_handlers.poison', env: { ASYA_MAX_RETRIES: String(maxRetries), ASYA_RETRY_BACKOFF: '20ms' } },
    ]
    const n = Math.min(ctx.n, 50)
    let metrics = ''
    const result = await withPipeline(ctx, ctx.env(), actors, (p) => ({
      count: n,
      onPublished: async () => undefined,
      onProgress: (a, t) => {
        // The sidecar may already be stopping when the last envelope lands: a failed read keeps the
        // last metrics seen instead of rejecting unobserved.
        if (a === t) void p.metrics((actors[0] as ActorSpec).name).then((m) => (metrics = m), () => undefined)
      },
    }))
    await new Promise((r) => setTimeout(r, 300))
    // A delivery the window gives back unstarted (released_total, no attempt counted) comes back once
    // more; only deliveries that were attempts count towards a hot loop.
    const received = sumMetric(metrics, 'asya_actor_messages_received_total')
    const released = sumMetric(metrics, 'asya_actor_released_total')
    result.extra['deliveries'] = received
    result.extra['released'] = released
    if (result.report.errored + result.report.deadLettered !== n) result.problems.push('poison envelopes did not all end in error-end/DLQ')
    if (received - released > n * (maxRetries + 1)) result.problems.push(`hot loop: broker delivered ${received} times (${released} given back unstarted) for ${n} envelopes × ${maxRetries + 1} attempts`)
    return result
  },
}

/** Bad message number `i` of the malformed-input sweep; every kind carries the token `bad-<i>`. */
export function malformedMessage(i: number, actor: string): { kind: string; body: Buffer } {
  const tok = `zbad-${i}z` // z is not a hex digit: generated uuids can never contain the token
  const route = { actors: [actor], current: 0 }
  const kinds: Array<[string, () => string | Buffer]> = [
    ['not_json', () => `${tok} {{{ not json`],
    ['truncated_json', () => JSON.stringify({ id: tok, route, payload: 1 }).slice(0, -3)],
    ['json_array', () => JSON.stringify([tok, 1, 2])],
    ['json_string', () => JSON.stringify(tok)],
    ['missing_id', () => JSON.stringify({ route, payload: tok })],
    ['id_not_string', () => JSON.stringify({ id: i, route, payload: tok })],
    ['empty_id', () => JSON.stringify({ id: '', route, payload: tok })],
    ['missing_route', () => JSON.stringify({ id: tok, payload: 1 })],
    ['empty_actors', () => JSON.stringify({ id: tok, route: { actors: [], current: 0 }, payload: 1 })],
    ['current_out_of_range', () => JSON.stringify({ id: tok, route: { actors: [actor], current: 7 }, payload: 1 })],
    ['current_not_int', () => JSON.stringify({ id: tok, route: { actors: [actor], current: '0' }, payload: 1 })],
    ['bad_actor_name', () => JSON.stringify({ id: tok, route: { actors: ['Not A Name!'], current: 0 }, payload: 1 })],
    ['end_actor_in_route', () => JSON.stringify({ id: tok, route: { actors: ['happy-end'], current: 0 }, payload: 1 })],
    ['missing_payload', () => JSON.stringify({ id: tok, route })],
    ['headers_not_object', () => JSON.stringify({ id: tok, route, headers: 'h', payload: 1 })],
    ['wrong_route', () => JSON.stringify({ id: tok, route: { actors: ['someone-else', actor], current: 0 }, payload: 1 })],
    ['invalid_utf8', () => Buffer.concat([Buffer.from(`${tok} `), Buffer.from([0xff, 0xfe, 0xc3, 0x28])])],
    ['nul_prefix', () => `\u0000${tok}`],
    ['deeply_nested', () => `{"id":"${tok}","route":${JSON.stringify(route)},"payload":${'['.repeat(3000)}${']'.repeat(3000)}}`],
    ['huge_not_json', () => `${tok} ` + 'z'.repeat(i % 1000 === 0 ? 2_000_000 : 20_000)],
    ['null_bytes', () => `{"id":"${tok}"\u0000}`],
  ]
  const [kind, make] = kinds[i % kinds.length] as [string, () => string | Buffer]
  const b = make()
  return { kind, body: typeof b === 'string' ? Buffer.from(b) : b }
}

/** Finds the `zbad-<i>z` token in whatever reached a sink (id, original payload, raw body). */
export function malformedToken(body: Buffer): number | undefined {
  let text = body.toString('utf8')
  try {
    const env = JSON.parse(text) as { payload?: { original_body?: string; original_body_encoding?: string } }
    const p = env.payload
    if (p && typeof p.original_body === 'string' && p.original_body_encoding === 'base64') {
      text += Buffer.from(p.original_body, 'base64').toString('latin1')
    }
  } catch {
    /* a DLQ body is the raw input */
  }
  const m = /zbad-(\d+)z/.exec(text)
  return m ? Number(m[1]) : undefined
}

SCENARIOS['malformed-sweep'] = async (ctx) => {
  const n = ctx.long ? 10_000 : 600
  const actor = ctx.actor('sweep')
  const env = ctx.env()
  const happyEnd = env.ASYA_ACTOR_HAPPY_END as string
  const errorEnd = env.ASYA_ACTOR_ERROR_END as string
  const pipeline = new LocalPipeline({
    actors: [{ name: actor, handler: 'prober_handlers.echo' }],
    transportEnv: env,
    ...(ctx.onLog ? { onLog: ctx.onLog } : {}),
    ...(ctx.tuning ? { tuning: ctx.tuning } : {}),
  })
  const transport = await openTransport(env)
  const accounted = new Map<number, string>()
  const reasons: Record<string, number> = {}
  let duplicated = 0
  let delivered = 0
  let errored = 0
  let deadLettered = 0
  const started = Date.now()
  try {
    for (const q of [actor, happyEnd, errorEnd]) await transport.ensureQueue(q)
    await pipeline.start()
    let lastArrival = Date.now()
    const sink = (where: 'delivered' | 'errored' | 'deadLettered') => async (d: import('../../src/transport/transport.js').Delivery) => {
      lastArrival = Date.now()
      const i = malformedToken(d.body)
      let reason = d.headers['x-asya-reason'] ?? where
      try {
        const e = JSON.parse(d.body.toString('utf8')) as { payload?: { details?: { reason?: string } } }
        reason = e.payload?.details?.reason ?? reason
      } catch {
        /* raw */
      }
      reasons[reason] = (reasons[reason] ?? 0) + 1
      if (where === 'delivered') delivered++
      else if (where === 'errored') errored++
      else deadLettered++
      if (i !== undefined) {
        if (accounted.has(i)) duplicated++
        accounted.set(i, reason)
      }
      await d.ack()
    }
    await transport.consume(happyEnd, sink('delivered'), { prefetch: 64 })
    await transport.consume(errorEnd, sink('errored'), { prefetch: 64 })
    await transport.consume(`${actor}-dlq`, sink('deadLettered'), { prefetch: 64 })
    await transport.consume(`${errorEnd}-dlq`, sink('deadLettered'), { prefetch: 64 })
    for (let i = 0; i < n; i += 50) {
      await Promise.all(Array.from({ length: Math.min(50, n - i) }, (_, j) => transport.publish(actor, malformedMessage(i + j, actor).body)))
    }
    while (accounted.size < n && Date.now() - lastArrival < 30_000) await new Promise((r) => setTimeout(r, 100))
    const problems: string[] = []
    const lostIds = Array.from({ length: n }, (_, i) => i).filter((i) => !accounted.has(i))
    if (lostIds.length > 0) problems.push(`${lostIds.length} bad messages unaccounted for (e.g. ${lostIds.slice(0, 5).map((i) => malformedMessage(i, actor).kind).join(', ')})`)
    const res = await fetch(`http://127.0.0.1:${pipeline.metricsPort(actor)}/readyz`).catch(() => undefined)
    if (res?.status !== 200) problems.push('sidecar not ready after the sweep')
    if (pipeline.sidecarExits.length > 0) problems.push(`sidecar exited: ${JSON.stringify(pipeline.sidecarExits)}`)
    const noReason = [...accounted.values()].filter((r) => r === 'delivered' || r === 'errored' || r === 'deadLettered').length
    if (noReason > 0) problems.push(`${noReason} outcomes without a reason`)
    return {
      report: {
        runId: ctx.uid,
        sent: n,
        delivered,
        errored,
        deadLettered,
        lost: lostIds.length,
        duplicated,
        reasons,
        latencyMs: { p50: NaN, p99: NaN, max: NaN },
        durationMs: Date.now() - started,
        lostIds: lostIds.slice(0, 20).map(String),
      },
      problems,
      extra: {},
    }
  } finally {
    await pipeline.stop()
    for (const q of [actor, happyEnd, errorEnd]) {
      await transport.deleteQueue(q).catch(() => undefined)
      await transport.deleteQueue(`${q}-dlq`).catch(() => undefined)
    }
    await transport.close()
  }
}

/** Deletes a queue; returns how many ready messages the broker destroyed with it. */
async function deleteQueueCounting(url: string, queue: string): Promise<number> {
  const conn = await amqp.connect(url)
  try {
    const ch = await conn.createChannel()
    const { messageCount } = await ch.deleteQueue(queue)
    await ch.close().catch(() => undefined)
    return messageCount
  } finally {
    await conn.close().catch(() => undefined)
  }
}

function sumMetric(text: string, name: string): number {
  let sum = 0
  for (const line of text.split('\n')) {
    if (line.startsWith(name + '{') || line.startsWith(name + ' ')) sum += Number(line.slice(line.lastIndexOf(' ') + 1))
  }
  return sum
}

SCENARIOS['end-actors'] = endActorsScenario

/** Scenarios that exercise RabbitMQ itself (broker restarts, connection cuts, queue deletion). */
export const RABBITMQ_ONLY = ['broker-restart', 'connection-cut', 'queue-deleted', 'malformed-sweep', 'sidecar-crash-loop', 'retry-tier-queue-missing', 'broker-restart-during-retries']

export async function runScenario(name: string, options: ScenarioOptions = {}): Promise<ScenarioResult> {
  const scenario = SCENARIOS[name]
  if (!scenario) throw new Error(`unknown scenario ${name}; known: ${Object.keys(SCENARIOS).join(', ')}`)
  const transport = options.transport ?? 'rabbitmq'
  if (transport === 'sqs' && RABBITMQ_ONLY.includes(name)) throw new Error(`scenario ${name} applies to RabbitMQ only`)
  if (transport === 'nats' && RABBITMQ_ONLY.includes(name) && name !== 'broker-restart') throw new Error(`scenario ${name} applies to RabbitMQ only`)
  const uid = randomUUID().slice(0, 6)
  const long = options.long ?? false
  // ASYA_PROBER_QUEUE_TYPE=classic runs scenarios on upstream's classic queues.
  const queueType = options.queueType ?? (process.env['ASYA_PROBER_QUEUE_TYPE'] === 'classic' ? 'classic' : 'quorum')
  // SQS: a real SQS-compatible server (fauxqs) for the run; sidecar processes reach it by URL.
  const sqs = transport === 'sqs' ? await startSqsServer() : undefined
  // NATS: a private `nats-server -js` for the run (its broker-restart scenario restarts it).
  const nats = transport === 'nats' ? await startPrivateNats() : undefined
  const env = (): Record<string, string> =>
    nats
      ? {
          ASYA_TRANSPORT: 'nats',
          ASYA_NATS_URL: nats.url,
          // A SIGKILLed sidecar's messages come back after AckWait (working acks cover live ones).
          ASYA_NATS_ACK_WAIT: '10s',
          ASYA_ACTOR_HAPPY_END: `happy-${uid}`,
          ASYA_ACTOR_ERROR_END: `error-${uid}`,
        }
      : sqs
      ? {
          ASYA_TRANSPORT: 'sqs',
          ASYA_AWS_REGION: sqs.region,
          ASYA_SQS_ENDPOINT: sqs.endpoint,
          ASYA_SQS_WAIT_TIME_SECONDS: '1',
          // A SIGKILLed sidecar's messages come back after this (the heartbeat covers live ones).
          ASYA_SQS_VISIBILITY_TIMEOUT: '10',
          AWS_ACCESS_KEY_ID: SQS_TEST_CREDENTIALS.accessKeyId,
          AWS_SECRET_ACCESS_KEY: SQS_TEST_CREDENTIALS.secretAccessKey,
          ASYA_ACTOR_HAPPY_END: `happy-${uid}`,
          ASYA_ACTOR_ERROR_END: `error-${uid}`,
        }
      : rabbitEnv(SHARED_RABBIT, { uid, queueType })
  try {
    return await scenario({
      n: options.n ?? (long ? 10_000 : 200),
      long,
      uid,
      queueType,
      actor: (base) => `${base}-${uid}`,
      env,
      ...(nats ? { nats } : {}),
      ...(options.onLog ? { onLog: options.onLog } : {}),
      ...(options.tuning ? { tuning: options.tuning } : {}),
    })
  } finally {
    await sqs?.stop()
    await nats?.destroy()
  }
}

// ---- Issue 17: crash loops and retry tiers on RabbitMQ quorum queues ----

/** Retry tiers an actor with base backoff `baseMs` (jitter 0.5: delays in [base/2, base]) can use. */
function tiersFor(baseMs: number): number[] {
  const tiers = new Set<number>()
  for (let d = Math.floor(baseMs / 2); d <= baseMs; d += 10) tiers.add(retryTierMs(d))
  return [...tiers]
}

/** Ready messages in the retry tier queues of `actor` (a tier not declared yet counts 0). */
async function tierDepth(url: string, actor: string, tiers: number[]): Promise<number> {
  const conn = await amqp.connect(url)
  try {
    let sum = 0
    for (const tier of tiers) {
      const ch = await conn.createChannel()
      ch.on('error', () => undefined) // a passive declare of a missing tier closes its channel
      try {
        sum += (await ch.checkQueue(retryQueueName(actor, tier))).messageCount
      } catch {
        continue
      }
      await ch.close().catch(() => undefined)
    }
    return sum
  } finally {
    await conn.close().catch(() => undefined)
  }
}

async function until(cond: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const end = Date.now() + timeoutMs
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 100))
  }
}

const RETRY_BACKOFF_MS = 8000

/** A handler that fails every envelope's first attempt, then an echo: each envelope waits in a tier once. */
const retriedTwo = (ctx: Ctx, prefix: string): ActorSpec[] => [
  {
    name: ctx.actor(`${prefix}1`),
    handler: 'prober_handlers.fail_once',
    env: { ASYA_MAX_RETRIES: '2', ASYA_RETRY_BACKOFF: `${RETRY_BACKOFF_MS}ms`, ASYA_RETRY_BACKOFF_MAX: `${RETRY_BACKOFF_MS}ms` },
  },
  { name: ctx.actor(`${prefix}2`), handler: 'prober_handlers.echo' },
]

function expectAllDelivered(result: ScenarioResult, n: number): void {
  if (result.report.delivered !== n) result.problems.push(`${result.report.delivered} of ${n} reached happy-end (errored ${result.report.errored}, dead-lettered ${result.report.deadLettered})`)
}

/**
 * A message that kills the sidecar on every delivery (a 24 MB envelope of 8 million empty objects,
 * whose parse exceeds a 256 MB heap: the process aborts before it can count or dead-letter
 * anything. The limit applies to the TypeScript loader's worker too, which needs about 150 MB
 * under tap's hooks, hence not smaller). The quorum queue
 * counts the deliveries (x-delivery-count), so the sidecar sees the attempt grow across its own
 * deaths and parks the message in asya-<a>-dlq on the delivery after ASYA_DELIVERY_LIMIT, before
 * parsing it; the broker's x-delivery-limit is the backstop. The kubelet's part (start the
 * crashed sidecar again) is played here.
 */
SCENARIOS['sidecar-crash-loop'] = async (ctx) => {
  const deliveryLimit = 3
  const name = ctx.actor('crash')
  // Default delivery window (base 2, wider while calls are fast): see the collateral check below.
  const actors: ActorSpec[] = [{ name, handler: 'prober_handlers.echo', env: { NODE_OPTIONS: '--max-old-space-size=256' } }]
  const poisonAt = Math.floor(ctx.n / 2)
  let crashes = 0
  let restartError: string | undefined
  // Crashes and restarts are progress: until the delivery limit parks the poison, nothing arrives.
  let lastActivity = 0
  const result = await withPipeline(ctx, { ...ctx.env(), ASYA_DELIVERY_LIMIT: String(deliveryLimit) }, actors, (p) => {
    void (async () => {
      for (;;) {
        await p.sidecarExited(name)
        lastActivity = Date.now()
        const last = p.sidecarExits[p.sidecarExits.length - 1]
        // SIGTERM / SIGKILL are ours (teardown); anything else is the crash under test.
        if (!last || last.code === 0 || last.signal === 'SIGTERM' || last.signal === 'SIGKILL') return
        crashes++
        try {
          await p.restartSidecar(name)
          lastActivity = Date.now()
        } catch (err) {
          restartError = String(err)
          return
        }
      }
    })()
    return {
      count: ctx.n,
      payloadExtra: (i) => (i === poisonAt ? { bomb: Array.from({ length: 8_000_000 }, () => ({})) } : {}),
      idleTimeoutMs: 90_000,
      lastActivity: () => lastActivity,
    }
  })
  result.problems = result.problems.filter((pr) => !pr.startsWith('sidecars exited non-zero'))
  result.extra['crashes'] = crashes
  result.extra['deliveryLimit'] = deliveryLimit
  if (restartError) result.problems.push(`restarting the crashed sidecar failed: ${restartError}`)
  if (crashes === 0) result.problems.push('the poison never crashed the sidecar: the scenario did not exercise the fault')
  // Attempt = 1 + x-delivery-count: delivery N + 1 is parked by the sidecar before the parse that
  // would kill it (the broker's x-delivery-limit N would move it on the next return anyway).
  if (crashes > deliveryLimit) result.problems.push(`crash loop: the poison killed the sidecar ${crashes} times (ASYA_DELIVERY_LIMIT ${deliveryLimit})`)
  // After each restart the sidecar takes redelivered messages one at a time (the window's
  // probation, sidecar/prefetch-window.ts): the envelopes that shared the poison's window are
  // settled before it comes back, so only the poison reaches the delivery limit.
  const collateral = result.report.deadLettered - 1
  result.extra['collateral'] = collateral
  if (result.report.deadLettered < 1) result.problems.push('the poison did not reach the DLQ')
  if (collateral > 0) result.problems.push(`${collateral} innocent envelopes dead-lettered with the poison`)
  expectAllDelivered(result, ctx.n - 1)
  return result
}

/**
 * The actor queue is deleted while every envelope waits in a retry tier, and stays missing past
 * every tier TTL. Quorum tiers dead-letter at-least-once: the broker holds the expired messages
 * and re-sends them (every dead_letter_worker_publisher_confirm_timeout: 3 min by default, 2 s on
 * this private node) until the queue is back (re-created as by the controller's resync). On
 * classic queues (ASYA_PROBER_QUEUE_TYPE=classic) the broker drops them: the scenario fails.
 */
SCENARIOS['retry-tier-queue-missing'] = async (ctx) => {
  const broker = await startPrivateRabbit({ rabbitAppEnv: ['{dead_letter_worker_publisher_confirm_timeout, 2000}'] })
  try {
    const actors = retriedTwo(ctx, 'm')
    const victim = (actors[0] as ActorSpec).name
    const tiers = tiersFor(RETRY_BACKOFF_MS)
    let destroyed = -1
    let parked = 0
    const result = await withPipeline(ctx, rabbitEnv(broker.url, ctx), actors, (p, t) => ({
      count: ctx.n,
      idleTimeoutMs: 60_000,
      onPublished: async () => {
        await until(async () => (parked = await tierDepth(broker.url, victim, tiers)) >= ctx.n, 60_000, 'every envelope parked in a retry tier')
        // Frozen, the sidecar cannot re-declare its queue: it stays missing until the "controller" acts.
        p.signalSidecar(victim, 'SIGSTOP')
        destroyed = await deleteQueueCounting(broker.url, `asya-${victim}`)
        await until(async () => (await tierDepth(broker.url, victim, tiers)) === 0, 60_000, 'every tier message expired')
        await new Promise((r) => setTimeout(r, 5000)) // re-sends by the broker meet a missing queue too
        await t.ensureQueue(victim)
        p.signalSidecar(victim, 'SIGCONT')
      },
    }))
    result.extra['parkedInTiers'] = parked
    result.extra['destroyedByDelete'] = destroyed
    if (destroyed !== 0) result.problems.push(`the deletion destroyed ${destroyed} ready messages: they were not all in the tiers`)
    expectAllDelivered(result, ctx.n)
    return result
  } finally {
    await broker.destroy()
  }
}

/** The broker restarts while every envelope waits in a retry tier: durable quorum tiers keep them, TTLs run on. */
SCENARIOS['broker-restart-during-retries'] = async (ctx) => {
  const broker = await startPrivateRabbit()
  try {
    const actors = retriedTwo(ctx, 'b')
    const victim = (actors[0] as ActorSpec).name
    const tiers = tiersFor(RETRY_BACKOFF_MS)
    let parked = 0
    const result = await withPipeline(ctx, rabbitEnv(broker.url, ctx), actors, () => ({
      count: ctx.n,
      idleTimeoutMs: 60_000,
      onPublished: async () => {
        await until(async () => (parked = await tierDepth(broker.url, victim, tiers)) >= ctx.n, 60_000, 'every envelope parked in a retry tier')
        await broker.restart()
      },
    }))
    result.extra['parkedInTiers'] = parked
    expectAllDelivered(result, ctx.n)
    return result
  } finally {
    await broker.destroy()
  }
}
