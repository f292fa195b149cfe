/**
 * Batched progress and the overtaking it allows (docs/sidecar.md "Progress reports"), forced
 * deterministically: an actor's reports reach the gateway only after the next actor's. The next
 * actor's reports name the publisher (`from_actor_idx`, from the `x-asya-from-actor` header), so
 * the history still holds every actor, in route order, and the late reports change nothing.
 *
 * 1. The gateway's rule over HTTP (PostgreSQL store): the same overtaking reports with and without
 *    the publisher named.
 * 2. Real parts: gateway (PostgreSQL) → 3 actors (Python runtimes + sidecars on RabbitMQ, batches
 *    on, the default) → end actors; the middle actor reports through a proxy that holds its
 *    requests until the gateway recorded the third actor's `received`.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import t from 'tap'
import { rabbitRig, rabbitWorld, rand } from '../support/actor-harness.js'
import { callTool, get, post, SseClient, startGateway, testDatabase, until } from './support.js'

const stepsOf = (updates: any[]) => updates.filter((u) => u.envelope_state).map((u) => `${u.current_actor_idx}:${u.envelope_state}`)
const ALL = ['0:received', '0:processing', '0:completed', '1:received', '1:processing', '1:completed', '2:received', '2:processing', '2:completed']

t.test('gateway: a report that overtook its publisher\'s keeps the publisher in the history when it names it', async (t) => {
  const gw = await startGateway(t, { databaseUrl: await testDatabase(t) })
  const actors = ['a', 'b', 'c']
  const walk = async (named: boolean): Promise<{ steps: string[]; late: any[]; pct: number }> => {
    const id = `ot-${named}-${rand()}`
    await gw.store.create({ id, actors, current: 0, payload: null })
    const r = (idx: number, status: string, from?: number) => ({ id, actors, current_actor_idx: idx, status, message: `${status} ${idx}`, ...(named && from !== undefined ? { from_actor_idx: from } : {}) })
    await post(`${gw.url}/envelopes/progress`, { reports: [r(0, 'received'), r(0, 'processing'), r(0, 'completed')] })
    // Actor 2's received (published by actor 1) first, then actor 1's three, late.
    await post(`${gw.url}/envelopes/progress`, { reports: [r(2, 'received', 1)] })
    const late = (await post(`${gw.url}/envelopes/progress`, { reports: [r(1, 'received', 0), r(1, 'processing', 0), r(1, 'completed', 0)] })).json.results
    const rec = (await get(`${gw.url}/envelopes/${id}`)).json
    return { steps: stepsOf((await gw.store.updatesSince(id, 0)).map((u) => u.update)), late, pct: rec.progress_percent }
  }
  const without = await walk(false)
  t.same(without.steps, ['0:received', '0:processing', '0:completed', '2:received'], 'without the publisher named, actor 1 is missing (the defect)')
  const named = await walk(true)
  t.same(named.steps, ALL.slice(0, 7), 'with it: every actor, in route order')
  t.same(named.late.map((x: any) => [x.code, x.status, x.progress_percent]), [[200, 'ok', 70], [200, 'ok', 70], [200, 'ok', 70]], "actor 1's late reports are accepted and leave the percentage where it is")
  t.equal(named.pct, 70)
  const bad = await post(`${gw.url}/envelopes/progress`, { reports: [{ id: 'x', current_actor_idx: 1, status: 'received', from_actor_idx: 'a' }] })
  t.equal(bad.json.results[0].code, 400, 'a malformed from_actor_idx is refused like any field')
})

t.test('real sidecars: the middle actor\'s batches held back until the next actor reported; the history keeps every actor', async (t) => {
  const world = rabbitWorld()
  const id = rand()
  const [a1, a2, a3] = ['1', '2', '3'].map((n) => `ot-${n}-${id}`) as [string, string, string]
  const rig = rabbitRig(t, world, [a1, a2, a3])
  const tools = `
tools:
  - { name: race, route: [${a1}, ${a2}, ${a3}], progress: true, timeout: 120, parameters: { sleep: { type: number } } }
`
  const gw = await startGateway(t, { databaseUrl: await testDatabase(t), transport: await rig.transport(), tools })

  // The proxy in front of the gateway for actor 2: holds every request until released, then
  // forwards them (and everything after) and records the gateway's answers.
  let release!: () => void
  const released = new Promise<void>((r) => (release = r))
  let held = 0
  const answers: any[] = []
  const proxy = createServer((req: IncomingMessage, res: ServerResponse) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      held++
      void released.then(async () => {
        const r = await fetch(`${gw.url}${req.url}`, { method: req.method ?? 'POST', headers: { 'content-type': 'application/json' }, body: Buffer.concat(chunks) })
        const text = await r.text()
        try {
          answers.push(JSON.parse(text))
        } catch {
          answers.push(text)
        }
        res.writeHead(r.status, { 'content-type': r.headers.get('content-type') ?? 'application/json' }).end(text)
      })
    })
  })
  await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r))
  t.teardown(() => new Promise<void>((r) => (proxy.closeAllConnections(), proxy.close(() => r()))))
  const proxyUrl = `http://127.0.0.1:${(proxy.address() as AddressInfo).port}`

  const env = { ASYA_GATEWAY_URL: gw.url }
  const started = await Promise.all([
    rig.start({ name: a1, handler: 'tag', env }),
    // A long request deadline: the held requests must not time out (they are what is late).
    rig.start({ name: a2, handler: 'tag', env: { ASYA_GATEWAY_URL: proxyUrl, ASYA_PROGRESS_TIMEOUT: '60s' } }),
    // The last actor is slow, so actor 2's late reports arrive while the envelope still runs.
    rig.start({ name: a3, handler: 'slow', env }),
    rig.start({ name: world.happyEnd, handler: 'echo', env: { ...env, ASYA_IS_END_ACTOR: 'true' } }),
    rig.start({ name: world.errorEnd, handler: 'echo', env: { ...env, ASYA_IS_END_ACTOR: 'true' } }),
  ])

  const { data } = await callTool(gw.url, 'race', { sleep: 1.5 })
  const envId = data.envelope_id as string
  const sse = new SseClient(`${gw.url}${data.stream_url}`, 60_000)
  // Actor 3's received is recorded while all of actor 2's reports are still held.
  await until(async () => (await gw.store.get(envId))?.current_actor_idx === 2, 30_000, "actor 3's received")
  t.ok(held >= 1, `actor 2's reports were held (${held} request(s))`)
  t.equal((await gw.store.get(envId))?.status, 'running')
  release()
  await sse.done
  t.ok(sse.closedByServer)
  t.same(stepsOf(sse.updates), ALL, 'every actor, each state once, in route order')
  const pct = sse.updates.filter((u) => u.progress_percent !== undefined).map((u) => u.progress_percent)
  t.same(pct, [3.33, 16.67, 33.33, 36.67, 50, 66.67, 70, 83.33, 100, 100], 'the percentage never went back')
  t.equal(sse.updates.at(-1).status, 'succeeded')
  const a2Sidecar = started[1].sidecar
  t.equal(a2Sidecar.progress?.sending, 'batch', 'batches are on by default')
  await a2Sidecar.progress?.idle()
  const results = answers.flatMap((a) => (Array.isArray(a?.results) ? a.results : []))
  t.equal(results.length, 3, "all three of actor 2's reports reached the gateway, late")
  t.ok(results.every((r: any) => r.code === 200 && (r.status === 'ok' ? r.progress_percent >= 70 : r.status === 'ignored')), `accepted without moving back: ${JSON.stringify(results)}`)
  const rec = (await get(`${gw.url}/envelopes/${envId}`)).json
  t.equal(rec.actors_completed, 3)
})
