/**
 * Pipeline benchmark (SPEC §12): 3 echo actors on RabbitMQ, N envelopes of 1 KB, one runtime
 * process per actor, sidecars as real processes (compiled JS, as in the image). Beside it, in the
 * same run: the raw relay limit (plain amqplib consume → publish persistent + confirm → ack, 3
 * hops, prefetch 1/8/32, best taken) and the runtime-alone round-trip rate.
 *
 *   npm run bench -- pipeline          (BENCH_N=10000 by default)
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { cpus, tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import amqp from 'amqplib'
import { RuntimeClient } from '../src/runtime/runtime-client.js'
import { RuntimeProcess } from '../src/runtime/runtime-process.js'
import { RabbitMqTransport, amqpUrl } from '../src/transport/rabbitmq-transport.js'
import { SqsTransport } from '../src/transport/sqs-transport.js'
import type { Transport } from '../src/transport/transport.js'
import { sidecarImageNodeOptions } from '../test/support/sidecar-image.js'
import { SQS_TEST_CREDENTIALS, startSqsServer, type SqsTestServer } from '../test/support/sqs-server.js'
import { connect as natsConnect } from '@nats-io/transport-node'
import { AckPolicy, jetstreamManager, RetentionPolicy, StorageType } from '@nats-io/jetstream'
import { NatsTransport } from '../src/transport/nats-transport.js'
import { startPrivateNats, type PrivateNats } from '../test/support/private-nats.js'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const N = Number(process.env.BENCH_N ?? 10_000)
const URL_ = process.env.ASYA_BENCH_RABBITMQ_URL ?? amqpUrl({ host: '127.0.0.1' })
const HANDLERS = join(root, 'test', 'sidecar', 'handlers')
const PAYLOAD = { blob: 'x'.repeat(900) } // ≈ 1 KB envelopes
const WINDOW = Number(process.env.BENCH_WINDOW ?? 256)
const LATENCY_N = 1000
/** V8 flags of the sidecar processes: the image's unless BENCH_SIDECAR_NODE_OPTIONS says otherwise. */
const SIDECAR_NODE_OPTIONS = process.env.BENCH_SIDECAR_NODE_OPTIONS ?? sidecarImageNodeOptions()
/** Extra node command-line flags of the sidecar processes (flags NODE_OPTIONS refuses, e.g. --cpu-prof). */
const SIDECAR_ARGS = (process.env.BENCH_SIDECAR_ARGS ?? '').split(' ').filter((a) => a !== '')
const log = (s: string): void => void process.stderr.write(`${s}\n`)

export function pct(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number
}

interface RawRelay {
  exchange: string
  first: string
  /** Channel on the setup connection for publishing into the first hop and consuming the end. */
  setup: amqp.ChannelModel
  /** Consumes the end queue. */
  onEnd(fn: () => void, prefetch: number): Promise<void>
  close(): Promise<void>
}

/** 3 hops of plain amqplib relays (consume → publish persistent + confirm → ack) and an end queue. */
async function startRawRelay(prefix: string, prefetch: number, queueArgs: Record<string, unknown> = {}): Promise<RawRelay> {
  const tag = randomBytes(3).toString('hex')
  const exchange = `bench-${prefix}-${tag}`
  const hops = [`${prefix}1-${tag}`, `${prefix}2-${tag}`, `${prefix}3-${tag}`, `${prefix}end-${tag}`]
  const conns: amqp.ChannelModel[] = []
  const setup = await amqp.connect(URL_, { noDelay: true })
  conns.push(setup)
  const sch = await setup.createChannel()
  await sch.assertExchange(exchange, 'topic', { durable: true })
  for (const h of hops) {
    await sch.assertQueue(`asya-${h}`, { durable: true, arguments: queueArgs })
    await sch.bindQueue(`asya-${h}`, exchange, h)
  }
  for (let i = 0; i < 3; i++) {
    const c = await amqp.connect(URL_, { noDelay: true })
    conns.push(c)
    const cons = await c.createChannel()
    const pub = await c.createConfirmChannel()
    await cons.prefetch(prefetch)
    const next = hops[i + 1] as string
    await cons.consume(`asya-${hops[i]}`, (m) => {
      if (!m) return
      pub.publish(exchange, next, m.content, { persistent: true, mandatory: true, contentType: 'application/json' }, (err) => {
        if (!err) cons.ack(m)
      })
    })
  }
  return {
    exchange,
    first: hops[0] as string,
    setup,
    onEnd: async (fn, endPrefetch) => {
      const endCh = await setup.createChannel()
      await endCh.prefetch(endPrefetch)
      await endCh.consume(`asya-${hops[3]}`, (m) => {
        if (!m) return
        endCh.ack(m)
        fn()
      })
    },
    close: async () => {
      for (const h of hops) await sch.deleteQueue(`asya-${h}`).catch(() => undefined)
      await sch.deleteExchange(exchange).catch(() => undefined)
      for (const c of conns) await c.close().catch(() => undefined)
    },
  }
}

