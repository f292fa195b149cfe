/**
 * End actors and the claim check (issue 14), each beside a baseline measured in the same run:
 *
 * 1. End-actor throughput: a happy-end sidecar process (no runtime, compiled JS as in the image)
 *    drains a backlog of 1 KB finished envelopes from RabbitMQ, persisting each to an
 *    S3-compatible server (fauxqs, its own process) and reporting it to a gateway stand-in (a
 *    bare HTTP server answering 200). Baselines: a bare S3 PUT loop of the same bodies and keys,
 *    and a bare PUT + report POST loop, at the same number in flight (1 and 8).
 * 2. Claim-check overhead: one echo actor (real runtime + sidecar) on RabbitMQ, 1 MB and 10 MB
 *    payloads sent one at a time; with the claim check the bench parks the payload like the
 *    sidecar before it would and restores what arrives like the one after it would, so both runs
 *    measure the same boundary (bench → actor → bench). Baseline: the same payloads inline.
 *
 *   npm run bench -- end-actors      (BENCH_END_N, BENCH_CLAIM_N_1MB, BENCH_CLAIM_N_10MB)
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { createServer, type Server } from 'node:http'
import { mkdtempSync, rmSync } from 'node:fs'
import { cpus, loadavg, tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { CreateBucketCommand, PutObjectCommand, S3Client } from '@aws-sdk/client-s3'
import { RuntimeProcess } from '../src/runtime/runtime-process.js'
import { ClaimCheck } from '../src/storage/claim-check.js'
import { S3ObjectStore } from '../src/storage/object-store.js'
import { resultKey } from '../src/storage/result-keys.js'
import { RabbitMqTransport, amqpUrl } from '../src/transport/rabbitmq-transport.js'
import type { Delivery } from '../src/transport/transport.js'
import { sidecarImageNodeOptions } from '../test/support/sidecar-image.js'
import { buildDist, cpuMeter, pct } from './pipeline.bench.js'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const END_N = Number(process.env.BENCH_END_N ?? 2000)
const CLAIM_N: Record<number, number> = { 1: Number(process.env.BENCH_CLAIM_N_1MB ?? 40), 10: Number(process.env.BENCH_CLAIM_N_10MB ?? 12) }
const URL_ = process.env.ASYA_BENCH_RABBITMQ_URL ?? amqpUrl({ host: '127.0.0.1' })
const HANDLERS = join(root, 'test', 'sidecar', 'handlers')
const CREDENTIALS = { accessKeyId: 'test', secretAccessKey: 'test' }
const REGION = 'us-east-1'
const log = (s: string): void => void process.stderr.write(`${s}\n`)
const f0 = (x: number): string => x.toFixed(0)
const f1 = (x: number): string => x.toFixed(1)
const f2 = (x: number): string => x.toFixed(2)

interface S3Child {
  endpoint: string
  pid: number | undefined
  client: S3Client
  stop(): Promise<void>
}

async function startS3Child(): Promise<S3Child> {
  const child = spawn(process.execPath, ['--import', join(root, 'scripts', 'register-ts.mjs'), join(root, 'bench', 's3-server-child.ts')], { cwd: root, stdio: ['pipe', 'pipe', 'inherit'] })
  const port = await new Promise<number>((resolve, reject) => {
    let buf = ''
    child.stdout?.on('data', (d: Buffer) => {
      buf += d.toString()
      const m = /port=(\d+)/.exec(buf)
      if (m) resolve(Number(m[1]))
    })
    child.once('exit', (code) => reject(new Error(`S3 server exited (${code})`)))
  })
  const endpoint = `http://127.0.0.1:${port}`
  const client = new S3Client({ endpoint, region: REGION, credentials: CREDENTIALS, forcePathStyle: true, requestChecksumCalculation: 'WHEN_REQUIRED', responseChecksumValidation: 'WHEN_REQUIRED' })
  return {
    endpoint,
    pid: child.pid,
    client,
    stop: async () => {
      client.destroy()
      child.kill('SIGTERM')
      await new Promise((r) => child.once('exit', r))
    },
  }
}

/** A gateway stand-in: 200 to every final report, counting them. */
async function startGatewayStub(): Promise<{ url: string; reports: () => number; waitFor: (n: number) => Promise<number[]>; server: Server }> {
  let count = 0
  const times: number[] = []
  let waiter: { n: number; resolve: (t: number[]) => void } | undefined
  const server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      count++
      times.push(performance.now())
      res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}')
      if (waiter && count >= waiter.n) waiter.resolve(times)
    })
  })
  server.keepAliveTimeout = 60_000
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()))
  const port = (server.address() as { port: number }).port
  return {
    url: `http://127.0.0.1:${port}`,
    reports: () => count,
    waitFor: (n) => (count >= n ? Promise.resolve(times) : new Promise((resolve) => (waiter = { n, resolve }))),
    server,
  }
}

