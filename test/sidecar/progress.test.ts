/**
 * Progress reports (SPEC §10.2) from real sidecars with real runtimes on RabbitMQ to a real HTTP
 * server standing in for the gateway: fields and indexes, order per envelope, and that a slow,
 * failing or absent gateway never delays or fails processing.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import t from 'tap'
import { Registry } from 'prom-client'
import { envelope, json, rabbitSuite, rand } from '../support/actor-harness.js'
import { freePort } from '../support/free-port.js'
import { SidecarMetrics } from '../../sidecar/metrics.js'
import { ProgressReporter, progressReport, publisherIndex, type ProgressReport } from '../../sidecar/progress-reporter.js'

interface Received {
  id: string
  body: ProgressReport
  via: 'single' | 'batch'
}

interface SinkOptions {
  /** Answer for one report of `POST /envelopes/{id}/progress`. */
  respond?: (r: Received, res: ServerResponse) => void
  /** Serve our batch endpoint `POST /envelopes/progress` (else 404 there, as upstream's gateway). */
  batch?: (rs: Received[], res: ServerResponse) => void
}

const okBatch = (rs: Received[], res: ServerResponse): void => void res.end(JSON.stringify({ results: rs.map((r) => ({ id: r.id, code: 200, status: 'ok' })) }))