/** Raw relay throughput at a given prefetch (and CPU per envelope: broker, relay + client process). */
export async function rawRelay(prefetch: number, n: number, queueArgs: Record<string, unknown> = {}): Promise<{ rate: number; cpu: CpuPerEnvelope }> {
  const relay = await startRawRelay('raw', prefetch, queueArgs)
  let got = 0
  let resolve!: () => void
  const done = new Promise<void>((r) => (resolve = r))
  await relay.onEnd(() => {
    if (++got === n) resolve()
  }, 500)
  const pub = await relay.setup.createConfirmChannel()
  const body = Buffer.from(JSON.stringify({ id: 'x', route: { actors: ['a'], current: 0 }, payload: PAYLOAD }))
  const stopCpu = cpuMeter({ broker: brokerPid(), runtimes: [], sidecars: [] })()
  const t0 = performance.now()
  for (let i = 0; i < n; i++) {
    if (!pub.publish(relay.exchange, relay.first, body, { persistent: true })) await new Promise((r) => pub.once('drain', r))
    if (i % 500 === 499) await pub.waitForConfirms()
  }
  await done
  const rate = n / ((performance.now() - t0) / 1000)
  const cpu = stopCpu(n)
  await relay.close()
  return { rate, cpu }
}

/** Raw relay latency: 3 hops at prefetch 1, one envelope at a time. */
async function rawRelayLatency(n: number): Promise<{ p50: number; p99: number }> {
  const relay = await startRawRelay('rl', 1)
  let arrived: (() => void) | undefined
  await relay.onEnd(() => arrived?.(), 1)
  const pub = await relay.setup.createConfirmChannel()
  const body = Buffer.from(JSON.stringify({ id: 'x', route: { actors: ['a'], current: 0 }, payload: PAYLOAD }))
  const lat: number[] = []
  for (let i = 0; i < n + 20; i++) {
    const done = new Promise<void>((r) => (arrived = r))
    const s = performance.now()
    pub.publish(relay.exchange, relay.first, body, { persistent: true })
    await done
    if (i >= 20) lat.push(performance.now() - s)
  }
  await relay.close()
  lat.sort((a, b) => a - b)
  return { p50: pct(lat, 50), p99: pct(lat, 99) }
}

/** SQS baseline: a 3-hop relay with the SqsTransport alone (consume → publish → ack), no runtime. */
async function sqsRelay(sqs: SqsTestServer, n: number): Promise<number> {
  const tag = randomBytes(3).toString('hex')
  const hops = [`sr1-${tag}`, `sr2-${tag}`, `sr3-${tag}`, `srend-${tag}`]
  const mk = async (): Promise<SqsTransport> => {
    const tr = new SqsTransport({ region: sqs.region, endpoint: sqs.endpoint, credentials: SQS_TEST_CREDENTIALS, waitTimeSeconds: 1 })
    await tr.connect()
    return tr
  }
  const trs: SqsTransport[] = []
  const client = await mk()
  trs.push(client)
  for (const h of hops) await client.ensureQueue(h, { deadLetterQueue: false })
  for (let i = 0; i < 3; i++) {
    const tr = await mk()
    trs.push(tr)
    const next = hops[i + 1] as string
    await tr.consume(hops[i] as string, async (d) => {
      await tr.publish(next, d.body)
      await d.ack()
    }, { prefetch: 32 })
  }
  let got = 0
  let resolve!: () => void
  const done = new Promise<void>((r) => (resolve = r))
  await client.consume(hops[3] as string, async (d) => {
    await d.ack()
    if (++got === n) resolve()
  }, { prefetch: 32 })
  const body = Buffer.from(JSON.stringify({ id: 'x', route: { actors: ['a'], current: 0 }, payload: PAYLOAD }))
  const t0 = performance.now()
  for (let i = 0; i < n; i += 100) await Promise.all(Array.from({ length: Math.min(100, n - i) }, () => client.publish(hops[0] as string, body)))
  await done
  const rate = n / ((performance.now() - t0) / 1000)
  for (const tr of trs) await tr.close()
  return rate
}

/**
 * NATS baseline: a 3-hop raw JetStream relay with the official client alone (consume → publish
 * with the JetStream ack awaited → ack), on its own stream, no runtime, no Asya code.
 */
async function natsRawRelay(nats: PrivateNats, n: number, window: number): Promise<{ rate: number; cpu: CpuPerEnvelope }> {
  const tag = randomBytes(3).toString('hex')
  const stream = `BENCH_${tag}`
  const hops = ['r1', 'r2', 'r3', 'rend'].map((h) => `bench.${tag}.${h}`)
  const setup = await natsConnect({ servers: nats.url })
  const jsm = await jetstreamManager(setup)
  await jsm.streams.add({ name: stream, subjects: [`bench.${tag}.>`], storage: StorageType.File, retention: RetentionPolicy.Workqueue })
  for (const [i, h] of hops.entries()) {
    await jsm.consumers.add(stream, { durable_name: `c${i}`, filter_subject: h, ack_policy: AckPolicy.Explicit, max_ack_pending: 10_000 })
  }
  const conns = [setup]
  const stops: Array<() => void> = []
  for (let i = 0; i < 3; i++) {
    const nc = await natsConnect({ servers: nats.url })
    conns.push(nc)
    const js = (await jetstreamManager(nc)).jetstream()
    const c = await js.consumers.get(stream, `c${i}`)
    const msgs = await c.consume({ max_messages: window })
    stops.push(() => void msgs.stop())
    const next = hops[i + 1] as string
    void (async () => {
      for await (const m of msgs) {
        void js.publish(next, m.data).then(() => m.ack(), () => m.nak(100))
      }
    })()
  }
  const js0 = jsm.jetstream()
  let got = 0
  let resolve!: () => void
  const done = new Promise<void>((r) => (resolve = r))
  const end = await (await js0.consumers.get(stream, 'c3')).consume({ max_messages: window })
  void (async () => {
    for await (const m of end) {
      m.ack()
      if (++got === n) resolve()
    }
  })()
  const body = Buffer.from(JSON.stringify({ id: 'x', route: { actors: ['a'], current: 0 }, payload: PAYLOAD }))
  const stopCpu = cpuMeter({ broker: nats.pid(), runtimes: [], sidecars: [] })()
  const t0 = performance.now()
  for (let i = 0; i < n; i += 100) await Promise.all(Array.from({ length: Math.min(100, n - i) }, () => js0.publish(hops[0] as string, body)))
  await done
  const rate = n / ((performance.now() - t0) / 1000)
  const cpu = stopCpu(n)
  end.stop()
  for (const s of stops) s()
  await jsm.streams.delete(stream)
  for (const c of conns) await c.close()
  return { rate, cpu }
}

