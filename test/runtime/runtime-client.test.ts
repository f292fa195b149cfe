/** RuntimeClient and RuntimeProcess against the real asya_runtime.py (and a raw server for bad frames). */
import { existsSync, mkdtempSync, rmSync } from 'node:fs'
import { createServer, type Server } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import t from 'tap'
import { isAsyaError } from '../../src/errors.js'
import { RuntimeClient } from '../../src/runtime/runtime-client.js'
import { RuntimeProcess } from '../../src/runtime/runtime-process.js'
import { SIDECAR_HANDLERS_DIR } from '../support/actor-harness.js'

const env = (payload: unknown, extra: Record<string, unknown> = {}): Record<string, unknown> => ({ id: 'e1', route: { actors: ['a', 'b'], current: 0 }, payload, ...extra })

async function runtime(t: { teardown(fn: () => unknown): void }, handler: string, mode: 'payload' | 'envelope' = 'payload'): Promise<{ rp: RuntimeProcess; client: RuntimeClient; dir: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'asya-rc-'))
  const rp = new RuntimeProcess({ handler: `sidecar_handlers.${handler}`, mode, socketDir: dir, pythonPath: [SIDECAR_HANDLERS_DIR], env: { ASYA_LOG_LEVEL: 'WARNING' }, livenessIntervalMs: 50 })
  await rp.start()
  t.teardown(async () => {
    await rp.stop()
    rmSync(dir, { recursive: true, force: true })
  })
  return { rp, client: new RuntimeClient({ socketDir: dir, timeoutMs: 10_000 }), dir }
}

t.test('single result, fan-out, empty', async (t) => {
  const echo = await runtime(t, 'echo')
  const r1 = await echo.client.call(env({ x: 'ü ✓' }, { headers: { h: 1 } }))
  t.same(r1, { kind: 'results', results: [{ id: 'e1', headers: { h: 1 }, route: { actors: ['a', 'b'], current: 1 }, payload: { x: 'ü ✓' } }] })
  const fan = await runtime(t, 'fanout3')
  const r2 = await fan.client.call(Buffer.from(JSON.stringify(env(1))))
  t.equal(r2.kind === 'results' && r2.results.length, 3)
  const empty = await runtime(t, 'empty')
  t.same(await empty.client.call(env(1)), { kind: 'results', results: [] })
})

t.test('handler error with traceback; non-retryable flag', async (t) => {
  const fail = await runtime(t, 'fail')
  const r = await fail.client.call(env(1))
  if (r.kind !== 'error') throw new Error('expected an error')
  t.equal(r.error.error, 'processing_error')
  t.equal(r.error.details.type, 'RuntimeError')
  t.match(r.error.details.traceback, /Traceback/)
  t.equal(r.error.details.retryable, undefined)
  const perm = await runtime(t, 'fail_permanently')
  const p = await perm.client.call(env(1))
  t.equal(p.kind === 'error' && p.error.details.retryable, false)
})

t.test('10 MB payload', async (t) => {
  const echo = await runtime(t, 'echo')
  const blob = 'y'.repeat(10 * 1024 * 1024)
  const r = await echo.client.call(env({ blob }))
  t.equal(r.kind === 'results' && (r.results[0]?.payload as { blob: string }).blob.length, blob.length)
})

t.test('timeout covers the whole call; runtime killed mid-request; restarted runtime; client recovers', async (t) => {
  const slow = await runtime(t, 'slow')
  const err = await slow.client.call(env({ sleep: 3 }), { timeoutMs: 300 }).catch((e: unknown) => e)
  t.ok(isAsyaError(err, 'ASYA_ERR_RUNTIME_TIMEOUT'), 'timeout')
  // Kill while a request is in the handler: the client sees a broken connection, not a hang.
  const pending = slow.client.call(env({ sleep: 5 }), { timeoutMs: 20_000 }).catch((e: unknown) => e)
  await new Promise((r) => setTimeout(r, 500))
  slow.rp.kill('SIGKILL')
  const killed = await pending
  t.ok(isAsyaError(killed, 'ASYA_ERR_RUNTIME_CONNECTION'), `connection error, got ${String(killed)}`)
  await slow.client.waitReady(20_000)
  t.ok(slow.rp.restarts >= 1, 'RuntimeProcess restarted the runtime')
  const ok = await slow.client.call(env({ sleep: 0 }))
  t.equal(ok.kind, 'results', 'the client works against the restarted runtime')
})

t.test('unreachable runtime and stale ready file', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'asya-rc-none-'))
  t.teardown(() => rmSync(dir, { recursive: true, force: true }))
  const client = new RuntimeClient({ socketDir: dir })
  const err = await client.call(env(1)).catch((e: unknown) => e)
  t.ok(isAsyaError(err, 'ASYA_ERR_RUNTIME_UNREACHABLE'))
  const { writeFileSync } = await import('node:fs')
  writeFileSync(join(dir, 'runtime-ready'), 'ready')
  t.equal(await client.probe(), false, 'a ready file without a listening socket is not believed')
  const nr = await client.waitReady(300).catch((e: unknown) => e)
  t.ok(isAsyaError(nr, 'ASYA_ERR_RUNTIME_NOT_READY'))
})

t.test('ready file removed: RuntimeProcess replaces the runtime (liveness)', async (t) => {
  const rt = await runtime(t, 'echo')
  const pid = rt.rp.pid
  await rt.client.markUnhealthy()
  t.notOk(existsSync(rt.client.readyFile))
  await rt.client.waitReady(20_000)
  t.not(rt.rp.pid, pid, 'a new process')
  t.equal((await rt.client.call(env(1))).kind, 'results')
})

t.test('malformed responses are ASYA_ERR_RUNTIME_BAD_RESPONSE; sockets never leak', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'asya-rc-bad-'))
  const replies: Buffer[] = []
  const server: Server = createServer((sock) => {
    sock.once('data', () => {
      const body = replies.shift() ?? Buffer.from('[]')
      const h = Buffer.allocUnsafe(4)
      h.writeUInt32BE(body.length, 0)
      sock.end(Buffer.concat([h, body]))
    })
  })
  await new Promise<void>((r) => server.listen(join(dir, 'asya-runtime.sock'), () => r()))
  t.teardown(async () => {
    await new Promise<void>((r) => server.close(() => r()))
    rmSync(dir, { recursive: true, force: true })
  })
  const client = new RuntimeClient({ socketDir: dir })
  for (const bad of ['{"not":"array"}', 'not json', '[{"payload":1}]', '[5]', '[{"error":"x","details":"str"}]']) {
    replies.push(Buffer.from(bad))
    const err = await client.call(env(1)).catch((e: unknown) => e)
    t.ok(isAsyaError(err, 'ASYA_ERR_RUNTIME_BAD_RESPONSE'), bad)
  }
  replies.push(Buffer.from([0xff, 0xfe]))
  t.ok(isAsyaError(await client.call(env(1)).catch((e: unknown) => e), 'ASYA_ERR_RUNTIME_BAD_RESPONSE'), 'invalid UTF-8')
  // The client destroys its end; the server notices asynchronously.
  let conns = -1
  for (let i = 0; i < 100 && conns !== 0; i++) {
    conns = await new Promise<number>((r) => server.getConnections((_e, n) => r(n)))
    if (conns !== 0) await new Promise((r) => setTimeout(r, 20))
  }
  t.equal(conns, 0, 'no socket left open')
})