function spawnSidecar(env: Record<string, string>): ChildProcess {
  return spawn(process.execPath, [join(root, 'dist', 'sidecar', 'main.js')], {
    cwd: root,
    env: { PATH: process.env.PATH ?? '', NODE_OPTIONS: sidecarImageNodeOptions(), ASYA_METRICS_ADDR: '127.0.0.1:0', ASYA_LOG_LEVEL: 'warn', ...env },
    stdio: ['ignore', 'ignore', 'inherit'],
  })
}

async function stopChild(c: ChildProcess): Promise<void> {
  if (c.exitCode !== null || c.signalCode !== null) return
  c.kill('SIGTERM')
  await new Promise((r) => c.once('exit', r))
}

/** Runs `n` tasks with `inFlight` at a time; returns tasks per second. */
async function loop(n: number, inFlight: number, task: (i: number) => Promise<void>): Promise<number> {
  let next = 0
  const t0 = performance.now()
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (next < n) await task(next++)
    }),
  )
  return n / ((performance.now() - t0) / 1000)
}

// ---------------------------------------------------------------------------------------------

interface EndRow {
  inFlight: number
  put: number
  putReport: number
  endActor: number
  sidecarCpuMs: number
  objects: number
}

async function endActorThroughput(s3: S3Child): Promise<EndRow[]> {
  const gateway = await startGatewayStub()
  const pad = 'x'.repeat(900)
  const body = (id: string): Buffer => Buffer.from(JSON.stringify({ id, route: { actors: ['summarize'], current: 1 }, headers: { trace_id: id }, payload: { blob: pad } }))
  const rows: EndRow[] = []
  for (const inFlight of [1, 8]) {
    const tag = randomBytes(3).toString('hex')
    const bucket = `bench-end-${tag}`
    await s3.client.send(new CreateBucketCommand({ Bucket: bucket }))
    // Baselines: what an end actor does per envelope, with nothing around it.
    const warm = Math.min(200, END_N)
    const put = async (i: number, prefix: string): Promise<void> => {
      const id = `${prefix}${i}`
      await s3.client.send(new PutObjectCommand({ Bucket: bucket, Key: resultKey('base-put/', new Date(), 'summarize', id), Body: body(id), ContentType: 'application/json' }))
    }
    await loop(warm, inFlight, (i) => put(i, 'w'))
    const putRate = await loop(END_N, inFlight, (i) => put(i, 'p'))
    log(`end actors, ${inFlight} in flight: bare PUT ${f0(putRate)}/s`)
    const report = async (id: string): Promise<void> => {
      const res = await fetch(`${gateway.url}/envelopes/${id}/final`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ id, status: 'succeeded', result: { blob: pad } }) })
      await res.text()
    }
    const before = gateway.reports()
    const putReportRate = await loop(END_N, inFlight, async (i) => {
      await put(i, 'r')
      await report(`r${i}`)
    })
    log(`end actors, ${inFlight} in flight: bare PUT + report ${f0(putReportRate)}/s`)
    if (gateway.reports() - before !== END_N) throw new Error('gateway stub missed reports')

    // The end actor: a backlog of END_N envelopes, drained by a fresh sidecar process.
    const happy = `happy-${tag}`
    const client = new RabbitMqTransport({ url: URL_, exchange: `bench-end-${tag}` })
    await client.connect()
    await client.ensureQueue(happy)
    for (let i = 0; i < END_N; i += 200) await Promise.all(Array.from({ length: Math.min(200, END_N - i) }, (_, j) => client.publish(happy, body(`e${i + j}`))))
    const base = gateway.reports()
    const sidecar = spawnSidecar({
      ASYA_ACTOR_NAME: happy,
      ASYA_ACTOR_HAPPY_END: happy,
      ASYA_IS_END_ACTOR: 'true',
      ASYA_RUNTIME_ENABLED: 'false',
      ASYA_TRANSPORT: 'rabbitmq',
      ASYA_RABBITMQ_URL: URL_,
      ASYA_RABBITMQ_EXCHANGE: `bench-end-${tag}`,
      ASYA_S3_BUCKET: bucket,
      ASYA_S3_ENDPOINT: s3.endpoint,
      ASYA_S3_ACCESS_KEY: CREDENTIALS.accessKeyId,
      ASYA_S3_SECRET_KEY: CREDENTIALS.secretAccessKey,
      AWS_REGION: REGION,
      ASYA_GATEWAY_URL: gateway.url,
      ASYA_CONCURRENCY: String(inFlight),
    })
    // Time from the first report to the last: the steady drain, without process start-up.
    await gateway.waitFor(base + 1)
    const stopCpu = cpuMeter({ runtimes: [], sidecars: [sidecar.pid] })()
    const times = await gateway.waitFor(base + END_N)
    const cpu = stopCpu(END_N - 1)
    const first = times[base] as number
    const last = times[base + END_N - 1] as number
    const rate = (END_N - 1) / ((last - first) / 1000)
    await stopChild(sidecar)
    const { ListObjectsV2Command } = await import('@aws-sdk/client-s3')
    let objects = 0
    let token: string | undefined
    do {
      const page = await s3.client.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: 'happy-asya/', ...(token ? { ContinuationToken: token } : {}) }))
      objects += page.KeyCount ?? 0
      token = page.IsTruncated ? page.NextContinuationToken : undefined
    } while (token)
    log(`end actors, ${inFlight} in flight: end actor ${f0(rate)}/s, ${objects} objects, sidecar ${f2(cpu.sidecars)} ms CPU/envelope`)
    await client.deleteQueue(happy).catch(() => undefined)
    await client.deleteQueue(`${happy}-dlq`).catch(() => undefined)
    await client.close()
    rows.push({ inFlight, put: putRate, putReport: putReportRate, endActor: rate, sidecarCpuMs: cpu.sidecars, objects })
  }
  await new Promise<void>((r) => gateway.server.close(() => r()))
  gateway.server.closeAllConnections()
  return rows
}