/** Runtime alone: sequential round-trips of one echo runtime through RuntimeClient. */
export async function runtimeAlone(n: number): Promise<{ rate: number; p50: number; p99: number; cpuMsPerCall: number }> {
  const dir = mkdtempSync(join(tmpdir(), 'asya-bench-rt-'))
  const rp = new RuntimeProcess({ handler: 'sidecar_handlers.echo', socketDir: dir, pythonPath: [HANDLERS], env: { ASYA_LOG_LEVEL: 'WARNING' } })
  await rp.start()
  const client = new RuntimeClient({ socketDir: dir })
  const body = Buffer.from(JSON.stringify({ id: 'x', route: { actors: ['a'], current: 0 }, payload: PAYLOAD }))
  for (let i = 0; i < 200; i++) await client.call(body)
  const lat: number[] = []
  const stopCpu = cpuMeter({ runtimes: [rp.pid], sidecars: [] })()
  const t0 = performance.now()
  for (let i = 0; i < n; i++) {
    const s = performance.now()
    await client.call(body)
    lat.push(performance.now() - s)
  }
  const rate = n / ((performance.now() - t0) / 1000)
  const cpu = stopCpu(n)
  await rp.stop()
  rmSync(dir, { recursive: true, force: true })
  lat.sort((a, b) => a - b)
  return { rate, p50: pct(lat, 50), p99: pct(lat, 99), cpuMsPerCall: cpu.runtimes + cpu.client }
}

function procStats(pid: number): { rssMb: number; anonMb: number; cpuTicks: number } {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8')
    const kb = (field: string): number => Number(new RegExp(`${field}:\\s+(\\d+)`).exec(status)?.[1] ?? 0) / 1024
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? []
    return { rssMb: kb('VmRSS'), anonMb: kb('RssAnon'), cpuTicks: Number(stat[11]) + Number(stat[12]) }
  } catch {
    return { rssMb: 0, anonMb: 0, cpuTicks: 0 }
  }
}

/** CPU seconds (user + system) of a process, from /proc. */
function cpuSeconds(pid: number | undefined): number {
  return pid === undefined ? 0 : procStats(pid).cpuTicks / 100
}

/** The local RabbitMQ node (beam.smp), when the broker runs on this machine. */
export function brokerPid(): number | undefined {
  const r = spawnSync('pgrep', ['-x', 'beam.smp'], { encoding: 'utf8' })
  const pids = (r.stdout ?? '').trim().split('\n').filter(Boolean).map(Number)
  return pids.length === 1 ? pids[0] : undefined
}

/** CPU ms per envelope, by component, over a measured window. */
export interface CpuPerEnvelope {
  broker: number
  runtimes: number
  sidecars: number
  client: number
}

export function cpuMeter(pids: { broker?: number; runtimes: Array<number | undefined>; sidecars: Array<number | undefined> }): () => (n: number) => CpuPerEnvelope {
  const take = (): { broker: number; runtimes: number; sidecars: number; client: number } => {
    const u = process.cpuUsage()
    return {
      broker: cpuSeconds(pids.broker),
      runtimes: pids.runtimes.reduce<number>((a, p) => a + cpuSeconds(p), 0),
      sidecars: pids.sidecars.reduce<number>((a, p) => a + cpuSeconds(p), 0),
      client: (u.user + u.system) / 1e6,
    }
  }
  return () => {
    const a = take()
    return (n: number) => {
      const b = take()
      const per = (k: keyof typeof a): number => ((b[k] - a[k]) * 1000) / n
      return { broker: per('broker'), runtimes: per('runtimes'), sidecars: per('sidecars'), client: per('client') }
    }
  }
}

export interface PipelineResult {
  rate: number
  loadedP50: number
  loadedP99: number
  p50: number
  p99: number
  maxRssMb: number
  /** Private (anonymous) part of that RSS; the rest is the node binary's shared file pages. */
  maxAnonMb: number
  cpuPct: number
  cpu: CpuPerEnvelope
}

/** What runs beside each runtime: the real sidecar, or the bare consume → call → publish → ack floor. */
type HopKind = 'sidecar' | 'minimal'