/** An HTTP server standing in for the gateway, recording every report it gets (singly or in batches). */
async function sink(o: SinkOptions | ((r: Received, res: ServerResponse) => void) = {}): Promise<{ url: string; reports: Received[]; batches: Received[][]; server: Server; close(): Promise<void> }> {
  const opts: SinkOptions = typeof o === 'function' ? { respond: o } : o
  const respond = opts.respond ?? ((_r, res) => res.end('{}'))
  const reports: Received[] = []
  const batches: Received[][] = []
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const m = /^\/envelopes\/([^/]+)\/progress$/.exec(req.url ?? '')
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const body = () => JSON.parse(Buffer.concat(chunks).toString('utf8'))
      if (req.method === 'POST' && req.url === '/envelopes/progress' && opts.batch) {
        const rs = (body().reports as Array<ProgressReport & { id: string }>).map(({ id, ...b }) => ({ id, body: b, via: 'batch' as const }))
        reports.push(...rs)
        batches.push(rs)
        opts.batch(rs, res)
        return
      }
      if (req.method !== 'POST' || !m) {
        res.statusCode = 404
        res.end()
        return
      }
      const r = { id: decodeURIComponent(m[1] as string), body: body() as ProgressReport, via: 'single' as const }
      reports.push(r)
      respond(r, res)
    })
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}`,
    reports,
    batches,
    server,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections()
        server.close(() => r())
      }),
  }
}

async function until(cond: () => boolean, timeoutMs = 20_000): Promise<void> {
  const end = Date.now() + timeoutMs
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time')
    await new Promise((r) => setTimeout(r, 20))
  }
}

async function metricValue(registry: Registry, name: string, labels: Record<string, string>): Promise<number> {
  const m = (await registry.getMetricsAsJSON()).find((x) => x.name === name)
  const vs = (m?.values ?? []).filter((x) => Object.entries(labels).every(([k, val]) => x.labels[k] === val))
  return vs.reduce((sum, v) => sum + Number(v.value), 0)
}

const suite = await rabbitSuite(t)
const { happy, errors, client } = suite

t.test('three actors: received, processing, completed per actor, with the index of the actor that did the work', async (t) => {
  const gw = await sink()
  t.teardown(gw.close)
  const id = rand()
  const names = [`pa-${id}`, `pb-${id}`, `pc-${id}`]
  for (const name of names) await suite.actor({ name, handler: 'echo', env: { ASYA_GATEWAY_URL: gw.url } })
  const envId = `env-${id}`
  await client.publish(names[0] as string, envelope(envId, names, { text: 'hi' }))
  const done = json(await happy.next(30_000))
  t.equal(done.id, envId)
  await until(() => gw.reports.length >= 9)
  const mine = gw.reports.filter((r) => r.id === envId).map((r) => r.body)
  t.equal(mine.length, 9, 'three reports per actor')
  for (let i = 0; i < names.length; i++) {
    const own = mine.filter((b) => b.current_actor_idx === i)
    t.same(
      own.map((b) => b.status),
      ['received', 'processing', 'completed'],
      `actor ${i}: in order`,
    )
    for (const b of own) t.same(b.actors, names, 'the route travels with every report')
    // The publisher (x-asya-from-actor): none for the first actor (the test published it), else the previous one.
    t.same(own.map((b) => b.from_actor_idx), i === 0 ? [undefined, undefined, undefined] : [i - 1, i - 1, i - 1], `actor ${i}: reports name the actor that published the envelope`)
    const completed = own[2] as ProgressReport
    t.match(completed.message, names[i] as string, 'message names the actor')
    t.type(completed.duration_ms, 'number', 'completed carries duration_ms')
    t.ok((completed.message_size_kb ?? 0) > 0, 'completed carries message_size_kb')
  }
  // SPEC §11 #16: upstream reported completed with the advanced index (100 % after actor 1 of 3).
  t.notOk(mine.some((b) => b.current_actor_idx >= names.length), 'no report points past the route')
})

t.test('reports for one envelope arrive in order while many envelopes are in flight', async (t) => {
  const gw = await sink((_r, res) => setTimeout(() => res.end('{}'), Math.random() * 15))
  t.teardown(gw.close)
  const name = `po-${rand()}`
  await suite.actor({ name, handler: 'echo', env: { ASYA_GATEWAY_URL: gw.url } })
  const n = 60
  for (let i = 0; i < n; i++) await client.publish(name, envelope(`o-${name}-${i}`, [name], { i }))
  for (let i = 0; i < n; i++) await (await happy.next(30_000)).ack()
  await until(() => new Set(gw.reports.filter((r) => r.body.status === 'completed').map((r) => r.id)).size >= n)
  const byId = new Map<string, string[]>()
  for (const r of gw.reports) byId.set(r.id, [...(byId.get(r.id) ?? []), r.body.status])
  t.equal(byId.size, n)
  // A delivery the window gave back before its runtime call is received again when redelivered:
  // repeats are fine, going back is not.
  const rank = { received: 0, processing: 1, completed: 2 } as Record<string, number>
  const wrong = [...byId.entries()].filter(([, s]) => !s.every((x, i) => i === 0 || (rank[x] as number) >= (rank[s[i - 1] as string] as number)) || [...new Set(s)].join(',') !== 'received,processing,completed')
  t.same(wrong, [], 'every envelope: received, processing, completed, never out of order')
})

t.test('batches (a gateway that takes them): one request in flight, carrying what queued meanwhile; every report arrives, in order', async (t) => {
  let inFlight = 0
  let maxInFlight = 0
  const gw = await sink({
    batch: (rs, res) => {
      maxInFlight = Math.max(maxInFlight, ++inFlight)
      setTimeout(() => {
        inFlight--
        okBatch(rs, res)
      }, 5 + Math.random() * 15)
    },
  })
  t.teardown(gw.close)
  const name = `pbt-${rand()}`
  const a = await suite.actor({ name, handler: 'echo', env: { ASYA_GATEWAY_URL: gw.url, ASYA_PROGRESS_BATCH: 'true' } })
  const n = 60
  for (let i = 0; i < n; i++) await client.publish(name, envelope(`b-${name}-${i}`, [name], { i }))
  for (let i = 0; i < n; i++) await (await happy.next(30_000)).ack()
  await until(() => new Set(gw.reports.filter((r) => r.body.status === 'completed').map((r) => r.id)).size >= n)
  t.equal(maxInFlight, 1, 'one batch in flight at a time')
  t.ok(gw.reports.every((r) => r.via === 'batch'), 'all in batches')
  t.ok(gw.batches.length < gw.reports.length, `${gw.reports.length} reports in ${gw.batches.length} requests`)
  const byId = new Map<string, string[]>()
  for (const r of gw.reports) byId.set(r.id, [...(byId.get(r.id) ?? []), r.body.status])
  t.equal(byId.size, n)
  const rank = { received: 0, processing: 1, completed: 2 } as Record<string, number>
  const wrong = [...byId.entries()].filter(([, s]) => !s.every((x, i) => i === 0 || (rank[x] as number) >= (rank[s[i - 1] as string] as number)) || [...new Set(s)].join(',') !== 'received,processing,completed')
  t.same(wrong, [], 'every envelope: received, processing, completed, never out of order')
  t.equal((a.sidecar.progress as ProgressReporter).sending, 'batch')
  await (a.sidecar.progress as ProgressReporter).idle()
  t.equal(await metricValue(a.sidecar.metrics.registry, 'asya_actor_progress_reports_total', { result: 'ok' }), gw.reports.length)
})

t.test('a failing handler: received and processing, no completed; the error still reaches error-end', async (t) => {
  const gw = await sink()
  t.teardown(gw.close)
  const name = `pf-${rand()}`
  await suite.actor({ name, handler: 'fail', env: { ASYA_GATEWAY_URL: gw.url } })
  await client.publish(name, envelope(`f-${name}`, [name], {}))
  t.equal(json(await errors.next(30_000)).id, `f-${name}`)
  await until(() => gw.reports.length >= 2)
  await new Promise((r) => setTimeout(r, 200))
  t.same(
    gw.reports.map((r) => r.body.status),
    ['received', 'processing'],
  )
})

t.test('a gateway that never answers does not delay processing; reports time out and are counted', async (t) => {
  const held: ServerResponse[] = []
  const gw = await sink((_r, res) => held.push(res))
  t.teardown(gw.close)
  const name = `ph-${rand()}`
  const a = await suite.actor({ name, handler: 'echo', env: { ASYA_GATEWAY_URL: gw.url, ASYA_PROGRESS_TIMEOUT: '300ms', ASYA_PROGRESS_MAX_PENDING: '20' } })
  const n = 50
  for (let i = 0; i < n; i++) await client.publish(name, envelope(`h-${name}-${i}`, [name], { i }))
  for (let i = 0; i < n; i++) await (await happy.next(30_000)).ack()
  t.ok(held.length > 0, `every envelope was processed while ${held.length} reports hung at the gateway unanswered`)
  const reporter = a.sidecar.progress as ProgressReporter
  t.ok(reporter.size <= 20 + 8, `bounded backlog (${reporter.size})`)
  const registry = a.sidecar.metrics.registry
  t.ok((await metricValue(registry, 'asya_actor_progress_reports_total', { result: 'dropped' })) > 0, 'overflow counted as dropped')
  await until(() => reporter.size === 0, 30_000)
  t.ok((await metricValue(registry, 'asya_actor_progress_reports_total', { result: 'failed' })) > 0, 'timed-out reports counted as failed')
})

t.test('no gateway listening: processing unaffected, failures counted', async (t) => {
  const port = await freePort()
  const name = `pd-${rand()}`
  const a = await suite.actor({ name, handler: 'echo', env: { ASYA_GATEWAY_URL: `http://127.0.0.1:${port}` } })
  for (let i = 0; i < 5; i++) await client.publish(name, envelope(`d-${name}-${i}`, [name], { i }))
  for (let i = 0; i < 5; i++) await (await happy.next(30_000)).ack()
  await until(() => (a.sidecar.progress as ProgressReporter).size === 0)
  t.equal(await metricValue(a.sidecar.metrics.registry, 'asya_actor_progress_reports_total', { result: 'failed', status: 'completed' }), 5)
})

