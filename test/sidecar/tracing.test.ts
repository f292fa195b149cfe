/**
 * Tracing end to end on real parts (issue 19): an HTTP caller with a traceparent → gateway → 3
 * actors (real Python runtimes + sidecars on RabbitMQ, fan-out at the second) → end actors, every
 * component exporting to a real OTLP/HTTP receiver. One trace; parent/child links; the handler
 * sees its runtime call's trace context; retries as separate spans; error-end carries the reason;
 * an envelope published without a traceparent starts a trace at its first actor.
 */
import t from 'tap'
import { envelope, rabbitRig, rabbitWorld, rand } from '../support/actor-harness.js'
import { startOtlpReceiver, type ReceivedSpan } from '../support/otlp-receiver.js'
import { get, post, startGateway, until } from '../gateway/support.js'

// The batch span processor reads its schedule from process.env: export quickly in a test.
process.env.OTEL_BSP_SCHEDULE_DELAY = '50'

const CALLER_TRACE = '4bf92f3577b34da6a3ce929d0e0e4736'
const CALLER_SPAN = '00f067aa0ba902b7'

t.test('one trace from the caller through every actor', async (t) => {
  const rx = await startOtlpReceiver()
  t.teardown(() => rx.close())
  const otel = { OTEL_EXPORTER_OTLP_ENDPOINT: rx.url }
  const world = rabbitWorld()
  const id = rand()
  const [a1, afan, a3, afail] = ['a1', 'fan', 'a3', 'fail'].map((n) => `tr-${n}-${id}`) as [string, string, string, string]
  const rig = rabbitRig(t, world, [a1, afan, a3, afail])
  const tools = `
tools:
  - { name: fan, route: [${a1}, ${afan}, ${a3}], timeout: 120 }
  - { name: failing, route: [${a1}, ${afail}, ${a3}], timeout: 120 }
`
  const gw = await startGateway(t, { transport: await rig.transport(), tools, env: otel })
  const start = async (name: string, handler: string, extra: Record<string, string> = {}) => {
    await rig.start({ name, handler, env: { ASYA_GATEWAY_URL: gw.url, ...otel, ...extra } })
  }
  await Promise.all([
    start(a1, 'trace_tag'),
    start(afan, 'fanout3'),
    start(a3, 'trace_tag'),
    start(afail, 'fail', { ASYA_MAX_RETRIES: '1', ASYA_RETRY_BACKOFF: '50ms' }),
    start(world.happyEnd, 'echo', { ASYA_IS_END_ACTOR: 'true' }),
    start(world.errorEnd, 'echo', { ASYA_IS_END_ACTOR: 'true' }),
  ])
  const final = async (envelopeId: string, want: string) => {
    await until(async () => (await get(`${gw.url}/envelopes/${envelopeId}`)).json?.status === want, 60_000, `envelope ${envelopeId} ${want}`)
  }
  const call = async (name: string) => {
    const r = await post(`${gw.url}/tools/call`, { name, arguments: { text: 'hi' } }, { traceparent: `00-${CALLER_TRACE}-${CALLER_SPAN}-01` })
    return JSON.parse(r.json.content[0].text).envelope_id as string
  }
  const one = (spans: ReceivedSpan[], pred: (s: ReceivedSpan) => boolean, what: string): ReceivedSpan => {
    const found = spans.filter(pred)
    if (found.length !== 1) throw new Error(`expected one ${what}, got ${found.length}: ${spans.map((s) => `${s.service}/${s.name}`).join(', ')}`)
    return found[0] as ReceivedSpan
  }

  await t.test('fan-out at the second actor: one trace, parents right, every hop present', async (t) => {
    const eid = await call('fan')
    await final(eid, 'succeeded')
    const isOurs = (s: ReceivedSpan) => s.traceId === CALLER_TRACE
    // gateway 1 + a1 1 + fan 1 + a3 3 + happy-end 3 hop spans
    await rx.waitFor(9, (s) => isOurs(s) && (s.name.endsWith(' process') || s.name.startsWith('tools/call')))
    const spans = rx.spans.filter(isOurs)
    t.ok(spans.every((s) => s.traceId === CALLER_TRACE), 'the caller trace is continued everywhere')
    const gwSpan = one(spans, (s) => s.name === 'tools/call fan', 'gateway span')
    t.equal(gwSpan.parentSpanId, CALLER_SPAN, 'gateway continues the caller span')
    t.equal(gwSpan.service, 'asya-gateway')
    t.equal(gwSpan.attributes['messaging.message.id'], eid)
    const h1 = one(spans, (s) => s.name === `${a1} process`, 'a1 hop')
    t.equal(h1.parentSpanId, gwSpan.spanId, 'first actor under the gateway span')
    t.equal(h1.kind, 5, 'consumer')
    t.equal(h1.attributes['messaging.system'], 'rabbitmq')
    t.equal(h1.attributes['messaging.destination.name'], `asya-${a1}`)
    t.equal(h1.attributes['messaging.message.id'], eid)
    t.equal(h1.attributes['asya.actor'], a1)
    t.equal(h1.attributes['asya.route.current'], 0)
    t.equal(h1.attributes['asya.attempt'], 1)
    t.equal(h1.attributes['asya.outcome'], 'route')
    const hf = one(spans, (s) => s.name === `${afan} process`, 'fan hop')
    t.equal(hf.parentSpanId, h1.spanId)
    const h3 = spans.filter((s) => s.name === `${a3} process`)
    t.equal(h3.length, 3, 'each fan-out child has its own hop at the third actor')
    t.ok(h3.every((s) => s.parentSpanId === hf.spanId), 'children under the fan-out hop')
    const ends = spans.filter((s) => s.name === `${world.happyEnd} process`)
    t.equal(ends.length, 3)
    t.same(new Set(ends.map((s) => s.parentSpanId)), new Set(h3.map((s) => s.spanId)), 'each result under the hop that produced it')
    for (const h of [h1, hf, ...h3]) {
      const kids = spans.filter((s) => s.parentSpanId === h.spanId)
      t.ok(kids.some((s) => s.name === 'runtime call'), `${h.name}: runtime call child`)
      t.ok(kids.some((s) => s.name.startsWith('publish ') && s.kind === 4), `${h.name}: publish child`)
      t.ok(kids.some((s) => s.name === 'queue wait') || h === h1, `${h.name}: queue wait child`)
    }
    t.ok(spans.some((s) => s.parentSpanId === h1.spanId && s.name === 'queue wait'), 'first hop: queue wait since the gateway published')
  })

  await t.test('the handler sees its runtime call span as current_trace()', async (t) => {
    const res = await post(`${gw.url}/tools/call`, { name: 'fan', arguments: { text: 'x' } })
    const eid = JSON.parse(res.json.content[0].text).envelope_id as string
    await final(eid, 'succeeded')
    const rec = (await get(`${gw.url}/envelopes/${eid}`)).json
    const results = (Array.isArray(rec.result) ? rec.result : [rec.result]) as Array<{ traces?: string[] }>
    const traces = results.flatMap((r) => r?.traces ?? [])
    t.ok(traces.length >= 1, `results carry the traces the handler saw: ${JSON.stringify(rec.result)}`)
    await rx.waitFor(1, (s) => s.name === 'runtime call' && traces.some((tp) => tp?.includes(s.spanId)))
    for (const tp of traces) {
      t.match(tp, /^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/)
      const span = rx.spans.find((s) => tp.includes(`-${s.spanId}-`))
      t.equal(span?.name, 'runtime call', 'the traceparent names the runtime call span')
    }
  })

  await t.test('a retried then failing actor: one span per attempt, error-end span carries the reason', async (t) => {
    const eid = await call('failing')
    await final(eid, 'failed')
    const mine = (s: ReceivedSpan) => s.traceId === CALLER_TRACE && s.attributes['messaging.message.id'] === eid
    const attempts = await rx.waitFor(2, (s) => mine(s) && s.name === `${afail} process`)
    t.same(attempts.map((s) => s.attributes['asya.attempt']).sort(), [1, 2], 'two attempts, two spans')
    const h1 = one(rx.spans, (s) => mine(s) && s.name === `${a1} process`, 'a1 hop')
    t.ok(attempts.every((s) => s.parentSpanId === h1.spanId), 'both attempts under the same parent hop')
    const [first, second] = attempts.sort((a, b) => Number(a.attributes['asya.attempt']) - Number(b.attributes['asya.attempt'])) as [ReceivedSpan, ReceivedSpan]
    t.equal(first.attributes['asya.outcome'], 'retry')
    t.equal(first.status.code, 2)
    t.equal(second.attributes['asya.outcome'], 'error_end')
    t.equal(second.attributes['asya.error.reason'], 'processing_error')
    t.match(second.status.message, /processing_error: .*boom/)
    const errEnd = (await rx.waitFor(1, (s) => mine(s) && s.name === `${world.errorEnd} process`))[0] as ReceivedSpan
    t.equal(errEnd.parentSpanId, second.spanId, 'error-end continues the failing hop')
  })

  await t.test('an envelope published without a traceparent starts a new trace at its first actor', async (t) => {
    const eid = `untraced-${rand()}`
    await rig.first()?.publish(a1, envelope(eid, [a1, a3], { text: 'raw' }))
    const [h] = await rx.waitFor(1, (s) => s.name === `${a1} process` && s.attributes['messaging.message.id'] === eid)
    t.equal(h?.parentSpanId, '', 'a root span')
    t.not(h?.traceId, CALLER_TRACE)
    const next = await rx.waitFor(1, (s) => s.name === `${a3} process` && s.attributes['messaging.message.id'] === eid)
    t.equal(next[0]?.traceId, h?.traceId, 'the next hop continues the new trace')
    t.equal(next[0]?.parentSpanId, h?.spanId)
  })
})
