/**
 * Webhook benchmark (issue 5): AdmissionReviews/s and latency over HTTPS (TLS 1.3, ECDSA P-256,
 * keep-alive) with autocannon, for an actor pod (full injection + JSON Patch) and a non-actor pod
 * (skipped), beside a baseline measured in the same run: a bare Fastify HTTPS route in the same
 * process with the same certificate that parses the body and answers `allowed` without work.
 * The servers run in a child process pinned to one core (taskset), autocannon on the other.
 *
 *   npm run bench -- webhook        (BENCH_DURATION=10 seconds per run, BENCH_CONNECTIONS=10)
 */
import { spawn, spawnSync } from 'node:child_process'
import { existsSync, mkdtempSync, readFileSync } from 'node:fs'
import { loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { connect, type TLSSocket } from 'node:tls'
import Fastify from 'fastify'
import { Registry } from 'prom-client'
import { createLogger } from '../src/logger.js'
import { generateCerts } from '../webhook/certs.js'
import { createWebhookServer } from '../webhook/server.js'
import { testConfig } from '../test/webhook/fixtures.js'
import { admissionReview } from '../test/webhook/helpers.js'

/** The slice of autocannon's API used here (the package ships no types). */
interface CannonResult {
  requests: { average: number; total: number }
  latency: { p50: number; p90: number; p99: number; max: number }
  errors: number
  timeouts: number
  non2xx: number
}
type Cannon = (o: { url: string; method: string; headers: Record<string, string>; body: string; connections: number; duration: number; overallRate?: number }) => Promise<CannonResult>
const autocannonModule = 'autocannon'
const autocannon = ((await import(autocannonModule)) as { default: Cannon }).default

const DURATION = Number(process.env.BENCH_DURATION ?? 10)
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 10)
const TARGET_RATE = 2000
const log = (s: string): void => void process.stderr.write(`${s}\n`)

/** The same AdmissionReview the webhook tests send (test/webhook/helpers.ts), as a request body. */
function review(object: unknown): string {
  return JSON.stringify(admissionReview(object))
}

function pod(labels: Record<string, string>, annotations: Record<string, string>): unknown {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: {
      generateName: 'text-cleaner-7d9f8c6b5-',
      namespace: 'team-a',
      labels: { app: 'text-cleaner', 'pod-template-hash': '7d9f8c6b5', ...labels },
      annotations,
      ownerReferences: [{ apiVersion: 'apps/v1', kind: 'ReplicaSet', name: 'text-cleaner-7d9f8c6b5', uid: '6f1c0d2e-1111-2222-3333-444455556666', controller: true, blockOwnerDeletion: true }],
    },
    spec: {
      containers: [{ name: 'handler', image: 'python:3.12-slim', resources: { requests: { cpu: '100m', memory: '256Mi' } }, env: [{ name: 'MODEL', value: 'small' }] }],
      restartPolicy: 'Always',
      terminationGracePeriodSeconds: 30,
      dnsPolicy: 'ClusterFirst',
      serviceAccountName: 'default',
    },
  }
}

const actorBody = review(pod({ 'asya.sh/actor': 'text-cleaner' }, { 'asya.sh/handler': 'cleaner.clean', 'asya.sh/timeout': '120' }))
const plainBody = review(pod({}, {}))