t.test('end actors and actors without ASYA_GATEWAY_URL report no progress', async (t) => {
  const plain = await suite.actor({ name: `pn-${rand()}`, handler: 'echo' })
  t.equal(plain.sidecar.progress, undefined)
  const end = await suite.actor({ name: `pe-${rand()}`, handler: 'echo', env: { ASYA_IS_END_ACTOR: 'true', ASYA_GATEWAY_URL: 'http://127.0.0.1:9' } })
  t.equal(end.sidecar.progress, undefined)
})

t.test('the publisher named in a report: the last position of that actor before the reporter', async (t) => {
  t.equal(publisherIndex(['a', 'b', 'c'], 2, 'b'), 1)
  t.equal(publisherIndex(['a', 'b', 'a', 'c'], 3, 'a'), 2, 'an actor named twice: the nearer one')
  t.equal(publisherIndex(['a', 'b', 'c'], 2, 'a'), 0, 'an envelope-mode handler skipped b')
  t.equal(publisherIndex(['a', 'b', 'c'], 1, 'c'), undefined, 'not before the reporter: not named')
  t.equal(publisherIndex(['a', 'b'], 5, 'b'), 1, 'an index past the route')
  t.same(progressReport({ route: { actors: ['a', 'b'], current: 1 } }, 'received', { from: 'a' }).from_actor_idx, 0)
  t.notOk('from_actor_idx' in progressReport({ route: { actors: ['a', 'b'], current: 1 } }, 'received', { from: 'zz' }), 'an unknown publisher is left out')
})

