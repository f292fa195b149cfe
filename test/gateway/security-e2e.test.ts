/**
 * Gateway security end to end: real Python actors and their sidecars report progress to the
 * internal listener with the sidecar token, the real runtime-less end actors post `final` with the
 * end actors' token, and an API-key caller follows the envelope over SSE to `succeeded`. An actor
 * whose sidecar has the wrong token is still processed (reporting never fails processing), but
 * its reports are refused.
 */
import t from 'tap'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { readSidecarConfig } from '../../sidecar/config.js'
import { Sidecar } from '../../sidecar/sidecar.js'
import { createLogger } from '../../src/logger.js'
import { MemoryBroker, MemoryTransport } from '../../src/transport/memory-transport.js'
import { startActor, type TestActor, type World } from '../support/actor-harness.js'
import { startSecureGateway, request, token } from './security-support.js'
import { SseClient } from './support.js'

const TOOLS = `
routes:
  two: [sec-a, sec-b]
tools:
  - name: two
    description: two echo actors
    parameters: { text: { type: string, required: true } }
    route: two
    progress: true
    timeout: 60
`

const broker = new MemoryBroker()
const gw = await startSecureGateway(t, { transport: new MemoryTransport({ broker }), tools: TOOLS })
const logger = () => createLogger('asya-sidecar', { level: process.env.ASYA_TEST_LOG_LEVEL ?? 'silent' })
const base: World = { transport: 'memory', exchange: '', happyEnd: 'happy-end', errorEnd: 'error-end', env: { ASYA_TRANSPORT: 'memory', ASYA_GATEWAY_URL: gw.internalUrl, ASYA_GATEWAY_TOKEN: gw.sidecarToken } }
const actors: TestActor[] = []
const ends: Sidecar[] = []
const socketDir = mkdtempSync(join(tmpdir(), 'asya-sec-end-'))
t.teardown(async () => {
  for (const a of actors) await a.stop().catch(() => undefined)
  for (const s of ends) await s.stop().catch(() => undefined)
  rmSync(socketDir, { recursive: true, force: true })
})
actors.push(await startActor({ name: 'sec-a', handler: 'echo', world: base, transport: new MemoryTransport({ broker }) }))
// sec-b's sidecar carries a wrong token: its reports are refused, its work is not.
actors.push(await startActor({ name: 'sec-b', handler: 'echo', world: { ...base, env: { ...base.env, ASYA_GATEWAY_TOKEN: token() } }, transport: new MemoryTransport({ broker }) }))
for (const end of ['happy-end', 'error-end']) {
  const config = readSidecarConfig({ ...base.env, ASYA_GATEWAY_TOKEN: gw.endActorToken, ASYA_ACTOR_NAME: end, ASYA_IS_END_ACTOR: 'true', ASYA_RUNTIME_ENABLED: 'false', ASYA_SOCKET_DIR: socketDir })
  const sidecar = new Sidecar({ config, transport: new MemoryTransport({ broker }), logger: logger(), serveHttp: false })
  await sidecar.start()
  ends.push(sidecar)
}

t.test('tool call → progress from sidecars (sidecar token) → final from the real end actor (end-actor token) → caller sees succeeded', async (t) => {
  const r = await request(`${gw.url}/tools/call`, { token: gw.keys.ci, body: { name: 'two', arguments: { text: 'secure' } } })
  t.equal(r.status, 200, r.text)
  const data = JSON.parse(r.json.content[0].text)
  const sse = new SseClient(`${gw.url}/envelopes/${data.envelope_id}/stream`, 60_000, { authorization: `Bearer ${gw.keys.ci}` })
  await sse.done
  t.equal(sse.status, 200)
  t.ok(sse.closedByServer, 'the stream closed after the final status')
  const final = sse.updates.at(-1)
  t.equal(final.status, 'succeeded', 'the end actor\'s final landed')
  t.same(final.result, { text: 'secure' })
  const actorsReported = new Set(sse.updates.filter((u) => u.actor !== undefined && u.envelope_state !== undefined).map((u) => u.actor))
  t.ok(actorsReported.has('sec-a'), 'sec-a (right token) reported progress')
  t.notOk(actorsReported.has('sec-b'), 'sec-b (wrong token) did not')
  const m = await gw.gateway.ctx.metrics.rejections.get()
  t.ok(m.values.some((v) => v.labels.listener === 'internal' && v.labels.reason === 'unauthorized' && v.value >= 1), 'its reports were refused and counted')
  const rec = await request(`${gw.url}/envelopes/${data.envelope_id}`, { token: gw.keys.ci })
  t.equal(rec.json.status, 'succeeded')
})
