/**
 * End actors (SPEC §10.3) on a real RabbitMQ broker, a real S3-compatible server (fauxqs) and a
 * real HTTP server in the gateway's place: every finished envelope becomes exactly one object and
 * one final report, the input is acked only after both, outages are retried, and what cannot
 * succeed is dead-lettered with its reason, never reported as success.
 */
import { GetObjectCommand } from '@aws-sdk/client-s3'
import { connect, createServer, type AddressInfo } from 'node:net'
import t, { type Test } from 'tap'
import { createLogger } from '../../src/logger.js'
import type { Transport } from '../../src/transport/transport.js'
import { HEADER } from '../../src/names.js'
import { readSidecarConfig } from '../../sidecar/config.js'
import { Sidecar } from '../../sidecar/sidecar.js'
import { rabbitWorld, rand, startActor, type TestActor, type World } from '../support/actor-harness.js'
import { rabbitTransport } from '../support/rabbitmq.js'
import { startRecordingGateway, type RecordingGateway } from '../support/recording-gateway.js'
import { startS3Server } from '../support/s3-server.js'
import { Inbox } from '../transport/conformance.js'
import { callTool, get, startGateway } from '../gateway/support.js'

const s3 = await startS3Server()
t.teardown(() => s3.stop())

interface EndWorld {
  world: World
  bucket: string
  gateway: RecordingGateway
  client: Transport
  happyDlq: Inbox
  errorDlq: Inbox
  start(which: 'happy' | 'error', env?: Record<string, string>): Promise<Sidecar>
  objects(prefix?: string): Promise<string[]>
  object(key: string): Promise<Record<string, any>>
  send(which: 'happy' | 'error', env: Record<string, unknown> | string): Promise<void>
}

async function endWorld(t: Test): Promise<EndWorld> {
  const world = rabbitWorld()
  const bucket = `results-${rand()}`
  await s3.createBucket(bucket)
  const gateway = await startRecordingGateway()
  const client = rabbitTransport({ exchange: world.exchange })
  await client.connect()
  const sidecars: Sidecar[] = []
  const transports: Transport[] = [client]
  const happyDlq = new Inbox()
  const errorDlq = new Inbox()
  for (const a of [world.happyEnd, world.errorEnd]) await client.ensureQueue(a)
  await client.consume(`${world.happyEnd}-dlq`, happyDlq.push, { prefetch: 50 })
  await client.consume(`${world.errorEnd}-dlq`, errorDlq.push, { prefetch: 50 })
  t.teardown(async () => {
    for (const s of sidecars) await s.stop().catch(() => undefined)
    for (const q of [world.happyEnd, world.errorEnd]) {
      await client.deleteQueue(q).catch(() => undefined)
      await client.deleteQueue(`${q}-dlq`).catch(() => undefined)
    }
    for (const tr of transports) await tr.close().catch(() => undefined)
    await gateway.close()
  })
  return {
    world,
    bucket,
    gateway,
    client,
    happyDlq,
    errorDlq,
    start: async (which, env = {}) => {
      const transport = rabbitTransport({ exchange: world.exchange })
      transports.push(transport)
      const config = readSidecarConfig({
        ...world.env,
        ...s3.env(bucket),
        ASYA_ACTOR_NAME: which === 'happy' ? world.happyEnd : world.errorEnd,
        ASYA_IS_END_ACTOR: 'true',
        ASYA_RUNTIME_ENABLED: 'false',
        ASYA_GATEWAY_URL: gateway.url,
        ASYA_SHUTDOWN_TIMEOUT: '20s',
        ...env,
      })
      const logger = createLogger('asya-sidecar', { level: process.env.ASYA_TEST_LOG_LEVEL ?? 'silent' })
      const sidecar = new Sidecar({ config, transport, logger, serveHttp: false })
      sidecars.push(sidecar)
      await sidecar.start()
      return sidecar
    },
    objects: (prefix) => s3.list(bucket, prefix),
    object: async (key) => {
      const res = await s3.client.send(new GetObjectCommand({ Bucket: bucket, Key: key }))
      return JSON.parse(await (res.Body as { transformToString(): Promise<string> }).transformToString()) as Record<string, any>
    },
    send: (which, env) => client.publish(which === 'happy' ? world.happyEnd : world.errorEnd, Buffer.from(typeof env === 'string' ? env : JSON.stringify(env))),
  }
}