// ---------------------------------------------------------------------------------------------

interface ClaimRow {
  mb: number
  n: number
  inline: { p50: number; mean: number }
  claim: { p50: number; mean: number }
}

async function oneActor(env: Record<string, string>, tag: string): Promise<{ client: RabbitMqTransport; actor: string; happy: string; stop: () => Promise<void>; arrivals: Array<(d: Delivery) => void> }> {
  const actor = `big-${tag}`
  const happy = `happy-${tag}`
  const exchange = `bench-claim-${tag}`
  const client = new RabbitMqTransport({ url: URL_, exchange })
  await client.connect()
  await client.ensureQueue(actor)
  await client.ensureQueue(happy)
  const dir = mkdtempSync(join(tmpdir(), `asya-bench-${actor}-`))
  const runtime = new RuntimeProcess({ handler: 'sidecar_handlers.echo', socketDir: dir, pythonPath: [HANDLERS], env: { ASYA_LOG_LEVEL: 'WARNING' } })
  await runtime.start()
  const sidecar = spawnSidecar({ ASYA_ACTOR_NAME: actor, ASYA_ACTOR_HAPPY_END: happy, ASYA_TRANSPORT: 'rabbitmq', ASYA_RABBITMQ_URL: URL_, ASYA_RABBITMQ_EXCHANGE: exchange, ASYA_SOCKET_DIR: dir, ASYA_RUNTIME_TIMEOUT: '120s', ...env })
  const arrivals: Array<(d: Delivery) => void> = []
  await client.consume(happy, async (d) => {
    arrivals.shift()?.(d)
  }, { prefetch: 4 })
  return {
    client,
    actor,
    happy,
    arrivals,
    stop: async () => {
      await stopChild(sidecar)
      await runtime.stop()
      for (const q of [actor, happy]) {
        await client.deleteQueue(q).catch(() => undefined)
        await client.deleteQueue(`${q}-dlq`).catch(() => undefined)
      }
      await client.close()
      rmSync(dir, { recursive: true, force: true })
    },
  }
}

