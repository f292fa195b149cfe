/**
 * Gateway benchmark: 3 echo actors (real runtimes + compiled sidecar processes) on RabbitMQ,
 * happy-end as a runtime-less end-actor sidecar, the gateway as its own process on PostgreSQL.
 *
 * - Through the gateway: a closed loop of BENCH_GATEWAY_WINDOW tool calls in flight; each call is
 *   `POST /tools/call` + its SSE stream until the final event (latency = call start → final event).
 * - Baseline in the same run: the same 3 actors (same settings, no gateway URL) fed straight to the
 *   first queue with the same window; latency = publish → arrival at the happy-end queue.
 * - SSE fan-out: 1,000 streams of one envelope; delay from each progress report (sent by this
 *   process) to each stream receiving it; baseline: the same reports to a single stream.
 * - Gateway RSS: idle, under the call load, with 1,000 streams.
 *
 *   npm run bench -- gateway     (BENCH_GATEWAY_N=2000, BENCH_GATEWAY_WINDOW=64, BENCH_SSE_STREAMS=1000)
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { Agent, request } from 'node:http'
import { cpus, loadavg, tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import pg from 'pg'
import { RuntimeProcess } from '../src/runtime/runtime-process.js'
import { RabbitMqTransport, amqpUrl } from '../src/transport/rabbitmq-transport.js'
import { sidecarImageNodeOptions } from '../test/support/sidecar-image.js'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const N = Number(process.env.BENCH_GATEWAY_N ?? 2000)
const WINDOW = Number(process.env.BENCH_GATEWAY_WINDOW ?? 64)
const STREAMS = Number(process.env.BENCH_SSE_STREAMS ?? 1000)
const REPORTS = 20
const SEQ_N = 200
const RABBIT = process.env.ASYA_BENCH_RABBITMQ_URL ?? amqpUrl({ host: '127.0.0.1' })
const PG_ADMIN = process.env.ASYA_TEST_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres'
const HANDLERS = join(root, 'test', 'sidecar', 'handlers')
/** BENCH_PROF_DIR: the gateway and the sidecars of the through-the-gateway run write V8 CPU profiles there (bench/cpu-profile-summary.ts reads them). */
const PROF_DIR = process.env.BENCH_PROF_DIR
const profArgs = (name: string): string[] => (PROF_DIR ? ['--cpu-prof', `--cpu-prof-dir=${PROF_DIR}`, `--cpu-prof-name=${name}.cpuprofile`] : [])
const TEXT = 'x'.repeat(900) // ≈ 1 KB envelopes
const log = (s: string): void => void process.stderr.write(`${s}\n`)
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))
const agent = new Agent({ keepAlive: true, maxSockets: 4096 })

function pct(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number
}
const f1 = (x: number) => x.toFixed(1)
/** CPU seconds (user + system) of a process, from /proc. */
const cpuSec = (pid: number | undefined): number => {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]?.split(' ') ?? []
    return (Number(f[11]) + Number(f[12])) / 100
  } catch {
    return 0
  }
}
const cpuOf = (pids: Array<number | undefined>): number => pids.reduce<number>((a, p) => a + cpuSec(p), 0)
/** CPU seconds of every process whose command is `comm` (PostgreSQL's server and backends, the broker). */
const cpuOfComm = (comm: string): number => {
  let sum = 0
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8')
      if (stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')')) !== comm) continue
      const f = stat.slice(stat.lastIndexOf(') ') + 2).split(' ')
      sum += (Number(f[11]) + Number(f[12])) / 100
    } catch {
      // gone
    }
  }
  return sum
}
/** Shared servers' CPU (PostgreSQL, RabbitMQ), for a window's per-envelope share (other work on the machine counts too). */
const serversCpu = (): { pg: number; broker: number } => ({ pg: cpuOfComm('postgres'), broker: cpuOfComm('beam.smp') })
const rssMb = (pid: number | undefined): number => {
  try {
    return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) / 1024
  } catch {
    return 0
  }
}

