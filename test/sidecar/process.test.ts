/**
 * The sidecar as a real process (sidecar/main.ts): configuration errors, health endpoints and
 * metrics, and the SIGTERM drain (result delivered, exit 0, no duplicate).
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { RuntimeProcess } from '../../src/runtime/runtime-process.js'
import type { Transport } from '../../src/transport/transport.js'
import { Inbox } from '../transport/conformance.js'
import { rabbitTransport } from '../support/rabbitmq.js'
import { SIDECAR_HANDLERS_DIR, envelope, json, rabbitWorld, rand } from '../support/actor-harness.js'
import { freePort } from '../support/free-port.js'
import { sidecarImageNodeOptions } from '../support/sidecar-image.js'

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..')
const world = rabbitWorld()


interface Spawned {
  child: ChildProcess
  output: () => string
  exited: Promise<number | null>
}

/** Deletes the test's queues (and their DLQs), closes the client, removes the socket dir. */
async function dropQueues(client: Transport, queues: string[], socketDir: string): Promise<void> {
  for (const q of queues) {
    await client.deleteQueue(q).catch(() => undefined)
    await client.deleteQueue(`${q}-dlq`).catch(() => undefined)
  }
  await client.close()
  rmSync(socketDir, { recursive: true, force: true })
}

function spawnSidecar(env: Record<string, string>): Spawned {
  const child = spawn(process.execPath, ['--import', './scripts/register-ts.mjs', 'sidecar/main.ts'], {
    cwd: root,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let out = ''
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()))
  child.stderr?.on('data', (d: Buffer) => (out += d.toString()))
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)))
  return { child, output: () => out, exited }
}

async function waitHttp(url: string, want: (status: number, body: string) => boolean, timeoutMs = 60_000): Promise<string> {
  const end = Date.now() + timeoutMs
  for (;;) {
    try {
      const res = await fetch(url)
      const body = await res.text()
      if (want(res.status, body)) return body
    } catch {
      /* not listening yet */
    }
    if (Date.now() > end) throw new Error(`timed out waiting for ${url}`)
    await new Promise((r) => setTimeout(r, 100))
  }
}

t.test('bad configuration: exit 1 with one log line naming every bad variable', async (t) => {
  const p = spawnSidecar({ ASYA_RUNTIME_TIMEOUT: 'banana', ASYA_TRANSPORT: 'kafka', ASYA_MAX_RETRIES: '-1' })
  const code = await p.exited
  t.equal(code, 1)
  const out = p.output()
  for (const v of ['ASYA_ACTOR_NAME', 'ASYA_RUNTIME_TIMEOUT', 'ASYA_TRANSPORT', 'ASYA_MAX_RETRIES']) t.match(out, v, `names ${v}`)
  const line = out.split('\n').find((l) => l.includes('ASYA_ERR_CONFIG_INVALID'))
  t.ok(line, 'error code in the log')
  t.doesNotThrow(() => JSON.parse(line ?? ''), 'a JSON log line')
})