export interface PipelineOptions {
  sqs?: SqsTestServer
  /** Run on NATS JetStream (a private server) instead of RabbitMQ. */
  nats?: PrivateNats
  hop?: HopKind
  /** Actors in the route. @default 3 */
  actors?: number
  /** Handler of every actor (test/sidecar/handlers). @default sidecar_handlers.echo */
  handler?: string
  /** Env for both the runtimes and the hop processes (ASYA_CONCURRENCY, ASYA_BATCH_SIZE, ...). */
  env?: Record<string, string>
  /** Envelopes of warm-up before the measured run. @default 500 */
  warmup?: number
  /** Envelopes sent one at a time for the latency figures. @default LATENCY_N */
  latencyN?: number
  /** Envelopes in flight in the closed loop. @default BENCH_WINDOW (256) */
  window?: number
  /** RabbitMQ queue type of every queue of the run (ASYA_RABBITMQ_QUEUE_TYPE). @default quorum */
  queueType?: 'quorum' | 'classic'
}

export async function pipeline(n: number, o: PipelineOptions = {}): Promise<PipelineResult> {
  const sqs = o.sqs
  const nats = o.nats
  const hop = o.hop ?? 'sidecar'
  const tag = randomBytes(3).toString('hex')
  const exchange = `bench-pipe-${tag}`
  const actors = Array.from({ length: o.actors ?? 3 }, (_, i) => `echo${i + 1}-${tag}`)
  const extraEnv = o.env ?? {}
  const window = o.window ?? WINDOW
  const latencyN = o.latencyN ?? LATENCY_N
  const happyEnd = `happy-${tag}`
  const dirs: string[] = []
  const runtimes: RuntimeProcess[] = []
  const sidecars: ChildProcess[] = []
  const client: Transport = nats
    ? new NatsTransport({ servers: [nats.url] })
    : sqs
      ? new SqsTransport({ region: sqs.region, endpoint: sqs.endpoint, credentials: SQS_TEST_CREDENTIALS, waitTimeSeconds: 1 })
      : new RabbitMqTransport({ url: URL_, exchange, topology: { queueType: o.queueType ?? 'quorum', deliveryLimit: 5 } })
  await client.connect()
  await client.ensureQueue(happyEnd)
  const transportEnv: Record<string, string> = nats
    ? { ASYA_TRANSPORT: 'nats', ASYA_NATS_URL: nats.url }
    : sqs
    ? {
        ASYA_TRANSPORT: 'sqs',
        ASYA_AWS_REGION: sqs.region,
        ASYA_SQS_ENDPOINT: sqs.endpoint,
        ASYA_SQS_WAIT_TIME_SECONDS: '1',
        AWS_ACCESS_KEY_ID: SQS_TEST_CREDENTIALS.accessKeyId,
        AWS_SECRET_ACCESS_KEY: SQS_TEST_CREDENTIALS.secretAccessKey,
      }
    : { ASYA_TRANSPORT: 'rabbitmq', ASYA_RABBITMQ_URL: URL_, ASYA_RABBITMQ_EXCHANGE: exchange, ...(o.queueType ? { ASYA_RABBITMQ_QUEUE_TYPE: o.queueType } : {}) }
  for (const a of actors) {
    const dir = mkdtempSync(join(tmpdir(), `asya-bench-${a}-`))
    dirs.push(dir)
    const rp = new RuntimeProcess({ handler: o.handler ?? 'sidecar_handlers.echo', socketDir: dir, pythonPath: [HANDLERS], env: { ASYA_LOG_LEVEL: 'WARNING', ...extraEnv } })
    await rp.start()
    runtimes.push(rp)
    const args = hop === 'sidecar' ? [...SIDECAR_ARGS, join(root, 'dist', 'sidecar', 'main.js')] : ['--import', join(root, 'scripts', 'register-ts.mjs'), join(root, 'bench', 'minimal-hop.ts')]
    const child = spawn(process.execPath, args, {
      cwd: root,
      env: {
        PATH: process.env.PATH ?? '',
        ...(hop === 'sidecar' ? { NODE_OPTIONS: SIDECAR_NODE_OPTIONS } : {}),
        ASYA_ACTOR_NAME: a,
        ...transportEnv,
        ASYA_ACTOR_HAPPY_END: happyEnd,
        ASYA_SOCKET_DIR: dir,
        ASYA_METRICS_ADDR: '127.0.0.1:0',
        ASYA_LOG_LEVEL: 'warn',
        ...(process.env.BENCH_PREFETCH ? { ASYA_RABBITMQ_PREFETCH: process.env.BENCH_PREFETCH } : {}),
        ...extraEnv,
      },
      stdio: ['ignore', 'ignore', 'inherit'],
    })
    sidecars.push(child)
  }
  // A hop process that dies (bad flags, crash) would leave the bench waiting forever.
  let measuring = true
  const died = new Promise<never>((_, reject) => {
    for (const c of sidecars) {
      c.once('exit', (code) => {
        if (measuring) reject(new Error(`${hop} process for an actor exited (code ${code}) during the run`))
      })
    }
  })
  died.catch(() => undefined)
  // Wait until all three queues have a consumer: a probe envelope must come back.
  const lat: number[] = []
  const sentAt = new Map<string, number>()
  let got = 0
  let resolve!: () => void
  let done!: Promise<void>
  let target = 0
  /** Arms `done` to resolve after `k` more arrivals at happy-end (or reject if a hop process dies). */
  const expect = (k: number): void => {
    got = 0
    target = k
    done = Promise.race([new Promise<void>((r) => (resolve = r)), died])
  }
  expect(1)
  let onArrival: (() => void) | undefined
  await client.consume(
    happyEnd,
    async (d) => {
      const id = (JSON.parse(d.body.toString()) as { id: string }).id
      const s = sentAt.get(id)
      if (s !== undefined) lat.push(performance.now() - s)
      await d.ack()
      onArrival?.()
      if (++got === target) resolve()
    },
    { prefetch: 500 },
  )
  const env = (id: string): Buffer => Buffer.from(JSON.stringify({ id, route: { actors, current: 0 }, payload: PAYLOAD }))
  for (;;) {
    try {
      await client.publish(actors[0] as string, env('warmup'))
      break
    } catch {
      await Promise.race([new Promise((r) => setTimeout(r, 200)), died])
    }
  }
  await done
  // Warm-up, then the measured run.
  const warmup = o.warmup ?? 500
  if (warmup > 0) {
    expect(warmup)
    await Promise.all(Array.from({ length: warmup }, (_, i) => client.publish(actors[0] as string, env(`w${i}`))))
    await done
  }
  lat.length = 0
  expect(n)
  const stopCpu = cpuMeter({ ...(sqs ? {} : { broker: nats ? nats.pid() : brokerPid() }), runtimes: runtimes.map((r) => r.pid), sidecars: sidecars.map((c) => c.pid) })()
  let maxRss = 0
  let maxAnon = 0
  const sampler = setInterval(() => {
    for (const c of sidecars) {
      const st = procStats(c.pid ?? 0)
      maxRss = Math.max(maxRss, st.rssMb)
      maxAnon = Math.max(maxAnon, st.anonMb)
    }
  }, 200)
  // Closed loop: WINDOW envelopes in flight; each arrival sends the next.
  let sent = 0
  const sendNext = (): void => {
    if (sent >= n) return
    const id = `m${sent++}`
    sentAt.set(id, performance.now())
    void client.publish(actors[0] as string, env(id))
  }
  onArrival = sendNext
  const t0 = performance.now()
  for (let i = 0; i < window; i++) sendNext()
  await done
  const secs = (performance.now() - t0) / 1000
  const cpu = stopCpu(n)
  clearInterval(sampler)
  onArrival = undefined
  const throughputLat = [...lat].sort((a, b) => a - b)
  // Latency: one envelope at a time, so it is the pipeline's own latency, not queueing.
  const seqLat: number[] = []
  for (let i = 0; i < latencyN; i++) {
    lat.length = 0
    expect(1)
    sentAt.set(`l${i}`, performance.now())
    await client.publish(actors[0] as string, env(`l${i}`))
    await done
    if (lat[0] !== undefined) seqLat.push(lat[0])
  }
  seqLat.sort((a, b) => a - b)
  // Mean sidecar CPU over the throughput window (the same window as the per-envelope figures).
  const cpuPct = ((cpu.sidecars * n) / 1000 / sidecars.length / secs) * 100
  measuring = false
  for (const c of sidecars) c.kill('SIGTERM')
  await Promise.all(sidecars.map((c) => new Promise((r) => c.once('exit', r))))
  for (const rp of runtimes) await rp.stop()
  for (const q of [...actors, happyEnd]) {
    await client.deleteQueue(q).catch(() => undefined)
    await client.deleteQueue(`${q}-dlq`).catch(() => undefined)
  }
  await client.close()
  for (const d of dirs) rmSync(d, { recursive: true, force: true })
  return {
    rate: n / secs,
    loadedP50: pct(throughputLat, 50),
    loadedP99: pct(throughputLat, 99),
    p50: pct(seqLat, 50),
    p99: pct(seqLat, 99),
    maxRssMb: maxRss,
    maxAnonMb: maxAnon,
    cpuPct,
    cpu,
  }
}