t.test('reporter: 4xx is not retried, 5xx is retried once, order kept across the retry', async (t) => {
  let calls = 0
  const gw = await sink((r, res) => {
    calls++
    if (r.id === 'missing') res.statusCode = 404
    else if (r.body.status === 'received' && calls === 2) res.statusCode = 503
    res.end()
  })
  t.teardown(gw.close)
  const metrics = new SidecarMetrics('asya_actor', new Registry(), { defaultMetrics: false })
  const rep = new ProgressReporter({ gatewayUrl: gw.url, metrics, retryDelayMs: 10 })
  const env = { route: { actors: ['a', 'b'], current: 1 } }
  rep.report('missing', progressReport(env, 'received'))
  await rep.idle()
  rep.report('x', progressReport(env, 'received'))
  rep.report('x', progressReport(env, 'processing'))
  rep.report('x', progressReport(env, 'completed', { durationMs: 12.4, sizeBytes: 2048 }))
  await rep.idle()
  t.equal(gw.reports.filter((r) => r.id === 'missing').length, 1, '404 sent once')
  t.same(
    gw.reports.filter((r) => r.id === 'x').map((r) => r.body.status),
    ['received', 'received', 'processing', 'completed'],
    'the 503 was retried before the next report went out',
  )
  const last = gw.reports.at(-1)?.body
  t.same(last, { actors: ['a', 'b'], current_actor_idx: 1, status: 'completed', message: 'completed by b', duration_ms: 12, message_size_kb: 2 })
  t.equal(await metricValue(metrics.registry, 'asya_actor_progress_reports_total', { result: 'rejected' }), 1)
  t.equal(await metricValue(metrics.registry, 'asya_actor_progress_reports_total', { result: 'ok' }), 3)
})

t.test('reporter: a gateway without the batch endpoint (upstream) gets one report per request, nothing lost, in order', async (t) => {
  const gw = await sink()
  t.teardown(gw.close)
  const metrics = new SidecarMetrics('asya_actor', new Registry(), { defaultMetrics: false })
  const rep = new ProgressReporter({ gatewayUrl: gw.url, metrics })
  t.equal(rep.sending, 'batch', 'batches first')
  const env = { route: { actors: ['a', 'b'], current: 0 } }
  // The first three queue behind the probing batch (404 there), then go one by one.
  for (const s of ['received', 'processing', 'completed'] as const) rep.report('x', progressReport(env, s))
  rep.report('y', progressReport(env, 'received'))
  await rep.idle()
  t.equal(rep.sending, 'single')
  t.same(gw.reports.filter((r) => r.id === 'x').map((r) => `${r.via}:${r.body.status}`), ['single:received', 'single:processing', 'single:completed'], 'in order')
  t.same(gw.reports.filter((r) => r.id === 'y').map((r) => `${r.via}:${r.body.status}`), ['single:received'])
  t.equal(await metricValue(metrics.registry, 'asya_actor_progress_reports_total', { result: 'ok' }), 4)
})

