/**
 * Real gateway processes (the entry point, PostgreSQL, RabbitMQ): two replicas (report to one,
 * stream from the other), a deadline that holds across a gateway restart, graceful shutdown.
 */
import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { RABBITMQ_URL, rabbitTransport, testExchange } from '../support/rabbitmq.js'
import { callTool, get, post, sleep, spawnGateway, SseClient, testDatabase, until } from './support.js'

const tag = Math.random().toString(36).slice(2, 8)
const first = `gwp-${tag}`

t.test('gateway processes on one PostgreSQL database', async (t) => {
  const db = await testDatabase(t)
  const exchange = testExchange('asya-gw')
  const client = rabbitTransport({ exchange })
  await client.connect()
  await client.ensureQueue(first)
  t.teardown(async () => {
    await client.deleteQueue(first).catch(() => undefined)
    await client.close()
  })
  const dir = mkdtempSync(join(tmpdir(), 'asya-gwp-'))
  writeFileSync(
    join(dir, 'routes.yaml'),
    `tools:\n  - { name: slow, route: [${first}, other], progress: true, timeout: 600 }\n  - { name: short, route: [${first}], timeout: 3 }\n`,
  )
  const env = { ASYA_DATABASE_URL: db, ASYA_CONFIG_PATH: dir, ASYA_RABBITMQ_URL: RABBITMQ_URL, ASYA_RABBITMQ_EXCHANGE: exchange, ASYA_GATEWAY_SWEEP_INTERVAL: '200ms' }
  const [a, b] = await Promise.all([spawnGateway(t, env), spawnGateway(t, env)])

  t.test('report to one replica, stream from the other', async (t) => {
    const { data } = await callTool(a.url, 'slow', { q: 1 })
    const id = data.envelope_id
    t.equal(await client.messageCount(first).then((n) => n >= 1), true, 'first envelope in the queue')
    const sse = new SseClient(`${b.url}/envelopes/${id}/stream`)
    await sse.until((u) => u.length >= 1)
    await post(`${a.url}/envelopes/${id}/progress`, { actors: [first, 'other'], current_actor_idx: 0, status: 'received' })
    await post(`${a.url}/envelopes/${id}/progress`, { actors: [first, 'other'], current_actor_idx: 0, status: 'completed' })
    await sse.until((u) => u.length >= 4)
    t.same(sse.updates.map((u) => u.progress_percent ?? null), [null, 5, 25, 50], 'live from the other replica (processing implied by completed)')
    await post(`${a.url}/envelopes/${id}/final`, { id, status: 'succeeded', result: { r: 'done' } })
    await sse.done
    t.ok(sse.closedByServer)
    t.same(sse.updates.at(-1).result, { r: 'done' })
  })

  t.test('a deadline holds across a restart: the replica that created it is gone', async (t) => {
    const { data } = await callTool(a.url, 'short', {})
    const id = data.envelope_id
    t.equal(await a.stop('SIGTERM'), 0, 'clean exit on SIGTERM')
    await sleep(3500)
    // Only replica b is left, and it never saw this envelope being created.
    await until(async () => (await get(`${b.url}/envelopes/${id}`)).json?.status === 'failed', 10_000, 'timeout by the sweep')
    const rec = (await get(`${b.url}/envelopes/${id}`)).json
    t.equal(rec.error, 'envelope timed out')
    const c = await spawnGateway(t, env)
    const again = (await get(`${c.url}/envelopes/${id}`)).json
    t.equal(again.status, 'failed', 'a restarted replica sees the same store')
    const sse = new SseClient(`${c.url}/envelopes/${id}/stream`, 5000)
    await sse.done
    t.ok(sse.closedByServer, 'SSE for an already-failed envelope closes at once')
  })

  t.test('graceful shutdown ends SSE streams cleanly and exits 0', async (t) => {
    const { data } = await callTool(b.url, 'slow', {})
    const sse = new SseClient(`${b.url}/envelopes/${data.envelope_id}/stream`)
    await sse.until((u) => u.length >= 1)
    t.equal(await b.stop('SIGTERM'), 0)
    await sse.done
    t.ok(sse.closedByServer, 'the stream was ended by the server, not cut')
  })
})