const ms = (x: number): string => x.toFixed(3)
const total = (c: CpuPerEnvelope): number => c.broker + c.runtimes + c.sidecars + c.client

/** Every number of one run of this bench; {@link writeReport} turns it into docs/benchmarks.md text. */
export interface PipelineMeasurements {
  cores: number
  /** Raw relay envelopes/s by prefetch (1, 8, 32). */
  raw: Record<number, number>
  /** CPU of the fastest raw relay. */
  rawCpu: CpuPerEnvelope | undefined
  bestRaw: number
  rawLat: { p50: number; p99: number }
  runtime: { rate: number; p50: number; p99: number; cpuMsPerCall: number }
  /** Best of the minimal-hop runs and of the sidecar runs (RabbitMQ). */
  floor: PipelineResult
  pipeline: PipelineResult
  nats?: { n: number; raws: Array<{ rate: number; cpu: CpuPerEnvelope }>; raw: { rate: number; cpu: CpuPerEnvelope }; pipeline: PipelineResult }
  sqs?: { n: number; raw: number; pipeline: PipelineResult }
}

/** Runs every measurement (logging progress to stderr); writes nothing. */
export async function measure(): Promise<PipelineMeasurements> {
  buildDist()
  const cores = cpus().length
  const raw: Record<number, number> = {}
  let rawCpu: CpuPerEnvelope | undefined
  for (const p of [1, 8, 32]) {
    const r = await rawRelay(p, N)
    if (r.rate >= Math.max(0, ...Object.values(raw))) rawCpu = r.cpu
    raw[p] = r.rate
    log(`raw relay prefetch ${p}: ${r.rate.toFixed(0)}/s; cpu ms/envelope broker ${ms(r.cpu.broker)} relay+client ${ms(r.cpu.client)}`)
  }
  const bestRaw = Math.max(...Object.values(raw))
  const rawLat = await rawRelayLatency(LATENCY_N)
  log(`raw relay latency (3 hops, one at a time): p50 ${rawLat.p50.toFixed(2)} ms p99 ${rawLat.p99.toFixed(2)} ms`)
  const rt = await runtimeAlone(Math.min(N, 5000))
  log(`runtime alone: ${rt.rate.toFixed(0)}/s p50 ${ms(rt.p50)} ms, cpu ${ms(rt.cpuMsPerCall)} ms/call (runtime + client)`)
  // Floor and sidecar runs interleaved, best of 2 each: the machine drifts between runs.
  const floors: PipelineResult[] = []
  const pipes: PipelineResult[] = []
  for (let round = 0; round < 2; round++) {
    floors.push(await pipeline(N, { hop: 'minimal' }))
    pipes.push(await pipeline(N))
  }
  const best = (rs: PipelineResult[]): PipelineResult => rs.reduce((a, r) => (r.rate > a.rate ? r : a))
  const floor = best(floors)
  const p = best(pipes)
  for (const [name, r] of [['floor', floor], ['pipeline', p]] as const) {
    log(`${name}: ${r.rate.toFixed(0)}/s; one at a time p50 ${r.p50.toFixed(2)} p99 ${r.p99.toFixed(2)} ms; rss ${r.maxRssMb.toFixed(0)} MB (anon ${r.maxAnonMb.toFixed(0)}); cpu ms/envelope broker ${ms(r.cpu.broker)} runtimes ${ms(r.cpu.runtimes)} hops ${ms(r.cpu.sidecars)} client ${ms(r.cpu.client)}`)
  }
  const m: PipelineMeasurements = { cores, raw, rawCpu, bestRaw, rawLat, runtime: rt, floor, pipeline: p }
  // NATS JetStream: a private nats-server -js (file store) on the same host, same actors and runtimes.
  const natsN = Number(process.env.BENCH_NATS_N ?? Math.min(N, 5000))
  if (natsN > 0) {
    const natsServer = await startPrivateNats()
    try {
      const natsRaws: Array<{ rate: number; cpu: CpuPerEnvelope }> = []
      for (const w of [1, 8, 32]) {
        const r = await natsRawRelay(natsServer, natsN, w)
        natsRaws.push(r)
        log(`nats raw relay window ${w}: ${r.rate.toFixed(0)}/s; cpu ms/envelope server ${ms(r.cpu.broker)} relay+client ${ms(r.cpu.client)}`)
      }
      const natsRaw = natsRaws.reduce((a, r) => (r.rate > a.rate ? r : a))
      const natsPipes: PipelineResult[] = []
      for (let round = 0; round < 2; round++) natsPipes.push(await pipeline(natsN, { nats: natsServer }))
      const pn = best(natsPipes)
      log(`nats pipeline: ${pn.rate.toFixed(0)}/s; one at a time p50 ${pn.p50.toFixed(2)} p99 ${pn.p99.toFixed(2)} ms; rss ${pn.maxRssMb.toFixed(0)} MB; cpu ms/envelope server ${ms(pn.cpu.broker)} runtimes ${ms(pn.cpu.runtimes)} sidecars ${ms(pn.cpu.sidecars)} client ${ms(pn.cpu.client)}`)
      m.nats = { n: natsN, raws: natsRaws, raw: natsRaw, pipeline: pn }
    } finally {
      await natsServer.destroy()
    }
  }
  const sqsN = Number(process.env.BENCH_SQS_N ?? Math.min(N, 3000))
  if (sqsN > 0) {
    const sqs = await startSqsServer()
    const sqsRaw = await sqsRelay(sqs, sqsN)
    log(`sqs relay (transport only): ${sqsRaw.toFixed(0)}/s`)
    const ps = await pipeline(sqsN, { sqs })
    log(`sqs pipeline: ${ps.rate.toFixed(0)}/s`)
    await sqs.stop()
    m.sqs = { n: sqsN, raw: sqsRaw, pipeline: ps }
  }
  return m
}