async function until<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
  const end = Date.now() + timeoutMs
  for (;;) {
    const v = await fn()
    if (v !== undefined) return v
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

const KEY = /^happy-asya\/\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z\/([^/]+)\/([^/]+)\.json$/

t.test('happy-end without a runtime: fan-out children each persisted and reported under their own id, then acked', async (t) => {
  const w = await endWorld(t)
  const sidecar = await w.start('happy')
  t.ok(sidecar.isReady(), 'ready on the broker alone: no runtime socket to wait for')
  t.same(sidecar.readiness().checks, { broker: true, runtime: true, consuming: true })
  const id = `job-${rand()}`
  const route = { actors: ['prep', 'split'], current: 2 }
  const sent = [
    { id, route, payload: { part: 0 }, headers: { trace_id: 't-1' } },
    { id: `${id}-1`, parent_id: id, route, payload: { part: 1 } },
    { id: `${id}-2`, parent_id: id, route, payload: { part: 2 } },
  ]
  for (const e of sent) await w.send('happy', e)
  const keys = await until('3 objects', async () => {
    const k = await w.objects('happy-asya/')
    return k.length >= 3 ? k : undefined
  })
  t.equal(keys.length, 3)
  const byId = new Map(keys.map((k) => [KEY.exec(k)?.[2], k]))
  for (const e of sent) {
    const key = byId.get(e.id)
    t.ok(key, `object for ${e.id}`)
    t.equal(KEY.exec(key ?? '')?.[1], 'split', 'last_actor is the actor that produced it')
    t.same(await w.object(key ?? ''), e, 'body = the whole envelope')
  }
  const reports = await w.gateway.waitFor(3)
  t.same(
    reports.map((r) => r.url).sort(),
    sent.map((e) => `/envelopes/${e.id}/final`).sort(),
  )
  const first = reports.find((r) => r.url === `/envelopes/${id}/final`)?.body
  t.same(first, { id, status: 'succeeded', result: { part: 0 }, metadata: { s3_uri: `s3://${w.bucket}/${byId.get(id) ?? ''}` } }, 'upstream body; metadata.s3_uri names the object')
  await until('acked', async () => ((await w.client.messageCount(w.world.happyEnd)) === 0 ? true : undefined))
  const metrics = await sidecar.metrics.registry.metrics()
  t.match(metrics, new RegExp(`asya_actor_end_persisted_total\\{queue="asya-${w.world.happyEnd}"\\} 3`))
  t.match(metrics, new RegExp(`asya_actor_end_reports_total\\{queue="asya-${w.world.happyEnd}",result="ok"\\} 3`))
  t.match(metrics, /asya_actor_end_persist_duration_seconds_count\{[^}]*\} 3/)
  t.match(metrics, /asya_actor_end_report_duration_seconds_count\{[^}]*\} 3/)
})

t.test('error-end: object under error-asya/ named by the failing actor, upstream failed-report body', async (t) => {
  const w = await endWorld(t)
  await w.start('error')
  const id = `err-${rand()}`
  const errEnv = {
    id,
    route: { actors: ['prep', 'translate', 'judge'], current: 1 },
    headers: { trace_id: 't-9' },
    payload: {
      error: 'processing_error',
      details: { message: 'boom', type: 'ValueError', traceback: 'tb', reason: 'processing_error', actor: 'translate', attempts: 1 },
      original_payload: { text: 'hi' },
    },
  }
  await w.send('error', errEnv)
  const [report] = await w.gateway.waitFor(1)
  t.same(report?.body, {
    id,
    status: 'failed',
    error: 'processing_error',
    error_details: errEnv.payload.details,
    actors: ['prep', 'translate', 'judge'],
    current_actor_idx: 1,
    current_actor_name: 'translate',
    metadata: { s3_uri: `s3://${w.bucket}/${(await w.objects())[0] ?? ''}` },
  })
  const keys = await w.objects()
  t.equal(keys.length, 1)
  t.match(keys[0], new RegExp(`^error-asya/\\d{4}-\\d\\d-\\d\\dT[\\d:.]+Z/translate/${id}\\.json$`))
  t.same(await w.object(keys[0] ?? ''), errEnv)
})