/** Child mode: serve the webhook and the baseline on one core until stdin closes. */
async function serve(certDir: string): Promise<void> {
  const cert = join(certDir, 'tls.crt')
  const key = join(certDir, 'tls.key')
  const wh = await createWebhookServer(
    { ...testConfig, enabled: true, systemNamespace: 'asya-system', host: '127.0.0.1', port: 0, tlsCertFile: cert, tlsKeyFile: key, tlsReloadIntervalMs: 60_000, bodyLimit: 8 * 1024 * 1024, certMode: 'files', service: 'asya-webhook', webhookConfigurationName: 'asya-webhook', caSecretName: 'asya-webhook-ca', caResyncMs: 30_000 },
    { logger: createLogger('bench', { level: 'silent' }), registry: new Registry() },
  )
  const whUrl = await wh.listen()
  const base = Fastify({ https: { cert: readFileSync(cert), key: readFileSync(key), minVersion: 'TLSv1.2' }, logger: false })
  // Second baseline: the same bytes the webhook answers for the actor pod, precomputed, so the
  // difference to the webhook row is the injection work alone (not TLS/HTTP cost of a bigger body).
  const canned = await wh.app.inject({ method: 'POST', url: '/mutate', headers: { 'content-type': 'application/json' }, payload: actorBody })
  const cannedBody = canned.body
  base.post('/canned/mutate', async (req, reply) => {
    void (req.body as object)
    return reply.type('application/json').send(cannedBody)
  })
  base.post('/mutate', async (req) => {
    const uid = (req.body as { request?: { uid?: string } }).request?.uid ?? ''
    return { apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', response: { uid, allowed: true } }
  })
  const baseUrl = await base.listen({ host: '127.0.0.1', port: 0 })
  process.stdout.write(JSON.stringify({ webhook: whUrl, baseline: baseUrl.replace('localhost', '127.0.0.1') }) + '\n')
  process.stdin.resume()
  process.stdin.on('end', () => {
    void Promise.all([wh.close(), base.close()]).then(() => process.exit(0))
  })
}

interface Run {
  name: string
  rps: number
  p50: number
  p90: number
  p99: number
  max: number
  errors: number
  non2xx: number
  requests: number
}

async function cannon(name: string, url: string, body: string, overallRate?: number): Promise<Run> {
  const r = await autocannon({
    url: `${url}/mutate`,
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body,
    connections: CONNECTIONS,
    duration: DURATION,
    ...(overallRate !== undefined ? { overallRate } : {}),
  })
  const run = { name, rps: r.requests.average, p50: r.latency.p50, p90: r.latency.p90, p99: r.latency.p99, max: r.latency.max, errors: r.errors + r.timeouts, non2xx: r.non2xx, requests: r.requests.total }
  log(`${name}: ${run.rps.toFixed(0)} req/s, p50 ${run.p50} ms, p99 ${run.p99} ms, errors ${run.errors}, non-2xx ${run.non2xx}`)
  return run
}

/**
 * Open-loop paced client: request i is due at t0 + i/rate and its latency counts from that due
 * time (no coordinated omission). autocannon's "fixed rate" is not this: each connection sends its
 * per-second quota back to back and then waits for the next second, i.e. saturating bursts.
 * Raw TLS sockets and a minimal HTTP/1.1 response reader keep the client cheap.
 */
async function paced(name: string, url: string, body: string, rate: number, seconds: number, ca: Buffer, sockets = 16): Promise<Run> {
  const u = new URL(url)
  const head = `POST ${u.pathname.replace(/\/$/, '')}/mutate HTTP/1.1\r\nHost: asya-webhook.asya-system.svc\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n`
  const wire = Buffer.concat([Buffer.from(head), Buffer.from(body)])
  interface Conn {
    s: TLSSocket
    buf: Buffer
    due: number
    busy: boolean
  }
  const lat: number[] = []
  let non2xx = 0
  const idle: Conn[] = []
  const backlog: number[] = []
  let done = 0
  const total = Math.round(rate * seconds)
  let finish: () => void = () => undefined
  const finished = new Promise<void>((r) => (finish = r))
  const send = (c: Conn, due: number): void => {
    c.busy = true
    // Late (queued behind a stall): count from the due time. Early (the loop sends up to 1 ms ahead
    // rather than sleeping for less than a timer tick): count from the actual send.
    c.due = Math.min(due, performance.now())
    c.s.write(wire)
  }
  const conns = await Promise.all(
    Array.from({ length: sockets }, () => new Promise<Conn>((resolve, reject) => {
      const s = connect({ host: u.hostname, port: Number(u.port), ca, servername: 'asya-webhook.asya-system.svc' }, () => resolve(c))
      const c: Conn = { s, buf: Buffer.alloc(0), due: 0, busy: false }
      s.on('error', reject)
      s.on('data', (d: Buffer) => {
        c.buf = c.buf.length === 0 ? d : Buffer.concat([c.buf, d])
        const end = c.buf.indexOf('\r\n\r\n')
        if (end < 0) return
        const headers = c.buf.subarray(0, end).toString('latin1')
        const len = Number(/content-length:\s*(\d+)/i.exec(headers)?.[1] ?? 0)
        if (c.buf.length < end + 4 + len) return
        if (!headers.startsWith('HTTP/1.1 200')) non2xx++
        lat.push(performance.now() - c.due)
        c.buf = c.buf.subarray(end + 4 + len)
        c.busy = false
        if (++done === total) finish()
        const due = backlog.shift()
        if (due !== undefined) send(c, due)
        else idle.push(c)
      })
    })),
  )
  idle.push(...conns)
  const t0 = performance.now() + 20
  for (let i = 0; i < total; i++) {
    const due = t0 + (i * 1000) / rate
    const wait = due - performance.now()
    if (wait > 1) await new Promise((r) => setTimeout(r, wait))
    const c = idle.pop()
    if (c) send(c, due)
    else backlog.push(due)
  }
  await finished
  const elapsed = (performance.now() - t0) / 1000
  for (const c of conns) c.s.destroy()
  lat.sort((a, b) => a - b)
  const q = (p: number): number => lat[Math.min(lat.length - 1, Math.floor(p * lat.length))] ?? NaN
  const run: Run = { name, rps: lat.length / elapsed, p50: q(0.5), p90: q(0.9), p99: q(0.99), max: lat[lat.length - 1] ?? NaN, errors: 0, non2xx, requests: lat.length }
  log(`${name}: ${run.rps.toFixed(0)} req/s, p50 ${run.p50.toFixed(2)} ms, p99 ${run.p99.toFixed(2)} ms`)
  return run
}

async function responseSize(url: string, body: string, caFile: string): Promise<number> {
  const { request } = await import('node:https')
  return new Promise((resolve, reject) => {
    const req = request(`${url}/mutate`, { method: 'POST', ca: readFileSync(caFile), servername: 'asya-webhook.asya-system.svc', headers: { 'content-type': 'application/json' } }, (res) => {
      let n = 0
      res.on('data', (d: Buffer) => (n += d.length))
      res.on('end', () => resolve(n))
    })
    req.on('error', reject)
    req.end(body)
  })
}

if (process.argv[2] === '--serve') {
  await serve(process.argv[3] as string)
} else {
  const dir = mkdtempSync(join(tmpdir(), 'asya-bench-wh-'))
  await generateCerts({ dir, service: 'asya-webhook', namespace: 'asya-system', extraNames: ['IP:127.0.0.1'] })
  const pin = existsSync('/usr/bin/taskset') ? ['taskset', '-c', '1'] : []
  // The client gets the other core to itself; otherwise the two compete and the table measures that.
  if (pin.length > 0) spawnSync('taskset', ['-a', '-cp', '0', String(process.pid)], { stdio: 'ignore' })
  const argv = [...pin, process.execPath, '--import', './scripts/register-ts.mjs', 'bench/webhook.bench.ts', '--serve', dir]
  const child = spawn(argv[0] as string, argv.slice(1), { stdio: ['pipe', 'pipe', 'inherit'] })
  const first = await new Promise<string>((resolve) => createInterface({ input: child.stdout }).once('line', resolve))
  const urls = JSON.parse(first) as { webhook: string; baseline: string }
  log(`servers: ${first}`)

  const actorResponseBytes = await responseSize(urls.webhook, actorBody, join(dir, 'ca.crt'))
  // Warm-up (JIT, TLS session setup) not recorded.
  await autocannon({ url: `${urls.webhook}/mutate`, method: 'POST', headers: { 'content-type': 'application/json' }, body: actorBody, connections: CONNECTIONS, duration: 2 })
  const loadBefore = loadavg()[0] ?? 0
  const runs: Run[] = []
  runs.push(await cannon('baseline: bare Fastify HTTPS route, answers allowed', urls.baseline, actorBody))
  runs.push(await cannon('baseline: bare route answering the precomputed actor-pod response', `${urls.baseline}/canned`, actorBody))
  runs.push(await cannon('webhook: actor pod (inject + JSON Patch)', urls.webhook, actorBody))
  runs.push(await cannon('webhook: non-actor pod (skipped)', urls.webhook, plainBody))
  runs.push(await cannon(`baseline (precomputed actor-pod response) at a fixed ${TARGET_RATE} req/s`, `${urls.baseline}/canned`, actorBody, TARGET_RATE))
  runs.push(await cannon(`webhook: actor pod at a fixed ${TARGET_RATE} req/s`, urls.webhook, actorBody, TARGET_RATE))
  const caPem = readFileSync(join(dir, 'ca.crt'))
  runs.push(await paced(`baseline (precomputed actor-pod response), paced ${TARGET_RATE} req/s`, `${urls.baseline}/canned`, actorBody, TARGET_RATE, DURATION, caPem))
  runs.push(await paced(`webhook: actor pod, paced ${TARGET_RATE} req/s`, urls.webhook, actorBody, TARGET_RATE, DURATION, caPem))
  child.stdin.end()
  await new Promise((r) => child.on('exit', r))

  const fmt = (n: number): string => (Number.isInteger(n) ? String(n) : n.toFixed(2))
  const atRate = runs[7] as Run
  const lines = [
    '## Admission webhook (HTTPS, autocannon)',
    '',
    `Method: \`npm run bench -- webhook\` (bench/webhook.bench.ts). The webhook (\`createWebhookServer\`, real config, metrics on) and the`,
    'baseline (a bare Fastify HTTPS route that parses the AdmissionReview and answers `allowed` without work) run in one child',
    `process pinned to one core; autocannon (${CONNECTIONS} keep-alive connections, ${DURATION} s per run, after a 2 s warm-up) on the other.`,
    `TLS 1.3 with an ECDSA P-256 serving cert from webhook/certs.ts. AdmissionReview bodies: actor pod ${actorBody.length} B, non-actor pod ${plainBody.length} B;`,
    `response for the actor pod ${actorResponseBytes} B (the base64 JSON Patch), for the others about 120 B.`,
    `1-minute load average of the machine: ${loadBefore.toFixed(2)} before, ${(loadavg()[0] ?? 0).toFixed(2)} after (other work on a shared machine shows up in the tails).`,
    '',
    'The baselines are one bare route answering a tiny `allowed` review and one answering the webhook\'s own actor-pod response bytes',
    '(precomputed), so the gap between that baseline and the webhook row is the injection work itself.',
    '',
    '| run | req/s | p50 ms | p90 ms | p99 ms | max ms | requests | errors / non-2xx |',
    '|---|---:|---:|---:|---:|---:|---:|---:|',
    ...runs.map((r) => `| ${r.name} | ${fmt(r.rps)} | ${fmt(r.p50)} | ${fmt(r.p90)} | ${fmt(r.p99)} | ${fmt(r.max)} | ${r.requests} | ${r.errors} / ${r.non2xx} |`),
    '',
    `Target (issue 5): p99 ≤ 5 ms at ${TARGET_RATE} req/s on one core — paced client: p99 ${fmt(atRate.p99)} ms at ${fmt(atRate.rps)} req/s: ${atRate.p99 <= 5 && atRate.rps >= TARGET_RATE * 0.95 ? '**met**' : '**not met**'}.`,
    '',
    'autocannon reports whole milliseconds, and its "fixed rate" is not paced: each connection sends its per-second quota back to',
    'back, then waits for the next second, so those rows measure saturating bursts. The "paced" rows are an open-loop client in the',
    `bench (raw TLS sockets, 16 keep-alive connections) that issues request i at t0 + i/${TARGET_RATE} s and measures from that due`,
    'time, so queueing behind a stall counts (no coordinated omission).',
  ]
  process.stdout.write(lines.join('\n') + '\n')
}