/** The NATS section of the report. */
function natsSection(m: PipelineMeasurements): string {
  if (!m.nats) return ''
  const { n: natsN, raws: natsRaws, raw: natsRaw, pipeline: pn } = m.nats
  const p = m.pipeline
  const nLimit = Math.min(natsRaw.rate, m.runtime.rate)
  return `
### The same pipeline on NATS JetStream

Same 3 echo actors, runtimes and sidecar processes with \`ASYA_TRANSPORT=nats\` against a private
\`nats-server -js\` (file store, on this host), ${natsN} envelopes, best of 2 runs. Baseline in the
same run: a **raw JetStream relay** made of the official client alone (\`consume\` with a window of
1 / 8 / 32 → \`js.publish\` with the JetStream ack awaited → \`ack\`, 3 hops, its own work-queue
stream), no runtime, no Asya code; and, above, the RabbitMQ pipeline of the same run.

| measurement | value |
|---|---|
| raw JetStream relay, 3 hops, window 1 / 8 / 32 | ${natsRaws.map((r) => r.rate.toFixed(0)).join(' / ')} envelopes/s |
| limit = min(best raw relay, runtime alone) | ${nLimit.toFixed(0)} envelopes/s |
| **pipeline on NATS** | **${pn.rate.toFixed(0)} envelopes/s (${((pn.rate / nLimit) * 100).toFixed(0)} % of the limit; RabbitMQ pipeline of this run: ${p.rate.toFixed(0)} envelopes/s)** |
| latency under load p50 / p99 (${WINDOW} in flight) | ${pn.loadedP50.toFixed(1)} / ${pn.loadedP99.toFixed(1)} ms |
| latency, 3 hops, one at a time, p50 / p99 | ${pn.p50.toFixed(2)} / ${pn.p99.toFixed(2)} ms (RabbitMQ: ${p.p50.toFixed(2)} / ${p.p99.toFixed(2)} ms) |
| sidecar RSS (max of 3) | ${pn.maxRssMb.toFixed(0)} MB (private ${pn.maxAnonMb.toFixed(0)} MB) |

CPU per envelope (ms, all 3 hops):

| run | server | runtimes | relays / sidecars | bench client | total |
|---|---:|---:|---:|---:|---:|
| raw JetStream relay (best window) | ${ms(natsRaw.cpu.broker)} | — | (in client) | ${ms(natsRaw.cpu.client)} | ${ms(total(natsRaw.cpu))} |
| pipeline on NATS | ${ms(pn.cpu.broker)} | ${ms(pn.cpu.runtimes)} | ${ms(pn.cpu.sidecars)} | ${ms(pn.cpu.client)} | ${ms(total(pn.cpu))} |
| pipeline on RabbitMQ (above) | ${ms(p.cpu.broker)} | ${ms(p.cpu.runtimes)} | ${ms(p.cpu.sidecars)} | ${ms(p.cpu.client)} | ${ms(total(p.cpu))} |
`
}