t.test('malformed input is dead-lettered: no object, no report, nothing re-sent to its own queue', async (t) => {
  const w = await endWorld(t)
  const sidecar = await w.start('error')
  await w.send('error', 'not json at all')
  await w.send('error', { id: 'x', route: { actors: [], current: 0 }, payload: 1 })
  const d1 = await w.errorDlq.next()
  const d2 = await w.errorDlq.next()
  t.same([d1.headers[HEADER.reason], d2.headers[HEADER.reason]].sort(), ['parse_error', 'validation_error'])
  await d1.ack()
  await d2.ack()
  t.equal(w.gateway.requests.length, 0, 'nothing reported')
  t.same(await w.objects(), [], 'nothing persisted')
  t.equal(await w.client.messageCount(w.world.errorEnd), 0)
  t.match(await sidecar.metrics.registry.metrics(), /dead_lettered_total\{[^}]*reason="parse_error"\} 1/)
})

t.test('S3 off the network for 3 s: not acked, retried with backoff, then exactly one object and one report', async (t) => {
  const w = await endWorld(t)
  const sidecar = await w.start('happy')
  await s3.proxy.cut()
  const id = `outage-${rand()}`
  try {
    await w.send('happy', { id, route: { actors: ['a'], current: 1 }, payload: { n: 1 } })
    await until('a persist failure', async () => ((await sidecar.metrics.registry.metrics()).match(/end_persist_failures_total\{[^}]*\} [1-9]/) ? true : undefined))
    t.equal(w.gateway.requests.length, 0, 'nothing reported before it is persisted')
    await new Promise((r) => setTimeout(r, 3000))
  } finally {
    await s3.proxy.restore()
  }
  const [report] = await w.gateway.waitFor(1, undefined, 40_000)
  t.equal(report?.body.status, 'succeeded')
  const keys = await w.objects()
  t.equal(keys.length, 1, 'exactly one object')
  t.match(keys[0], new RegExp(`/a/${id}\\.json$`))
  await until('acked', async () => ((await w.client.messageCount(w.world.happyEnd)) === 0 ? true : undefined))
  t.equal(w.happyDlq.seen.length, 0, 'nothing dead-lettered')
  t.match(await sidecar.metrics.registry.metrics(), /retries_total\{[^}]*reason="persist_failed"\} [1-9]/)
})

t.test('S3 off the network past the delivery limit → DLQ persist_failed with the whole envelope; nothing persisted or reported; replayed once S3 is back → one object', async (t) => {
  const w = await endWorld(t)
  const sidecar = await w.start('happy', { ASYA_DELIVERY_LIMIT: '2' })
  const id = `persist-dlq-${rand()}`
  const env = { id, route: { actors: ['a'], current: 1 }, payload: { big: 'x'.repeat(1000) } }
  await s3.proxy.cut()
  let dl!: Awaited<ReturnType<Inbox['next']>>
  try {
    await w.send('happy', env)
    dl = await w.happyDlq.next(60_000)
  } finally {
    await s3.proxy.restore()
  }
  t.equal(dl.headers[HEADER.reason], 'persist_failed')
  t.same(JSON.parse(dl.body.toString()), env, 'the DLQ holds the envelope as it came: nothing lost')
  t.equal(w.gateway.requests.length, 0, 'nothing reported as success')
  t.same(await w.objects(), [], 'nothing persisted')
  t.match(await sidecar.metrics.registry.metrics(), /dead_lettered_total\{[^}]*reason="persist_failed"\} 1/)
  // Replay (what `asya dlq replay` does): the envelope finishes once storage is back.
  await w.send('happy', JSON.parse(dl.body.toString()) as Record<string, unknown>)
  await dl.ack()
  const [report] = await w.gateway.waitFor(1, undefined, 40_000)
  t.equal(report?.body.id, id)
  t.equal((await w.objects()).length, 1, 'exactly one object after the replay')
})

