/**
 * End to end on SQS (fauxqs) and PostgreSQL: gateway → 3 actors (real runtimes + sidecars on the
 * SQS transport) → end actors → SSE: a final succeeded with the result, a failing handler, an
 * unroutable tool (no queue for its first actor → failed with the reason).
 */
import t from 'tap'
import { rand, sqsWorld, startActor, type TestActor } from '../support/actor-harness.js'
import { startSqsServer, SQS_TEST_CREDENTIALS } from '../support/sqs-server.js'
import { SqsTransport } from '../../src/transport/sqs-transport.js'
import type { Transport } from '../../src/transport/transport.js'
import { callTool, get, SseClient, startGateway, testDatabase } from './support.js'

t.test('gateway on SQS', async (t) => {
  const sqs = await startSqsServer()
  t.teardown(() => sqs.stop())
  const world = sqsWorld(sqs.endpoint, sqs.region)
  const id = rand()
  const [a1, a2, a3, afail] = ['a1', 'a2', 'a3', 'fail'].map((n) => `sqs-${n}-${id}`) as [string, string, string, string]
  const transports: Transport[] = []
  const transport = async (): Promise<Transport> => {
    const tr = new SqsTransport({ region: sqs.region, endpoint: sqs.endpoint, credentials: SQS_TEST_CREDENTIALS, waitTimeSeconds: 1 })
    await tr.connect()
    transports.push(tr)
    return tr
  }
  const actors: TestActor[] = []
  t.teardown(async () => {
    for (const a of actors) await a.stop().catch(() => undefined)
    for (const tr of transports) await tr.close().catch(() => undefined)
  })
  const tools = `
tools:
  - { name: pipe, route: [${a1}, ${a2}, ${a3}], progress: true, timeout: 120 }
  - { name: failing, route: [${a1}, ${afail}], progress: true, timeout: 120 }
  - { name: nowhere, route: [sqs-missing-${id}], progress: true }
`
  const gw = await startGateway(t, { databaseUrl: await testDatabase(t), transport: await transport(), tools })
  const start = async (name: string, handler: string, extra: Record<string, string> = {}) => {
    actors.push(await startActor({ name, handler, world, transport: await transport(), env: { ASYA_GATEWAY_URL: gw.url, ...extra } }))
  }
  for (const [n, h] of [[a1, 'tag'], [a2, 'tag'], [a3, 'tag'], [afail, 'fail']] as const) await start(n, h)
  await start(world.happyEnd, 'echo', { ASYA_IS_END_ACTOR: 'true' })
  await start(world.errorEnd, 'echo', { ASYA_IS_END_ACTOR: 'true' })

  t.test('succeeded with the result, each actor in order', async (t) => {
    const { data } = await callTool(gw.url, 'pipe', { text: 'sqs' })
    const sse = new SseClient(`${gw.url}${data.stream_url}`, 90_000)
    await sse.done
    const last = sse.updates.at(-1)
    t.equal(last.status, 'succeeded')
    t.same(last.result, { text: 'sqs', seen: [a1, a2, a3] })
    const steps = sse.updates.filter((x) => x.envelope_state).map((x) => `${x.current_actor_idx}:${x.envelope_state}`)
    t.same(steps, ['0:received', '0:processing', '0:completed', '1:received', '1:processing', '1:completed', '2:received', '2:processing', '2:completed'])
  })

  t.test('failing handler → failed with the error text', async (t) => {
    const { data } = await callTool(gw.url, 'failing', {})
    const sse = new SseClient(`${gw.url}${data.stream_url}`, 90_000)
    await sse.done
    t.equal(sse.updates.at(-1).status, 'failed')
    t.match(sse.updates.at(-1).error, /boom: handler failed/)
  })

  t.test('no queue for the first actor → failed with the reason', async (t) => {
    const r = await callTool(gw.url, 'nowhere', {})
    t.equal(r.body.isError, true)
    const rec = (await get(`${gw.url}/envelopes/${r.data.envelope_id}`)).json
    t.equal(rec.status, 'failed')
    t.match(rec.error, /no queue asya-sqs-missing-\S+ \(SQS\)/)
  })
})
