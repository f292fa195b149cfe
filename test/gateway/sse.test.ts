/**
 * SSE under pressure, on both stores: a client that stops reading while 20 MB of updates pile up
 * gets every one of them, in order, once it reads again (nothing queued in the gateway meanwhile,
 * nothing dropped); keepalive comments; many streams of one envelope.
 */
import { request } from 'node:http'
import t from 'tap'
import { callTool, makeStore, post, sleep, SseClient, startGateway, type StoreKind } from './support.js'

for (const kind of ['memory', 'postgres'] as StoreKind[]) {
  t.test(`${kind} store`, async (t) => {
    const store = await makeStore(t, kind)
    const { url, gateway } = await startGateway(t, { store, env: { ASYA_GATEWAY_KEEPALIVE_INTERVAL: '200ms' }, tools: 'tools:\n  - { name: x, route: [sse-a], progress: true }\n' })
    await gateway.ctx.transport.ensureQueue('sse-a')

    t.test('a slow client misses nothing', async (t) => {
      const { data } = await callTool(url, 'x', {})
      const id = data.envelope_id
      const chunks: Buffer[] = []
      let res!: import('node:http').IncomingMessage
      await new Promise<void>((resolve) => {
        request(`${url}/envelopes/${id}/stream`, (r) => {
          res = r
          r.pause()
          resolve()
        }).end()
      })
      const big = 'm'.repeat(50_000)
      const N = 400
      for (let i = 0; i < N; i++) await post(`${url}/envelopes/${id}/progress`, { current_actor_idx: i, status: 'received', message: `${i}:${big}` })
      await post(`${url}/envelopes/${id}/final`, { status: 'succeeded', result: { done: true } })
      await sleep(200)
      const ended = new Promise<void>((r) => res.on('end', () => r()))
      res.on('data', (c: Buffer) => chunks.push(c))
      res.resume()
      await ended
      const events = Buffer.concat(chunks).toString().split('\n\n').filter((b) => b.startsWith('event: update'))
      const updates = events.map((b) => JSON.parse(b.split('\n')[1]!.slice(6)))
      const received = updates.filter((u) => u.envelope_state === 'received').map((u) => Number(String(u.message).split(':')[0]))
      t.same(received, Array.from({ length: N }, (_, i) => i), 'every report, in order, once')
      t.equal(updates.at(-1).status, 'succeeded')
      t.ok(Buffer.concat(chunks).length > 20_000_000, 'more than the socket buffers could hold')
    })

    t.test('an envelope with no update yet: the response starts at once, not with the first event', async (t) => {
      // Keepalive 5 s on this replica: without flushing, the headers would wait for it.
      const slow = await startGateway(t, { store: await makeStore(t, kind), env: { ASYA_GATEWAY_KEEPALIVE_INTERVAL: '5s' }, tools: 'tools:\n  - { name: x, route: [sse-a], progress: true }\n' })
      const id = `fresh-${Math.random().toString(36).slice(2)}`
      t.equal((await post(`${slow.url}/envelopes`, { id, actors: ['sse-a'], current: 0 })).status, 201)
      const started = Date.now()
      const status = await new Promise<number>((resolve, reject) => {
        const req = request(`${slow.url}/envelopes/${id}/stream`, (r) => {
          resolve(r.statusCode ?? 0)
          req.destroy()
        })
        req.on('error', reject)
        req.end()
      })
      t.equal(status, 200)
      t.ok(Date.now() - started < 2500, `headers after ${Date.now() - started} ms, before any event or keepalive`)
    })

    t.test('keepalive comments while nothing happens', async (t) => {
      const { data } = await callTool(url, 'x', {})
      const sse = new SseClient(`${url}/envelopes/${data.envelope_id}/stream`, 1200)
      await sse.done
      t.ok(sse.events.filter((e) => e.comment === 'keepalive').length >= 3)
    })

    t.test('200 streams of one envelope all get every update and close', async (t) => {
      const { data } = await callTool(url, 'x', {})
      const id = data.envelope_id
      const streams = Array.from({ length: 200 }, () => new SseClient(`${url}/envelopes/${id}/stream`, 30_000))
      await Promise.all(streams.map((s) => s.until((u) => u.length >= 1)))
      for (const s of ['received', 'processing', 'completed'] as const) await post(`${url}/envelopes/${id}/progress`, { current_actor_idx: 0, status: s })
      await post(`${url}/envelopes/${id}/final`, { status: 'succeeded', result: 1 })
      await Promise.all(streams.map((s) => s.done))
      t.ok(streams.every((s) => s.closedByServer && s.updates.map((u) => u.envelope_state ?? u.status).join(',') === 'running,received,processing,completed,succeeded'))
      t.equal((await gateway.ctx.metrics.sseClients.get()).values[0]?.value, 0, 'no stream left open')
    })
  })
}