t.test('a write that lands although the client sees a reset: the retry writes the same key, one object per id', async (t) => {
  // A proxy that forwards requests to S3 but resets the connection instead of answering while
  // `swallow` > 0: the PUT is stored, the sidecar sees an error (every SDK attempt), and retries.
  let swallow = 0
  const sockets = new Set<import('node:net').Socket>()
  const proxy = createServer((client) => {
    const upstream = connect(s3.server.port, '127.0.0.1')
    sockets.add(client).add(upstream)
    const drop = (): void => {
      client.destroy()
      upstream.destroy()
    }
    client.on('error', drop).on('close', drop)
    upstream.on('error', drop).on('close', drop)
    client.pipe(upstream)
    upstream.on('data', (chunk: Buffer) => {
      if (swallow > 0 && /^HTTP\/1\.1 200/.test(chunk.toString('latin1', 0, 12))) {
        swallow--
        client.resetAndDestroy()
        upstream.destroy()
        return
      }
      client.write(chunk)
    })
  })
  await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', () => r()))
  t.teardown(async () => {
    for (const so of sockets) so.destroy()
    await new Promise<void>((r) => proxy.close(() => r()))
  })
  const w = await endWorld(t)
  const sidecar = await w.start('happy', { ASYA_S3_ENDPOINT: `http://127.0.0.1:${(proxy.address() as AddressInfo).port}` })
  swallow = 3 // the SDK's own attempts of the first delivery
  const id = `reset-${rand()}`
  await w.send('happy', { id, route: { actors: ['a'], current: 1 }, payload: 1 })
  const [report] = await w.gateway.waitFor(1, undefined, 40_000)
  t.equal(report?.body.status, 'succeeded')
  t.equal(swallow, 0, 'every answer of the first attempt was lost')
  t.match(await sidecar.metrics.registry.metrics(), /retries_total\{[^}]*reason="persist_failed"\} [1-9]/, 'the sidecar retried the write')
  const keys = await w.objects()
  t.equal(keys.length, 1, `one object, not one per attempt (${keys.join(', ')})`)
})

t.test('a key header that does not name this envelope is ignored: persisted as usual, nothing written elsewhere', async (t) => {
  const w = await endWorld(t)
  await w.start('happy')
  const id = `crafted-${rand()}`
  const other = `happy-asya/2026-01-01T00:00:00.000000Z/a/someone-else.json`
  await w.client.publish(w.world.happyEnd, Buffer.from(JSON.stringify({ id, route: { actors: ['a'], current: 1 }, payload: 1 })), { headers: { [HEADER.endKey]: other, [HEADER.endPendingKey]: other } })
  const [report] = await w.gateway.waitFor(1, undefined, 30_000)
  t.match((report?.body.metadata as { s3_uri?: string } | undefined)?.s3_uri, new RegExp(`/a/${id}\\.json$`))
  const keys = await w.objects()
  t.equal(keys.length, 1)
  t.match(keys[0], KEY)
  t.notOk(keys.includes(other), 'nothing written over another envelope')
})

t.test('gateway answers 503 twice: retried, the object written once (key carried to the retry), then acked', async (t) => {
  const w = await endWorld(t)
  w.gateway.respond([503, 503])
  await w.start('happy')
  const id = `gw-${rand()}`
  await w.send('happy', { id, route: { actors: ['a', 'b'], current: 2 }, payload: 'done' })
  const reports = await w.gateway.waitFor(3, undefined, 30_000)
  t.same(reports.map((r) => r.status), [503, 503, 200])
  t.equal((await w.objects()).length, 1, 'one object for three attempts')
  await until('acked', async () => ((await w.client.messageCount(w.world.happyEnd)) === 0 ? true : undefined))
})

t.test('gateway down past the delivery limit → DLQ report_failed; a 400 → DLQ report_rejected; 404/409 settle', async (t) => {
  const w = await endWorld(t)
  w.gateway.respond([], 500)
  await w.start('happy', { ASYA_DELIVERY_LIMIT: '2' })
  const id = `down-${rand()}`
  await w.send('happy', { id, route: { actors: ['a'], current: 1 }, payload: 1 })
  const dl = await w.happyDlq.next(30_000)
  t.equal(dl.headers[HEADER.reason], 'report_failed')
  t.equal(JSON.parse(dl.body.toString()).id, id, 'the DLQ keeps the envelope')
  await dl.ack()
  t.equal(w.gateway.requests.length, 2, 'one report per attempt, then stop')

  w.gateway.respond([400, 404, 409])
  const ids = [`bad-${rand()}`, `unknown-${rand()}`, `final-${rand()}`]
  for (const i of ids) {
    await w.send('happy', { id: i, route: { actors: ['a'], current: 1 }, payload: 1 })
    await w.gateway.waitFor(1, (r) => r.url.includes(i))
  }
  const rej = await w.happyDlq.next(30_000)
  t.equal(rej.headers[HEADER.reason], 'report_rejected')
  t.equal(JSON.parse(rej.body.toString()).id, ids[0])
  await rej.ack()
  await until('acked', async () => ((await w.client.messageCount(w.world.happyEnd)) === 0 ? true : undefined))
  t.equal(w.happyDlq.seen.length, 2, '404 (not tracked by the gateway) and 409 (already final) are settled, not dead-lettered')
})

