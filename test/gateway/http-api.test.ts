/**
 * The upstream HTTP API of the gateway, end to end over HTTP, against both stores (memory and a
 * real PostgreSQL database): every endpoint, its status codes and bodies, the SSE format, and the
 * fixed upstream defects (final is final, deadlines by sweep, fan-out children never published,
 * SSE closes for already-final envelopes).
 */
import t from 'tap'
import { MemoryBroker, MemoryTransport } from '../../src/transport/memory-transport.js'
import type { Delivery } from '../../src/transport/transport.js'
import { callTool, get, until, makeStore, post, sleep, SseClient, startGateway, type StoreKind } from './support.js'

for (const kind of ['memory', 'postgres'] as StoreKind[]) {
  t.test(`${kind} store`, async (t) => {
    const store = await makeStore(t, kind)
    const transport = new MemoryTransport({ broker: new MemoryBroker() })
    t.teardown(() => transport.close())
    await transport.ensureQueue('gw-a')
    const published: Delivery[] = []
    await transport.consume('gw-a', async (d) => { published.push(d); await d.ack() }, { prefetch: 1000 })
    const { url } = await startGateway(t, { store, transport })

    t.test('GET and HEAD /health answer OK', async (t) => {
      const r = await get(`${url}/health`)
      t.equal(r.status, 200)
      t.equal(r.text, 'OK\n')
      const h = await fetch(`${url}/health`, { method: 'HEAD' })
      t.equal(h.status, 200)
    })

    t.test('tools/call publishes the first envelope and answers as upstream', async (t) => {
      const before = published.length
      const r = await callTool(url, 'echo', { text: 'hi' })
      t.equal(r.status, 200)
      t.notOk(r.body.isError)
      t.equal(r.body.content[0].type, 'text')
      const id = r.data.envelope_id
      t.match(id, /^[0-9a-f-]{36}$/)
      t.equal(r.data.message, 'Envelope created successfully')
      t.equal(r.data.status_url, `/envelopes/${id}`)
      t.equal(r.data.stream_url, `/envelopes/${id}/stream`)
      t.same(r.data.metadata, { team: 'test' })
      await until(() => published.length > before)
      t.equal(published.length, before + 1, 'published once')
      const env = JSON.parse((published.at(-1) as Delivery).body.toString())
      t.equal(env.id, id)
      t.same(env.route, { actors: ['gw-a', 'gw-b', 'gw-c'], current: 0, metadata: { job_id: id } })
      t.same(env.payload, { text: 'hi', count: 1 }, 'arguments are the payload, defaults filled in')
      t.ok(Date.parse(env.deadline) > Date.now() + 50_000, 'deadline from the tool timeout')
      const g = await get(`${url}/envelopes/${id}`)
      t.equal(g.status, 200)
      t.equal(g.json.status, 'running')
      t.same(g.json.route.actors, ['gw-a', 'gw-b', 'gw-c'])
      t.same(g.json.payload, { text: 'hi', count: 1 })
      t.equal(g.json.total_actors, 3)
      t.equal(g.json.progress_percent, 0)
      t.equal(g.json.timeout_seconds, 60)
      t.equal(g.json.deadline, env.deadline)
    })

    t.test('tools/call errors: unknown tool 404, bad bodies 400, bad arguments isError', async (t) => {
      const u = await post(`${url}/tools/call`, { name: 'nope', arguments: {} })
      t.equal(u.status, 404)
      t.equal(u.text, 'Tool "nope" not found\n')
      t.equal((await post(`${url}/tools/call`, { arguments: {} })).status, 400)
      const bad = await post(`${url}/tools/call`, '{not json')
      t.equal(bad.status, 400)
      t.match(bad.text, /Invalid request body/)
      const missing = await callTool(url, 'echo', {})
      t.equal(missing.status, 200)
      t.equal(missing.body.isError, true)
      t.match(missing.body.content[0].text, /missing required parameter: text/)
      const typed = await callTool(url, 'echo', { text: 'x', count: 1.5 })
      t.match(typed.body.content[0].text, /parameter count must be an integer/)
    })

    t.test('a tool whose first actor has no queue: envelope failed with the reason', async (t) => {
      const r = await callTool(url, 'nowhere', {})
      t.equal(r.status, 200)
      t.equal(r.body.isError, true)
      const id = r.data.envelope_id
      const g = await get(`${url}/envelopes/${id}`)
      t.equal(g.json.status, 'failed')
      t.match(g.json.error, /failed to send envelope to actor gw-missing/)
      t.match(g.json.error, /no queue asya-gw-missing/)
    })

    t.test('progress: index of the actor that did the work, monotonic, capped', async (t) => {
      const { data } = await callTool(url, 'echo', { text: 'p' })
      const id = data.envelope_id
      const report = (idx: number, status: string, extra = {}) =>
        post(`${url}/envelopes/${id}/progress`, { id, actors: ['gw-a', 'gw-b', 'gw-c'], current_actor_idx: idx, status, ...extra })
      const seen: number[] = []
      for (const [idx, s] of [[0, 'received'], [0, 'processing'], [0, 'completed'], [1, 'received']] as const) {
        const r = await report(idx, s, { message: `${s} ${idx}` })
        t.equal(r.status, 200)
        t.equal(r.json.status, 'ok')
        seen.push(r.json.progress_percent)
      }
      t.same(seen, [3.33, 16.67, 33.33, 36.67])
      const stale = await report(0, 'received')
      t.equal(stale.json.progress_percent, 36.67, 'a late report never lowers progress')
      const g = await get(`${url}/envelopes/${id}`)
      t.equal(g.json.progress_percent, 36.67)
      t.equal(g.json.current_actor_idx, 1)
      t.equal(g.json.current_actor_name, 'gw-b')
      t.equal(g.json.actors_completed, 1)
      t.equal(g.json.message, 'received 1')
      const extended = await report(3, 'completed', { actors: ['gw-a', 'gw-b', 'gw-c', 'gw-d'] })
      t.equal(extended.json.progress_percent, 100, 'route extended by a handler: total follows the longer route')
      t.equal((await report(0, 'bogus')).status, 400)
      t.equal((await report(-1, 'received')).status, 400)
      const nf = await post(`${url}/envelopes/nope/progress`, { current_actor_idx: 0, status: 'received' })
      t.equal(nf.status, 404)
    })

    t.test('POST /envelopes/progress: a batch, answered per report in order, gives the history of the reports one by one', async (t) => {
      const actors = ['gw-a', 'gw-b', 'gw-c']
      const [a, b, done] = (await Promise.all(['a', 'b', 'done'].map(async (x) => (await callTool(url, 'echo', { text: x })).data.envelope_id))) as [string, string, string]
      await post(`${url}/envelopes/${done}/final`, { id: done, status: 'succeeded', result: 1 })
      const r = await post(`${url}/envelopes/progress`, {
        reports: [
          { id: a, actors, current_actor_idx: 0, status: 'received', message: 'r0' },
          { id: b, actors, current_actor_idx: 1, status: 'received' },
          { id: a, actors, current_actor_idx: 0, status: 'processing', message: 'p0' },
          { id: a, actors, current_actor_idx: 0, status: 'completed', message: 'c0', duration_ms: 3 },
          { id: 'nope', current_actor_idx: 0, status: 'received' },
          { id: done, current_actor_idx: 0, status: 'received' },
          { id: b, current_actor_idx: 0, status: 'bogus' },
          { current_actor_idx: 0, status: 'received' },
          { id: a, actors, current_actor_idx: 1, status: 'received', message: 'r1' },
        ],
      })
      t.equal(r.status, 200)
      t.same(
        r.json.results.map((x: { id: string; code: number; status?: string }) => [x.id, x.code, x.status]),
        [[a, 200, 'ok'], [b, 200, 'ok'], [a, 200, 'ok'], [a, 200, 'ok'], ['nope', 404, undefined], [done, 200, 'ignored'], [b, 400, undefined], [null, 400, undefined], [a, 200, 'ok']],
      )
      t.equal(r.json.results[3].progress_percent, 33.33)
      t.equal(r.json.results[8].progress_percent, 36.67)
      t.match(r.json.results[6].error, /Invalid field status/)
      const history = async (id: string) =>
        (await store.updatesSince(id, 0)).filter(({ update: u }) => u.envelope_state !== undefined).map(({ update: u }) => `${u.current_actor_idx}:${u.envelope_state}${u.message ? ` ${u.message}` : ''}`)
      t.same(await history(a), ['0:received r0', '0:processing p0', '0:completed c0', '1:received r1'], 'each state once, in order, with its message')
      t.same(await history(b), ['0:received', '0:processing', '0:completed', '1:received'], 'a first report from actor 1: the start actor is implied')
      t.equal((await post(`${url}/envelopes/progress`, { reports: 'x' })).status, 400)
      t.equal((await post(`${url}/envelopes/progress`, { reports: Array.from({ length: 1001 }, () => ({ id: 'x', status: 'received' })) })).status, 400)
      t.same((await post(`${url}/envelopes/progress`, { reports: [] })).json, { results: [] })
    })

    t.test('final is final: a second final, a late progress and the sweep change nothing', async (t) => {
      const { data } = await callTool(url, 'echo', { text: 'f' })
      const id = data.envelope_id
      const ok = await post(`${url}/envelopes/${id}/final`, { id, status: 'succeeded', result: { answer: 42 } })
      t.equal(ok.status, 200)
      t.same(ok.json, { status: 'ok' })
      const again = await post(`${url}/envelopes/${id}/final`, { id, status: 'failed', error: 'late' })
      t.equal(again.status, 200)
      t.equal(again.json.status, 'ignored')
      const late = await post(`${url}/envelopes/${id}/progress`, { current_actor_idx: 0, status: 'received' })
      t.equal(late.json.status, 'ignored')
      const g = await get(`${url}/envelopes/${id}`)
      t.equal(g.json.status, 'succeeded')
      t.same(g.json.result, { answer: 42 })
      t.equal(g.json.progress_percent, 100)
      t.equal(g.json.message, 'Envelope completed successfully')
      t.notOk(g.json.error)
      t.equal((await post(`${url}/envelopes/${id}/final`, { status: 'done' })).status, 400)
      t.equal((await post(`${url}/envelopes/nope/final`, { status: 'succeeded' })).status, 404)
    })

    t.test('error-end final: message and error details as upstream', async (t) => {
      const { data } = await callTool(url, 'echo', { text: 'e' })
      const id = data.envelope_id
      await post(`${url}/envelopes/${id}/final`, {
        id, status: 'failed', error: 'boom', error_details: { type: 'ValueError' }, actors: ['gw-a', 'gw-b', 'gw-c'], current_actor_idx: 1, current_actor_name: 'gw-b',
      })
      const g = await get(`${url}/envelopes/${id}`)
      t.equal(g.json.status, 'failed')
      t.equal(g.json.error, 'boom')
      t.equal(g.json.message, "Envelope failed at actor 'gw-b': boom")
      t.same(g.json.result, { error: 'boom', details: { type: 'ValueError' }, failed_actor: 'gw-b', failed_actor_idx: 1, route: ['gw-a', 'gw-b', 'gw-c'] })
    })

    t.test('GET /envelopes/{id}/active: 200 while live, 410 after final or for unknown ids', async (t) => {
      const { data } = await callTool(url, 'echo', { text: 'a' })
      const id = data.envelope_id
      const a = await get(`${url}/envelopes/${id}/active`)
      t.equal(a.status, 200)
      t.same(a.json, { active: true })
      await post(`${url}/envelopes/${id}/final`, { status: 'succeeded', result: 1 })
      const b = await get(`${url}/envelopes/${id}/active`)
      t.equal(b.status, 410)
      t.same(b.json, { active: false })
      t.equal((await get(`${url}/envelopes/nope/active`)).status, 410)
      t.equal((await get(`${url}/envelopes/nope`)).status, 404)
    })

    t.test('SSE: history then live, event: update, closes after the final', async (t) => {
      const { data } = await callTool(url, 'echo', { text: 's' })
      const id = data.envelope_id
      await post(`${url}/envelopes/${id}/progress`, { current_actor_idx: 0, status: 'received' })
      const sse = new SseClient(`${url}${data.stream_url}`)
      await sse.until((u) => u.length >= 2)
      t.same(sse.updates.map((u) => u.status), ['running', 'running'], 'history: sent to first actor, received')
      for (const [idx, s] of [[0, 'processing'], [0, 'completed'], [1, 'received']] as const) {
        await post(`${url}/envelopes/${id}/progress`, { current_actor_idx: idx, status: s })
      }
      await post(`${url}/envelopes/${id}/final`, { status: 'succeeded', result: { ok: true } })
      await sse.done
      t.equal(sse.status, 200)
      t.ok(sse.closedByServer, 'the server closed the stream after the final update')
      const u = sse.updates
      t.same(u.map((x) => x.envelope_state ?? x.status), ['running', 'received', 'processing', 'completed', 'received', 'processing', 'completed', 'succeeded'], 'actor 1 completed (implied by the final)')
      t.same(u.at(-1).result, { ok: true })
      t.equal(u.at(-1).id, id)
      t.ok(u.every((x: any) => typeof x.timestamp === 'string'))
      t.same(u.filter((x) => x.progress_percent !== undefined).map((x) => x.progress_percent), [3.33, 16.67, 33.33, 36.67, 50, 66.67, 100])
      t.equal(u[1].actor, 'gw-a')
      t.equal(u[1].current_actor_idx, 0)
    })

    t.test('SSE for an envelope final before the client connected closes at once', async (t) => {
      const { data } = await callTool(url, 'echo', { text: 'done' })
      const id = data.envelope_id
      await post(`${url}/envelopes/${id}/final`, { status: 'failed', error: 'x' })
      const sse = new SseClient(`${url}/envelopes/${id}/stream`, 5000)
      await sse.done
      t.ok(sse.closedByServer)
      t.equal(sse.updates.at(-1).status, 'failed')
      t.equal(sse.updates.at(-1).error, 'x')
      const missing = new SseClient(`${url}/envelopes/nope/stream`, 5000)
      await missing.done
      t.equal(missing.status, 404)
    })

    t.test('POST /envelopes: fan-out child created (201), never published, shares the deadline', async (t) => {
      const { data } = await callTool(url, 'echo', { text: 'fan' })
      const id = data.envelope_id
      const count = published.length
      const r = await post(`${url}/envelopes`, { id: `${id}-1`, parent_id: id, actors: ['gw-a', 'gw-b', 'gw-c'], current: 1 })
      t.equal(r.status, 201)
      t.same(r.json, { status: 'created', id: `${id}-1` })
      const again = await post(`${url}/envelopes`, { id: `${id}-1`, parent_id: id, actors: ['gw-a'], current: 1 })
      t.equal(again.status, 201, 'a retried create is idempotent')
      await sleep(100)
      t.equal(published.length, count, 'the gateway publishes no fan-out child')
      const child = await get(`${url}/envelopes/${id}-1`)
      const parent = await get(`${url}/envelopes/${id}`)
      t.equal(child.json.parent_id, id)
      t.equal(child.json.status, 'pending')
      t.same(child.json.route, { actors: ['gw-a', 'gw-b', 'gw-c'], current: 1 })
      t.equal(child.json.deadline, parent.json.deadline)
      t.equal((await post(`${url}/envelopes`, { parent_id: id })).status, 400)
      // A child no one registered (our sidecars do not call POST /envelopes) is adopted from its first report.
      const adopted = await post(`${url}/envelopes/${id}-2/final`, { id: `${id}-2`, status: 'succeeded', result: { part: 2 } })
      t.equal(adopted.status, 200)
      const c2 = await get(`${url}/envelopes/${id}-2`)
      t.equal(c2.json.parent_id, id)
      t.equal(c2.json.status, 'succeeded')
      t.equal(c2.json.deadline, parent.json.deadline)
      t.equal((await post(`${url}/envelopes/unrelated-3/final`, { status: 'succeeded' })).status, 404, 'no parent: still 404')
    })

    t.test('deadline sweep: failed with envelope timed out, streamed, then final', async (t) => {
      const { data } = await callTool(url, 'quick', {})
      const id = data.envelope_id
      t.notOk(data.stream_url, 'progress: false → no stream_url')
      const sse = new SseClient(`${url}/envelopes/${id}/stream`, 10_000)
      await sse.done
      t.ok(sse.closedByServer)
      const last = sse.updates.at(-1)
      t.equal(last.status, 'failed')
      t.equal(last.error, 'envelope timed out')
      const late = await post(`${url}/envelopes/${id}/final`, { status: 'succeeded', result: 1 })
      t.equal(late.json.status, 'ignored', 'a result after the deadline does not revive the envelope')
      t.equal((await get(`${url}/envelopes/${id}`)).json.status, 'failed')
    })

    t.test('/metrics', async (t) => {
      const r = await get(`${url}/metrics`)
      t.equal(r.status, 200)
      t.match(r.text, /asya_gateway_tool_calls_total\{tool="echo",outcome="accepted"\} \d+/)
      t.match(r.text, /asya_gateway_envelopes_final_total\{status="failed",source="timeout"\}/)
      t.match(r.text, /asya_gateway_store_duration_seconds_bucket/)
      t.match(r.text, /asya_gateway_sse_clients 0/)
    })
  })
}