async function claimOverhead(s3: S3Child): Promise<ClaimRow[]> {
  const tag = randomBytes(3).toString('hex')
  const bucket = `bench-claims-${tag}`
  await s3.client.send(new CreateBucketCommand({ Bucket: bucket }))
  const s3Env = { ASYA_S3_ENDPOINT: s3.endpoint, ASYA_S3_ACCESS_KEY: CREDENTIALS.accessKeyId, ASYA_S3_SECRET_KEY: CREDENTIALS.secretAccessKey, AWS_REGION: REGION }
  const threshold = 256 * 1024
  const claims = new ClaimCheck({ store: new S3ObjectStore({ bucket, endpoint: s3.endpoint, region: REGION, credentials: CREDENTIALS, forcePathStyle: true }), prefix: 'asya-claims/', thresholdBytes: threshold })
  const rows: ClaimRow[] = []
  const runs: Record<'inline' | 'claim', Map<number, number[]>> = { inline: new Map(), claim: new Map() }
  for (const mode of ['inline', 'claim'] as const) {
    const env = mode === 'claim' ? { ...s3Env, ASYA_CLAIM_CHECK_BUCKET: bucket, ASYA_CLAIM_CHECK_THRESHOLD: String(threshold) } : {}
    const a = await oneActor(env, `${mode}-${tag}`)
    try {
      for (const mb of [1, 10]) {
        const payload = { blob: 'x'.repeat(mb * 1_000_000 - 12) }
        const n = CLAIM_N[mb] as number
        const lat: number[] = []
        for (let i = -3; i < n; i++) {
          const id = `${mode}-${mb}-${i}`
          const arrived = new Promise<Delivery>((r) => a.arrivals.push(r))
          const t0 = performance.now()
          let out: Buffer = Buffer.from(JSON.stringify({ id, route: { actors: [a.actor], current: 0 }, payload }))
          if (mode === 'claim') out = (await claims.offload(out)).body
          for (;;) {
            try {
              await a.client.publish(a.actor, out)
              break
            } catch {
              await new Promise((r) => setTimeout(r, 200)) // the actor's queue binding may lag its start
            }
          }
          const d = await arrived
          const env = JSON.parse(d.body.toString('utf8')) as { payload: { blob?: string } | null; asya_claim?: unknown }
          const got = mode === 'claim' ? (await claims.restore(env as never)).env.payload : env.payload
          const t1 = performance.now()
          await d.ack()
          if ((got as { blob?: string } | null)?.blob?.length !== payload.blob.length) throw new Error(`${id}: payload did not survive (${mode})`)
          if (mode === 'claim' && env.asya_claim === undefined) throw new Error(`${id}: arrived inline although the claim check is on`)
          if (mode === 'claim') await claims.deleteFor(id)
          if (i >= 0) lat.push(t1 - t0)
        }
        runs[mode].set(mb, lat)
        lat.sort((x, y) => x - y)
        log(`claim check ${mode}, ${mb} MB: p50 ${f1(pct(lat, 50))} ms, mean ${f1(lat.reduce((s, x) => s + x, 0) / lat.length)} ms (n=${n})`)
      }
    } finally {
      await a.stop()
    }
  }
  claims.close()
  for (const mb of [1, 10]) {
    const stat = (xs: number[]): { p50: number; mean: number } => ({ p50: pct([...xs].sort((x, y) => x - y), 50), mean: xs.reduce((s, x) => s + x, 0) / xs.length })
    rows.push({ mb, n: CLAIM_N[mb] as number, inline: stat(runs.inline.get(mb) ?? []), claim: stat(runs.claim.get(mb) ?? []) })
  }
  return rows
}