t.test('reporter batches: 5xx retried once, per-report codes counted, 401 rejected without giving up batches', async (t) => {
  let calls = 0
  let deny = false
  const gw = await sink({
    batch: (rs, res) => {
      calls++
      if (deny) {
        res.statusCode = 401
        return void res.end('{}')
      }
      if (calls === 1) {
        res.statusCode = 503
        return void res.end()
      }
      res.end(JSON.stringify({ results: rs.map((r) => ({ id: r.id, code: r.id === 'missing' ? 404 : 200 })) }))
    },
  })
  t.teardown(gw.close)
  const metrics = new SidecarMetrics('asya_actor', new Registry(), { defaultMetrics: false })
  const rep = new ProgressReporter({ gatewayUrl: gw.url, metrics, retryDelayMs: 10 })
  const env = { route: { actors: ['a'], current: 0 } }
  rep.report('x', progressReport(env, 'received'))
  rep.report('missing', progressReport(env, 'received'))
  rep.report('x', progressReport(env, 'processing'))
  await rep.idle()
  t.same(gw.batches.map((b) => b.map((r) => `${r.id}:${r.body.status}`).join(' ')), ['x:received', 'x:received', 'missing:received x:processing'], 'the 503 batch was retried once; what queued meanwhile went in the next')
  t.equal(await metricValue(metrics.registry, 'asya_actor_progress_reports_total', { result: 'ok' }), 2)
  t.equal(await metricValue(metrics.registry, 'asya_actor_progress_reports_total', { result: 'rejected' }), 1)
  deny = true
  rep.report('x', progressReport(env, 'completed'))
  await rep.idle()
  t.equal(await metricValue(metrics.registry, 'asya_actor_progress_reports_total', { result: 'rejected' }), 2, '401: rejected')
  t.equal(rep.sending, 'batch', 'a refused token is no reason to stop batching')
})

t.test('reporter overflow: a retried message never displaces a later state of its envelope', async (t) => {
  const held: ServerResponse[] = []
  const gw = await sink((_r, res) => held.push(res))
  t.teardown(gw.close)
  const metrics = new SidecarMetrics('asya_actor', new Registry(), { defaultMetrics: false })
  const rep = new ProgressReporter({ gatewayUrl: gw.url, metrics, maxPending: 1, batch: false, timeoutMs: 10_000 })
  const env = { route: { actors: ['a'], current: 0 } }
  rep.report('e1', progressReport(env, 'received')) // in flight
  await until(() => held.length === 1)
  rep.report('e1', progressReport(env, 'completed')) // pending: full
  rep.report('e1', progressReport(env, 'received')) // redelivered: behind completed, dropped
  t.equal(await metricValue(metrics.registry, 'asya_actor_progress_reports_total', { result: 'dropped' }), 1)
  const release = setInterval(() => held.shift()?.end('{}'), 5)
  t.teardown(() => clearInterval(release))
  await rep.idle()
  t.same(gw.reports.map((r) => r.body.status), ['received', 'completed'])
})

t.test('reporter overflow: the newest unsent report of an envelope is replaced, others dropped', async (t) => {
  const held: ServerResponse[] = []
  const gw = await sink((_r, res) => held.push(res))
  t.teardown(gw.close)
  const metrics = new SidecarMetrics('asya_actor', new Registry(), { defaultMetrics: false })
  const rep = new ProgressReporter({ gatewayUrl: gw.url, metrics, maxPending: 2, concurrency: 1, timeoutMs: 10_000 })
  const env = { route: { actors: ['a'], current: 0 } }
  rep.report('e1', progressReport(env, 'received')) // in flight
  await until(() => held.length === 1)
  rep.report('e1', progressReport(env, 'processing')) // pending 1
  rep.report('e2', progressReport(env, 'received')) // pending 2
  rep.report('e2', progressReport(env, 'completed')) // full: replaces e2's received
  rep.report('e3', progressReport(env, 'received')) // full, nothing of e3 queued: dropped
  t.equal(await metricValue(metrics.registry, 'asya_actor_progress_reports_total', { result: 'dropped' }), 2)
  t.equal(await metricValue(metrics.registry, 'asya_actor_progress_reports_pending', {}), 2)
  const release = setInterval(() => held.shift()?.end('{}'), 5)
  t.teardown(() => clearInterval(release))
  await rep.idle()
  t.same(
    gw.reports.map((r) => `${r.id}:${r.body.status}`).sort(),
    ['e1:processing', 'e1:received', 'e2:completed'],
  )
})