t.test('with a runtime: the end handler runs first; its non-empty result is what is persisted and reported', async (t) => {
  const w = await endWorld(t)
  const transport = rabbitTransport({ exchange: w.world.exchange })
  await transport.connect()
  const actor = await startActor({
    name: w.world.happyEnd,
    handler: 'end_summary',
    world: w.world,
    transport,
    env: { ...s3.env(w.bucket), ASYA_IS_END_ACTOR: 'true', ASYA_GATEWAY_URL: w.gateway.url },
  })
  t.teardown(() => actor.stop().then(() => transport.close()))
  const a = `sum-${rand()}`
  const b = `plain-${rand()}`
  await w.send('happy', { id: a, route: { actors: ['x'], current: 1 }, payload: { summarize: true, text: 'hello' } })
  await w.send('happy', { id: b, route: { actors: ['x'], current: 1 }, payload: { text: 'kept' } })
  const reports = await w.gateway.waitFor(2)
  t.same(reports.find((r) => r.url.includes(a))?.body.result, { summary: '2 fields' }, 'handler result reported')
  t.same(reports.find((r) => r.url.includes(b))?.body.result, { text: 'kept' }, 'empty handler result: the envelope as received')
  const keys = await w.objects()
  t.equal(keys.length, 2)
  const objA = await w.object(keys.find((k) => k.includes(a)) ?? '')
  t.same(objA.payload, { summary: '2 fields' })
  t.equal(objA.id, a)
})

t.test('through the real gateway: tools/call → actor → happy-end / error-end → final status and one object each', async (t) => {
  const w = await endWorld(t)
  const actor = `echo-${rand()}`
  const failing = `fail-${rand()}`
  const gwTransport = rabbitTransport({ exchange: w.world.exchange })
  await gwTransport.connect()
  t.teardown(() => gwTransport.close())
  const tools = `
defaults: { progress: true, timeout: 60 }
tools:
  - name: ok
    description: one echo actor
    parameters: { text: { type: string, required: true } }
    route: [${actor}]
  - name: bad
    description: one failing actor
    parameters: { text: { type: string, required: true } }
    route: [${failing}]
`
  const gw = await startGateway(t, { transport: gwTransport, tools })
  const actorTransports: Transport[] = []
  const actors: TestActor[] = []
  for (const [name, handler] of [
    [actor, 'echo'],
    [failing, 'fail'],
  ] as const) {
    const tr = rabbitTransport({ exchange: w.world.exchange })
    await tr.connect()
    actorTransports.push(tr)
    actors.push(await startActor({ name, handler, world: w.world, transport: tr }))
  }
  t.teardown(async () => {
    for (const a of actors) await a.stop()
    for (const tr of actorTransports) {
      await tr.deleteQueue(actor).catch(() => undefined)
      await tr.deleteQueue(failing).catch(() => undefined)
      await tr.close()
    }
  })
  // Both end actors report to the real gateway.
  await w.start('happy', { ASYA_GATEWAY_URL: gw.url })
  await w.start('error', { ASYA_GATEWAY_URL: gw.url })

  const okId = (await callTool(gw.url, 'ok', { text: 'hello' })).data.envelope_id as string
  const badId = (await callTool(gw.url, 'bad', { text: 'boom' })).data.envelope_id as string
  const final = async (id: string) => until(`${id} final`, async () => {
    const r = await get(`${gw.url}/envelopes/${id}`)
    return r.json?.status === 'succeeded' || r.json?.status === 'failed' ? r.json : undefined
  })
  const ok = await final(okId)
  t.equal(ok.status, 'succeeded')
  t.same(ok.result, { text: 'hello' }, 'the result the end actor reported')
  const bad = await final(badId)
  t.equal(bad.status, 'failed')
  t.match(JSON.stringify(bad), /processing_error/)
  const keys = await w.objects()
  t.equal(keys.filter((k) => k.startsWith('happy-asya/') && k.endsWith(`/${actor}/${okId}.json`)).length, 1, 'one happy-end object, named by the actor')
  t.equal(keys.filter((k) => k.startsWith('error-asya/') && k.endsWith(`/${failing}/${badId}.json`)).length, 1, 'one error-end object, named by the failing actor')
  t.equal(keys.length, 2)
  const okObj = await w.object(keys.find((k) => k.includes(okId)) ?? '')
  t.same(okObj.payload, { text: 'hello' })
  t.same(okObj.route.actors, [actor], 'the route the gateway created')
})