/** The report (markdown for docs/benchmarks.md) of one run's measurements: pure, no measuring. */
export function writeReport(m: PipelineMeasurements): string {
  const natsPart = natsSection(m)
  // BENCH_SQS_N=0: no SQS part and no full report; with BENCH_NATS_ONLY=1 the NATS section alone.
  if (!m.sqs) return process.env.BENCH_NATS_ONLY === '1' ? natsPart : ''
  const { cores, raw, rawLat, floor, pipeline: p } = m
  const rt = m.runtime
  const { n: sqsN, raw: sqsRaw, pipeline: ps } = m.sqs
  const limit = Math.min(m.bestRaw, rt.rate)
  const rc = m.rawCpu ?? { broker: NaN, runtimes: 0, sidecars: 0, client: NaN }
  // A sidecar that cost nothing would still need the raw relay's CPU plus 3 runtime round-trips.
  const zeroSidecarCeiling = (cores * 1000) / (total(rc) + 3 * rt.cpuMsPerCall)
  const addedP50 = (p.p50 - floor.p50) / 3
  const addedP99 = (p.p99 - floor.p99) / 3
  const ceilingPct = (zeroSidecarCeiling / limit) * 100
  const readingIt = [
    `Reading it. Broker, runtimes, sidecars and the bench share ${cores} cores, so the pipeline is CPU-bound, and the CPU table`,
    'says where each envelope\'s CPU goes. The raw relay moves envelopes in batches (up to 32 per socket read and write); a',
    'pipeline of runtimes cannot, because each runtime serves one call at a time, so envelopes leave every actor one by one',
    'and each broker operation, socket write and process wake-up is paid per envelope: the broker alone spends',
    `${(p.cpu.broker / rc.broker).toFixed(1)}× the raw relay's CPU per envelope. A sidecar that cost nothing, with the broker at its`,
    `batch cost and each runtime call at its cost in the runtime-alone run, would be capped at ${zeroSidecarCeiling.toFixed(0)} envelopes/s`,
    `(${ceilingPct.toFixed(0)} % of the limit); the minimal hop, which does only the four things every sidecar must (consume, call,`,
    `publish with confirm, ack), reaches ${((floor.rate / limit) * 100).toFixed(0)} %.`,
    ceilingPct < 70
      ? `So the 70 % target cannot be reached on a machine where all of these share ${cores} cores, whatever the sidecar does;`
      : `So even the floor of any sidecar design stays far from the 70 % target on a machine where all of these share ${cores} cores;`,
    'what the sidecar controls is its distance to the minimal hop (throughput ratio and added latency above) and its own memory.',
    'The added latency subtracts two percentiles measured in different runs, so values within ±0.3 ms of zero are noise.',
    'The RSS figure includes about 40 MB of the node binary\'s file pages, shared by every Node.js process on a host (a bare',
    '`node` process is ~40 MB RSS, ~6 MB private).',
  ].join('\n')
  const cpuRow = (name: string, c: CpuPerEnvelope, hops: string): string =>
    `| ${name} | ${ms(c.broker)} | ${ms(c.runtimes)} | ${hops === '' ? ms(c.sidecars) : hops} | ${ms(c.client)} | ${ms(total(c))} | ${((cores * 1000) / total(c)).toFixed(0)} |`
  return `## Pipeline: 3 echo actors on RabbitMQ

Method: ${N} envelopes of ~1 KB through 3 echo actors to a happy-end queue consumed by the bench;
each actor is a real \`asya_runtime.py\` plus, beside it, either the sidecar (compiled
\`dist/sidecar/main.js\`, default settings, NODE_OPTIONS of the sidecar image:
\`${SIDECAR_NODE_OPTIONS}\`) or the **minimal hop** (bench/minimal-hop.ts: consume with the same
window → runtime call → publish with confirm to the next actor → ack, and nothing else: the floor
any sidecar design sits on with this broker, this runtime protocol and this machine). RabbitMQ on
the same host. Throughput: closed loop with ${WINDOW} envelopes in flight after 500 warm-up
envelopes; minimal hop and sidecar runs interleaved, best of 2 each. Latency: ${LATENCY_N}
envelopes one at a time (no queueing). CPU: user + system seconds of every process from /proc
over the measured window, per envelope (broker = the local \`beam.smp\`). Baselines in the same
run: the raw relay (plain amqplib with \`noDelay\`, consume → publish persistent with confirm → ack,
3 hops) at prefetch 1/8/32 and one runtime's sequential round-trip rate through \`RuntimeClient\`
(1 KB). Reproduce: \`npm run bench -- pipeline\` (BENCH_N, BENCH_WINDOW, BENCH_PREFETCH, BENCH_SIDECAR_NODE_OPTIONS; BENCH_SQS_N=0 skips the SQS part and the report).

| measurement | value |
|---|---|
| raw relay throughput, prefetch 1 / 8 / 32 | ${raw[1]?.toFixed(0)} / ${raw[8]?.toFixed(0)} / ${raw[32]?.toFixed(0)} envelopes/s |
| runtime alone (1 KB, sequential) | ${rt.rate.toFixed(0)} round-trips/s, p50 ${ms(rt.p50)} ms, p99 ${ms(rt.p99)} ms, ${ms(rt.cpuMsPerCall)} ms CPU per call (runtime + client) |
| limit = min(best raw relay, runtime alone) | ${limit.toFixed(0)} envelopes/s |
| CPU ceiling of a zero-cost sidecar on this machine = ${cores} cores / (raw relay CPU + 3 runtime calls) | ${zeroSidecarCeiling.toFixed(0)} envelopes/s (${((zeroSidecarCeiling / limit) * 100).toFixed(0)} % of the limit) |
| minimal hop (floor) throughput | ${floor.rate.toFixed(0)} envelopes/s (${((floor.rate / limit) * 100).toFixed(0)} % of the limit) |
| **pipeline throughput** | **${p.rate.toFixed(0)} envelopes/s (${((p.rate / limit) * 100).toFixed(0)} % of the limit, target ≥ 70 %; ${((p.rate / floor.rate) * 100).toFixed(0)} % of the minimal hop)** |
| latency under that load p50 / p99 (${WINDOW} in flight) | ${p.loadedP50.toFixed(1)} / ${p.loadedP99.toFixed(1)} ms |
| raw relay latency, 3 hops, one at a time, p50 / p99 | ${rawLat.p50.toFixed(2)} / ${rawLat.p99.toFixed(2)} ms |
| minimal hop latency, 3 hops, one at a time, p50 / p99 | ${floor.p50.toFixed(2)} / ${floor.p99.toFixed(2)} ms |
| pipeline latency, 3 hops, one at a time, p50 / p99 | ${p.p50.toFixed(2)} / ${p.p99.toFixed(2)} ms |
| **sidecar-added latency per hop p50 / p99** = (pipeline − minimal hop) / 3 | **${addedP50.toFixed(2)} / ${addedP99.toFixed(2)} ms (target p99 ≤ 1 ms)** |
| sidecar RSS under load (max of 3, sampled every 200 ms) | ${p.maxRssMb.toFixed(0)} MB, of which private (RssAnon) ${p.maxAnonMb.toFixed(0)} MB (target ≤ 60 MB) |
| sidecar CPU (mean of 3) | ${p.cpuPct.toFixed(0)} % of one core |

CPU per envelope (ms, all 3 hops) and the throughput that CPU allows on ${cores} cores:

| run | broker | runtimes | relays / hops | bench client | total | ${cores} cores ÷ total (envelopes/s) |
|---|---:|---:|---:|---:|---:|---:|
${cpuRow('raw relay (best prefetch)', rc, `(in client) ${ms(rc.client)}`)}
${cpuRow('minimal hop', floor.cpu, '')}
${cpuRow('sidecar', p.cpu, '')}

${readingIt}

### The same pipeline on SQS (fauxqs, in-process)

Same 3 echo actors and sidecar processes with \`ASYA_TRANSPORT=sqs\` against fauxqs 1.9.2 running
in the bench process (an emulator: its numbers say nothing about AWS itself), ${sqsN} envelopes.
Baseline in the same run: a 3-hop relay made of the SqsTransport alone (consume → publish → delete,
prefetch 32), no runtime, no sidecar.

| measurement | value |
|---|---|
| SQS transport relay, 3 hops | ${sqsRaw.toFixed(0)} envelopes/s |
| **pipeline on SQS** | **${ps.rate.toFixed(0)} envelopes/s (${((ps.rate / Math.min(sqsRaw, rt.rate)) * 100).toFixed(0)} % of min(relay, runtime))** |
| latency, one at a time, p50 / p99 | ${ps.p50.toFixed(1)} / ${ps.p99.toFixed(1)} ms |
| sidecar RSS (max of 3) | ${ps.maxRssMb.toFixed(0)} MB (private ${ps.maxAnonMb.toFixed(0)} MB) |
${natsPart}`
}

async function main(): Promise<void> {
  const report = writeReport(await measure())
  if (report !== '') console.log(report)
}

export function buildDist(): void {
  log('building dist/ (sidecars run as compiled JS, as in the image)')
  const b = spawnSync('npx', ['tsc', '-p', 'tsconfig.build.json'], { cwd: root, stdio: 'inherit' })
  if (b.status !== 0) throw new Error('build failed')
}

// Imported by bench/concurrency.bench.ts for its harness: run only when executed.
if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  main().catch((err: unknown) => {
    console.error(err)
    process.exit(1)
  })
}