/** Minimal HTTP client on a keep-alive agent (the load generator must cost less than the thing measured). */
function postJson(base: string, path: string, body: unknown): Promise<any> {
  return new Promise((resolve, reject) => {
    const data = Buffer.from(JSON.stringify(body))
    const req = request(`${base}${path}`, { method: 'POST', agent, headers: { 'content-type': 'application/json', 'content-length': data.length } }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (c: Buffer) => chunks.push(c))
      res.on('end', () => {
        try {
          resolve(JSON.parse(Buffer.concat(chunks).toString()))
        } catch {
          resolve(undefined)
        }
      })
    })
    req.on('error', reject)
    req.end(data)
  })
}

/** Opens an SSE stream; `onEvent` gets each data line; resolves when the server closes it. */
function stream(base: string, path: string, onEvent: (data: string) => void, onOpen?: () => void): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = request(`${base}${path}`, { agent }, (res) => {
      onOpen?.()
      let buf = ''
      res.setEncoding('utf8')
      res.on('data', (c: string) => {
        buf += c
        let i: number
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, i)
          buf = buf.slice(i + 2)
          const d = block.indexOf('data: ')
          if (d >= 0) onEvent(block.slice(d + 6))
        }
      })
      res.on('end', () => resolve())
      res.on('error', reject)
    })
    req.on('error', reject)
    req.end()
  })
}

interface Pipeline {
  actors: string[]
  happyEnd: string
  stop(): Promise<void>
  procs: ChildProcess[]
}

async function startActors(exchange: string, actors: string[], happyEnd: string, gatewayUrl: string | undefined, withEnd: boolean): Promise<Pipeline> {
  const dirs: string[] = []
  const runtimes: RuntimeProcess[] = []
  const procs: ChildProcess[] = []
  const common = { PATH: process.env.PATH ?? '', NODE_OPTIONS: sidecarImageNodeOptions(), ASYA_TRANSPORT: 'rabbitmq', ASYA_RABBITMQ_URL: RABBIT, ASYA_RABBITMQ_EXCHANGE: exchange, ASYA_ACTOR_HAPPY_END: happyEnd, ASYA_METRICS_ADDR: '127.0.0.1:0', ASYA_LOG_LEVEL: 'warn', ...(gatewayUrl ? { ASYA_GATEWAY_URL: gatewayUrl } : {}) }
  for (const a of actors) {
    const dir = mkdtempSync(join(tmpdir(), `asya-bgw-${a}-`))
    dirs.push(dir)
    const rp = new RuntimeProcess({ handler: 'sidecar_handlers.echo', socketDir: dir, pythonPath: [HANDLERS], env: { ASYA_LOG_LEVEL: 'WARNING' } })
    await rp.start()
    runtimes.push(rp)
    procs.push(spawn(process.execPath, [...(gatewayUrl ? profArgs(`sidecar-${a}`) : []), join(root, 'dist', 'sidecar', 'main.js')], { cwd: root, env: { ...common, ASYA_ACTOR_NAME: a, ASYA_SOCKET_DIR: dir }, stdio: ['ignore', 'ignore', 'inherit'] }))
  }
  if (withEnd) {
    procs.push(spawn(process.execPath, [...profArgs('sidecar-happy-end'), join(root, 'dist', 'sidecar', 'main.js')], { cwd: root, env: { ...common, ASYA_ACTOR_NAME: happyEnd, ASYA_IS_END_ACTOR: 'true', ASYA_RUNTIME_ENABLED: 'false' }, stdio: ['ignore', 'ignore', 'inherit'] }))
  }
  return {
    actors,
    happyEnd,
    procs,
    stop: async () => {
      for (const c of procs) c.kill('SIGTERM')
      await Promise.all(procs.map((c) => (c.exitCode !== null ? undefined : new Promise((r) => c.once('exit', r)))))
      for (const rp of runtimes) await rp.stop()
      for (const d of dirs) rmSync(d, { recursive: true, force: true })
    },
  }
}

/** Closed loop of `window` in flight: `one(i)` runs one item and resolves with its latency (ms). */
async function closedLoop(n: number, window: number, one: (i: number) => Promise<number>): Promise<{ rate: number; lat: number[] }> {
  const lat: number[] = []
  let next = 0
  const t0 = performance.now()
  await Promise.all(
    Array.from({ length: window }, async () => {
      while (next < n) lat.push(await one(next++))
    }),
  )
  const rate = n / ((performance.now() - t0) / 1000)
  return { rate, lat: lat.sort((a, b) => a - b) }
}

