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

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const N = Number(process.env.BENCH_N ?? 10_000)
const URL_ = process.env.ASYA_BENCH_RABBITMQ_URL ?? amqpUrl({ host: '127.0.0.1' })
const HANDLERS = join(root, 'test', 'sidecar', 'handlers')
const PAYLOAD = { blob: 'x'.repeat(900) } // ≈ 1 KB envelopes
const WINDOW = Number(process.env.BENCH_WINDOW ?? 256)
const LATENCY_N = 1000
/** V8 flags of the sidecar processes: the image's unless BENCH_SIDECAR_NODE_OPTIONS says otherwise. */
const SIDECAR_NODE_OPTIONS = process.env.BENCH_SIDECAR_NODE_OPTIONS ?? sidecarImageNodeOptions()
const log = (s: string): void => void process.stderr.write(`${s}\n`)

function pct(sorted: number[], p: number): number {
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
async function startRawRelay(prefix: string, prefetch: number): Promise<RawRelay> {
  const tag = randomBytes(3).toString('hex')
  const exchange = `bench-${prefix}-${tag}`
  const hops = [`${prefix}1-${tag}`, `${prefix}2-${tag}`, `${prefix}3-${tag}`, `${prefix}end-${tag}`]
  const conns: amqp.ChannelModel[] = []
  const setup = await amqp.connect(URL_, { noDelay: true })
  conns.push(setup)
  const sch = await setup.createChannel()
  await sch.assertExchange(exchange, 'topic', { durable: true })
  for (const h of hops) {
    await sch.assertQueue(`asya-${h}`, { durable: true })
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
async function rawRelay(prefetch: number, n: number): Promise<{ rate: number; cpu: CpuPerEnvelope }> {
  const relay = await startRawRelay('raw', prefetch)
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

/** Runtime alone: sequential round-trips of one echo runtime through RuntimeClient. */
async function runtimeAlone(n: number): Promise<{ rate: number; p50: number; p99: number; cpuMsPerCall: number }> {
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
function brokerPid(): number | undefined {
  const r = spawnSync('pgrep', ['-x', 'beam.smp'], { encoding: 'utf8' })
  const pids = (r.stdout ?? '').trim().split('\n').filter(Boolean).map(Number)
  return pids.length === 1 ? pids[0] : undefined
}

/** CPU ms per envelope, by component, over a measured window. */
interface CpuPerEnvelope {
  broker: number
  runtimes: number
  sidecars: number
  client: number
}

function cpuMeter(pids: { broker?: number; runtimes: Array<number | undefined>; sidecars: Array<number | undefined> }): () => (n: number) => CpuPerEnvelope {
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

interface PipelineResult {
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

async function pipeline(n: number, o: { sqs?: SqsTestServer; hop?: HopKind } = {}): Promise<PipelineResult> {
  const sqs = o.sqs
  const hop = o.hop ?? 'sidecar'
  const tag = randomBytes(3).toString('hex')
  const exchange = `bench-pipe-${tag}`
  const actors = [`echo1-${tag}`, `echo2-${tag}`, `echo3-${tag}`]
  const happyEnd = `happy-${tag}`
  const dirs: string[] = []
  const runtimes: RuntimeProcess[] = []
  const sidecars: ChildProcess[] = []
  const client: Transport = sqs
    ? new SqsTransport({ region: sqs.region, endpoint: sqs.endpoint, credentials: SQS_TEST_CREDENTIALS, waitTimeSeconds: 1 })
    : new RabbitMqTransport({ url: URL_, exchange })
  await client.connect()
  await client.ensureQueue(happyEnd)
  const transportEnv: Record<string, string> = sqs
    ? {
        ASYA_TRANSPORT: 'sqs',
        ASYA_AWS_REGION: sqs.region,
        ASYA_SQS_ENDPOINT: sqs.endpoint,
        ASYA_SQS_WAIT_TIME_SECONDS: '1',
        AWS_ACCESS_KEY_ID: SQS_TEST_CREDENTIALS.accessKeyId,
        AWS_SECRET_ACCESS_KEY: SQS_TEST_CREDENTIALS.secretAccessKey,
      }
    : { ASYA_TRANSPORT: 'rabbitmq', ASYA_RABBITMQ_URL: URL_, ASYA_RABBITMQ_EXCHANGE: exchange }
  for (const a of actors) {
    const dir = mkdtempSync(join(tmpdir(), `asya-bench-${a}-`))
    dirs.push(dir)
    const rp = new RuntimeProcess({ handler: 'sidecar_handlers.echo', socketDir: dir, pythonPath: [HANDLERS], env: { ASYA_LOG_LEVEL: 'WARNING' } })
    await rp.start()
    runtimes.push(rp)
    const args = hop === 'sidecar' ? [join(root, 'dist', 'sidecar', 'main.js')] : ['--import', join(root, 'scripts', 'register-ts.mjs'), join(root, 'bench', 'minimal-hop.ts')]
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
  // Warm-up of 500 envelopes, then the measured run.
  expect(500)
  await Promise.all(Array.from({ length: 500 }, (_, i) => client.publish(actors[0] as string, env(`w${i}`))))
  await done
  lat.length = 0
  expect(n)
  const stopCpu = cpuMeter({ ...(sqs ? {} : { broker: brokerPid() }), runtimes: runtimes.map((r) => r.pid), sidecars: sidecars.map((c) => c.pid) })()
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
  for (let i = 0; i < WINDOW; i++) sendNext()
  await done
  const secs = (performance.now() - t0) / 1000
  const cpu = stopCpu(n)
  clearInterval(sampler)
  onArrival = undefined
  const throughputLat = [...lat].sort((a, b) => a - b)
  // Latency: one envelope at a time, so it is the pipeline's own latency, not queueing.
  const seqLat: number[] = []
  for (let i = 0; i < LATENCY_N; i++) {
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

async function main(): Promise<void> {
  log('building dist/ (sidecars run as compiled JS, as in the image)')
  const b = spawnSync('npx', ['tsc', '-p', 'tsconfig.build.json'], { cwd: root, stdio: 'inherit' })
  if (b.status !== 0) throw new Error('build failed')
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
  const sqsN = Number(process.env.BENCH_SQS_N ?? Math.min(N, 3000))
  if (sqsN === 0) return // BENCH_SQS_N=0: RabbitMQ part only, nothing printed (exploration runs)
  const sqs = await startSqsServer()
  const sqsRaw = await sqsRelay(sqs, sqsN)
  log(`sqs relay (transport only): ${sqsRaw.toFixed(0)}/s`)
  const ps = await pipeline(sqsN, { sqs })
  log(`sqs pipeline: ${ps.rate.toFixed(0)}/s`)
  await sqs.stop()
  const limit = Math.min(bestRaw, rt.rate)
  const rc = rawCpu ?? { broker: NaN, runtimes: 0, sidecars: 0, client: NaN }
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
  console.log(`## Pipeline: 3 echo actors on RabbitMQ

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
`)
}

main().catch((err: unknown) => {
  console.error(err)
  process.exit(1)
})