t.test('health, readiness, metrics; SIGTERM mid-message: result delivered, exit 0, no duplicate', async (t) => {
  const name = `drain-${rand()}`
  const socketDir = mkdtempSync(join(tmpdir(), 'asya-drain-'))
  const port = await freePort()
  const client: Transport = rabbitTransport({ exchange: world.exchange })
  await client.connect()
  await client.ensureQueue(world.happyEnd)
  const happy = new Inbox()
  await client.consume(world.happyEnd, happy.push, { prefetch: 10 })
  const runtime = new RuntimeProcess({ handler: 'sidecar_handlers.slow', socketDir, pythonPath: [SIDECAR_HANDLERS_DIR], env: { ASYA_LOG_LEVEL: 'WARNING' } })
  t.teardown(async () => {
    await runtime.stop().catch(() => undefined)
    await dropQueues(client, [name, world.happyEnd], socketDir)
  })
  const env = { ...world.env, ASYA_ACTOR_NAME: name, ASYA_SOCKET_DIR: socketDir, ASYA_METRICS_ADDR: `127.0.0.1:${port}`, ASYA_SHUTDOWN_TIMEOUT: '30s' }
  const p = spawnSidecar(env)
  t.teardown(() => {
    p.child.kill('SIGKILL')
  })
  const base = `http://127.0.0.1:${port}`
  await waitHttp(`${base}/healthz`, (s) => s === 200)
  const notReady = await waitHttp(`${base}/readyz`, (s) => s === 503)
  t.match(notReady, /"runtime":false/, 'not ready until the runtime is')
  await runtime.start()
  await waitHttp(`${base}/readyz`, (s) => s === 200)
  t.pass('ready once broker and runtime are')

  // Two messages: the first is in the handler when SIGTERM arrives, the second waits behind it.
  await client.publish(name, envelope(`d1-${name}`, [name], { sleep: 2 }))
  await client.publish(name, envelope(`d2-${name}`, [name], { sleep: 0 }))
  await waitHttp(`${base}/metrics`, (_s, body) => /asya_actor_active_messages 2/.test(body) || /asya_actor_active_messages 1/.test(body))
  const metrics = await (await fetch(`${base}/metrics`)).text()
  for (const m of [
    'messages_received_total',
    'messages_processed_total',
    'messages_sent_total',
    'messages_failed_total',
    'processing_duration_seconds',
    'runtime_execution_duration_seconds',
    'queue_receive_duration_seconds',
    'queue_send_duration_seconds',
    'envelope_size_bytes',
    'active_messages',
    'runtime_errors_total',
    'retries_total',
    'dead_lettered_total',
  ]) {
    t.match(metrics, `asya_actor_${m}`, `metric ${m} exported`)
  }
  p.child.kill('SIGTERM')
  const code = await p.exited
  t.equal(code, 0, 'clean exit after the drain')
  const first = json(await happy.next(30_000))
  t.equal(first.id, `d1-${name}`, 'the in-flight result was published before exit')
  // The second message was given back, not processed: a new sidecar processes it once.
  const p2 = spawnSidecar({ ...env, ASYA_METRICS_ADDR: `127.0.0.1:${await freePort()}` })
  t.teardown(() => {
    p2.child.kill('SIGKILL')
  })
  const second = json(await happy.next(60_000))
  t.equal(second.id, `d2-${name}`)
  await new Promise((r) => setTimeout(r, 500))
  if (happy.pending !== 0) t.comment(p.output() + '\n----\n' + p2.output())
  t.equal(happy.pending, 0, `no duplicates (saw ${happy.seen.map((d) => json(d).id).join(', ')})`)
  p2.child.kill('SIGTERM')
  t.equal(await p2.exited, 0)
  t.match(p.output(), /"msg":"sidecar stopped"/, 'drain logged')
})

t.test("the image's V8 heap settings carry a 40 MB envelope (no out-of-memory crash)", async (t) => {
  const name = `big-${rand()}`
  const socketDir = mkdtempSync(join(tmpdir(), 'asya-big-'))
  const client: Transport = rabbitTransport({ exchange: world.exchange })
  await client.connect()
  await client.ensureQueue(world.happyEnd)
  await client.ensureQueue(name)
  const happy = new Inbox()
  await client.consume(world.happyEnd, happy.push, { prefetch: 2 })
  const runtime = new RuntimeProcess({ handler: 'sidecar_handlers.echo', socketDir, pythonPath: [SIDECAR_HANDLERS_DIR], env: { ASYA_LOG_LEVEL: 'WARNING' } })
  await runtime.start()
  const nodeOptions = sidecarImageNodeOptions()
  const p = spawnSidecar({ ...world.env, NODE_OPTIONS: nodeOptions, ASYA_ACTOR_NAME: name, ASYA_SOCKET_DIR: socketDir, ASYA_METRICS_ADDR: `127.0.0.1:${await freePort()}` })
  t.teardown(async () => {
    p.child.kill('SIGKILL')
    await runtime.stop().catch(() => undefined)
    await dropQueues(client, [name, world.happyEnd], socketDir)
  })
  const blob = 'é'.repeat(20 * 1024 * 1024) // 40 MB of UTF-8: two-byte characters, the harder case for V8 strings
  // Two in a row: the second is parsed while the first is in the runtime.
  for (const i of [1, 2]) await client.publish(name, envelope(`big${i}-${name}`, [name], { blob }))
  const crashed = p.exited.then((code) => {
    throw new Error(`sidecar exited (${code}): ${p.output().slice(-500)}`)
  })
  crashed.catch(() => undefined) // the teardown's kill must not surface as an unhandled rejection
  for (const i of [1, 2]) {
    const d = await Promise.race([happy.next(120_000), crashed])
    const env = json(d)
    t.equal(env.id, `big${i}-${name}`)
    t.equal((env.payload as { blob: string }).blob.length, blob.length, `envelope ${i} intact under NODE_OPTIONS=${nodeOptions}`)
  }
  t.equal(p.child.exitCode, null, 'the sidecar is still running')
  t.notMatch(p.output(), /heap out of memory/i)
  // Peak RSS, for docs/configuration.md (memory limit needed per envelope size).
  const hwm = /VmHWM:\s+(\d+)/.exec(readFileSync(`/proc/${p.child.pid}/status`, 'utf8'))?.[1]
  t.comment(`sidecar peak RSS with two 40 MB envelopes: ${Math.round(Number(hwm) / 1024)} MB`)
})