async function main(): Promise<void> {
  const load0 = loadavg()[0] as number
  log('building dist/ (the sidecar and the gateway run compiled, as in the images)')
  const b = spawnSync('npx', ['tsc', '-p', 'tsconfig.build.json'], { cwd: root, stdio: 'inherit' })
  if (b.status !== 0) throw new Error('build failed')
  const tag = randomBytes(3).toString('hex')
  const exchange = `bench-gw-${tag}`
  const actors = [`gwb1-${tag}`, `gwb2-${tag}`, `gwb3-${tag}`]
  const happyEnd = `gwb-happy-${tag}`
  const client = new RabbitMqTransport({ url: RABBIT, exchange })
  await client.connect()
  for (const q of [...actors, happyEnd]) await client.ensureQueue(q)

  // --- Baseline: the pipeline alone, fed straight to the first queue.
  log('baseline: 3 echo actors fed straight to the first queue')
  const base = await startActors(exchange, actors, happyEnd, undefined, false)
  const arrivals = new Map<string, () => void>()
  const sub = await client.consume(happyEnd, async (d) => {
    const id = (JSON.parse(d.body.toString()) as { id: string }).id
    await d.ack()
    arrivals.get(id)?.()
  }, { prefetch: 500 })
  const direct = async (id: string): Promise<number> => {
    const arrived = new Promise<void>((r) => arrivals.set(id, r))
    const s = performance.now()
    await client.publish(actors[0] as string, Buffer.from(JSON.stringify({ id, route: { actors, current: 0, metadata: { job_id: id } }, payload: { text: TEXT } })))
    await arrived
    arrivals.delete(id)
    return performance.now() - s
  }
  await closedLoop(300, WINDOW, (i) => direct(`warm-${i}`))
  const baseCpu0 = cpuOf(base.procs.map((p) => p.pid))
  const baseSrv0 = serversCpu()
  const baseLoad = await closedLoop(N, WINDOW, (i) => direct(`b-${i}`))
  const baseSidecarMs = ((cpuOf(base.procs.map((p) => p.pid)) - baseCpu0) * 1000) / N
  const baseSrv1 = serversCpu()
  const basePgMs = ((baseSrv1.pg - baseSrv0.pg) * 1000) / N
  const baseBrokerMs = ((baseSrv1.broker - baseSrv0.broker) * 1000) / N
  const baseSeq = (await closedLoop(SEQ_N, 1, (i) => direct(`bs-${i}`))).lat
  await sub.cancel()
  await base.stop()
  log(`baseline: ${f1(baseLoad.rate)}/s`)

  // --- Through the gateway.
  const dbName = `asya_bench_${tag}`
  const admin = new pg.Client({ connectionString: PG_ADMIN })
  await admin.connect()
  await admin.query(`CREATE DATABASE ${dbName}`)
  const dbUrl = Object.assign(new URL(PG_ADMIN), { pathname: `/${dbName}` }).toString()
  const cfgDir = mkdtempSync(join(tmpdir(), 'asya-bgw-cfg-'))
  writeFileSync(join(cfgDir, 'routes.yaml'), `tools:\n  - { name: echo, route: [${actors.join(', ')}], progress: true, timeout: 300, parameters: { text: { type: string, required: true } } }\n`)
  const gw = spawn(process.execPath, [...profArgs('gateway'), join(root, 'dist', 'gateway', 'main.js')], {
    cwd: root,
    env: { PATH: process.env.PATH ?? '', ASYA_GATEWAY_PORT: '0', ASYA_GATEWAY_HOST: '127.0.0.1', ASYA_DATABASE_URL: dbUrl, ASYA_CONFIG_PATH: cfgDir, ASYA_RABBITMQ_URL: RABBIT, ASYA_RABBITMQ_EXCHANGE: exchange, ASYA_LOG_LEVEL: 'info', ASYA_DB_MAX_CONNS: '20' },
    stdio: ['ignore', 'pipe', 'inherit'],
  })
  // Port 0: the gateway's "gateway listening" log line says which port it got.
  const port = await new Promise<number>((resolve, reject) => {
    let buf: string | null = ''
    gw.stdout!.on('data', (d: Buffer) => {
      if (buf === null) return
      buf += d.toString()
      const m = /"port":(\d+)[^\n]*"msg":"gateway listening"|"msg":"gateway listening"[^\n]*"port":(\d+)/.exec(buf)
      if (m) {
        resolve(Number(m[1] ?? m[2]))
        buf = null
      }
    })
    gw.once('exit', (c) => reject(new Error(`gateway exited ${c}`)))
  })
  const url = `http://127.0.0.1:${port}`
  await sleep(300)
  const rssIdle = rssMb(gw.pid)
  const pipe = await startActors(exchange, actors, happyEnd, url, true)
  const viaGateway = async (i: number): Promise<number> => {
    const s = performance.now()
    const r = await postJson(url, '/tools/call', { name: 'echo', arguments: { text: TEXT, i } })
    const tCall = performance.now()
    const data = JSON.parse(r.content[0].text) as { stream_url: string }
    let final = 0
    const trace: string[] = []
    await stream(url, data.stream_url, (d) => {
      if (process.env.BENCH_TRACE) {
        const u = JSON.parse(d) as { status: string; envelope_state?: string; current_actor_idx?: number; timestamp: string }
        trace.push(`${f1(performance.now() - s)}ms ${u.current_actor_idx ?? ''}:${u.envelope_state ?? u.status} db=${u.timestamp.slice(17, 23)}`)
      }
      if (d.includes('"status":"succeeded"') || d.includes('"status":"failed"')) final = performance.now()
    })
    if (process.env.BENCH_TRACE && i % 50 === 0) log(`trace ${i}: post ${f1(tCall - s)}ms | ${trace.join(' | ')}`)
    return (final || performance.now()) - s
  }
  log('through the gateway: warm-up')
  await closedLoop(300, WINDOW, viaGateway)
  let rssLoad = 0
  const sampler = setInterval(() => (rssLoad = Math.max(rssLoad, rssMb(gw.pid))), 200)
  const gwCpu0 = cpuSec(gw.pid)
  const scCpu0 = cpuOf(pipe.procs.map((p) => p.pid))
  const clientCpu0 = process.cpuUsage()
  const gwSrv0 = serversCpu()
  const gwLoad = await closedLoop(N, WINDOW, viaGateway)
  const gwMs = ((cpuSec(gw.pid) - gwCpu0) * 1000) / N
  const scMs = ((cpuOf(pipe.procs.map((p) => p.pid)) - scCpu0) * 1000) / N
  const gwSrv1 = serversCpu()
  const gwPgMs = ((gwSrv1.pg - gwSrv0.pg) * 1000) / N
  const gwBrokerMs = ((gwSrv1.broker - gwSrv0.broker) * 1000) / N
  const cu = process.cpuUsage(clientCpu0)
  const clientMs = (cu.user + cu.system) / 1000 / N
  clearInterval(sampler)
  const gwSeq = (await closedLoop(SEQ_N, 1, viaGateway)).lat
  log(`gateway: ${f1(gwLoad.rate)}/s`)
  await pipe.stop()

  // --- SSE fan-out.
  const fanout = async (streams: number): Promise<number[]> => {
    const created = await postJson(url, '/envelopes', { id: `fan-${streams}-${tag}`, actors: ['x'], current: 0 })
    const id = created.id as string
    const sentAt: number[] = []
    const delays: number[] = []
    let open = 0
    const all = Array.from({ length: streams }, () =>
      stream(
        url,
        `/envelopes/${id}/stream`,
        (d) => {
          const m = /"message":"r(\d+)"/.exec(d)
          if (m) delays.push(performance.now() - (sentAt[Number(m[1])] as number))
        },
        () => open++,
      ),
    )
    while (open < streams) await sleep(20)
    await sleep(500)
    for (let r = 0; r < REPORTS; r++) {
      sentAt[r] = performance.now()
      await postJson(url, `/envelopes/${id}/progress`, { current_actor_idx: r, status: 'received', message: `r${r}` })
      await sleep(100)
    }
    if (streams > 1) rssFan = Math.max(rssFan, rssMb(gw.pid))
    await postJson(url, `/envelopes/${id}/final`, { status: 'succeeded', result: 1 })
    await Promise.all(all)
    return delays.sort((a, b) => a - b)
  }
  let rssFan = 0
  log(`SSE fan-out: ${STREAMS} streams`)
  const one = await fanout(1)
  const many = await fanout(STREAMS)
  gw.kill('SIGTERM')
  await new Promise((r) => gw.once('exit', r))
  for (const q of [...actors, happyEnd]) {
    await client.deleteQueue(q).catch(() => undefined)
    await client.deleteQueue(`${q}-dlq`).catch(() => undefined)
  }
  await client.close()
  await admin.query(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`)
  await admin.end()
  agent.destroy()

  const ratio = (gwLoad.rate / baseLoad.rate) * 100
  const out = `## Gateway

3 echo actors (real \`asya_runtime.py\` + compiled sidecar processes, image heap flags) on the local
RabbitMQ, ≈ 1 KB payloads, closed loop of ${WINDOW} in flight, N = ${N} after 300 warm-up, ${cpus().length} cores shared by
everything (broker, PostgreSQL, runtimes, sidecars, gateway, this load generator); load average
${load0.toFixed(1)} at the start, ${(loadavg()[0] as number).toFixed(1)} at the end (other work on the machine counts in it).
**Through the gateway**: \`POST /tools/call\` + \`GET /envelopes/{id}/stream\` until the final event,
per call; the actors report progress (9 reports per envelope, each sidecar in batches), happy-end (runtime-less end actor)
posts \`/final\`; gateway process on PostgreSQL 15 (same machine). **Baseline (same run)**: the same 3
actors without a gateway URL, fed straight to the first queue, latency to the happy-end queue.

| | throughput | p50 (loaded) | p99 (loaded) | p50 (one at a time) | p99 (one at a time) |
|---|---|---|---|---|---|
| through the gateway | ${f1(gwLoad.rate)} calls/s | ${f1(pct(gwLoad.lat, 50))} ms | ${f1(pct(gwLoad.lat, 99))} ms | ${f1(pct(gwSeq, 50))} ms | ${f1(pct(gwSeq, 99))} ms |
| baseline: fed to the first queue | ${f1(baseLoad.rate)} envelopes/s | ${f1(pct(baseLoad.lat, 50))} ms | ${f1(pct(baseLoad.lat, 99))} ms | ${f1(pct(baseSeq, 50))} ms | ${f1(pct(baseSeq, 99))} ms |

Gateway throughput = **${f1(ratio)} %** of the baseline (target ≥ 80 %).

CPU per envelope (ms): gateway process ${f1(gwMs)}; sidecars (3 actors + happy-end) ${f1(scMs)} with progress reports vs
${f1(baseSidecarMs)} in the baseline (3 actors, no gateway); load generator (calls + SSE clients) ${f1(clientMs)};
PostgreSQL (all its processes) ${f1(gwPgMs)} vs ${f1(basePgMs)} in the baseline window; RabbitMQ ${f1(gwBrokerMs)} vs ${f1(baseBrokerMs)}
(both servers are shared with whatever else runs on the machine: indicative).

**SSE fan-out**: ${STREAMS} concurrent streams of one envelope, ${REPORTS} progress reports 100 ms apart;
delay from sending a report to each stream receiving it (${many.length} samples). Baseline: the same
reports to one stream.

| streams | p50 | p99 | max |
|---|---|---|---|
| ${STREAMS} | ${f1(pct(many, 50))} ms | ${f1(pct(many, 99))} ms | ${f1(many.at(-1) ?? NaN)} ms |
| 1 (baseline) | ${f1(pct(one, 50))} ms | ${f1(pct(one, 99))} ms | ${f1(one.at(-1) ?? NaN)} ms |

**Gateway RSS**: ${f1(rssIdle)} MB idle, ${f1(rssLoad)} MB peak under the call load, ${f1(rssFan)} MB with ${STREAMS} streams open.

Reproduce: \`npm run bench -- gateway\` (BENCH_GATEWAY_N, BENCH_GATEWAY_WINDOW, BENCH_SSE_STREAMS).
`
  process.stdout.write(out)
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    log(String((err as Error).stack ?? err))
    process.exit(1)
  },
)