async function main(): Promise<void> {
  buildDist()
  const load = loadavg().map((x) => x.toFixed(1)).join(' / ')
  const loaded = (loadavg()[0] ?? 0) > cpus().length
  const s3 = await startS3Child()
  try {
    const end = await endActorThroughput(s3)
    const claim = await claimOverhead(s3)
    const loadAfter = loadavg().map((x) => x.toFixed(1)).join(' / ')
    const endRows = end
      .map((r) => `| ${r.inFlight} | ${f0(r.put)} | ${f0(r.putReport)} | **${f0(r.endActor)}** | ${f0((r.endActor / r.putReport) * 100)} % | ${f2(r.sidecarCpuMs)} | ${r.objects} / ${END_N} |`)
      .join('\n')
    const claimRows = claim
      .map((r) => `| ${r.mb} MB | ${r.n} | ${f1(r.inline.p50)} / ${f1(r.inline.mean)} ms | **${f1(r.claim.p50)} / ${f1(r.claim.mean)} ms** | ${f1(r.claim.p50 - r.inline.p50)} ms (${f2(r.claim.p50 / r.inline.p50)}×) |`)
      .join('\n')
    process.stdout.write(`## End actors and the claim check

Machine: ${cpus().length} × ${cpus()[0]?.model ?? '?'}, load average ${load} (1 / 5 / 15 min) at the start, ${loadAfter} at the end;
RabbitMQ on the same host, fauxqs (S3-compatible, in-memory) in a process of its own, Node ${process.version}.
Command: \`npm run bench -- end-actors\` (BENCH_END_N=${END_N}, BENCH_CLAIM_N_1MB=${CLAIM_N[1]}, BENCH_CLAIM_N_10MB=${CLAIM_N[10]}).${loaded ? '\n**Loaded machine** (load average above the core count): the figures are indicative only; compare the rows of this run with each other, and re-measure on a quiet machine.' : ''}

### End-actor throughput (persist + report)

Method: ${END_N} finished 1 KB envelopes wait in \`asya-happy-…\`; a fresh happy-end sidecar process
(compiled JS, the image's NODE_OPTIONS, no runtime, \`ASYA_CONCURRENCY\` = the in-flight column)
drains them, writing one object each (\`happy-asya/{ts}/{actor}/{id}.json\`) and POSTing the final
report to a gateway stand-in (plain node:http answering 200). Rate = envelopes between the first and
the last report / that time (start-up excluded). Baselines in the same run, same bodies, keys and
servers, from the bench process: a bare S3 PUT loop, and a bare PUT + report loop, with the same
number in flight. The objects column is a listing of the bucket afterwards (one per envelope).

| in flight | bare S3 PUT /s | bare PUT + report /s | **end actor /s** | of PUT + report | sidecar CPU ms/envelope | objects |
|---:|---:|---:|---:|---:|---:|---:|
${endRows}

### Claim-check overhead (RabbitMQ, one echo actor)

Method: one actor (real \`asya_runtime.py\` echo handler + sidecar process) on RabbitMQ; envelopes
of 1 MB and 10 MB (payload a JSON string), sent one at a time; latency from the bench's publish to
the payload back in the bench at the actor's next queue. Claim check on: threshold 256 KiB; the
bench parks the payload before publishing (what the previous sidecar would do) and restores and
verifies what arrives (what the next one would), so each envelope costs 2 PUTs and 2 GETs (bench
park, sidecar restore, sidecar re-park, bench restore), each with its SHA-256 pass, and objects
above 8 MiB go up in multipart (8 MiB parts, 2 at a time). Baseline in the same run: the same
payloads inline through the same broker (the sidecar with no claim-check settings). 3 warm-up
envelopes per size and mode are not counted.

| payload | n | inline p50 / mean | **claim check p50 / mean** | overhead at p50 |
|---|---:|---:|---:|---:|
${claimRows}
`)
  } finally {
    await s3.stop()
  }
}

main().catch((err: unknown) => {
  console.error(err)
  process.exit(1)
})
